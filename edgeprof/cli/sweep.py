"""`edgeprof sweep`: build blocks with each activation, export, profile interleaved, print and save."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeprof.cli.common import boundary, note, run_and_render, warn_threads
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
from edgeprof.pipeline import run_sweep

# what says how blocks are built: none of it applies to a model you give (--onnx)
BUILD_OPTIONS = ("blocks", "scale", "scaling", "widths", "depths", "imgsz", "model", "batch", "kernel", "stride",
                 "quantize", "calib", "opset", "exporter")


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

      edgeprof sweep --acts relu,silu,mish --threads 1,2,4   (each thread count a configuration of its own)

      edgeprof sweep --columns size,act,median,ratio,notes   (or --wide: every column)

      edgeprof sweep --runtimes onnxruntime,openvino --acts relu,silu,mish --widths 32,64 --imgsz 80

      edgeprof sweep --runtimes all   (every runtime installed here; one line names those that are not)

      edgeprof sweep --csv results/mine.csv --resume   (continue an interrupted sweep)
    """
    from edgeprof.api import default_models_dir, make_plan

    if onnx_model is not None:  # options about built blocks do not apply to a model you give
        given = [f"--{name.replace('_', '-')}" for name in BUILD_OPTIONS if name in plan.given | export.given]
        if given:
            raise InputError(f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not apply to --onnx (your "
                             "model is measured as it is, with each of --acts swapped in); drop "
                             f"{'it' if len(given) == 1 else 'them'} or drop --onnx")
    elif shape:
        raise InputError("--shape applies only with --onnx (built blocks have their sizes from --widths/--imgsz)")
    sweep_plan = make_plan(**plan.given_values(), **export.given_values())
    names, left_out = session.runtime_names()
    if left_out:
        note(left_out)
    all_settings = measuring.with_cache(session.settings_list(names, several_threads=True))
    settings, options = all_settings[0], measuring.options(seed=sweep_plan.seed)
    warn_threads(max(s.threads for s in all_settings))
    models_dir = models_dir or default_models_dir()
    if onnx_model is not None and len(all_settings) > 1:
        raise InputError("--onnx measures with one runtime and one thread count: give --runtime R and one --threads "
                         "(or run once per runtime and thread count)")
    if onnx_model is not None:
        from edgeprof.api import profile_swapped
        from edgeprof.runtime.onnxruntime.session import parse_shapes

        run_and_render("sweep", output, settings, lambda progress, on_rows: profile_swapped(
            onnx_model, sweep_plan, settings, options, shapes=parse_shapes(shape), models_dir=models_dir,
            on_progress=progress, **output.record("swap", on_rows)))
    else:
        run_and_render("sweep", output, all_settings, lambda progress, on_rows: run_sweep(
            sweep_plan, all_settings, options, models_dir=models_dir, on_progress=progress,
            **output.record("sweep", on_rows)), live=True)
