"""`edgeprof bundle`: export a sweep's models with a manifest, to profile on a device without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, progress_bar
from edgeprof.cli.options import ExportFlags, PlanFlags, Quiet, RuntimeOpt, RuntimesOpt, with_groups


@boundary
@with_groups
def bundle(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the bundle to.")],
    plan: PlanFlags,
    export: ExportFlags,
    runtime: RuntimeOpt = None,
    runtimes: RuntimesOpt = None,
    quiet: Quiet = False,
) -> None:
    """Write a self-contained folder (ONNX models + manifest.json) that `edgeprof profile DIR` measures on a
    device with only onnxruntime, numpy and pandas (`pip install edgeprof`, no torch).

    Examples:

      edgeprof bundle --acts relu,silu,hardswish,mish --widths 16,32,64 -o bundle/

      edgeprof bundle --runtimes onnxruntime,ncnn,mnn -o bundle/   (each runtime's artifacts, one manifest)

      then, on the device: edgeprof profile bundle/ --csv results/device.csv
    """
    from edgeprof.api import make_plan, resolve_runtimes
    from edgeprof.bundle import make_bundle
    from edgeprof.cli.common import note, quantizer_note
    from edgeprof.errors import InputError

    if runtime is not None and runtimes is not None:
        raise InputError("give --runtime (one runtime) or --runtimes (several), not both")
    names, left_out = resolve_runtimes(runtimes) if runtimes is not None else ([runtime], "")
    if left_out:
        note(left_out)
    sweep_plan = make_plan(**plan.given_values(), **export.given_values())
    with progress_bar(not quiet) as progress:
        manifest = make_bundle(sweep_plan, out, on_progress=progress, runtime=names)
    quantizer_note(quiet)
    files = len(list((manifest.parent / "models").glob("*.onnx")))
    typer.echo(f"bundle: {manifest.parent} ({files} models; manifest {manifest.name}). On the device: "
               f"edgeprof profile {manifest.parent}", err=True)
