"""Lower a registry activation to ONNX nodes at a model's opset, as edgeprof's own export (TorchScript) writes it.

Writing what ``torch.onnx.export(..., dynamo=False)`` writes means a swapped model runs the same ops as a
block edgeprof built with that activation, so a sweep over swapped models measures what a sweep over
built blocks does. Version-dependent choices (both as torch does): ``hardswish`` is one HardSwish op from
opset 14 and ``HardSigmoid+Mul`` before; ``gelu``/``gelu_tanh`` are one Gelu op from opset 20 and their
Erf / Tanh forms before. ``mish`` stays Softplus+Tanh+Mul at every opset (torch's TorchScript exporter never
writes the Mish op). Scalars (Clip's bounds, GELU's constants, PReLU's slope) are initializers shared by
every swapped site rather than one Constant node per site.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeprof.errors import InputError
from edgeprof.spec.acts import Act

MIN_OPSET = 13


class Namer:
    """Unique node and tensor names: ``base``, then ``base_1``, ``base_2``... (as torch names repeats)."""

    def __init__(self, node_names: set[str], tensor_names: set[str]) -> None:
        self.node_names = node_names
        self.tensor_names = tensor_names

    @staticmethod
    def _unique(base: str, taken: set[str]) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    def node(self, base: str) -> str:
        return self._unique(base, self.node_names)

    def tensor(self, base: str) -> str:
        return self._unique(base, self.tensor_names)


class ConstPool:
    """Scalar initializers shared by every swapped site, one per (purpose, value, element type)."""

    def __init__(self, namer: Namer) -> None:
        self.namer = namer
        self.by_key: dict[tuple[str, float, int, tuple[int, ...]], str] = {}
        self.initializers: list[onnx.TensorProto] = []

    def get(self, purpose: str, value: float, elem_type: int, shape: tuple[int, ...] = ()) -> str:
        key = (purpose, float(value), elem_type, shape)
        if key not in self.by_key:
            dtype = helper.tensor_dtype_to_np_dtype(elem_type)
            name = self.namer.tensor(f"swap/{purpose}")
            self.initializers.append(numpy_helper.from_array(np.full(shape, value, dtype=dtype), name))
            self.by_key[key] = name
        return self.by_key[key]


class _Builder:
    def __init__(self, prefix: str, namer: Namer, consts: ConstPool, elem_type: int) -> None:
        self.prefix, self.namer, self.consts, self.elem_type = prefix, namer, consts, elem_type
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        name = self.namer.node(self.prefix + op_type)
        out = output if output is not None else self.namer.tensor(f"{name}_output_0")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def const(self, purpose: str, value: float, shape: tuple[int, ...] = ()) -> str:
        return self.consts.get(purpose, value, self.elem_type, shape)


def lower(
    act: Act, x: str, y: str, opset: int, elem_type: int, prefix: str, namer: Namer, consts: ConstPool
) -> list[onnx.NodeProto]:
    """Nodes computing ``y = act(x)``; new node names start with ``prefix`` (e.g. ``/cv1/act/``).

    ``identity`` has no nodes (the rewriter wires ``x`` to ``y``); every other activation writes ``y`` with
    its last node. Raises ``InputError`` for an activation the element type or opset cannot express.
    """
    if opset < MIN_OPSET:
        raise InputError(f"swap needs opset {MIN_OPSET} or newer, the model has opset {opset}")
    if act.name == "celu" and elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"celu is defined for float32 only in ONNX; this activation is {_type_name(elem_type)}")
    b = _Builder(prefix, namer, consts, elem_type)
    name = act.name
    if name == "identity":
        return []
    if name in ("relu", "selu", "sigmoid", "tanh", "softplus"):
        b.op({"relu": "Relu", "selu": "Selu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}[name],
             [x], y)
    elif name == "relu6":
        b.op("Clip", [x, b.const("relu6_min", 0.0), b.const("relu6_max", 6.0)], y)
    elif name == "leakyrelu":
        b.op("LeakyRelu", [x], y, alpha=act.param("negative_slope"))
    elif name == "prelu":
        b.op("PRelu", [x, b.const("prelu_slope", act.param("init"), (1,))], y)
    elif name == "elu":
        b.op("Elu", [x], y, alpha=act.param("alpha"))
    elif name == "celu":
        b.op("Celu", [x], y, alpha=act.param("alpha"))
    elif name in ("gelu", "gelu_tanh") and opset >= 20:
        b.op("Gelu", [x], y, approximate="tanh" if name == "gelu_tanh" else "none")
    elif name == "gelu":  # torch: Div, Erf, Add, Mul, Mul
        erf = b.op("Erf", [b.op("Div", [x, b.const("gelu_sqrt2", math.sqrt(2.0))])])
        scaled = b.op("Mul", [x, b.op("Add", [erf, b.const("one", 1.0)])])
        b.op("Mul", [scaled, b.const("half", 0.5)], y)
    elif name == "gelu_tanh":  # torch: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
        cube = b.op("Mul", [x, b.op("Mul", [x, x])])
        inner = b.op("Add", [x, b.op("Mul", [b.const("gelu_tanh_coeff", 0.044715), cube])])
        t = b.op("Tanh", [b.op("Mul", [b.const("gelu_tanh_scale", math.sqrt(2.0 / math.pi)), inner])])
        scaled = b.op("Mul", [x, b.op("Add", [b.const("one", 1.0), t])])
        b.op("Mul", [b.const("half", 0.5), scaled], y)
    elif name == "silu":
        b.op("Mul", [x, b.op("Sigmoid", [x])], y)
    elif name == "hardswish" and opset >= 14:
        b.op("HardSwish", [x], y)
    elif name == "hardswish":
        b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1.0 / 6.0)], y)
    elif name == "hardsigmoid":
        b.op("HardSigmoid", [x], y, alpha=1.0 / 6.0)
    elif name == "mish":
        b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])], y)
    elif name == "sin":
        w0 = act.param("w0")
        b.op("Sin", [x if w0 == 1.0 else b.op("Mul", [x, b.const("sin_w0", w0)])], y)
    else:  # specs.SPECS and this function must list the same names; a test checks every one lowers
        raise InputError(f"no ONNX lowering for activation {act.canonical!r}")
    return b.nodes


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()
