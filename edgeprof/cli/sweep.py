"""`edgeprof sweep`: build blocks with each activation, export, profile interleaved, print and save."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import (
    Arena,
    CsvPath,
    Format,
    FormatOpt,
    Isolate,
    MaxTime,
    MinSamples,
    OptLevel,
    OptLevelOpt,
    Quiet,
    RelCI,
    Spinning,
    Threads,
    boundary,
    progress_bar,
    render,
    render_per_op,
    settings_and_options,
    wrote,
)
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
from edgeprof.pipeline import SweepInterrupted, run_sweep


def resume_command(csv_path: Path) -> str:
    """The command line that continues this sweep: the same arguments with --csv and --resume."""
    import shlex
    import sys

    args = list(sys.argv[1:])
    if "--csv" not in args:
        args += ["--csv", str(csv_path)]
    if "--resume" not in args:
        args.append("--resume")
    return "edgeprof " + " ".join(shlex.quote(a) for a in args)


@boundary
def sweep(
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
    threads: Threads = 1,
    opt_level: OptLevelOpt = OptLevel.all,
    spinning: Spinning = False,
    arena: Arena = True,
    rel_ci: RelCI = 0.02,
    max_time: MaxTime = 3.0,
    min_samples: MinSamples = 20,
    isolate: Isolate = True,
    opset: Opset = 17,
    exporter: Exporter = "torchscript",
    act_alone: ActAlone = True,
    roofline: Roofline = True,
    quantize: Quantize = None,
    calib: Calib = None,
    per_op: Annotated[bool, typer.Option("--per-op", help="Also print where the time goes inside each block "
                                         "(onnxruntime's profiler; always saved as <csv>-ops.csv).")] = False,
    onnx_model: Annotated[Path | None, typer.Option("--onnx", help="Your own ONNX model: profile it with each of "
                                                    "--acts swapped in (edgeprof swap) instead of built blocks.")] =
    None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="With --onnx: shape for dynamic inputs, "
                                                   "images=1x3x640x640 or N=1.")] = None,
    models_dir: Annotated[Path, typer.Option("--models-dir", help="Where exported models are cached.")] =
    Path("models"),
    csv: CsvPath = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --csv: configs already there "
                                         "with the same settings are not measured again.")] = False,
    fmt: FormatOpt = Format.table,
    quiet: Quiet = False,
    seed: Seed = 0,
) -> None:
    """Compare activations inside YOLO-style blocks: latency, ratio to a baseline, fusion, params, MACs.

    Examples:

      edgeprof sweep

      edgeprof sweep --acts relu,mish,hardswish

      edgeprof sweep --acts relu,silu,mish --blocks conv,c3 --widths 16,32,64,128 --depths 1,2 --imgsz 160

      edgeprof sweep --acts relu,silu,hardswish,mish --scale n,s,m --blocks c2f

      edgeprof sweep --model yolo-n --acts relu,silu,hardswish,mish --imgsz 320

      edgeprof sweep --onnx my_detector.onnx --acts relu,hardswish,mish --shape images=1x3x640x640

      edgeprof sweep --acts relu,mish --widths 16,32,64,128 --imgsz 160 --scaling fixed-tensor

      edgeprof sweep --acts leakyrelu:0.2,mypkg.acts:MyAct --threads 2 --csv results/mine.csv

      edgeprof sweep --csv results/mine.csv --resume   (continue an interrupted sweep)
    """
    plan = make_plan(acts, blocks, scale, scaling, widths, depths, imgsz, model, batch, kernel, stride, baseline,
                     opset, exporter, act_alone, roofline, seed, quantize, calib)
    settings, options = settings_and_options(threads, opt_level, spinning, arena, rel_ci, max_time, min_samples,
                                             isolate, seed)
    try:
        with progress_bar(not quiet) as progress:
            if onnx_model is not None:
                from edgeprof.pipeline import run_onnx_swap
                from edgeprof.runtime.onnxruntime.session import parse_shapes

                df, csv_path = run_onnx_swap(onnx_model, plan.acts, baseline, settings, options, csv_path=csv,
                                             models_dir=models_dir, shapes=parse_shapes(shape), on_progress=progress)
            else:
                df, csv_path = run_sweep(plan, settings, options, csv_path=csv, models_dir=models_dir,
                                         on_progress=progress, resume=resume)
    except SweepInterrupted as exc:
        exc.args = (f"{exc}; to continue: {resume_command(exc.csv_path)}",)
        raise
    render(df, fmt, title=f"edgeprof sweep: {threads} thread(s), opt level {opt_level.value}")
    if per_op:
        render_per_op(csv_path, df, fmt)
    wrote(csv_path)
