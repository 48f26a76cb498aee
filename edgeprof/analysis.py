"""Static figures from an ONNX graph: weight bytes, peak live activation bytes by liveness, and MACs.

Needs the ``onnx`` package (present wherever models are built); callers on a device without it get None.
The liveness pass walks the nodes in the graph's (topological) order; a tensor is live from the step that
produces it (graph inputs: from the start) to the last step that reads it (graph outputs: to the end);
the peak is the largest sum of live tensor bytes at any step. Shapes come from onnx shape inference.
This is what an ideal runtime without fusion or buffer reuse across ops would hold; compare it with the
measured peak RSS to see what the runtime adds (its own code, thread pools, arena rounding, workspace).
"""

from __future__ import annotations

import math
from pathlib import Path

MIB = 1024.0 * 1024.0


def _elem_bytes(elem_type: int) -> int | None:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _tensor_bytes(value_info) -> int | None:
    ttype = value_info.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    size = _elem_bytes(ttype.elem_type)
    if size is None:
        return None
    for dim in ttype.shape.dim:
        if not dim.HasField("dim_value"):
            return None
        size *= dim.dim_value
    return size


def estimate_memory(model) -> dict:
    """``weights_mb``, ``act_peak_mb``, and ``act_estimate_complete`` (False if some shape was unknown).

    ``model`` is an onnx.ModelProto or a path.
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(model, str | Path):
        model = onnx.load(str(model))
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    weights = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    weights += numpy_helper.to_array(attr.t).nbytes
    initializers = {t.name for t in graph.initializer}
    sizes: dict[str, int | None] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        sizes[vi.name] = _tensor_bytes(vi)
    steps = [n for n in graph.node if n.op_type != "Constant"]
    last = len(steps)
    birth: dict[str, int] = {vi.name: 0 for vi in graph.input if vi.name not in initializers}
    death: dict[str, int] = dict.fromkeys(birth, 0)
    for i, node in enumerate(steps):
        for name in node.input:
            if name in birth:
                death[name] = max(death[name], i)
        for name in node.output:
            if name:
                birth[name] = i
                death[name] = i
    for vi in graph.output:
        if vi.name in death:
            death[vi.name] = last
    complete = True
    peak = 0
    for i in range(max(1, last)):
        live = 0
        for name, b in birth.items():
            if b <= i <= death[name]:
                size = sizes.get(name)
                if size is None:
                    complete = False
                    continue
                live += size
        peak = max(peak, live)
    return {"weights_mb": weights / MIB, "act_peak_mb": peak / MIB, "act_estimate_complete": complete}


def try_estimate_memory(path: str | Path) -> dict:
    """``estimate_memory`` where onnx is installed and ``path`` is an ONNX file; empty figures (None) otherwise (a
    runtime's own artifact, e.g. a bundle's ``.tflite``)."""
    empty = {"weights_mb": None, "act_peak_mb": None, "act_estimate_complete": None}
    if Path(path).suffix.lower() != ".onnx":
        return empty
    try:
        import onnx  # noqa: F401
    except ImportError:
        return empty
    return estimate_memory(path)


def graph_macs(model) -> int | None:
    """Multiply-accumulates of one run of an ONNX graph's Conv, Gemm and MatMul nodes (as ``macs`` counts for
    built blocks), from inferred shapes; None when a shape is not known (dynamic dims) or onnx is missing."""
    try:
        import onnx
    except ImportError:
        return None
    if isinstance(model, str | Path):
        model = onnx.load(str(model))
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes: dict[str, list[int] | None] = {t.name: list(t.dims) for t in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        ttype = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        shapes[info.name] = dims if ttype.HasField("shape") and None not in dims else None
    total = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        out, a, b = shapes.get(node.output[0]), shapes.get(node.input[0]), shapes.get(node.input[1])
        if not out or not a or not b:
            return None
        if node.op_type == "Conv":  # weight [M, C/group, k...]: each output element takes C/group * k... MACs
            per_output = math.prod(b[1:])
        elif node.op_type == "Gemm":
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            per_output = a[0] if trans_a else a[-1]
        else:
            per_output = a[-1]
        total += math.prod(out) * per_output
    return total
