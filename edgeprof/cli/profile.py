"""`edgeprof profile`: measure existing ONNX files with the same settings as a sweep (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, progress_bar, render, render_per_op, warn_threads, wrote
from edgeprof.cli.options import MeasureFlags, OutputFlags, SessionFlags, Shape, with_groups


@boundary
@with_groups
def profile(
    models: Annotated[list[Path], typer.Argument(help="ONNX files to measure, interleaved; or one bundle folder "
                                                 "made by `edgeprof bundle`.")],
    session: SessionFlags,
    measuring: MeasureFlags,
    output: OutputFlags,
    shape: Shape = None,
) -> None:
    """Profile ONNX files you already have (ratios are to the first file), or a bundle folder.

    Examples:

      edgeprof profile bundle/ --csv results/device.csv

      edgeprof profile models/yolo.onnx --shape images=1x3x640x640

      edgeprof profile a.onnx b.onnx --threads 2 --csv results/ab.csv
    """
    from edgeprof import api
    from edgeprof.runtime.onnxruntime.session import parse_shapes

    settings, options = session.settings(), measuring.options()
    warn_threads(settings.threads)
    with progress_bar(not output.quiet) as progress:
        df, csv_path = api.profile(models, settings, options, shapes=parse_shapes(shape),
                                   csv_path=output.csv_path("profile"), on_progress=progress)
    render(df, output.fmt, title=f"edgeprof profile: {settings.threads} thread(s), opt level {settings.opt_level}")
    if output.per_op:
        render_per_op(csv_path, df, output.fmt)
    wrote(csv_path)
