"""The options that say what a sweep builds, shared by `sweep` and `bundle`, and the plan made from them."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeprof.spec import parse_int_list, parse_name_list
from edgeprof.spec.blocks import blocks_help, depths_help, models_help
from edgeprof.spec.plan import DEFAULT_ACTS, SweepPlan

Acts = Annotated[str, typer.Option("--acts", "-a", help="Activations, comma-separated; see `edgeprof acts`. "
                                   "Parameters after ':' (leakyrelu:0.2); your own as module:Class.")]
Blocks = Annotated[str, typer.Option("--blocks", "-b", help=blocks_help())]
Scale = Annotated[str | None, typer.Option("--scale", help="YOLO scale presets instead of --widths/--depths: "
                                           "n,s,m,l,x (YOLOv8 multipliers on a P3-stage C2f: 256 ch, 6 "
                                           "bottlenecks at l).")]
Scaling = Annotated[str, typer.Option("--scaling", help="How sizes grow: auto (from what varies), grid, width, "
                                      "depth, imgsz, or fixed-tensor (width grows, width*imgsz^2 kept; --imgsz "
                                      "is the side at the first width).")]
Widths = Annotated[str, typer.Option("--widths", "-w", help="Channel widths, comma-separated.")]
Depths = Annotated[str, typer.Option("--depths", help=depths_help())]
Imgsz = Annotated[str | None, typer.Option("--imgsz", help="Input sizes in pixels, comma-separated "
                                           "(default 160 for blocks, 320,640 for --model).")]
Model = Annotated[str | None, typer.Option("--model", "-m", help=models_help())]
Batch = Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")]
Kernel = Annotated[int, typer.Option("--kernel", help="Kernel size of the conv block.")]
Stride = Annotated[int, typer.Option("--stride", help="Stride of the conv block.")]
Baseline = Annotated[str, typer.Option("--baseline", help="Activation the ratios are taken against.")]
Opset = Annotated[int, typer.Option("--opset", help="ONNX opset to export (the written one is recorded).")]
Exporter = Annotated[str, typer.Option("--exporter", help="torchscript (default, fast) or dynamo (needs onnxscript).")]
ActAlone = Annotated[bool, typer.Option("--act-alone/--no-act-alone", help="Also time each activation alone on the "
                                        "block's output tensor (act_alone_ms, fused_by_timing).")]
Roofline = Annotated[bool, typer.Option("--roofline/--no-roofline", help="Report achieved GFLOP/s and GB/s as "
                                        "fractions of this machine's ceilings (measured once, cached).")]
Quantize = Annotated[str | None, typer.Option("--quantize", help="Also measure quantized variants: int8 "
                                              "(onnxruntime static QDQ, calibrated on seeded inputs or --calib) "
                                              "or int8-dynamic.")]
Calib = Annotated[str | None, typer.Option("--calib", help="With --quantize int8: calibration samples, an .npy "
                                           "(first axis = samples) or an .npz keyed by input name.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for weights, inputs and round order.")]
DEFAULT_ACTS_TEXT = ",".join(DEFAULT_ACTS)


def make_plan(acts: str, blocks: str, scale: str | None, scaling: str, widths: str, depths: str, imgsz: str | None,
              model: str | None, batch: str, kernel: int, stride: int, baseline: str, opset: int, exporter: str,
              act_alone: bool, roofline: bool, seed: int, quantize: str | None = None,
              calib: str | None = None) -> SweepPlan:
    if model:
        blocks, widths = model, "3"  # a whole network takes an RGB image
    return SweepPlan(
        acts=tuple(parse_name_list(acts, "acts")),
        blocks=tuple(parse_name_list(blocks, "blocks")),
        widths=tuple(parse_int_list(widths, "widths")),
        depths=tuple(parse_int_list(depths, "depths")),
        imgsz=tuple(parse_int_list(imgsz or ("320,640" if model else "160"), "imgsz")),
        batch=tuple(parse_int_list(batch, "batch")),
        kernel=kernel, stride=stride, baseline=baseline, opset=opset, exporter=exporter, seed=seed,
        act_alone=act_alone, roofline=roofline, scaling=scaling,
        scales=tuple(parse_name_list(scale, "scale")) if scale else (), quantize=quantize,
        calib=calib,
    )
