"""How an ONNX model splits into kernels on this runtime: the nodes of onnxruntime's own optimised graph.

A kernel is what the runtime runs as one unit after its graph optimisations (nn-Meter's "kernel"): onnxruntime
writes the graph it will execute (``SessionOptions.optimized_model_filepath``, at the same optimisation level and
threads as the timing), so which activations fused into their conv (a ``Conv`` with an ``activation`` attribute),
which became one op of their own (x*sigmoid(x) -> ``QuickGelu``), and where the layout changes (NCHWc
``ReorderInput``/``ReorderOutput``) come from the runtime itself, never from a list of assumed rules. The optimised
graph carries no shapes, so they are propagated here from the original model's inferred shapes: each optimised
node maps back to the original tensor or node it was made from (``<tensor>_nchwc``, the node's own name), and
layout and elementwise ops keep their input's shape.

The profiler of an onnxruntime session names the nodes it ran with the same names, so a kernel measured inside a
small model (``collect``) and a kernel of a whole network (``model``) are the same kind of record.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeprof.errors import InputError

# op types that keep the shape of their first input (layout changes and elementwise ops)
_SAME_SHAPE = {
    "ReorderInput", "ReorderOutput", "QuickGelu", "Sigmoid", "Relu", "LeakyRelu", "Tanh", "Softplus", "HardSigmoid",
    "HardSwish", "Clip", "Elu", "Selu", "Celu", "Erf", "Gelu", "FastGelu", "BiasGelu", "Mish", "Sin", "Neg", "Exp",
    "Log", "Abs", "Sqrt", "Reciprocal", "Identity", "PRelu", "ThresholdedRelu", "Softsign", "Cast",
}
_BROADCAST = {"Add", "Sum", "Mul", "Sub", "Div", "Max", "Min", "Pow", "Where"}
CONV_OPS = {"Conv", "FusedConv", "NhwcFusedConv"}
POOL_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}

# numeric features of every kernel, in this order (zeros where a feature does not apply)
FEATURES = ("macs", "in_elements", "out_elements", "inputs", "cin", "cout", "hw_out", "kernel", "stride", "groups")


@dataclass
class Kernel:
    """One node of the runtime's optimised graph. ``kind`` is what a predictor is fitted per: the op type, and for a
    conv what ran inside it (``Conv+Relu``, ``Conv+Sum``); ``fused`` names the ops fused into it (its
    ``activation`` attribute, a residual ``Sum``)."""

    name: str
    op_type: str
    domain: str
    kind: str
    fused: str = ""
    macs: int = 0
    in_elements: int = 0
    out_elements: int = 0
    inputs: int = 0
    cin: int = 0
    cout: int = 0
    hw_out: int = 0
    kernel: int = 0
    stride: int = 0
    groups: int = 0
    shapes_known: bool = True
    extra: dict = field(default_factory=dict)

    def features(self) -> list[float]:
        return [float(getattr(self, f)) for f in FEATURES]

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data


@dataclass
class KernelGraph:
    """A model's kernels on one runtime configuration, in the order the runtime runs them."""

    path: str
    kernels: list[Kernel]
    original_nodes: int
    activations_fused: int  # convs that ran an activation inside them
    convs: int

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kernels:
            out[k.kind] = out.get(k.kind, 0) + 1
        return out


def _attr(node, name: str, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _dims(value_info) -> tuple[int, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value") or d.dim_value <= 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _original_shapes(model) -> tuple[dict[str, tuple[int, ...]], dict[str, list[str]], dict[str, int]]:
    """Shapes of the original model's tensors (shape inference with data propagation; a dimension computed at run
    time, such as a chunk's, stays unknown), each node's outputs by node name, and for each tensor a conv made
    (directly or through shape-keeping ops after it) that conv's output channels, from its weights."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a model onnx cannot infer: what it declares is all there is
        inferred = model
    g = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    weights = {init.name: tuple(int(d) for d in init.dims) for init in g.initializer}
    shapes.update(weights)
    outputs = {n.name: list(n.output) for n in g.node if n.name}
    conv_cout: dict[str, int] = {}
    for n in g.node:  # in topological order, as ONNX requires
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in weights and n.output:
            conv_cout[n.output[0]] = weights[n.input[1]][0]
        elif n.op_type in _SAME_SHAPE | {"Mul", "Add", "Div", "Sub"} and n.output:
            cout = next((conv_cout[x] for x in n.input if x in conv_cout), None)
            if cout is not None:
                conv_cout[n.output[0]] = cout
    return shapes, outputs, conv_cout


def _topological(nodes, available: set[str]) -> list:
    """The nodes in an order where each comes after the producers of its inputs (the saved graph may not be):
    level by level (a node's level is one more than its producers' highest), in the saved order within a level;
    nodes with an input nobody makes (or in a cycle) last, in the saved order. Kahn's algorithm: linear in the
    graph, where re-scanning the pending nodes once per level took most of a prediction's time on a network."""
    nodes = list(nodes)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for out in n.output:
            if out:
                producer.setdefault(out, i)
    waiting = [0] * len(nodes)
    consumers: dict[int, list[int]] = {}
    unmade = [False] * len(nodes)
    for i, n in enumerate(nodes):
        for x in dict.fromkeys(n.input):
            if not x or x in available:
                continue
            if x not in producer:
                unmade[i] = True
                continue
            waiting[i] += 1
            consumers.setdefault(producer[x], []).append(i)
    level = [0] * len(nodes)
    queue = [i for i in range(len(nodes)) if waiting[i] == 0 and not unmade[i]]
    done = []
    while queue:
        i = queue.pop()
        done.append(i)
        for j in consumers.get(i, ()):
            level[j] = max(level[j], level[i] + 1)
            waiting[j] -= 1
            if waiting[j] == 0 and not unmade[j]:
                queue.append(j)
    placed = set(done)
    ordered = sorted(done, key=lambda i: (level[i], i))
    return [nodes[i] for i in ordered] + [n for i, n in enumerate(nodes) if i not in placed]


def optimized_graph(path: str | Path, settings) -> "onnx.ModelProto":  # noqa: F821, UP037
    """The graph onnxruntime will execute for ``path`` with ``settings`` (its optimisation level and threads),
    as onnxruntime itself writes it (``optimized_model_filepath``)."""
    import onnx
    import onnxruntime as ort

    from edgeprof.runtime.onnxruntime.session import check_model_file, session_options

    path = check_model_file(path)
    if settings.provider not in ort.get_available_providers():
        raise InputError(f"execution provider {settings.provider!r} is not available; available: "
                         f"{', '.join(ort.get_available_providers())}")
    with tempfile.TemporaryDirectory(prefix="edgeprof-kernels-") as tmp:
        out = os.path.join(tmp, "optimized.onnx")
        options = session_options(settings)
        options.optimized_model_filepath = out
        try:
            ort.InferenceSession(str(path), options, providers=[settings.provider])
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot load ONNX model {path}: {first[:300]}") from None
        return onnx.load(out)


def _conv_out(in_shape, node, cout: int) -> tuple[int, ...] | None:
    if in_shape is None or len(in_shape) != 4:
        return None
    k = list(_attr(node, "kernel_shape", []) or [])
    s = list(_attr(node, "strides", [1, 1]) or [1, 1])
    d = list(_attr(node, "dilations", [1, 1]) or [1, 1])
    p = list(_attr(node, "pads", [0, 0, 0, 0]) or [0, 0, 0, 0])
    if len(k) != 2:
        return None
    h = (in_shape[2] + p[0] + p[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    w = (in_shape[3] + p[1] + p[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    return (in_shape[0], cout, h, w)


def _mapped_shape(node, shapes, original_outputs) -> tuple[int, ...] | None:
    """The shape of the original tensor this optimised node was made from: ``<tensor>_nchwc``, a node of the same
    name, or the longest path prefix of its name that names an original node (``/x/act/Mul/QuickGeluFusion/``)."""
    name = node.name or ""
    if name.endswith("_nchwc") and name[: -len("_nchwc")] in shapes:
        return shapes[name[: -len("_nchwc")]]
    parts = name.rstrip("/").split("/")
    for end in range(len(parts), 1, -1):
        outs = original_outputs.get("/".join(parts[:end]))
        if outs and outs[0] in shapes:
            return shapes[outs[0]]
    return None


def _split_shapes(node, in_shape, values, shapes) -> None:
    """The outputs of a Split: its ``split`` sizes (an input or attribute), else equal parts."""
    axis = int(_attr(node, "axis", 0))
    axis = axis + len(in_shape) if axis < 0 else axis
    sizes = values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else _attr(node, "split", None)
    outs = [o for o in node.output if o]
    if sizes is None or len(sizes) != len(outs):
        sizes = [in_shape[axis] // max(1, len(outs))] * len(outs)
    for o, size in zip(outs, sizes, strict=True):
        shape = list(in_shape)
        shape[axis] = int(size)
        shapes.setdefault(o, tuple(shape))


def _resize_shape(node, in_shape, values) -> tuple[int, ...] | None:
    """A Resize/Upsample's output from its ``scales`` (attribute or constant input) or constant ``sizes``."""
    scales = _attr(node, "scales", None)
    if scales is None:
        if len(node.input) > 3 and node.input[3] in values:
            return tuple(int(x) for x in values[node.input[3]])
        if len(node.input) > 2 and node.input[2] in values and len(values[node.input[2]]):
            scales = values[node.input[2]]
        elif len(node.input) > 1 and node.input[1] in values and len(values[node.input[1]]):
            scales = values[node.input[1]]
    if scales is None or len(scales) != len(in_shape):
        return None
    return tuple(int(math.floor(d * float(f))) for d, f in zip(in_shape, scales, strict=True))


def _reshape_shape(in_shape, target) -> tuple[int, ...]:
    """A Reshape's output: its constant target shape (0 copies, -1 infers), else the input's elements flat."""
    total = _elements(in_shape)
    if target is None:
        return (total,)
    dims = [in_shape[i] if int(d) == 0 and i < len(in_shape) else int(d) for i, d in enumerate(target)]
    if dims.count(-1) == 1:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = total // known if known else 0
    return tuple(dims)


def _elements(shape) -> int:
    return int(math.prod(shape)) if shape else 0


def split_kernels(path: str | Path, settings=None) -> KernelGraph:
    """The kernels ``path`` runs as on onnxruntime with ``settings`` (default: onnxruntime's defaults in edgeprof,
    1 thread, opt level all), with the features a predictor needs."""
    import onnx

    from edgeprof.runtime.onnxruntime.session import SessionSettings

    settings = settings or SessionSettings()
    if getattr(settings, "runtime", "onnxruntime") != "onnxruntime":
        raise InputError(f"edgeprof predict reads onnxruntime's optimised graph; runtime {settings.runtime!r} is not "
                         "supported (valid: onnxruntime)")
    from edgeprof.runtime.onnxruntime.session import check_model_file

    path = check_model_file(path)
    try:
        original = onnx.load(str(path))
    except Exception as exc:
        raise InputError(f"cannot read {path} as an ONNX model: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from None
    init_names = {i.name for i in original.graph.initializer}
    for vi in original.graph.input:
        if vi.name not in init_names and _dims(vi) is None:
            dims = [d.dim_param or (str(d.dim_value) if d.dim_value > 0 else "?")
                    for d in vi.type.tensor_type.shape.dim]
            raise InputError(f"{path}: input {vi.name} has a dimension not fixed in the model ({' x '.join(dims)}); "
                             "edgeprof predict needs fixed input shapes: export the model with a fixed input size")
    shapes, original_outputs, conv_cout = _original_shapes(original)
    optimized = optimized_graph(path, settings)
    for init in optimized.graph.initializer:
        shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
    inits = {i.name for i in optimized.graph.initializer}
    values = {i.name: onnx.numpy_helper.to_array(i) for i in optimized.graph.initializer
              if i.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.FLOAT) and math.prod(i.dims) <= 16}
    kernels: list[Kernel] = []
    fused_acts = convs = 0
    graph_inputs = {i.name for i in optimized.graph.input}
    for node in _topological(optimized.graph.node, graph_inputs | inits):
        data_inputs = [x for x in node.input if x and x not in inits]
        in_shapes = [shapes.get(x) for x in data_inputs]
        first = in_shapes[0] if in_shapes else None
        out_shape = shapes.get(node.output[0]) if node.output else None
        op = node.op_type
        k = Kernel(name=node.name or node.output[0], op_type=op, domain=node.domain, kind=op,
                   inputs=len(data_inputs))
        if op in CONV_OPS:
            convs += 1
            mapped = _mapped_shape(node, shapes, original_outputs)
            weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
            tensor = node.name[: -len("_nchwc")] if node.name.endswith("_nchwc") else (node.output[0] or "")
            # output channels: the original tensor's shape, else the original conv's weights (a blocked conv's own
            # weights are padded to its block size)
            cout = mapped[1] if mapped and len(mapped) == 4 else conv_cout.get(tensor, weight[0] if weight else 0)
            if out_shape is None:
                out_shape = mapped if mapped and len(mapped) == 4 else _conv_out(first, node, cout)
            act = _attr(node, "activation", "") or ""
            has_sum = len(node.input) > 3 and bool(node.input[3])
            parts = [p for p in (act, "Sum" if has_sum else "") if p]
            k.fused = "+".join(parts)
            k.kind = "Conv" + "".join(f"+{p}" for p in parts)
            fused_acts += bool(act)
            ks = list(_attr(node, "kernel_shape", []) or [])
            k.kernel = int(ks[0]) if ks else (weight[-1] if weight else 0)
            k.stride = int((_attr(node, "strides", [1, 1]) or [1])[0])
            k.groups = int(_attr(node, "group", 1) or 1)
            if first and out_shape:
                k.cin, k.cout = int(first[1]), int(out_shape[1])
                k.hw_out = int(out_shape[2] * out_shape[3]) if len(out_shape) == 4 else 0
                k.macs = _elements(out_shape) * (k.cin // max(1, k.groups)) * k.kernel * k.kernel
            if has_sum:
                k.inputs -= 1
        elif out_shape is None:
            if op in _SAME_SHAPE and first is not None:
                out_shape = first
            elif op in _BROADCAST and all(s is not None for s in in_shapes) and in_shapes:
                import numpy as np

                try:
                    out_shape = tuple(int(x) for x in np.broadcast_shapes(*in_shapes))
                except ValueError:
                    out_shape = None
            elif op == "Concat" and all(s is not None for s in in_shapes) and in_shapes:
                axis = int(_attr(node, "axis", 1))
                out_shape = list(in_shapes[0])
                out_shape[axis] = sum(s[axis] for s in in_shapes)
                out_shape = tuple(out_shape)
            if out_shape is None:
                out_shape = _mapped_shape(node, shapes, original_outputs)
            if out_shape is None and op in POOL_OPS and first is not None:
                out_shape = _conv_out(first, node, first[1])
        if op in POOL_OPS:
            ks = list(_attr(node, "kernel_shape", []) or [])
            k.kernel = int(ks[0]) if ks else 0
            k.stride = int((_attr(node, "strides", [1, 1]) or [1])[0])
            if out_shape and len(out_shape) == 4:
                k.cin = k.cout = int(out_shape[1])
                k.hw_out = int(out_shape[2] * out_shape[3])
        if op == "Split" and first is not None:
            _split_shapes(node, first, values, shapes)
        elif op in ("Upsample", "Resize") and first is not None and out_shape is None:
            out_shape = _resize_shape(node, first, values)
        elif op == "Reshape" and first is not None and out_shape is None:
            out_shape = _reshape_shape(first, values.get(node.input[1]) if len(node.input) > 1 else None)
        if out_shape is not None and node.output:
            shapes.setdefault(node.output[0], tuple(out_shape))
        k.in_elements = sum(_elements(s) for s in in_shapes if s)
        k.out_elements = sum(_elements(shapes.get(o)) for o in node.output if o and shapes.get(o))
        k.shapes_known = all(s is not None for s in in_shapes) and k.out_elements > 0
        kernels.append(k)
    return KernelGraph(str(path), kernels, len(original.graph.node), fused_acts, convs)
