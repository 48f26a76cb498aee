"""`edgeprof profile`: measure existing ONNX files with the same settings as a sweep (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, run_and_render, warn_threads
from edgeprof.cli.options import MeasureFlags, OutputFlags, Roofline, SessionFlags, Shape, with_groups


@boundary
@with_groups
def profile(
    models: Annotated[list[Path], typer.Argument(help="ONNX files to measure, interleaved; or one bundle folder "
                                                 "made by `edgeprof bundle`.")],
    session: SessionFlags,
    measuring: MeasureFlags,
    output: OutputFlags,
    shape: Shape = None,
    roofline: Roofline = True,
) -> None:
    """Profile ONNX files you already have (ratios are to the first file), or a bundle folder.

    Examples:

      edgeprof profile bundle/ --csv results/device.csv

      edgeprof profile models/yolo.onnx --shape images=1x3x640x640

      edgeprof profile a.onnx b.onnx --threads 2 --csv results/ab.csv
    """
    from edgeprof import api
    from edgeprof.bundle import bundle_runtime, is_bundle
    from edgeprof.runtime.onnxruntime.session import parse_shapes

    runtime = session.runtime
    if runtime is None and len(models) == 1 and is_bundle(models[0]):
        runtime = bundle_runtime(models[0])  # a bundle is measured with the runtime it was made for
    settings, options = session.settings(runtime), measuring.options()
    warn_threads(settings.threads)
    run_and_render("profile", output, settings, lambda progress: api.profile(
        models, settings, options, shapes=parse_shapes(shape), on_progress=progress, roofline=roofline,
        **output.record("profile")))
