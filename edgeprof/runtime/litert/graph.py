"""What LiteRT ran, read from the interpreter and the model file (torch-free): each op of the model, which
delegate partition ran it (the interpreter's DELEGATE nodes) and the activation fused into it
(``fused_activation_function`` in the flatbuffer), as edgeprof node records.

Op types are given in ONNX's vocabulary where a TFLite builtin is the same operation (``LOGISTIC`` is
``Sigmoid``); an op's fused activation is in its name (``CONV_2D#0+RELU@xnnpack0``), not its type, so a block
whose activation fused runs exactly the reference block's op types (edgeprof takes the activation's nodes as
those beyond the reference's: ``LiteRTRuntime.act_nodes_beyond_reference``); the TFLite name and the partition
are in the node's name.
"""

from __future__ import annotations

# TFLite builtin -> ONNX op type (the same computation); others keep a CamelCase form of their TFLite name.
ONNX_NAMES = {
    "CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "TRANSPOSE_CONV": "ConvTranspose",
    "FULLY_CONNECTED": "Gemm", "BATCH_MATMUL": "MatMul",
    "RELU": "Relu", "RELU6": "Clip", "RELU_N1_TO_1": "Clip", "RELU_0_TO_1": "Clip", "LEAKY_RELU": "LeakyRelu",
    "PRELU": "PRelu", "ELU": "Elu", "LOGISTIC": "Sigmoid", "TANH": "Tanh", "HARD_SWISH": "HardSwish",
    "GELU": "Gelu", "EXP": "Exp", "LOG": "Log", "SIN": "Sin", "ABS": "Abs", "SQRT": "Sqrt", "RSQRT": "Rsqrt",
    "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "POW": "Pow", "NEG": "Neg",
    "MAXIMUM": "Max", "MINIMUM": "Min", "GREATER": "Greater", "LESS": "Less", "GREATER_EQUAL": "GreaterOrEqual",
    "LESS_EQUAL": "LessOrEqual", "SELECT": "Where", "SELECT_V2": "Where", "CONCATENATION": "Concat",
    "MAX_POOL_2D": "MaxPool", "AVERAGE_POOL_2D": "AveragePool", "RESHAPE": "Reshape", "TRANSPOSE": "Transpose",
    "PAD": "Pad", "PADV2": "Pad", "SPLIT": "Split", "SPLIT_V": "Split", "STRIDED_SLICE": "Slice", "SLICE": "Slice",
    "RESIZE_NEAREST_NEIGHBOR": "Resize", "RESIZE_BILINEAR": "Resize", "SOFTMAX": "Softmax", "MEAN": "ReduceMean",
}
FUSED_NAMES = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def onnx_name(tflite_op: str) -> str:
    return ONNX_NAMES.get(tflite_op) or "".join(part.capitalize() for part in tflite_op.split("_"))


def fused_activations(model_bytes: bytes) -> dict[int, int]:
    """Operator index (primary subgraph) -> its ``fused_activation_function`` where it has one that is not NONE."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOptions).items() if isinstance(v, int)}
    model = schema.Model.GetRootAs(model_bytes, 0)
    graph = model.Subgraphs(0)
    out = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        table = op.BuiltinOptions()
        cls = getattr(schema, names.get(op.BuiltinOptionsType(), ""), None)
        if table is None or cls is None or not hasattr(cls, "FusedActivationFunction"):
            continue
        options = cls()
        options.Init(table.Bytes, table.Pos)
        fused = int(options.FusedActivationFunction())
        if fused:
            out[i] = fused
    return out


def partitions(ops: list[dict]) -> dict[int, int]:
    """Op index -> the delegate partition (0, 1, ...) that ran it, from the interpreter's DELEGATE nodes: a
    partition runs the ops between its inputs and its outputs. Ops not in the result ran on the built-in kernels."""
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in model_ops for t in op["outputs"]}
    by_index = {op["index"]: op for op in model_ops}
    owner: dict[int, int] = {}
    for part, delegate in enumerate(op for op in ops if op["op_name"] == "DELEGATE"):
        stop = {int(t) for t in delegate["inputs"]}
        todo = [int(t) for t in delegate["outputs"]]
        while todo:
            tensor = todo.pop()
            if tensor in stop or tensor not in producer:
                continue
            index = producer[tensor]
            if index in owner:
                continue
            owner[index] = part
            todo.extend(int(t) for t in by_index[index]["inputs"])
    return owner


def softplus_groups(ops: list[dict]) -> dict[int, int]:
    """Ops that compute one softplus as torch lowers it (``where(x > threshold, x, log(exp(x) + 1))``:
    GREATER, SELECT, EXP, ADD, LOG): op index -> the index of its group's SELECT."""
    model_ops = {op["index"]: op for op in ops if op["op_name"] != "DELEGATE"}
    producer = {int(t): i for i, op in model_ops.items() for t in op["outputs"]}

    def made_by(tensor: int, name: str) -> dict | None:
        op = model_ops.get(producer.get(int(tensor), -1))
        return op if op is not None and op["op_name"] == name else None

    groups: dict[int, int] = {}
    for index, op in model_ops.items():
        if op["op_name"] not in ("SELECT", "SELECT_V2") or len(op["inputs"]) != 3:
            continue
        cond, x, other = (int(t) for t in op["inputs"])
        greater, log = made_by(cond, "GREATER"), made_by(other, "LOG")
        add = made_by(log["inputs"][0], "ADD") if log is not None else None
        exp = next((e for t in (add["inputs"] if add is not None else []) if (e := made_by(t, "EXP"))), None)
        if greater is None or exp is None or int(greater["inputs"][0]) != x or int(exp["inputs"][0]) != x:
            continue
        for part in (greater, log, add, exp, op):
            groups[part["index"]] = index
    return groups


def executed_nodes(ops: list[dict], fused: dict[int, int], delegate_name: str = "xnnpack") -> list[dict]:
    """One node record per op the model ran, in run order; a fused activation is part of its op's type.

    ``name`` is ``<TFLITE_OP>#<index>`` with ``@<delegate><partition>`` or ``@builtin`` (who ran it) and the fused
    activation, e.g. ``CONV_2D#0+RELU@xnnpack0``; ``mean_us`` is None (no per-op timer in LiteRT's Python API).
    The five ops of a softplus as torch lowers it are one node of type ``Softplus``, named by all five (so
    mish runs as ``Softplus+Tanh+Mul`` in edgeprof's table, and its name shows where each piece ran).
    """
    owner = partitions(ops)
    groups = softplus_groups(ops)
    nodes = []
    merged: dict[int, dict] = {}
    for op in ops:
        if op["op_name"] == "DELEGATE":
            continue
        index = op["index"]
        op_type = onnx_name(op["op_name"])
        name = f"{op['op_name']}#{index}"
        if index in fused:  # the activation ran inside this op: named, not a node of its own
            name += "+" + FUSED_NAMES[fused[index]]
        name += f"@{delegate_name}{owner[index]}" if index in owner else "@builtin"
        group = groups.get(index)
        if group is not None and group in merged:
            merged[group]["name"] += " " + name
            continue
        node = {"name": name, "op_type": "Softplus" if group is not None else op_type, "calls": 0, "mean_us": None,
                "output_bytes": None, "mem_in_use_delta": None}
        if group is not None:
            merged[group] = node
        nodes.append(node)
    return nodes
