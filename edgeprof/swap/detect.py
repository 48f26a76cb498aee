"""Find the activations in an ONNX graph: single ops and the multi-op patterns exporters write, after convs only.

An activation is recognised in two steps. First by its form, as the activation table (``edgeprof.spec.acts``)
lists them: a single op (an entry's ``single``, e.g. Relu, LeakyRelu, Mish, plus the rules below for Clip(0, 6),
PRelu, HardSigmoid, Selu and Gelu, whose attributes decide) or an entry's multi-op ``forms``:

- ``x*Sigmoid(x)`` (silu), ``x*Tanh(Softplus(x))`` (mish), ``x*HardSigmoid(x)`` and ``x*Clip(x+3,0,6)/6``
  (hardswish), ``Min(Relu(x),6)`` (relu6, as the dynamo exporter writes it);
- GELU in its erf form ``0.5*x*(1+erf(x/sqrt(2)))`` and its tanh form
  ``0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))``. These are matched by value, not by a fixed op list: the
  Mul/Add/Sub/Div/Pow nodes around the Erf or Tanh are evaluated as a polynomial in ``x`` and the atom, so
  every order and association of the factors (torch's TorchScript and dynamo exporters differ) matches.

Then by where it sits. It is swapped only when its input ``x`` is a conv's output (a Conv or ConvTranspose,
or a BatchNormalization or Add whose input is one), when its intermediate tensors are used by nothing
outside the pattern, and, for a Sigmoid or HardSigmoid on its own (not inside a SiLU or HardSwish), never:
those are gates (squeeze-excitation) or scores (a detection head's class probabilities), not hidden
activations. ``include_all=True`` lifts the conv rule and the standalone-gate rule; the clean-pattern rule
always holds, since a pattern whose insides are used elsewhere cannot be replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from edgeprof.spec.acts import Form, act_label, entries
from edgeprof.swap.graph import GraphIndex, attr
from edgeprof.swap.modelfile import load_model

CONV_OPS = ("Conv", "ConvTranspose")
AFTER_CONV_OPS = ("BatchNormalization", "Add")
GATE_OPS = ("Sigmoid", "HardSigmoid")

# Skip reasons: short and without node names, so a report can group by them (details go to Found.detail).
NOT_AN_ACTIVATION = "not an activation edgeprof knows"
NOT_CLEAN = "not a clean pattern: an intermediate is used elsewhere"
NOT_AFTER_CONV = "input is not a conv output (--all includes it)"
STANDALONE_GATE = "standalone Sigmoid/HardSigmoid: a gate or a score, not a hidden activation (--all includes it)"
ALREADY_TARGET = "already the target"

_ARITH = ("Mul", "Add", "Sub", "Div", "Neg", "Pow", "Identity")
_REL_TOL = 1e-4


@dataclass(frozen=True)
class Found:
    """One activation found in a graph.

    ``pattern`` names the form (``Relu``, ``x*Sigmoid(x)``, ``GELU (erf form)``), ``ops`` the op types of its
    nodes in graph order joined by '+', ``act`` the registry spec it computes (``silu``, ``leakyrelu:0.2``;
    None when it is no activation edgeprof knows, such as ``Clip(-1, 1)``). ``input``/``output`` are the
    tensors it reads and writes; ``nodes`` the names of its nodes. ``skipped`` is None for an activation a
    swap replaces, else the short reason it is left alone, with ``detail`` saying what in particular.
    """

    pattern: str
    ops: str
    act: str | None
    input: str
    output: str
    nodes: tuple[str, ...]
    skipped: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Match:
    """A Found plus the node positions it spans (for the rewriter); ``node_ids`` are sorted."""

    found: Found
    node_ids: tuple[int, ...]


# ---------------------------------------------------------------------------------------------- polynomials
# A Poly maps (power of x, whether the atom is a factor) to a coefficient: 0.5*x + 0.5*x*erf is
# {(1, False): 0.5, (1, True): 0.5}. Products of two atom terms are outside this algebra (None).
Poly = dict[tuple[int, bool], float]


def _mul(a: Poly, b: Poly) -> Poly | None:
    out: Poly = {}
    for (pa, ta), ca in a.items():
        for (pb, tb), cb in b.items():
            if ta and tb:
                return None
            key = (pa + pb, ta or tb)
            out[key] = out.get(key, 0.0) + ca * cb
    return out


def _add(a: Poly, b: Poly, sign: float = 1.0) -> Poly:
    out = dict(a)
    for key, c in b.items():
        out[key] = out.get(key, 0.0) + sign * c
    return out


def _close(poly: Poly | None, expected: Poly) -> bool:
    if poly is None:
        return False
    terms = {k: v for k, v in poly.items() if abs(v) > 1e-12}
    if set(terms) != set(expected):
        return False
    return all(abs(terms[k] - v) <= _REL_TOL * max(abs(v), 1e-12) for k, v in expected.items())


class _Evaluator:
    """Evaluates a tensor as a Poly in ``x`` and ``atom``, through arithmetic nodes; records the nodes it used."""

    def __init__(self, index: GraphIndex, x: str, atom: str | None = None, budget: int = 64) -> None:
        self.index, self.x, self.atom = index, x, atom
        self.used: set[int] = set()
        self.budget = budget  # nodes it may visit: patterns are small, a wrong guess should fail fast
        self.memo: dict[str, Poly | None] = {}

    def eval(self, name: str, depth: int = 0) -> Poly | None:
        if name in self.memo:
            return self.memo[name]
        result = self._eval(name, depth)
        self.memo[name] = result
        return result

    def _eval(self, name: str, depth: int) -> Poly | None:
        if depth > 12 or not name or self.budget <= 0:
            return None
        self.budget -= 1
        if name == self.x:
            return {(1, False): 1.0}
        if self.atom is not None and name == self.atom:
            return {(0, True): 1.0}
        value = self.index.const(name)
        if value is not None:
            return {(0, False): float(value.reshape(-1)[0])} if value.size == 1 else None
        i = self.index.producer.get(name)
        if i is None:
            return None
        node = self.index.nodes[i]
        if node.op_type not in _ARITH:
            return None
        args = [self.eval(n, depth + 1) for n in node.input if n]
        if any(a is None for a in args):
            return None
        result = self._apply(node, args)
        if result is not None:
            self.used.add(i)
        return result

    def _apply(self, node: onnx.NodeProto, args: list[Poly]) -> Poly | None:
        op = node.op_type
        if op == "Identity" and len(args) == 1:
            return args[0]
        if op == "Neg" and len(args) == 1:
            return {k: -v for k, v in args[0].items()}
        if len(args) != 2:
            return None
        a, b = args
        if op == "Mul":
            return _mul(a, b)
        if op == "Add":
            return _add(a, b)
        if op == "Sub":
            return _add(a, b, -1.0)
        if op == "Div":
            if set(b) != {(0, False)} or b[(0, False)] == 0.0:
                return None
            return {k: v / b[(0, False)] for k, v in a.items()}
        if op == "Pow":
            if set(b) != {(0, False)} or any(t for _, t in a):
                return None
            exponent = b[(0, False)]
            if exponent != int(exponent) or not 1 <= exponent <= 4:
                return None
            out: Poly | None = {(0, False): 1.0}
            for _ in range(int(exponent)):
                out = _mul(out, a) if out is not None else None
            return out
        return None


# ---------------------------------------------------------------------------------------------- matching
def _forms() -> list[tuple[Form, str]]:
    """(form, activation) of every multi-op form in the activation table, user entries met so far included."""
    return [(form, info.name) for info in entries() for form in info.forms]


def _clip_bounds(index: GraphIndex, node: onnx.NodeProto) -> tuple[float | None, float | None] | None:
    """(min, max) of a Clip from its inputs (opset >= 11) or attributes (older); None when one isn't constant."""
    if len(node.input) > 1 or not node.attribute:
        bounds: list[float | None] = []
        for k in (1, 2):
            name = node.input[k] if len(node.input) > k else ""
            if not name:
                bounds.append(None)
                continue
            value = index.scalar(name)
            if value is None:
                return None
            bounds.append(value)
        return bounds[0], bounds[1]
    low, high = attr(node, "min"), attr(node, "max")
    return (None if low is None or low <= -3.4e38 else float(low)), (
        None if high is None or high >= 3.4e38 else float(high)
    )


def _near(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _is_torch_hardsigmoid(node: onnx.NodeProto) -> bool:
    return _near(attr(node, "alpha", 0.2), 1 / 6) and _near(attr(node, "beta", 0.5), 0.5)


def _x_candidates(index: GraphIndex, start: str, limit: int = 6) -> list[str]:
    """``start`` and the non-constant tensors behind it through arithmetic nodes, nearest first."""
    seen, order, frontier = {start}, [start], [start]
    for _ in range(limit):
        nxt = []
        for name in frontier:
            i = index.producer.get(name)
            if i is None or index.nodes[i].op_type not in _ARITH:
                continue
            for inp in index.nodes[i].input:
                if inp and inp not in seen and index.const(inp) is None:
                    seen.add(inp)
                    order.append(inp)
                    nxt.append(inp)
        frontier = nxt
    return order


def _root_candidates(index: GraphIndex, atom: str, limit: int = 4) -> list[str]:
    """Tensors downstream of ``atom`` through arithmetic nodes, nearest first."""
    seen, order, frontier = {atom}, [], [atom]
    for _ in range(limit):
        nxt = []
        for name in frontier:
            for i in index.consumers.get(name, []):
                node = index.nodes[i]
                if node.op_type not in _ARITH:
                    continue
                for out in node.output:
                    if out and out not in seen:
                        seen.add(out)
                        order.append(out)
                        nxt.append(out)
        frontier = nxt
    return order


def _match_form(index: GraphIndex, i: int, form: Form) -> tuple[str, str, set[int]] | None:
    """(x, output, node ids) when node ``i`` is the atom of ``form``."""
    node = index.nodes[i]
    if node.op_type not in form.atom_ops or not node.input or not node.input[0] or not node.output:
        return None
    atom = node.output[0]
    z = node.input[0]
    nodes = {i}
    if form.atom_check == "torch_hardsigmoid" and not _is_torch_hardsigmoid(node):
        return None
    if form.atom_check == "clip_0_6" and not (
        (bounds := _clip_bounds(index, node)) and _near(bounds[0], 0.0) and _near(bounds[1], 6.0)
    ):
        return None
    if form.inner_op:
        j = index.producer.get(z)
        if j is None or index.nodes[j].op_type != form.inner_op:
            return None
        xs = [index.nodes[j].input[0]]
        nodes.add(j)
        inner_nodes: set[int] = set()
    else:
        xs, inner_nodes = [], set()
        for x in _x_candidates(index, z):
            inner = _Evaluator(index, x)
            if _close(inner.eval(z), form.inner or {}):
                xs, inner_nodes = [x], inner.used
                break
        if not xs:
            return None
    x = xs[0]
    for root in _root_candidates(index, atom):
        outer = _Evaluator(index, x, atom)
        if _close(outer.eval(root), form.outer):
            return x, root, nodes | inner_nodes | outer.used
    return None


def _match_min_relu(index: GraphIndex, i: int) -> tuple[str, str, set[int]] | None:
    """``Min(Relu(x), 6)``: relu6 as the dynamo exporter writes it; ``i`` is the Relu."""
    relu = index.nodes[i]
    if relu.op_type != "Relu" or not relu.output:
        return None
    for j in index.consumers.get(relu.output[0], []):
        node = index.nodes[j]
        if node.op_type == "Min" and len(node.input) == 2:
            other = node.input[1] if node.input[0] == relu.output[0] else node.input[0]
            if _near(index.scalar(other), 6.0):
                return relu.input[0], node.output[0], {i, j}
    return None


def _single(index: GraphIndex, node: onnx.NodeProto) -> tuple[str, str | None] | None:
    """(pattern, act) for a single-op activation node; None when the op is not one."""
    op = node.op_type
    for info in entries():
        if info.single == op:
            values = [attr(node, name, default) for name, default in info.single_attrs]
            return op, act_label(info.name, *values) if values else info.name
    if op == "Selu":
        default = _near(attr(node, "alpha", 1.67326319217681884765625), 1.6732632423543772) and _near(
            attr(node, "gamma", 1.05070102214813232421875), 1.0507009873554805
        )
        return op, "selu" if default else None
    if op == "HardSigmoid":
        return op, "hardsigmoid" if _is_torch_hardsigmoid(node) else None
    if op == "Gelu":
        return op, "gelu_tanh" if attr(node, "approximate", "none") == "tanh" else "gelu"
    if op == "PRelu":
        slope = index.const(node.input[1]) if len(node.input) > 1 else None
        if slope is not None and slope.size >= 1 and (slope == slope.reshape(-1)[0]).all():
            return op, act_label("prelu", float(slope.reshape(-1)[0]))
        return "PRelu (learned slopes)", "prelu"
    if op == "Clip":
        bounds = _clip_bounds(index, node)
        if bounds is not None and _near(bounds[0], 0.0):
            if _near(bounds[1], 6.0):
                return op, "relu6"
            if bounds[1] is None:
                return op, "relu"
        return op, None
    return None


def conv_source(index: GraphIndex, x: str) -> str | None:
    """Why ``x`` is not a conv output (None when it is one): a Conv's, or a BatchNormalization/Add's after one."""
    i = index.producer.get(x)
    if i is None:
        return f"input {x} is a graph input or an initializer"
    node = index.nodes[i]
    if node.op_type in CONV_OPS:
        return None
    if node.op_type in AFTER_CONV_OPS and any(index.op(name) in CONV_OPS for name in node.input if name):
        return None
    return f"input {x} comes from {node.op_type} {index.label(i)}"


def _judge(
    index: GraphIndex, pattern: str, act: str | None, x: str, out: str, ids: set[int], include_all: bool
) -> tuple[str | None, str]:
    """(skip reason, detail) for a recognised form; (None, "") when it is an activation to swap."""
    if act is None:
        return NOT_AN_ACTIVATION, _describe(index, min(ids))
    for i in sorted(ids):
        for name in index.nodes[i].output:
            if name and name != out:
                elsewhere = index.uses_outside(name, ids)
                if elsewhere:
                    return NOT_CLEAN, f"{name} is also used by {', '.join(elsewhere)}"
    if include_all:
        return None, ""
    why = conv_source(index, x)
    if why is not None:
        return NOT_AFTER_CONV, why
    if pattern in GATE_OPS:
        return STANDALONE_GATE, f"its output feeds {', '.join(index.uses(out)) or 'nothing'}"
    return None, ""


def _describe(index: GraphIndex, i: int) -> str:
    node = index.nodes[i]
    if node.op_type == "Clip":
        bounds = _clip_bounds(index, node)
        if bounds is None:
            return "its bounds are not constants"
        low = "-inf" if bounds[0] is None else f"{bounds[0]:g}"
        high = "inf" if bounds[1] is None else f"{bounds[1]:g}"
        return f"Clip({low}, {high}); relu6 is Clip(0, 6), relu Clip(0, inf)"
    if node.op_type == "HardSigmoid":
        return (
            f"alpha={attr(node, 'alpha', 0.2):g}, beta={attr(node, 'beta', 0.5):g}; "
            "torch's hardsigmoid is alpha=1/6, beta=0.5"
        )
    params = ", ".join(f"{a.name}={attr(node, a.name)}" for a in node.attribute)
    return f"parameters edgeprof has no spec for ({params})"


def match_activations(index: GraphIndex, include_all: bool = False) -> list[Match]:
    """Every recognised activation in graph order of its last node, with the verdict for each."""
    claimed: set[int] = set()
    matches: list[tuple[int, Match]] = []

    def record(pattern: str, act: str | None, x: str, out: str, ids: set[int]) -> None:
        claimed.update(ids)
        skipped, detail = _judge(index, pattern, act, x, out, ids, include_all)
        ordered = tuple(sorted(ids))
        found = Found(
            pattern=pattern,
            ops="+".join(index.nodes[i].op_type for i in ordered),
            act=act,
            input=x,
            output=out,
            nodes=tuple(index.label(i) for i in ordered),
            skipped=skipped,
            detail=detail,
        )
        matches.append((max(ids), Match(found, ordered)))

    # Multi-op patterns first, so their Sigmoid/Tanh/Relu are not taken for single ops.
    for i, node in enumerate(index.nodes):
        if i in claimed:
            continue
        if node.op_type == "Relu":
            hit = _match_min_relu(index, i)
            if hit is not None and not (hit[2] & claimed):
                record("Min(Relu(x),6)", "relu6", *hit)
            continue
        for form, act in _forms():
            if node.op_type not in form.atom_ops:
                continue
            hit = _match_form(index, i, form)
            if hit is not None and not (hit[2] & claimed):
                record(form.pattern, act, *hit)
                break
    for i, node in enumerate(index.nodes):
        if i in claimed or not node.input or not node.input[0] or len(node.output) != 1:
            continue
        single = _single(index, node)
        if single is not None:
            record(single[0], single[1], node.input[0], node.output[0], {i})
    return [m for _, m in sorted(matches, key=lambda pair: pair[0])]


def find_activations(model: onnx.ModelProto | Path | str, include_all: bool = False) -> list[Found]:
    """The activations of a model's main graph in graph order, each with ``skipped`` saying why it stays.

    ``model`` is a ModelProto or a path. Only the main graph is searched (not If/Loop bodies).
    """
    proto, _ = load_model(model)
    return [m.found for m in match_activations(GraphIndex(proto.graph), include_all)]
