"""What a runtime ran, runtime-neutral: executed nodes with their mean time, and what they tell about an activation
(the nodes beyond a reference block's, their share of the time). Every runtime's ``executed_ops`` gives these."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgeprof.spec.acts import ARITHMETIC_OPS, activation_op_types

# Op types that are activations wherever they appear (from the activation table, arithmetic left out); used to
# name the activation ops of models edgeprof did not build.
ACTIVATION_OP_TYPES = activation_op_types() | {"Softsign", "ThresholdedRelu", "Erf"}


@dataclass(frozen=True)
class NodeTime:
    name: str
    op_type: str
    calls: int
    total_us: float
    output_bytes: int | None = None
    mem_in_use_delta: int | None = None

    @property
    def mean_us(self) -> float:
        return self.total_us / self.calls if self.calls else 0.0


def op_counts(nodes: list[NodeTime]) -> Counter:
    return Counter(n.op_type for n in nodes)


def extra_nodes(nodes: list[NodeTime], reference: list[NodeTime]) -> list[NodeTime]:
    """Nodes that run in ``nodes`` beyond those in ``reference`` by op type (a multiset difference), in run order.

    With ``reference`` the same block built without an activation, this is what the activation ran as
    after graph optimisation: empty when it was fused into the Conv.
    """
    spare = op_counts(reference)
    extra = []
    for node in nodes:
        if spare[node.op_type] > 0:
            spare[node.op_type] -= 1
        else:
            extra.append(node)
    return extra


def activation_nodes(nodes: list[NodeTime], op_types: frozenset[str] | None = None,
                     block_op_types: frozenset[str] | None = None) -> list[NodeTime]:
    """The activation's own nodes: by op type (``op_types``: the activation's, from the activation table; else
    any activation op, for models edgeprof did not build). An arithmetic node (Add, Mul...) that torch named in
    another module's scope (a block's residual ``/m/m.0/Add``) is never the activation's: the activation's own
    are in an ``/act/`` scope or were named by onnxruntime's fusions (``Mul_3``). With ``block_op_types`` (the op
    types the block runs without an activation), a node in an ``/act/`` scope of an op type the block never runs is
    the activation's too, whatever its op type: a runtime's decomposition of it (ExecuTorch's softplus as
    ``portable/act/...gt``, ``log1p``, ``where`` kernels); a fused Conv named in that scope is not."""
    if op_types is None:
        return [n for n in nodes if n.op_type in ACTIVATION_OP_TYPES]
    return [n for n in nodes if (n.op_type in op_types and (n.op_type not in ARITHMETIC_OPS or "/act/" in n.name
                                                              or not n.name.startswith("/")))
            or (block_op_types is not None and "/act/" in n.name and n.op_type not in block_op_types)]


def time_share(part: list[NodeTime], whole: list[NodeTime]) -> float:
    """Fraction of the summed kernel time of ``whole`` spent in ``part``."""
    total = sum(n.mean_us for n in whole)
    return sum(n.mean_us for n in part) / total if total > 0 else float("nan")


def nodes_from_dicts(rows: list[dict]) -> list[NodeTime]:
    """NodeTimes from ``executed_ops`` records; a runtime without per-op times gives ``mean_us`` None (NaN here)."""
    return [NodeTime(r["name"], r["op_type"], r["calls"],
                     float("nan") if r.get("mean_us") is None else r["mean_us"] * r["calls"], r.get("output_bytes"),
                     r.get("mem_in_use_delta")) for r in rows]
