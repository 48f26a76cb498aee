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
    RuntimeOpt,
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
from edgeprof.errors import InputError
from edgeprof.pipeline import ResultsNotSaved, run_sweep


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
    runtime: RuntimeOpt = None,
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
    append: Annotated[bool, typer.Option("--append", help="Add this run's rows to an existing --csv (without it, "
                                         "a non-empty --csv is refused).")] = False,
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
                                             isolate, seed, runtime)
    if onnx_model is not None:  # options about built blocks do not apply to a model you give
        built = (("--blocks", blocks, "conv"), ("--scale", scale, None), ("--scaling", scaling, "auto"),
                 ("--widths", widths, "16,32,64"), ("--depths", depths, "1"), ("--imgsz", imgsz, None),
                 ("--model", model, None), ("--batch", batch, "1"), ("--kernel", kernel, 3), ("--stride", stride, 1),
                 ("--opset", opset, 17), ("--exporter", exporter, "torchscript"), ("--quantize", quantize, None),
                 ("--calib", calib, None))
        given = [flag for flag, value, default in built if value != default]
        if given:
            raise InputError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to --onnx (your "
                             "model is measured as it is, with each of --acts swapped in); drop "
                             f"{'it' if len(given) == 1 else 'them'} or drop --onnx")
    elif shape:
        raise InputError("--shape applies only with --onnx (built blocks have their sizes from --widths/--imgsz)")
    try:
        with progress_bar(not quiet) as progress:
            if onnx_model is not None:
                from edgeprof.pipeline import run_onnx_swap
                from edgeprof.runtime.onnxruntime.session import parse_shapes

                df, csv_path = run_onnx_swap(onnx_model, plan.acts, baseline, settings, options, csv_path=csv,
                                             models_dir=models_dir, shapes=parse_shapes(shape), on_progress=progress,
                                             resume=resume, append=append, roofline=roofline)
            else:
                df, csv_path = run_sweep(plan, settings, options, csv_path=csv, models_dir=models_dir,
                                         on_progress=progress, resume=resume, append=append)
    except ResultsNotSaved as exc:  # show what was measured, then say where it could not be written
        render(exc.frame, fmt, title="edgeprof sweep: measured but not saved")
        raise
    render(df, fmt, title=f"edgeprof sweep: {settings.label()}")
    if per_op:
        render_per_op(csv_path, df)
    wrote(csv_path)
