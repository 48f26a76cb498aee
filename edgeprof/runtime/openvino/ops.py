"""What OpenVINO's CPU plugin ran: the executed nodes of its runtime model (after its fusions), named with ONNX op
types so edgeprof's activation logic reads them as for onnxruntime, and their times from its performance counters.

A node that absorbed others is named by its own op first and the ops fused into it after, ``Conv+Add+Mish`` (the
convolution with the BN bias and a Mish post-op): the activation ran inside the convolution. An activation that
ran on its own is a node of its own op type (``Sin``); a fused elementwise chain (``Eltwise``/``Subgraph``) is
named by the ops it computes, ``Softplus+Tanh+Mul``.
"""

from __future__ import annotations

from collections import Counter

# OpenVINO op types (opset and CPU-plugin names) -> the ONNX op types edgeprof's activation table uses
ONNX_NAMES = {
    "Convolution": "Conv", "GroupConvolution": "Conv", "Multiply": "Mul", "Subtract": "Sub", "Divide": "Div",
    "Power": "Pow", "Negative": "Neg", "HSwish": "HardSwish", "HSigmoid": "HardSigmoid", "SoftPlus": "Softplus",
    "SwishCPU": "Swish", "Clamp": "Clip", "Maximum": "Max", "Minimum": "Min", "FullyConnected": "Gemm",
    "MatMul": "MatMul",
}
# layer types that say only "several ops were fused here": such a node is named by the ops it computes
GENERIC_LAYERS = {"Eltwise", "Subgraph", "Math"}
NOT_OPS = {"Constant", "Parameter", "Result", "Input", "Output"}


def onnx_name(ov_type: str) -> str:
    return ONNX_NAMES.get(ov_type, ov_type)


def node_op_type(layer_type: str, fused_types: list[str]) -> str:
    """``Conv+Add+Relu`` for a convolution with a bias add and a ReLU post-op; ``Sin`` for a node of its own."""
    own = onnx_name(layer_type)
    parts = [] if layer_type in GENERIC_LAYERS and fused_types else [own]
    for t in fused_types:
        name = onnx_name(t)
        if name not in parts and t not in NOT_OPS and name != own:
            parts.append(name)
    return "+".join(parts) or own


def original_types(model) -> dict[str, str]:
    """Friendly name -> op type of the model OpenVINO compiled (the IR as read, before the plugin's fusions)."""
    return {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}


def runtime_layers(compiled) -> dict[str, dict]:
    """The runtime model's nodes: friendly name -> layerType, originalLayersNames (list) and execOrder."""
    out = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()

        def get(key: str, rt=rt) -> str:
            return rt[key].astype(str) if key in rt else ""

        names = [n for n in get("originalLayersNames").split(",") if n]
        out[op.get_friendly_name()] = {"layer_type": get("layerType"), "original": names,
                                       "primitive": get("primitiveType")}
    return out


def profile_nodes(compiled, model, request, min_runs: int, min_seconds: float,
                  max_runs: int) -> tuple[list[dict], int]:
    """Run ``request`` (compiled with PERF_COUNT) at least ``min_runs`` times and ``min_seconds`` (at most
    ``max_runs``); the nodes that executed, in order, each with its mean time in microseconds (OpenVINO's counters
    have microsecond resolution), and the runs."""
    import time

    types = original_types(model)
    layers = runtime_layers(compiled)
    total_us: Counter = Counter()
    calls: Counter = Counter()
    order: list[str] = []
    kind: dict[str, tuple[str, str]] = {}
    runs = 0
    t0 = time.perf_counter()
    while runs < min_runs or (time.perf_counter() - t0 < min_seconds and runs < max_runs):
        request.infer()
        runs += 1
        for info in request.get_profiling_info():
            if info.status.name != "EXECUTED":
                types.setdefault(info.node_name, info.node_type)  # a node fused away: its type, by name
                continue
            name = info.node_name
            if name not in kind:
                order.append(name)
                kind[name] = (info.node_type, info.exec_type)
            total_us[name] += info.real_time.total_seconds() * 1e6
            calls[name] += 1
    nodes = []
    for name in order:
        node_type = kind[name][0]  # the profiler's type: Convolution, Reorder, Sin (where the runtime model says Math)
        generic = node_type in GENERIC_LAYERS
        fused = [types.get(n, "") for n in layers.get(name, {}).get("original", []) if generic or n != name]
        nodes.append({"name": name, "op_type": node_op_type(node_type, [t for t in fused if t]),
                      "calls": calls[name], "mean_us": total_us[name] / calls[name], "output_bytes": None,
                      "mem_in_use_delta": None})
    return nodes, runs
