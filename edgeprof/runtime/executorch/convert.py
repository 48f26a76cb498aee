"""The build side of ExecuTorch: a block's torch module (rebuilt from its spec and seed with edgeprof.blocks) ->
``torch.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` -> .pte, cached by content.
Imports torch and executorch's exporter, lazily; never imported by a worker."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
import warnings
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.runtime.base import Conversion, ModelSource, UnsupportedModel

CONVERTER = "torch.export+executorch.to_edge_transform_and_lower(XnnpackPartitioner)"
CONVERT_VERSION = 2  # bump when what convert writes changes
PARITY_TOL = 1e-3  # relative to max(1, max|out|), as edgeprof's ONNX export checks


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def source_from_sidecar(onnx_path: Path) -> ModelSource | None:
    """A block edgeprof exported has a JSON sidecar beside it (``<stem>.json``) holding its spec; its seed is not
    recorded there, so edgeprof's default (0) is tried and checked against the ONNX file's outputs."""
    try:
        data = json.loads(onnx_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    spec = data.get("spec")
    return ModelSource(spec=spec, seed=int(data.get("seed", 0))) if isinstance(spec, dict) else None


def _key(onnx_path: Path, source: ModelSource, et_version: str) -> str:
    import torch

    h = hashlib.sha256()
    with open(onnx_path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(json.dumps({"spec": source.spec, "seed": source.seed, "executorch": et_version,
                         "torch": torch.__version__, "partitioner": "xnnpack", "convert": CONVERT_VERSION},
                        sort_keys=True).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def convert_to_pte(onnx_path: Path, out_dir: Path, source: ModelSource | None, et_version: str) -> Conversion:
    """The .pte of the block behind ``onnx_path`` (cached in ``out_dir`` by the ONNX bytes, spec, seed and versions),
    with a ``<name>.pte.json`` record beside it (ONNX input names, delegated and portable ops)."""
    if not onnx_path.is_file():
        raise InputError(f"ONNX file not found: {onnx_path}")
    guessed = source is None
    if guessed:
        source = source_from_sidecar(onnx_path)
    if source is None:
        raise UnsupportedModel("executorch converts from the torch module (torch.export); an ONNX file edgeprof did "
                               "not build has none")
    key = _key(onnx_path, source, et_version)
    pte = out_dir / f"{onnx_path.stem}.et-{key}.pte"
    record = Path(str(pte) + ".json")
    if pte.is_file() and record.is_file():
        return Conversion(pte, CONVERTER, et_version)
    import numpy as np
    import torch

    from edgeprof.blocks.yolo import build_block
    from edgeprof.spec import BlockSpec

    try:
        spec = BlockSpec(**source.spec)
        model = build_block(spec, seed=source.seed)
    except Exception as exc:
        raise UnsupportedModel(f"cannot rebuild the torch module from its spec: {_first_line(exc)}") from None
    x = np.random.default_rng(source.seed).standard_normal(spec.input_shape, dtype=np.float32)
    input_names = _onnx_input_names(onnx_path)
    if guessed:  # the seed was not given: check the rebuilt module is the ONNX file's
        with torch.no_grad():
            ours = model(torch.from_numpy(x)).numpy()
        theirs = _run_onnx(onnx_path, input_names, x)
        if theirs is not None and np.abs(ours - theirs).max() > PARITY_TOL * max(1.0, float(np.abs(ours).max())):
            raise UnsupportedModel("the torch module rebuilt from the model's sidecar (seed 0) differs from the ONNX "
                                   "file; pass its ModelSource (spec and seed)")
    try:
        with _quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            exported = torch.export.export(model, (torch.from_numpy(x),))
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            delegation = _delegation(edge)
            program = edge.to_executorch()
    except Exception as exc:  # torch.export and executorch raise many types; the row gets the first line
        raise UnsupportedModel(f"executorch cannot convert it: {_first_line(exc)}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(pte, program.buffer)
    info = {"converter": CONVERTER, "executorch": et_version, "torch": torch.__version__, "inputs": input_names,
            "spec": source.spec, "seed": source.seed, "seed_checked_against_onnx": guessed, **delegation}
    _write_atomic(record, (json.dumps(info, indent=2) + "\n").encode())
    return Conversion(pte, CONVERTER, et_version)


def _delegation(edge) -> dict:
    """How many of each edge op XNNPACK took (delegated) and how many were left to portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    ops = {}
    for name, d in info.delegation_by_operator.items():
        if name != "getitem":
            ops[name] = {"delegated": d.delegated, "portable": d.non_delegated}
    return {"delegated_subgraphs": info.num_delegated_subgraphs, "ops": ops, "op_scopes": _op_scopes(edge)}


def _op_scopes(edge) -> dict[str, str]:
    """Each op type (edgeprof's names, as ETDump's events are read) -> the torch module path all its edge nodes came
    from (``act``, ``cv1.act``), over the top graph and every XNNPACK subgraph; an op type used by several modules
    is left out."""
    import re

    from executorch.exir.lowered_backend_module import get_lowered_submodules

    from edgeprof.runtime.executorch.ops import PORTABLE_OPS

    top = edge.exported_program().graph_module
    graphs = [top] + [lowered.original_module.graph_module for _, lowered, _ in get_lowered_submodules(top)]
    scopes: dict[str, set] = {}
    for graph_module in graphs:
        for node in graph_module.graph.nodes:
            match = re.search(r"aten\.(\w+)\.", str(node.target)) if node.op == "call_function" else None
            if match is None:
                continue
            stack = node.meta.get("nn_module_stack") or {}
            path = re.sub(r"^L__self___|^L\['self'\]\.", "", str(list(stack.values())[-1][0])) if stack else ""
            scopes.setdefault(PORTABLE_OPS.get(match.group(1), match.group(1)), set()).add(path)
    return {op: next(iter(paths)) for op, paths in scopes.items() if len(paths) == 1 and "" not in paths}


def _onnx_input_names(onnx_path: Path) -> list[str]:
    try:
        import onnx

        return [i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.input]
    except Exception:
        return []


def _run_onnx(onnx_path: Path, names: list[str], x):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
