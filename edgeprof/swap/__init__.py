"""Swap the activation inside an existing ONNX model: find activations after convs, lower a registry activation.

Uses the ``onnx`` package and numpy only (never torch), so it runs where the profiler runs::

    from edgeprof.swap import find_activations, swap_model

    report = swap_model("yolo.onnx", "hardswish", out="yolo-hardswish.onnx")
    for row in report.by_pattern():
        print(row.pattern, row.act, row.found, row.swapped, row.skipped)
"""

from edgeprof.spec.acts import ACTS, Act, parse_act, spec_names
from edgeprof.swap.detect import Found, find_activations
from edgeprof.swap.rewrite import PatternCount, SwapReport, swap_model

__all__ = [
    "ACTS",
    "Act",
    "Found",
    "PatternCount",
    "SwapReport",
    "find_activations",
    "parse_act",
    "spec_names",
    "swap_model",
]
