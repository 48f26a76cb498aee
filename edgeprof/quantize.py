"""INT8 variants of exported models through onnxruntime's own quantization tools, and their output error.

``int8``: static quantization in QDQ format, calibrated on seeded random inputs of the model's shape or on
your own (``calib``: an .npy of samples, or an .npz keyed by input name): activations uint8, weights int8
per channel with ``reduce_range=True``. ``int8-dynamic``: dynamic quantization where it applies (Conv and
MatMul weights to uint8, activations quantized at run time by DynamicQuantizeLinear; the activation
functions themselves stay float). Without AVX512-VNNI the
u8s8 integer kernels can saturate (onnxruntime's documented limitation), and reduce_range keeps weights to
7 bits to avoid it. Activations onnxruntime cannot run in INT8 (Softplus, Mish, ...) stay in float between
DequantizeLinear and QuantizeLinear: the executed ops say which fell back. Needs the ``onnx`` package
(onnxruntime.quantization imports it): a workstation step, like exporting.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.spec import ModelRecord, content_hash, file_sha256

QUANT_VERSION = 1
QUANT_MODES = ("int8", "int8-dynamic")


def _inputs(path: Path, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    from edgeprof.runtime.onnxruntime.session import SessionSettings, create_session, make_inputs

    sess = create_session(path, SessionSettings(opt_level="disable"))
    return [make_inputs(sess, seed=seed + i) for i in range(count)]


def output_error(float_path: Path, quant_path: Path, seed: int = 12345) -> tuple[float, float]:
    """Max abs difference of the quantized model's outputs from the float model's on a seeded input,
    and that as a fraction of the float output's range."""
    from edgeprof.runtime.onnxruntime.session import SessionSettings, create_session, run_once

    feeds = _inputs(float_path, 1, seed)[0]
    ref = run_once(create_session(float_path, SessionSettings()), feeds)
    got = run_once(create_session(quant_path, SessionSettings()), feeds)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got, strict=True))
    span = max(float(np.max(a) - np.min(a)) for a in ref)
    return err, err / span if span > 0 else float("nan")


def calibration_inputs(path: Path, count: int, seed: int, calib: str | Path | None) -> list[dict[str, np.ndarray]]:
    """Calibration feeds: ``count`` seeded N(0, 1) inputs, or the samples in ``calib`` (an .npy whose first axis
    counts samples, for a one-input model, or an .npz with one such array per input name; samples are fed
    as many at a time as the model's batch)."""
    if calib is None:
        return _inputs(path, count, seed)
    from edgeprof.api import check_calib
    from edgeprof.runtime.onnxruntime.session import SessionSettings, create_session

    calib = check_calib(calib)  # an .npy/.npz numpy can read, or one line saying so (not numpy's pickle message)
    names = [i.name for i in create_session(path, SessionSettings(opt_level="disable")).get_inputs()]
    try:
        loaded = np.load(calib, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read calibration data {calib}: {exc}") from None
    arrays = {names[0]: loaded} if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
    if set(arrays) != set(names):
        raise InputError(f"calibration data {calib} has inputs {sorted(arrays)}; the model takes {names}")
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"calibration data {calib}: every input needs the same, non-zero number of samples")
    inputs = create_session(path, SessionSettings(opt_level="disable")).get_inputs()
    batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else 1
    total = counts.pop()
    if total < batch:
        raise InputError(f"calibration data {calib} has {total} samples; the model's batch is {batch}")
    return [{k: np.ascontiguousarray(a[i:i + batch], dtype=np.float32) for k, a in arrays.items()}
            for i in range(0, total - batch + 1, batch)]


_MESSAGES: Counter[str] = Counter()  # what onnxruntime's quantizer warned in this process, and how often


class _Collect(logging.Filter):
    """On the root logger while the quantizer runs: its warnings (``logging.warning``, module-level) are counted
    in ``_MESSAGES`` instead of printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            _MESSAGES[record.getMessage().strip()] += 1
            return False
        return True


@contextmanager
def _collect_quantizer_messages():
    """onnxruntime's quantizer logs the same advice for every model it quantizes (a sweep's 16 models: 16 times):
    collect its warnings, and the Python warnings it raises, for ``quantizer_messages``; the sessions it creates to
    calibrate log errors only (onnxruntime's default severity, warning, is put back after)."""
    import onnxruntime as ort

    collect = _Collect()
    root = logging.getLogger()
    root.filters.insert(0, collect)  # before any other filter (the CLI's once-per-message one), so each is counted
    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for warning in caught:
                    _MESSAGES[str(warning.message).strip()] += 1
    finally:
        root.removeFilter(collect)
        ort.set_default_logger_severity(2)


def quantizer_messages() -> dict[str, int]:
    """The warnings onnxruntime's quantizer gave in this process since the last call, each with how often it came
    (in the order first seen); the CLI says them in one line, or not at all under --quiet."""
    messages = dict(_MESSAGES)
    _MESSAGES.clear()
    return messages


def quantize_model(built, mode: str = "int8", calibration: int = 16, seed: int = 0,
                   calib: str | Path | None = None) -> ModelRecord:
    """Quantize an exported model (anything with ``path``, ``params``, ``macs``, ``exporter``, ``opset``,
    ``parity_max_abs_err``, ``act_ops``); cached beside it by content."""
    if mode not in QUANT_MODES:
        raise InputError(f"unknown quantization {mode!r}; valid: {', '.join(QUANT_MODES)}")
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
    except ImportError as exc:
        raise InputError(f"INT8 quantization needs onnx and onnxruntime's quantization tools ({exc.name} is "
                         "missing): pip install 'edgeprof[build]'") from None
    src = Path(built.path)
    key = content_hash({"src": file_sha256(src), "mode": mode, "calibration": calibration, "seed": seed,
                        "calib": file_sha256(Path(calib)) if calib else None, "version": QUANT_VERSION})
    dst = src.with_name(f"{src.stem}-{mode}-{key[:8]}.onnx")
    sidecar = dst.with_suffix(".json")
    if mode == "int8-dynamic":
        method = "dynamic: u8 weights (Conv/MatMul), activations quantized at run time"
    else:
        method = ("static QDQ, u8 activations, s8 per-channel weights, reduce_range, calibrated on "
                  + (f"{Path(calib).name}" if calib else f"{calibration} seeded N(0,1) inputs"))
    result = ModelRecord(path=dst, params=built.params, macs=built.macs, exporter=built.exporter,
                            opset=built.opset, parity_max_abs_err=built.parity_max_abs_err,
                            act_ops=list(built.act_ops), quant_method=method)
    if dst.exists() and sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
            return replace(result, quant_max_abs_err=meta["quant_max_abs_err"], quant_rel_err=meta["quant_rel_err"])
        except (OSError, ValueError, KeyError):
            pass
    data = calibration_inputs(src, calibration, seed, calib) if mode == "int8" else []

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(data)

        def get_next(self):
            return next(self._it, None)

    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    try:
        with _collect_quantizer_messages():  # its advice, repeated per model: collected, said once by the caller
            if mode == "int8-dynamic":
                quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8)
            else:
                quantize_static(str(src), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                                reduce_range=True)
        os.replace(tmp, dst)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {dst}: {exc.strerror or exc}") from None
    except Exception as exc:  # the quantizer raises many types
        raise RuntimeFailure(f"cannot quantize {src.name}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        tmp.unlink(missing_ok=True)
    err, rel = output_error(src, dst)
    sidecar.write_text(json.dumps({"quant_max_abs_err": err, "quant_rel_err": rel, "method": method,
                                   "source": src.name}, indent=2) + "\n")
    return replace(result, quant_max_abs_err=err, quant_rel_err=rel)

