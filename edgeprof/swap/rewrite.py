"""Swap the activations of an ONNX model for another one: rewrite the graph, drop what died, check, write.

Graph inputs and outputs keep their names, types and order; every replaced activation writes its old
output tensor, so the nodes after it are untouched. New nodes are named after the nodes they replace
(``/cv1/act/Sigmoid`` + ``/cv1/act/Mul`` become ``/cv1/act/Relu``) and made unique. Nodes and initializers
that fed only the removed nodes (GELU's Constant nodes, a PReLU's slope) are removed; nodes that were
dead before the swap are left as they were.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.spec.acts import Act, parse_act
from edgeprof.swap.detect import ALREADY_TARGET, Found, Match, match_activations
from edgeprof.swap.graph import GraphIndex, default_opset, names_read_in_subgraphs, subgraphs
from edgeprof.swap.lower import MIN_OPSET, ConstPool, Namer, lower
from edgeprof.swap.modelfile import check_writable, first_line, load_model, save_model


@dataclass(frozen=True)
class PatternCount:
    """One row of a report: a pattern computing ``act``, how often it was found, swapped and skipped."""

    pattern: str
    ops: str
    act: str
    found: int
    swapped: int
    skipped: int


@dataclass
class SwapReport:
    """What ``swap_model`` found and changed, and the model it made.

    ``found`` lists every recognised activation in graph order with its final verdict (``skipped`` is None
    for the swapped ones). ``model`` is the rewritten model; ``out`` where it was written, or None.
    ``checks`` says how it was verified: the full ONNX checker and an onnxruntime session, or, for a
    source model that fails one of them already, that the swap did not make that worse.
    """

    source: str
    target: str
    opset: int
    found: list[Found]
    model: onnx.ModelProto = field(repr=False)
    out: Path | None
    nodes_before: int
    nodes_after: int
    checks: str = "onnx.checker (full) and onnxruntime passed"

    @property
    def swapped(self) -> list[Found]:
        return [f for f in self.found if f.skipped is None]

    @property
    def skipped(self) -> list[Found]:
        return [f for f in self.found if f.skipped is not None]

    def by_pattern(self) -> list[PatternCount]:
        """Counts per (pattern, op types, activation), in order of first appearance."""
        rows: dict[tuple[str, str, str], list[int]] = {}
        for f in self.found:
            counts = rows.setdefault((f.pattern, f.ops, f.act or "?"), [0, 0, 0])
            counts[0] += 1
            counts[1 if f.skipped is None else 2] += 1
        return [PatternCount(p, o, a, *c) for (p, o, a), c in rows.items()]

    def skip_reasons(self) -> list[tuple[str, list[Found]]]:
        """Skipped activations grouped by reason, in order of first appearance."""
        groups: dict[str, list[Found]] = {}
        for f in self.skipped:
            groups.setdefault(f.skipped or "", []).append(f)
        return list(groups.items())


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type is declared or can be inferred."""
    types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # custom ops or broken shapes: fall back to what the model declares
        inferred = model.graph
    for info in (*inferred.input, *inferred.output, *inferred.value_info):
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types.setdefault(init.name, init.data_type)
    return types


def _prefix(index: GraphIndex, match: Match) -> str:
    """The common ``/a/b/`` scope of a match's node names, e.g. ``/cv1/act/``; else ``<output>/``."""
    names = [index.nodes[i].name for i in match.node_ids]
    if all(names):
        common = os.path.commonprefix(names)
        if "/" in common:
            return common[: common.rindex("/") + 1]
    return f"{match.found.output}/"


def _all_names(graph: onnx.GraphProto, nodes: set[str], tensors: set[str]) -> None:
    for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        tensors.add(v.name)
    for node in graph.node:
        nodes.add(node.name)
        tensors.update(node.input)
        tensors.update(node.output)
        for sub in subgraphs(node):
            _all_names(sub, nodes, tensors)


def _node_names(graph: onnx.GraphProto) -> list[str]:
    names = []
    for node in graph.node:
        names.append(node.name)
        for sub in subgraphs(node):
            names += _node_names(sub)
    return names


def _rename_inputs(graph: onnx.GraphProto, resolve) -> None:
    """Apply ``resolve`` to every node input of ``graph`` and its subgraphs (outer-scope reads included)."""
    for node in graph.node:
        for k, name in enumerate(node.input):
            new = resolve(name)
            if new != name:
                node.input[k] = new
        for sub in subgraphs(node):
            _rename_inputs(sub, resolve)


def swap_model(
    src: Path | str | onnx.ModelProto,
    to: str,
    out: Path | str | None = None,
    include_all: bool = False,
) -> SwapReport:
    """Replace every activation found in ``src`` (see ``find_activations``) by ``to`` and check the result.

    ``to`` is a registry spec (``hardswish``, ``leakyrelu:0.2``, ``identity``). The rewritten model must pass
    ``onnx.checker.check_model(full_check=True)`` and load in onnxruntime (or fail them only as the source
    does, see ``SwapReport.checks``); it is written to ``out`` when given. A ModelProto passed in is not
    modified. Raises ``InputError`` for an unreadable model, an unknown target, an unwritable
    ``out``, an opset below 13, or a model in which nothing can be swapped.
    """
    target = parse_act(to)
    out_path = check_writable(out) if out is not None else None
    model, source = load_model(src)
    opset = default_opset(model)
    if opset is None:
        raise InputError(f"{source} declares no opset for the default ONNX domain")
    if opset < MIN_OPSET:
        raise InputError(
            f"{source} has opset {opset}; swap needs {MIN_OPSET} or newer "
            f"(onnx.version_converter.convert_version(model, {MIN_OPSET}) converts it)"
        )
    graph = model.graph
    index = GraphIndex(graph)
    matches = match_activations(index, include_all)
    verdicts: list[Match] = []
    for m in matches:
        if m.found.skipped is None and m.found.act == target.canonical:
            m = Match(replace(m.found, skipped=ALREADY_TARGET), m.node_ids)
        verdicts.append(m)
    todo = [m for m in verdicts if m.found.skipped is None]
    if not todo and not any(m.found.skipped == ALREADY_TARGET for m in verdicts):
        raise InputError(_nothing_found(source, verdicts))

    nodes_before = len(graph.node)
    original = onnx.ModelProto()
    original.CopyFrom(model)
    _rewrite(model, index, todo, target, opset)
    checks = _verify(model, original)
    report = SwapReport(
        source=source,
        target=target.canonical,
        opset=opset,
        found=[m.found for m in verdicts],
        model=model,
        out=out_path,
        nodes_before=nodes_before,
        nodes_after=len(model.graph.node),
        checks=checks,
    )
    if out_path is not None:
        save_model(model, out_path)
    return report


def _checker_error(model: onnx.ModelProto, full: bool) -> str | None:
    try:
        onnx.checker.check_model(model, full_check=full)
    except Exception as exc:  # the checker raises several types
        return first_line(exc)
    return None


def _onnxruntime_error(model: onnx.ModelProto) -> str | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types
        return first_line(exc)
    return None


def _verify(model: onnx.ModelProto, original: onnx.ModelProto) -> str:
    """Check the swapped model; a check the source model fails already may fail the same way, nothing more.

    Returns what was verified; raises RuntimeFailure when the swap broke something that held before.
    """
    notes = []
    error = _checker_error(model, full=True)
    if error is not None:
        before = _checker_error(original, full=True)
        if before is None:
            raise RuntimeFailure(f"the swapped model fails onnx.checker (full check): {error}")
        basic = _checker_error(model, full=False)
        if basic is not None and _checker_error(original, full=False) is None:
            raise RuntimeFailure(f"the swapped model fails onnx.checker: {basic}")
        notes.append(f"onnx.checker's full check fails on the source model too ({before.rstrip('.')})")
    else:
        notes.append("onnx.checker (full)")
    error = _onnxruntime_error(model)
    if error is not None:
        before = _onnxruntime_error(original)
        if before is None:
            raise RuntimeFailure(f"onnxruntime cannot load the swapped model: {error}")
        notes.append(f"onnxruntime cannot load the source model either ({before.rstrip('.')})")
    elif notes == ["onnx.checker (full)"]:
        return "onnx.checker (full) and onnxruntime passed"
    else:
        notes.append("onnxruntime loads it")
    return "; ".join(notes)


def _nothing_found(source: str, matches: list[Match]) -> str:
    if not matches:
        return f"no activations found in {source}"
    reasons = Counter(m.found.skipped for m in matches)
    listed = "; ".join(f"{n} x {reason}" for reason, n in reasons.items())
    return f"no activations to swap in {source}: all {len(matches)} found are skipped ({listed})"


def _rewrite(model: onnx.ModelProto, index: GraphIndex, todo: list[Match], target: Act, opset: int) -> None:
    """Replace each match's nodes by the target's lowering, in place; then drop what only they used."""
    graph = model.graph
    node_names: set[str] = set()
    tensor_names: set[str] = set()
    _all_names(graph, node_names, tensor_names)
    removed: set[int] = {i for m in todo for i in m.node_ids}
    # The removed nodes' names are free for the new ones, unless another node has the same name.
    gone = Counter(index.nodes[i].name for i in removed)
    everywhere = Counter(_node_names(graph))
    node_names -= {name for name, n in gone.items() if everywhere[name] == n}
    namer = Namer(node_names, tensor_names)
    consts = ConstPool(namer)
    elem_types = _elem_types(model) if todo else {}
    inserted: dict[int, list[onnx.NodeProto]] = {}
    rename: dict[str, str] = {}  # identity: tensor name -> the name that replaces it everywhere
    renamed_producers: set[str] = set()

    for m in todo:
        x, y = m.found.input, m.found.output
        root = m.node_ids[-1]
        if target.name == "identity":
            if y not in index.graph_outputs:
                rename[y] = x  # readers of y read x
            elif (
                x in index.producer
                and x not in index.graph_outputs
                and x not in index.outer_uses
                and x not in renamed_producers
            ):
                rename[x] = y  # x's producer writes y directly (as torch exports an identity block)
                renamed_producers.add(x)
            else:
                name = namer.node(_prefix(index, m) + "Identity")
                inserted[root] = [onnx.helper.make_node("Identity", [x], [y], name=name)]
            continue
        elem_type = elem_types.get(x) or elem_types.get(y) or onnx.TensorProto.FLOAT
        inserted[root] = lower(target, x, y, opset, elem_type, _prefix(index, m), namer, consts)

    new_nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(index.nodes):
        new_nodes.extend(inserted.get(i, []))
        if i not in removed:
            new_nodes.append(node)

    def resolve(name: str) -> str:
        seen = set()
        while name in rename and name not in seen:
            seen.add(name)
            name = rename[name]
        return name

    if rename:
        for node in new_nodes:
            for k, name in enumerate(node.output):
                if resolve(name) != name:
                    node.output[k] = resolve(name)
        for node in new_nodes:
            for k, name in enumerate(node.input):
                if resolve(name) != name:
                    node.input[k] = resolve(name)
            for sub in subgraphs(node):
                _rename_inputs(sub, resolve)

    new_nodes, dead_inits = _drop_dead(graph, new_nodes, index, removed)
    del graph.node[:]
    graph.node.extend(new_nodes)
    kept_inits = [t for t in graph.initializer if t.name not in dead_inits]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + consts.initializers)
    _prune_value_info(graph)


def _drop_dead(
    graph: onnx.GraphProto, nodes: list[onnx.NodeProto], index: GraphIndex, removed: set[int]
) -> tuple[list[onnx.NodeProto], set[str]]:
    """Remove nodes and initializers that only the removed nodes used (iteratively); keep everything else."""
    reads: Counter[str] = Counter()
    producer: dict[str, int] = {}
    for k, node in enumerate(nodes):
        reads.update(name for name in node.input if name)
        reads.update(names_read_in_subgraphs(node))
        for name in node.output:
            producer[name] = k
    outputs = {v.name for v in graph.output}
    graph_inputs = {v.name for v in graph.input}
    suspects = [name for i in removed for name in index.nodes[i].input if name]
    dead_nodes: set[int] = set()
    dead_inits: set[str] = set()
    initializer_names = {t.name for t in graph.initializer}
    while suspects:
        name = suspects.pop()
        if reads[name] > 0 or name in outputs:
            continue
        if name in initializer_names and name not in graph_inputs:
            dead_inits.add(name)
            continue
        k = producer.get(name)
        if k is None or k in dead_nodes:
            continue
        node = nodes[k]
        if any(reads[o] > 0 or o in outputs for o in node.output if o) or any(True for _ in subgraphs(node)):
            continue
        dead_nodes.add(k)
        for inp in node.input:
            if inp:
                reads[inp] -= 1
                suspects.append(inp)
    return [n for k, n in enumerate(nodes) if k not in dead_nodes], dead_inits


def _prune_value_info(graph: onnx.GraphProto) -> None:
    present = {name for node in graph.node for name in (*node.input, *node.output)}
    kept = [v for v in graph.value_info if v.name in present]
    del graph.value_info[:]
    graph.value_info.extend(kept)
