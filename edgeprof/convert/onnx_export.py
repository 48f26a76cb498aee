"""ONNX export you can trust: build a block, export it, check it, compare it with torch, cache it by content.

The default exporter is torch's TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) at
opset 17, with constant folding, which folds each BatchNorm into the Conv before it. Why not the
dynamo exporter, torch's default since 2.9: the TorchScript exporter is fast (0.01-0.12 s per block
measured with torch 2.13 on CPU for every block type at widths 16-64 and inputs 32-160; the dynamo
exporter runs ``torch.export`` and then onnxscript's optimizer, and is reported to take seconds per
block, which we have not timed because onnxscript isn't installed where this was written), it writes
a single self-contained file, and it needs no onnxscript. ``exporter="dynamo"`` is accepted when
onnxscript is importable; it may write another opset than the one asked for, which is why
``ExportResult.opset`` is read from the written file.

Every fresh export is checked (``onnx.checker`` with ``full_check``, strict shape inference) and
compared with torch on a seeded input through onnxruntime; a model that fails never reaches the
cache. The cache key is a hash of everything that decides the file's content, so a cached model is
reused only when it would be rebuilt identically, and its file's sha256 is verified before reuse.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

import edgeprof
from edgeprof.blocks.activations import canonical_act
from edgeprof.blocks.yolo import build_block, count_macs, count_params
from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import ref_path
from edgeprof.spec import BlockSpec, content_hash, file_sha256
from edgeprof.spec.imports import is_import_path

# Bump whenever block code, weight initialisation or export settings change what a file contains.
BUILD_VERSION = 1
SIDECAR_SCHEMA_VERSION = 1
EXPORTERS = ("torchscript", "dynamo")
INPUT_NAME = "images"
OUTPUT_NAME = "output"


@dataclass
class ExportResult:
    """One exported block and what is known about it.

    ``opset`` is read from the written file. ``export_s`` is the time the export itself took when the
    file was made; a cached result reports that original time and ``cached=True``. ``act_ops`` are the
    op types of the nodes that belong to the activation (their name has an ``/act/`` segment).
    """

    path: Path
    spec: BlockSpec
    exporter: str
    opset: int
    params: int
    macs: int
    parity_max_abs_err: float
    export_s: float
    cached: bool
    act_ops: list[str]
    onnx_sha256: str
    torch_version: str

    def to_dict(self) -> dict:
        """JSON-able fields; ``path`` is the file name only (the sidecar sits next to the model)."""
        data = asdict(self)
        data["path"] = self.path.name
        return data


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: their deprecation warnings and their console output.

    The TorchScript exporter prints the whole Torch IR graph from C++ when it fails, so stdout and
    stderr are redirected at the file-descriptor level too (when there are real descriptors).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        saved: list[tuple[int, int]] = []
        devnull = stack.enter_context(open(os.devnull, "w"))
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull.fileno(), fd)
        except OSError:
            pass  # no usable descriptors (embedded interpreter): Python-level redirection still applies
        try:
            yield
        finally:
            for fd, copy in reversed(saved):
                os.dup2(copy, fd)
                os.close(copy)


def _check_exporter(exporter: str, opset: int) -> str:
    name = str(exporter).strip().lower()
    if name not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    if name == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise InputError("the dynamo exporter needs onnxscript: pip install onnxscript")
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise InputError(f"opset must be a whole number, got {opset!r}")
    if name == "torchscript":
        try:
            from torch.onnx import _constants

            low, high = _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
        except (ImportError, AttributeError):  # private constants moved: let the exporter decide
            return name
        if not low <= opset <= high:
            raise InputError(f"opset {opset} is outside what the torchscript exporter supports ({low}-{high})")
    return name


def _export(model: nn.Module, input_shape: Sequence[int], path: Path, opset: int, exporter: str) -> None:
    """Export ``model`` to ``path``; exceptions from the exporter propagate unchanged."""
    model.eval()
    dummy = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0))
    common = dict(
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        verbose=False,
    )
    with _quiet(), torch.no_grad():
        if exporter == "torchscript":
            torch.onnx.export(model, (dummy,), str(path), dynamo=False, do_constant_folding=True, **common)
        else:
            torch.onnx.export(model, (dummy,), str(path), dynamo=True, external_data=False, optimize=True, **common)


def export_module(
    model: nn.Module,
    input_shape: Sequence[int],
    path: Path | str,
    opset: int = 17,
    exporter: str = "torchscript",
    *,
    what: str | None = None,
) -> None:
    """Export a module (in eval mode) to ``path`` with input ``images`` and output ``output``.

    No checks and no cache: ``export_block`` adds those. Raises ``RuntimeFailure`` naming ``what``
    (default: the module's class) and the exporter's first error line, ``InputError`` for an unknown
    exporter or an opset the exporter doesn't support.
    """
    exporter = _check_exporter(exporter, opset)
    path = Path(path)
    what = what or type(model).__name__
    try:
        _export(model, input_shape, path, opset, exporter)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or _first_line(exc)}") from None
    except Exception as exc:  # the exporters raise many types; report the first line of any of them
        raise RuntimeFailure(
            f"cannot export {what} with the {exporter} exporter at opset {opset}: {_first_line(exc)}"
        ) from None


def _default_opset(model_proto: onnx.ModelProto) -> int:
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise RuntimeFailure("exported model declares no opset for the default ONNX domain")


def _act_ops(model_proto: onnx.ModelProto) -> list[str]:
    ops: list[str] = []
    for node in model_proto.graph.node:
        if "/act/" in node.name and node.op_type != "Constant" and node.op_type not in ops:
            ops.append(node.op_type)
    return ops


def _parity_input(spec: BlockSpec, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(spec.input_shape, dtype=np.float32)


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: x})[0])


def _check_parity(name: str, torch_out: np.ndarray, onnx_out: np.ndarray, tol: float) -> tuple[float, float]:
    """Max abs error and max |torch output|; raises RuntimeFailure when the two disagree."""
    if torch_out.shape != onnx_out.shape:
        raise RuntimeFailure(
            f"parity check failed for {name}: torch output shape {torch_out.shape} "
            f"!= onnxruntime output shape {onnx_out.shape}"
        )
    if not (np.isfinite(torch_out).all() and np.isfinite(onnx_out).all()):
        raise RuntimeFailure(f"parity check failed for {name}: the output has NaN or infinite values")
    err = float(np.max(np.abs(torch_out.astype(np.float64) - onnx_out.astype(np.float64)), initial=0.0))
    ref = float(np.max(np.abs(torch_out), initial=0.0))
    _enforce_tolerance(name, err, ref, tol)
    return err, ref


def _enforce_tolerance(name: str, err: float, ref: float, tol: float) -> None:
    limit = tol * max(1.0, ref)
    if err > limit:
        raise RuntimeFailure(
            f"parity check failed for {name}: max abs error {err:.3g} between torch and onnxruntime "
            f"exceeds the tolerance {limit:.3g} (tol {tol:g} x max(1, max|output| {ref:.3g}))"
        )


def _act_fingerprint(act: str) -> str | None:
    """For a user activation or block kind (an import path), a hash of its module's source (so edits invalidate
    the cache).

    Returns ``""`` for built-in ones (their code is covered by BUILD_VERSION) and ``None`` when a user
    module's source can't be read, which turns caching off for that activation.
    """
    if not is_import_path(act):
        return ""
    module_name = act.split(":", 1)[0].strip()
    try:
        source = inspect.getsource(importlib.import_module(module_name))
    except (OSError, TypeError, ImportError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _load_cached(onnx_path: Path, sidecar: Path, spec: BlockSpec) -> tuple[ExportResult, float] | None:
    """The sidecar's result when it parses, matches ``spec`` and the model's sha256; else None."""
    try:
        data = json.loads(sidecar.read_text())
        if data.get("schema_version") != SIDECAR_SCHEMA_VERSION or data.get("path") != onnx_path.name:
            return None
        if data["spec"] != spec.as_dict() or file_sha256(onnx_path) != data["onnx_sha256"]:
            return None
        result = ExportResult(
            path=onnx_path,
            spec=spec,
            exporter=str(data["exporter"]),
            opset=int(data["opset"]),
            params=int(data["params"]),
            macs=int(data["macs"]),
            parity_max_abs_err=float(data["parity_max_abs_err"]),
            export_s=float(data["export_s"]),
            cached=True,
            act_ops=[str(op) for op in data["act_ops"]],
            onnx_sha256=str(data["onnx_sha256"]),
            torch_version=str(data["torch_version"]),
        )
        return result, float(data["parity_ref_max_abs"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _new_temp_file(directory: Path, name: str) -> Path:
    """Create an empty, uniquely named hidden file in ``directory`` (with the usual umask permissions).

    Temporary files live next to their destination so that ``os.replace`` is an atomic rename.
    """
    while True:
        path = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with path.open("x"):
                return path
        except FileExistsError:
            continue


def _write_atomic(path: Path, text: str) -> None:
    tmp = _new_temp_file(path.parent, path.name)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_reference(onnx_path: Path, x: np.ndarray, torch_out: np.ndarray) -> None:
    """torch's reference beside the model (``<model>.ref.npz``): the seeded input and torch's output on it, which
    every runtime's parity check (``Runner.parity``) compares its own output with."""
    target = ref_path(onnx_path)
    tmp = _new_temp_file(target.parent, target.name)
    try:
        with tmp.open("wb") as f:
            np.savez(f, **{f"input:{INPUT_NAME}": x, "output:0": torch_out})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def export_block(
    spec: BlockSpec,
    models_dir: Path = Path("models"),
    opset: int = 17,
    exporter: str = "torchscript",
    seed: int = 0,
    tol: float = 1e-3,
) -> ExportResult:
    """Build, export, check and cache one block; return what was exported.

    The activation label is normalised with ``canonical_act`` first, so ``"Swish"`` and ``"silu"``
    share one file, and the returned ``spec`` carries the canonical label. Files are
    ``{models_dir}/{slug}-{key}.onnx`` and a JSON sidecar of the same stem. A fresh export goes to a
    temporary file in ``models_dir`` and is moved into place only after the checker, strict shape
    inference and the parity check (``max|torch - onnxruntime| <= tol * max(1, max|torch|)``) pass.
    """
    exporter = _check_exporter(exporter, opset)
    spec = replace(spec, act=canonical_act(spec.act))
    fingerprint = _act_fingerprint(spec.act)
    block_source = _act_fingerprint(spec.block)
    if block_source is None:
        fingerprint = None
    key = content_hash(
        {
            "spec": spec.as_dict(),
            "opset": opset,
            "exporter": exporter,
            "seed": seed,
            "torch": torch.__version__,
            "edgeprof": edgeprof.__version__,
            "build_version": BUILD_VERSION,
            "act_source": fingerprint,
            **({"block_source": block_source} if block_source else {}),
        }
    )
    models_dir = Path(models_dir)
    stem = f"{spec.slug()}-{key}"
    onnx_path = models_dir / f"{stem}.onnx"
    sidecar = models_dir / f"{stem}.json"
    name = onnx_path.name

    if fingerprint is not None and onnx_path.exists() and sidecar.exists():
        hit = _load_cached(onnx_path, sidecar, spec)
        if hit is not None:
            result, ref = hit
            _enforce_tolerance(name, result.parity_max_abs_err, ref, tol)
            if not ref_path(onnx_path).exists():  # a model cached before references were kept
                x = _parity_input(spec, seed)
                with torch.no_grad():
                    _write_reference(onnx_path, x, build_block(spec, seed=seed)(torch.from_numpy(x)).numpy())
            return result

    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = _new_temp_file(models_dir, onnx_path.name)
    except OSError as exc:
        raise InputError(f"cannot write to models dir {models_dir}: {exc.strerror or _first_line(exc)}") from None
    try:
        model = build_block(spec, seed=seed)
        params = count_params(model)
        macs = count_macs(model, spec.input_shape)
        start = time.perf_counter()
        export_module(
            model, spec.input_shape, tmp_path, opset, exporter, what=f"activation {spec.act!r} ({spec.block} block)"
        )
        export_s = time.perf_counter() - start

        try:
            model_proto = onnx.load(str(tmp_path))
            onnx.checker.check_model(model_proto, full_check=True)
            onnx.shape_inference.infer_shapes(model_proto, check_type=True, strict_mode=True)
        except OSError:
            raise
        except Exception as exc:  # checker and inference raise their own error types
            raise RuntimeFailure(f"exported model {name} failed the ONNX checks: {_first_line(exc)}") from None
        opset_written = _default_opset(model_proto)
        act_ops = _act_ops(model_proto)

        x = _parity_input(spec, seed)
        with torch.no_grad():
            torch_out = model(torch.from_numpy(x)).numpy()
        try:
            onnx_out = _run_onnx(tmp_path, x)
        except Exception as exc:  # onnxruntime raises its own error types
            raise RuntimeFailure(f"onnxruntime cannot run {name}: {_first_line(exc)}") from None
        err, ref = _check_parity(name, torch_out, onnx_out, tol)

        result = ExportResult(
            path=onnx_path,
            spec=spec,
            exporter=exporter,
            opset=opset_written,
            params=params,
            macs=macs,
            parity_max_abs_err=err,
            export_s=export_s,
            cached=False,
            act_ops=act_ops,
            onnx_sha256=file_sha256(tmp_path),
            torch_version=torch.__version__,
        )
        os.replace(tmp_path, onnx_path)
        _write_reference(onnx_path, x, torch_out)
        sidecar_data = {
            "schema_version": SIDECAR_SCHEMA_VERSION,
            **result.to_dict(),
            "parity_ref_max_abs": ref,
            "parity_tol": tol,
        }
        _write_atomic(sidecar, json.dumps(sidecar_data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {onnx_path} or its sidecar: {exc.strerror or _first_line(exc)}") from None
    finally:
        tmp_path.unlink(missing_ok=True)
    return result
