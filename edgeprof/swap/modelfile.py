"""Read and write ONNX model files for swap, with one-line errors for a missing, corrupt or unwritable file."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import onnx

from edgeprof.errors import InputError
from edgeprof.runtime.onnxruntime.session import check_model_file


def load_model(src: Path | str | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """A private copy of the model and a name for it in messages; one-line InputError for a bad file."""
    if isinstance(src, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(src)
        return model, model.graph.name or "<model>"
    path = check_model_file(src)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf and onnx raise several types for a corrupt file
        raise InputError(f"cannot read {path} as an ONNX model: {first_line(exc)}") from None
    if not model.graph.node or not model.opset_import:
        raise InputError(f"{path} is not an ONNX model (no graph nodes or no opset)")
    return model, str(path)


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def check_writable(out: Path | str) -> Path:
    """``out`` as a Path when its folder exists and is writable; InputError otherwise."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"cannot write {out}: it is a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"cannot write {out}: permission denied")
    return out


def save_model(model: onnx.ModelProto, out: Path) -> None:
    """Write atomically: a temporary file beside ``out``, then a rename."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
    except ValueError as exc:  # onnx refuses protos over 2 GB without external data
        raise InputError(f"cannot write {out}: {first_line(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)
