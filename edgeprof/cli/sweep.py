"""`edgeprof sweep`: build blocks with each activation, export, profile interleaved, print and save."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, progress_bar, render, render_per_op, warn_threads, wrote
from edgeprof.cli.options import (
    ExportFlags,
    MeasureFlags,
    ModelsDir,
    OutputFlags,
    PlanFlags,
    SessionFlags,
    Shape,
    with_groups,
)
from edgeprof.errors import InputError
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
@with_groups
def sweep(
    plan: PlanFlags,
    export: ExportFlags,
    session: SessionFlags,
    measuring: MeasureFlags,
    output: OutputFlags,
    onnx_model: Annotated[Path | None, typer.Option("--onnx", rich_help_panel="Blocks and sizes", help="Your own "
                                                    "ONNX model: profile it with each of --acts swapped in (edgeprof "
                                                    "swap) instead of built blocks.")] = None,
    shape: Shape = None,
    models_dir: ModelsDir = None,
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel="Output", help="Continue the "
                                         "sweep in --csv: configs already there with the same settings are not "
                                         "measured again.")] = False,
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
    from edgeprof.api import default_models_dir, make_plan

    if shape and onnx_model is None:
        raise InputError("--shape applies to --onnx only: built blocks have the shapes their sizes say")
    sweep_plan = make_plan(**plan.given_values(), **export.given_values())
    settings, options = session.settings(), measuring.options(seed=sweep_plan.seed)
    warn_threads(settings.threads)
    models_dir = models_dir or default_models_dir()
    try:
        with progress_bar(not output.quiet) as progress:
            if onnx_model is not None:
                from edgeprof.api import profile_swapped
                from edgeprof.runtime.onnxruntime.session import parse_shapes

                df, csv_path = profile_swapped(onnx_model, sweep_plan, settings, options, shapes=parse_shapes(shape),
                                               csv_path=output.csv_path("swap"), models_dir=models_dir,
                                               on_progress=progress)
            else:
                df, csv_path = run_sweep(sweep_plan, settings, options,
                                         csv_path=output.csv if resume else output.csv_path("sweep"),
                                         models_dir=models_dir, on_progress=progress, resume=resume)
    except SweepInterrupted as exc:
        exc.args = (f"{exc}; to continue: {resume_command(exc.csv_path)}",)
        raise
    render(df, output.fmt, title=f"edgeprof sweep: {settings.threads} thread(s), opt level {settings.opt_level}")
    if output.per_op:
        render_per_op(csv_path, df, output.fmt)
    wrote(csv_path)
