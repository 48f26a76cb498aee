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
from edgeprof.spec import parse_int_list, parse_name_list
from edgeprof.sweep import DEFAULT_ACTS, SweepInterrupted, SweepPlan, run_sweep


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
    acts: Annotated[str, typer.Option("--acts", "-a", help="Activations, comma-separated; see `edgeprof acts`. "
                                      "Parameters after ':' (leakyrelu:0.2); your own as module:Class.")] =
    ",".join(DEFAULT_ACTS),
    blocks: Annotated[str, typer.Option("--blocks", "-b", help="Blocks: conv, bottleneck, c3, c2f, sppf, "
                                      "or act (the activation alone).")] = "conv",
    scale: Annotated[str | None, typer.Option("--scale", help="YOLO scale presets instead of --widths/--depths: "
                                              "n,s,m,l,x (YOLOv8 multipliers on a P3-stage C2f: 256 ch, 6 "
                                              "bottlenecks at l).")] = None,
    scaling: Annotated[str, typer.Option("--scaling", help="How sizes grow: auto, grid, width, imgsz, or "
                                         "fixed-tensor (width grows, width*imgsz^2 kept; --imgsz is the side at "
                                         "the first width).")] = "auto",
    widths: Annotated[str, typer.Option("--widths", "-w", help="Channel widths, comma-separated.")] = "16,32,64",
    depths: Annotated[str, typer.Option("--depths", help="Bottlenecks in c3/c2f, comma-separated.")] = "1",
    imgsz: Annotated[str | None, typer.Option("--imgsz", help="Input sizes in pixels, comma-separated "
                                              "(default 160 for blocks, 320,640 for --model).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Whole networks instead of blocks: yolo-n, "
                                              "yolo-s (YOLOv8-style detectors).")] = None,
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")] = "1",
    kernel: Annotated[int, typer.Option("--kernel", help="Kernel size of the conv block.")] = 3,
    stride: Annotated[int, typer.Option("--stride", help="Stride of the conv block.")] = 1,
    baseline: Annotated[str, typer.Option("--baseline", help="Activation the ratios are taken against.")] = "relu",
    threads: Threads = 1,
    opt_level: OptLevelOpt = OptLevel.all,
    spinning: Spinning = False,
    arena: Arena = True,
    rel_ci: RelCI = 0.02,
    max_time: MaxTime = 3.0,
    min_samples: MinSamples = 20,
    isolate: Isolate = True,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset to export (the written one is recorded).")] = 17,
    exporter: Annotated[str, typer.Option("--exporter", help="torchscript (default, fast) or dynamo "
                                          "(needs onnxscript).")] = "torchscript",
    act_alone: Annotated[bool, typer.Option("--act-alone/--no-act-alone", help="Also time each activation alone "
                                            "on the block's output tensor (act_alone_ms, fused_by_timing).")] = True,
    roofline: Annotated[bool, typer.Option("--roofline/--no-roofline", help="Report achieved GFLOP/s and GB/s as "
                                           "fractions of this machine's ceilings (measured once, cached).")] = True,
    per_op: Annotated[bool, typer.Option("--per-op", help="Also print where the time goes inside each block "
                                         "(onnxruntime's profiler; always saved as <csv>-ops.csv).")] = False,
    models_dir: Annotated[Path, typer.Option("--models-dir", help="Where exported models are cached.")] =
    Path("models"),
    csv: CsvPath = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep in --csv: configs already there "
                                         "with the same settings are not measured again.")] = False,
    fmt: FormatOpt = Format.table,
    quiet: Quiet = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, inputs and round order.")] = 0,
) -> None:
    """Compare activations inside YOLO-style blocks: latency, ratio to a baseline, fusion, params, MACs.

    Examples:

      edgeprof sweep

      edgeprof sweep --acts relu,mish,hardswish

      edgeprof sweep --acts relu,silu,mish --blocks conv,c3 --widths 16,32,64,128 --depths 1,2 --imgsz 160

      edgeprof sweep --acts relu,silu,hardswish,mish --scale n,s,m --blocks c2f

      edgeprof sweep --model yolo-n --acts relu,silu,hardswish,mish --imgsz 320

      edgeprof sweep --acts relu,mish --widths 16,32,64,128 --imgsz 160 --scaling fixed-tensor

      edgeprof sweep --acts leakyrelu:0.2,mypkg.acts:MyAct --threads 2 --csv results/mine.csv

      edgeprof sweep --csv results/mine.csv --resume   (continue an interrupted sweep)
    """
    if model:
        blocks, widths = model, "3"  # a whole network takes an RGB image
    plan = SweepPlan(
        acts=tuple(parse_name_list(acts, "acts")),
        blocks=tuple(parse_name_list(blocks, "blocks")),
        widths=tuple(parse_int_list(widths, "widths")),
        depths=tuple(parse_int_list(depths, "depths")),
        imgsz=tuple(parse_int_list(imgsz or ("320,640" if model else "160"), "imgsz")),
        batch=tuple(parse_int_list(batch, "batch")),
        kernel=kernel, stride=stride, baseline=baseline, opset=opset, exporter=exporter, seed=seed,
        act_alone=act_alone, roofline=roofline, scaling=scaling,
        scales=tuple(parse_name_list(scale, "scale")) if scale else (),
    )
    settings, options = settings_and_options(threads, opt_level, spinning, arena, rel_ci, max_time, min_samples,
                                             isolate, seed)
    try:
        with progress_bar(not quiet) as progress:
            df, csv_path = run_sweep(plan, settings, options, csv_path=csv, models_dir=models_dir,
                                     on_progress=progress, resume=resume)
    except SweepInterrupted as exc:
        exc.args = (f"{exc}; to continue: {resume_command(exc.csv_path)}",)
        raise
    render(df, fmt, title=f"edgeprof sweep: {threads} thread(s), opt level {opt_level.value}")
    if per_op:
        render_per_op(csv_path, df)
    wrote(csv_path)
