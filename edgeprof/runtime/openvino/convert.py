"""ONNX -> OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` (OpenVINO's own ONNX frontend, in the runtime's
wheel: no torch, no onnx) and ``openvino.save_model`` at fp32, cached by content; OpenVINO's telemetry kept off."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from edgeprof.runtime.base import Conversion, UnsupportedModel, check_file
from edgeprof.spec import content_hash, file_sha256

CONVERTER = "openvino.convert_model"
# Options that change the IR: part of the cache key. Weights stay fp32 (save_model would halve them to fp16 by
# default, which is not what onnxruntime runs).
OPTIONS = {"frontend": "onnx", "compress_to_fp16": False}


def import_openvino():
    """``openvino``, imported so that its telemetry sends nothing; use this instead of ``import openvino``.

    ``import openvino`` imports its converter (``openvino.tools.ovc``), which sends a usage event to Google Analytics
    at import and more on each conversion, unless the user opted out with ``opt_in_out --opt_out`` (a consent file
    in the home folder; no file counts as consent). edgeprof imports it with ``openvino_telemetry`` unimportable, so
    OpenVINO falls back to the no-op stub it ships for when that package is absent
    (``openvino.tools.ovc.telemetry_stub``); if someone imported openvino before, its converter modules are pointed
    at the stub. Only the current process changes; nothing is written, no connection opened; idempotent.
    """
    import importlib
    import sys

    names = ("openvino.tools.ovc", "openvino.tools.ovc.telemetry_utils", "openvino.tools.ovc.convert_impl",
             "openvino.tools.ovc.utils")
    if "openvino" not in sys.modules:
        hidden = {k: sys.modules.pop(k) for k in list(sys.modules)
                  if k == "openvino_telemetry" or k.startswith("openvino_telemetry.")}
        sys.modules["openvino_telemetry"] = None  # the import fails: OpenVINO's own fallback to its stub
        try:
            importlib.import_module("openvino")
            for name in names:
                importlib.import_module(name)
        finally:
            del sys.modules["openvino_telemetry"]
            sys.modules.update(hidden)
    from openvino.tools.ovc import telemetry_stub

    for name in names:
        module = importlib.import_module(name)
        if hasattr(module, "tm"):
            module.tm = telemetry_stub
        if hasattr(module, "telemetry"):
            module.telemetry = telemetry_stub.Telemetry()
    return sys.modules["openvino"]


def openvino_version() -> str:
    try:
        from importlib.metadata import version

        return version("openvino")
    except Exception:
        return ""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # OpenVINO's errors start with a "Check '...' failed at src/..." line; the reason is usually on a later line
    useful = [line for line in lines if not line.startswith(("Check ", "Exception from src", "Traceback"))]
    return ((useful or lines or [type(exc).__name__])[0])[:300]


def convert_onnx(onnx_path: str | Path, out_dir: str | Path) -> Conversion:
    """The IR of ``onnx_path`` in ``out_dir`` (``<stem>.xml`` and ``<stem>.bin``: the ONNX file's stem, so a bundle
    keeps them beside it), made once per content: the key hashing the ONNX bytes, OpenVINO's version and ``OPTIONS``
    is stored in the IR's rt_info and checked on reuse. A model OpenVINO cannot read or compile raises
    ``UnsupportedModel`` with its one-line reason."""
    onnx_path = check_file(onnx_path, "ONNX file")
    version = openvino_version()
    key = content_hash({"onnx_sha256": file_sha256(onnx_path), "openvino": version, **OPTIONS})
    out_dir = Path(out_dir)
    xml = out_dir / f"{onnx_path.stem}.xml"
    if _cached(xml, key):
        return Conversion(xml, CONVERTER, version)

    ov = import_openvino()
    try:
        model = ov.convert_model(str(onnx_path))
        ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    except Exception as exc:  # OpenVINO raises its own and generic exception types
        raise UnsupportedModel(f"OpenVINO cannot convert or compile {onnx_path.name}: {first_line(exc)}") from None
    model.set_rt_info(key, [*KEY_PATH])
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{xml.stem}-{uuid.uuid4().hex[:8]}.xml"
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=OPTIONS["compress_to_fp16"])
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))  # the weights first: an .xml is never orphaned
        os.replace(tmp, xml)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".bin").unlink(missing_ok=True)
    return Conversion(xml, CONVERTER, version)


KEY_PATH = ("edgeprof", "conversion_key")  # where the content key lives in the IR's rt_info


def _cached(xml: Path, key: str) -> bool:
    """Whether ``xml`` (with its .bin) was made from the same content: its rt_info carries ``key``. The IR is text;
    the key is read from it without loading the model."""
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        return False
    try:
        return f'<{KEY_PATH[1]} value="{key}"' in xml.read_text(errors="replace")
    except OSError:
        return False
