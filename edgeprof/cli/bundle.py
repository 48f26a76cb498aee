"""`edgeprof bundle`: export a sweep's models with a manifest, to profile on a device without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import Quiet, RuntimeOpt, boundary, progress_bar
from edgeprof.cli.plan_options import (
    DEFAULT_ACTS_TEXT,
    ActAlone,
    Acts,
    Baseline,
    Batch,
    Blocks,
    Calib,
    Depths,
    Exporter,
    Imgsz,
    Kernel,
    Model,
    Opset,
    Quantize,
    Roofline,
    Scale,
    Scaling,
    Seed,
    Stride,
    Widths,
    make_plan,
)


@boundary
def bundle(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the bundle to.")],
    acts: Acts = DEFAULT_ACTS_TEXT,
    blocks: Blocks = "conv",
    scale: Scale = None,
    scaling: Scaling = "auto",
    widths: Widths = "16,32,64",
    depths: Depths = "1",
    imgsz: Imgsz = None,
    model: Model = None,
    batch: Batch = "1",
    kernel: Kernel = 3,
    stride: Stride = 1,
    baseline: Baseline = "relu",
    opset: Opset = 17,
    exporter: Exporter = "torchscript",
    act_alone: ActAlone = True,
    roofline: Roofline = True,
    quantize: Quantize = None,
    calib: Calib = None,
    seed: Seed = 0,
    runtime: RuntimeOpt = None,
    quiet: Quiet = False,
) -> None:
    """Write a self-contained folder (ONNX models + manifest.json) that `edgeprof profile DIR` measures on a
    device with only onnxruntime, numpy and pandas (`pip install edgeprof`, no torch).

    Examples:

      edgeprof bundle --acts relu,silu,hardswish,mish --widths 16,32,64 -o bundle/

      then, on the device: edgeprof profile bundle/ --csv results/device.csv
    """
    from edgeprof.bundle import make_bundle

    plan = make_plan(acts, blocks, scale, scaling, widths, depths, imgsz, model, batch, kernel, stride, baseline,
                     opset, exporter, act_alone, roofline, seed, quantize, calib)
    with progress_bar(not quiet) as progress:
        manifest = make_bundle(plan, out, on_progress=progress, runtime=runtime)
    files = len(list((manifest.parent / "models").glob("*.onnx")))
    typer.echo(f"bundle: {manifest.parent} ({files} models; manifest {manifest.name}). On the device: "
               f"edgeprof profile {manifest.parent}", err=True)
