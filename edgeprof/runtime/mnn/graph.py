"""MNN's ops named in ONNX's vocabulary, so edgeprof's activation table recognises them: ``UnaryOp`` TANH is
``Tanh``, ``BinaryOp`` MUL is ``Mul``, a ``Convolution`` that MNN's converter merged a ReLU into (its
``relu=true``) is ``Conv+Relu``. The node's name keeps MNN's own op (``/act/Tanh [UnaryOp TANH]``)."""

from __future__ import annotations

# MNN UnaryOpOperation / BinaryOpOperation -> the ONNX op that computes the same
_UNARY = {
    "ABS": "Abs", "NEG": "Neg", "FLOOR": "Floor", "CEIL": "Ceil", "SQUARE": "Square", "SQRT": "Sqrt",
    "RSQRT": "Rsqrt", "EXP": "Exp", "LOG": "Log", "SIN": "Sin", "COS": "Cos", "TAN": "Tan", "RECIPROCAL":
    "Reciprocal", "LOG1P": "Log1p", "ERF": "Erf", "EXPM1": "Expm1", "SIGMOID": "Sigmoid", "TANH": "Tanh",
    "HARDSWISH": "HardSwish", "GELU": "Gelu", "GELU_STANDARD": "Gelu", "SILU": "Swish", "SIGN": "Sign",
    "ROUND": "Round",
}
_BINARY = {
    "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "REALDIV": "Div", "POW": "Pow", "MAXIMUM": "Max",
    "MINIMUM": "Min", "LESS": "Less", "GREATER": "Greater", "LESS_EQUAL": "LessOrEqual", "GREATER_EQUAL":
    "GreaterOrEqual", "EQUAL": "Equal",
}
_PLAIN = {
    "Convolution": "Conv", "ConvolutionDepthwise": "Conv", "Deconvolution": "ConvTranspose", "ELU": "Elu",
    "Selu": "Selu", "Select": "Where", "Sigmoid": "Sigmoid", "TanH": "Tanh", "Pooling": "Pool", "Concat": "Concat",
    "Eltwise": "Eltwise", "Raster": "Raster", "ConvertTensor": "ConvertTensor", "PReLU": "PRelu",
}
# Ops that only move data between MNN's layouts (NCHW <-> NC4HW4): ran, but belong to no ONNX node.
LAYOUT_OPS = frozenset({"ConvertTensor"})


def onnx_op_type(op: dict) -> str:
    """ONNX's name for what one MNN op (``{"type", "main"}`` from ``mnn_graph``) computes; MNN's own type where
    there is no counterpart."""
    kind = op.get("type", "")
    main = op.get("main") or {}
    if kind in ("Convolution", "ConvolutionDepthwise"):
        common = main.get("common") or {}
        merged = "+Relu" if common.get("relu") else "+Clip" if common.get("relu6") else ""
        return "Conv" + merged
    if kind == "UnaryOp":
        return _UNARY.get(str(main.get("opType")), f"UnaryOp:{main.get('opType')}")
    if kind == "BinaryOp":
        name = _BINARY.get(str(main.get("opType")), f"BinaryOp:{main.get('opType')}")
        return name + ("+Relu" if main.get("activationType") == 1 else "")
    if kind == "ReLU":
        return "LeakyRelu" if main.get("slope") else "Relu"
    if kind == "ReLU6":
        return "Clip"
    return _PLAIN.get(kind, kind)


def mnn_label(op: dict) -> str:
    """MNN's own name for the op: ``UnaryOp TANH``, ``Convolution relu``, ``ReLU``."""
    kind = op.get("type", "")
    main = op.get("main") or {}
    if kind in ("UnaryOp", "BinaryOp"):
        return f"{kind} {main.get('opType')}"
    if kind in ("Convolution", "ConvolutionDepthwise"):
        common = main.get("common") or {}
        return kind + (" relu" if common.get("relu") else " relu6" if common.get("relu6") else "")
    return kind
