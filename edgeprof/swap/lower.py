"""Lower an activation to ONNX nodes at a model's opset through its table entry's lowering (edgeprof.spec.acts).

The entries' lowerings write what edgeprof's own export (TorchScript) writes.

Writing what ``torch.onnx.export(..., dynamo=False)`` writes means a swapped model runs the same ops as a
block edgeprof built with that activation, so a sweep over swapped models measures what a sweep over
built blocks does. Version-dependent choices (both as torch does): ``hardswish`` is one HardSwish op from
opset 14 and ``HardSigmoid+Mul`` before; ``gelu``/``gelu_tanh`` are one Gelu op from opset 20 and their
Erf / Tanh forms before. ``mish`` stays Softplus+Tanh+Mul at every opset (torch's TorchScript exporter never
writes the Mish op). Scalars (Clip's bounds, GELU's constants, PReLU's slope) are initializers shared by
every swapped site rather than one Constant node per site.
"""

from __future__ import annotations

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
    if act.info.float32_only and elem_type != onnx.TensorProto.FLOAT:
        raise InputError(f"{act.name} is defined for float32 only in ONNX; this activation is "
                         f"{_type_name(elem_type)}")
    if act.info.lower is None:
        return []
    b = _Builder(prefix, namer, consts, elem_type)
    act.info.lower(b, act, x, y, opset)
    return b.nodes


def _type_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower()
