"""ncnn's ``.param`` text format, read and written without ncnn: its layers, the input shapes edgeprof stores in
its Input layers, and each layer named as the op it runs (a convolution with a fused activation included).

The format (ncnn's docs, "param and model file structure")::

    7767517                                    magic
    3 3                                        layer count, blob count
    Input        in0      0 1 in0 0=32 1=32 2=8
    Convolution  conv_0   1 1 in0 1 0=8 1=3 ... 9=5      (9 = activation_type: a fused activation)
    Swish        silu_1   1 1 1 out0

A layer's params are ``id=value``; a negative id ``-23300 - k`` holds an array ``k=n,v1,...,vn``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAGIC = "7767517"

# Convolution-like layers whose param 9 is activation_type, fused into the layer (ncnn's operator docs).
FUSING_LAYERS = frozenset({
    "Convolution", "ConvolutionDepthWise", "Convolution1D", "Convolution3D", "ConvolutionDepthWise1D",
    "ConvolutionDepthWise3D", "Deconvolution", "DeconvolutionDepthWise", "Deconvolution1D", "Deconvolution3D",
    "DeconvolutionDepthWise1D", "DeconvolutionDepthWise3D", "InnerProduct",
})
# activation_type of those layers: 1 ReLU, 2 LeakyReLU (activation_params[0] = slope), 3 Clip, 4 Sigmoid, 5 Mish,
# 6 HardSwish. Named as the ONNX op that computes it, so the activation table (edgeprof.spec.acts) applies.
FUSED_ACTIVATIONS = {1: "Relu", 2: "LeakyRelu", 3: "Clip", 4: "Sigmoid", 5: "Mish", 6: "HardSwish"}

# ncnn layer type -> the ONNX op type it computes (one to one), so edgeprof's activation table recognises them.
# Layers not listed keep ncnn's own type (Convolution, Split, Concat, Pooling...).
ONNX_NAMES = {
    "ReLU": "Relu", "Clip": "Clip", "Sigmoid": "Sigmoid", "TanH": "Tanh", "ELU": "Elu", "SELU": "Selu",
    "CELU": "Celu", "GELU": "Gelu", "HardSigmoid": "HardSigmoid", "HardSwish": "HardSwish", "Mish": "Mish",
    "Swish": "Swish", "Softplus": "Softplus", "PReLU": "PRelu", "Erf": "Erf", "Exp": "Exp", "Log": "Log",
    "AbsVal": "Abs", "Softmax": "Softmax",
}
# BinaryOp / UnaryOp param 0 = op_type (ncnn's operator docs); RSUB, RDIV, RPOW are the operands swapped.
BINARY_OPS = {0: "Add", 1: "Sub", 2: "Mul", 3: "Div", 4: "Max", 5: "Min", 6: "Pow", 7: "Sub", 8: "Div", 9: "Pow",
              10: "Atan2", 11: "Atan2"}
UNARY_OPS = {0: "Abs", 1: "Neg", 2: "Floor", 3: "Ceil", 4: "Square", 5: "Sqrt", 6: "Rsqrt", 7: "Exp", 8: "Log",
             9: "Sin", 10: "Cos", 11: "Tan", 12: "Asin", 13: "Acos", 14: "Atan", 15: "Reciprocal", 16: "Tanh",
             17: "Log10", 18: "Round", 19: "Trunc"}

# Input layer params: 0 = w, 1 = h, 11 = d, 2 = c (ncnn's operator docs). A shape (1, c, h, w) without its batch.
_INPUT_KEYS_BY_RANK = {1: ("0",), 2: ("1", "0"), 3: ("2", "1", "0"), 4: ("2", "11", "1", "0")}


class ParamError(ValueError):
    """A ``.param`` file that is not ncnn's text format."""


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str] = field(default_factory=dict)  # id -> raw value text, in file order

    def param_int(self, key: str, default: int = 0) -> int:
        try:
            return int(float(self.params.get(key, default)))
        except ValueError:
            return default

    def array(self, key: int) -> list[str]:
        """Array param ``key`` (stored under id ``-23300 - key``) as its values' text."""
        raw = self.params.get(str(-23300 - key))
        return raw.split(",")[1:] if raw else []

    @property
    def fused_activation(self) -> str:
        """The activation fused into this layer (``Mish``), '' for none. A ReLU with a non-zero slope in its
        activation params is a leaky ReLU, as ncnn runs it."""
        if self.type not in FUSING_LAYERS:
            return ""
        kind = self.param_int("9")
        if kind == 1 and self.array(10) and float(self.array(10)[0]) != 0.0:
            kind = 2
        return FUSED_ACTIVATIONS.get(kind, f"activation_type={kind}" if kind else "")

    @property
    def op_type(self) -> str:
        """What the layer computes, named so that edgeprof can tell an activation: a fused convolution is
        ``Convolution+Mish``; activation, BinaryOp and UnaryOp layers get their ONNX op's name (``Swish``, ``Mul``,
        ``Sin``); a ReLU with a slope is ``LeakyRelu``; everything else keeps ncnn's type."""
        fused = self.fused_activation
        if fused:
            return f"{self.type}+{fused}"
        if self.type == "BinaryOp":
            return BINARY_OPS.get(self.param_int("0"), "BinaryOp")
        if self.type == "UnaryOp":
            return UNARY_OPS.get(self.param_int("0"), "UnaryOp")
        if self.type == "ReLU" and float(self.params.get("0", 0) or 0) != 0.0:
            return "LeakyRelu"
        return ONNX_NAMES.get(self.type, self.type)

    def line(self) -> str:
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        return " ".join([head, *self.bottoms, *self.tops, *(f"{k}={v}" for k, v in self.params.items())])


def parse_param(text: str) -> list[Layer]:
    """The layers of a ``.param`` text, in file (= execution) order; ParamError if it is not one."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != MAGIC:
        raise ParamError(f"not an ncnn .param file (first line {lines[0][:40] if lines else ''!r}, expected {MAGIC})")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise ParamError("not an ncnn .param file (no layer and blob counts on its second line)") from None
    layers = []
    for ln in lines[2:]:
        parts = ln.split()
        try:
            kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            raise ParamError(f"malformed layer line in .param: {ln[:80]!r}") from None
        blobs = parts[4:4 + n_in + n_out]
        if len(blobs) != n_in + n_out:
            raise ParamError(f"malformed layer line in .param: {ln[:80]!r}")
        params = {}
        for item in parts[4 + n_in + n_out:]:
            key, sep, value = item.partition("=")
            if not sep:
                raise ParamError(f"malformed param {item!r} of layer {name} in .param")
            params[key] = value
        layers.append(Layer(kind, name, blobs[:n_in], blobs[n_in:], params))
    if len(layers) != layer_count:
        raise ParamError(f".param says {layer_count} layers but has {len(layers)}")
    return layers


def read_param(path: str | Path) -> list[Layer]:
    return parse_param(Path(path).read_text())


def input_shapes(layers: list[Layer]) -> dict[str, tuple[int, ...] | None]:
    """Each Input layer's blob and the shape edgeprof stored in it (batch 1 first, as the ONNX model had it), or
    None where the layer has no shape (an .param edgeprof did not write: give ``--shape``)."""
    out: dict[str, tuple[int, ...] | None] = {}
    for layer in layers:
        if layer.type != "Input":
            continue
        keys = [k for k in ("2", "11", "1", "0") if k in layer.params]
        dims = tuple(layer.param_int(k) for k in keys)
        out[layer.tops[0]] = (1, *dims) if dims and all(d > 0 for d in dims) else None
    return out


def with_input_shapes(layers: list[Layer], shapes: list[tuple[int, ...]]) -> list[Layer]:
    """The layers with each Input layer's shape (``(1, c, h, w)``, batch 1, in input order) written into its
    params (0 = w, 1 = h, 11 = d, 2 = c): ncnn's Input layer carries them and ignores them at run time."""
    inputs = [layer for layer in layers if layer.type == "Input"]
    if len(inputs) != len(shapes):
        raise ParamError(f"{len(inputs)} Input layers in the .param, {len(shapes)} input shapes")
    for layer, shape in zip(inputs, shapes, strict=True):
        dims = shape[1:]
        keys = _INPUT_KEYS_BY_RANK.get(len(dims))
        if keys is None:
            raise ParamError(f"input of shape {list(shape)} has {len(shape)} dims; ncnn takes 2 to 5")
        given = dict(zip(keys, dims, strict=True))
        layer.params = {**{k: str(given[k]) for k in ("0", "1", "11", "2") if k in given},
                        **{k: v for k, v in layer.params.items() if k not in ("0", "1", "11", "2")}}
    return layers


def render_param(layers: list[Layer]) -> str:
    blobs = {b for layer in layers for b in (*layer.bottoms, *layer.tops)}
    return "\n".join([MAGIC, f"{len(layers)} {len(blobs)}", *(layer.line() for layer in layers)]) + "\n"
