"""`edgeprof profile`: measure existing ONNX files with the same settings as a sweep (no torch needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, note, run_and_render, warn_threads
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

      edgeprof profile bundle/ --csv results/device.csv   (every runtime of the bundle installed here)

      edgeprof profile bundle/ --runtime openvino   (only that runtime's artifacts)

      edgeprof profile models/yolo.onnx --shape images=1x3x640x640

      edgeprof profile a.onnx b.onnx --threads 2 --csv results/ab.csv
    """
    from edgeprof import api
    from edgeprof.bundle import installed_bundle_runtimes, is_bundle
    from edgeprof.errors import InputError
    from edgeprof.runtime.onnxruntime.session import parse_shapes

    names, left_out = session.runtime_names()
    if names is None and len(models) == 1 and is_bundle(models[0]):
        # a bundle is measured with every runtime it was made for that is installed here
        names, left_out = installed_bundle_runtimes(models[0])
        if not names:
            raise InputError(f"none of the runtimes of bundle {models[0]} is installed here: {left_out}")
    if left_out:
        note(left_out)
    all_settings, options = measuring.with_cache(session.settings_list(names)), measuring.options()
    warn_threads(all_settings[0].threads)
    run_and_render("profile", output, all_settings, lambda progress, on_rows: api.profile(
        models, all_settings, options, shapes=parse_shapes(shape), on_progress=progress, roofline=roofline,
        **output.record("profile", on_rows)), live=len(models) == 1 and is_bundle(models[0]))  # a bundle: a sweep
