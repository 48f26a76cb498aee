"""A read-only index of an ONNX graph for pattern matching: producers, consumers, constants and outer-scope uses."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops whose output is constant when all their inputs are (small scalar expressions exporters leave behind).
_FOLDABLE = {"Identity", "Cast", "CastLike", "Sqrt", "Neg", "Reciprocal", "Mul", "Div", "Add", "Sub"}


def default_opset(model: onnx.ModelProto) -> int | None:
    """The model's opset for the default ONNX domain, or None when it declares none."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held in a node's attributes (If branches, Loop and Scan bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def names_read_in_subgraphs(node: onnx.NodeProto) -> set[str]:
    """Every tensor name read by nodes inside the node's subgraphs (recursively); a superset of outer-scope uses."""
    found: set[str] = set()
    for graph in subgraphs(node):
        for inner in graph.node:
            found.update(name for name in inner.input if name)
            found |= names_read_in_subgraphs(inner)
    return found


def attr(node: onnx.NodeProto, name: str, default=None):
    """A node attribute's value (strings decoded), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


class GraphIndex:
    """Who produces and who reads each tensor of a graph, and which tensors are constants."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        self.outer_uses: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = i
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(i)
            for name in names_read_in_subgraphs(node):
                self.outer_uses.setdefault(name, []).append(i)
        self.graph_inputs = {v.name for v in graph.input}
        self.graph_outputs = {v.name for v in graph.output}
        self.initializers = {t.name: t for t in graph.initializer}
        self._const_cache: dict[str, np.ndarray | None] = {}

    def label(self, i: int) -> str:
        """How a node is named in messages: its name, or its op type and position when it has none."""
        node = self.nodes[i]
        return node.name or f"{node.op_type} #{i}"

    def op(self, name: str) -> str | None:
        """Op type of the node producing ``name`` (None for graph inputs and initializers)."""
        i = self.producer.get(name)
        return None if i is None else self.nodes[i].op_type

    def const(self, name: str, depth: int = 0) -> np.ndarray | None:
        """The value of a constant tensor (initializer, Constant node, or a small foldable expression of those)."""
        if not name or depth > 8:
            return None
        if name in self._const_cache:
            return self._const_cache[name]
        value: np.ndarray | None = None
        if name in self.initializers:
            value = numpy_helper.to_array(self.initializers[name])
        elif name in self.producer:
            node = self.nodes[self.producer[name]]
            if node.op_type == "Constant":
                value = _constant_value(node)
            elif node.op_type in _FOLDABLE:
                value = self._fold(node, depth)
        self._const_cache[name] = value
        return value

    def scalar(self, name: str) -> float | None:
        """A constant holding a single number, as a float; None otherwise."""
        value = self.const(name)
        if value is None or value.size != 1 or value.dtype.kind not in "fiu":
            return None
        return float(value.reshape(-1)[0])

    def _fold(self, node: onnx.NodeProto, depth: int) -> np.ndarray | None:
        args = [self.const(n, depth + 1) for n in node.input if n]
        if not args or any(a is None or a.size != 1 for a in args):
            return None
        x = [np.asarray(a, dtype=np.float64).reshape(()) for a in args]
        with np.errstate(all="ignore"):
            result = {
                "Identity": lambda: x[0],
                "Cast": lambda: x[0],
                "CastLike": lambda: x[0],
                "Sqrt": lambda: np.sqrt(x[0]),
                "Neg": lambda: -x[0],
                "Reciprocal": lambda: 1.0 / x[0],
                "Mul": lambda: x[0] * x[1] if len(x) == 2 else None,
                "Div": lambda: x[0] / x[1] if len(x) == 2 else None,
                "Add": lambda: x[0] + x[1] if len(x) == 2 else None,
                "Sub": lambda: x[0] - x[1] if len(x) == 2 else None,
            }[node.op_type]()
        return None if result is None or not np.isfinite(result) else np.asarray(result)

    def uses(self, name: str) -> list[str]:
        """Every use of a tensor, described: reading nodes, subgraphs reading it, being a graph output."""
        described = [self.label(i) for i in self.consumers.get(name, [])]
        described += [f"a subgraph of {self.label(i)}" for i in self.outer_uses.get(name, [])]
        if name in self.graph_outputs:
            described.append("the graph outputs")
        return described

    def uses_outside(self, name: str, inside: set[int]) -> list[str]:
        """Uses of ``name`` other than by the nodes ``inside``."""
        outside = [self.label(i) for i in self.consumers.get(name, []) if i not in inside]
        outside += [f"a subgraph of {self.label(i)}" for i in self.outer_uses.get(name, [])]
        if name in self.graph_outputs:
            outside.append("the graph outputs")
        return outside


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.asarray(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.asarray(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.asarray(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.asarray(list(a.ints), dtype=np.int64)
    return None
