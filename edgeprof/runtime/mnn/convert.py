"""ONNX -> .mnn by MNN's converter, called in-process through its entry point ``_tools.mnnconvert(argv)``.

Never MNN's command-line wrapper (``mnnconvert``, ``MNN.tools.mnnconvert``): importing it imports
``MNN.tools.utils.log``, which runs ``pip install -U aliyun-log-python-sdk`` through ``os.system`` when that
package is missing and then sends the machine id and the converter's arguments to a cloud log endpoint. This
module imports only the compiled ``_tools`` extension that ships in the same wheel, so converting starts no
process and opens no connection (``tests/test_runtime_mnn.py`` checks it with sockets and process starts
blocked).

The converted graph is cached by content in the output folder (hash of the ONNX bytes, the converter's version
and options); beside it, ``<artifact>.origin.json`` maps each MNN op to the ONNX node it came from (MNN names
an op after its output tensor, or ``UnaryOp3`` for one it made itself), so the executed ops keep the ONNX
node's scope (``/act/Softplus``) even where MNN split one ONNX op into several.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.runtime.base import Conversion, UnsupportedModel, check_file

CONVERTER = "MNNConvert"
CONVERT_OPTIONS = ("-f", "ONNX", "--bizCode", "edgeprof")  # fp32 weights: no --fp16, no weight quantization


def converter_version() -> str:
    from importlib.metadata import version

    try:
        return version("MNN")
    except Exception:
        return ""


@contextlib.contextmanager
def captured_output():
    """Send the process's stdout and stderr (file descriptors 1 and 2: MNN's C++ code prints there) to a
    temporary file for the duration; yields a callable that returns what was written."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def run_converter(argv: list[str]) -> str:
    """``_tools.mnnconvert(argv)`` in this process, its console output returned (it prints, and returns True
    even when the conversion failed)."""
    with captured_output() as output:
        import _tools  # the converter itself; never MNN.tools (see the module docstring)

        _tools.mnnconvert(["mnnconvert", *argv])
    return output()


def import_mnn():
    """``import MNN`` without its import-time banner on stdout (``The device supports: ...``, printed by its C++
    code), which would otherwise mix into ``--format csv``/``json`` output."""
    if "MNN" not in sys.modules:
        with captured_output():
            import MNN  # noqa: F401
    return sys.modules["MNN"]


def failure_reason(log: str) -> str:
    """The converter's one-line reason from its console output."""
    lines = [re.sub(r"^\[[\d:]+\]\s*:?\d*:?\s*", "", line).strip() for line in log.splitlines()]
    lines = [line for line in lines if line]
    for key in ("Not Support", "Check failed", "[ERROR]", "error", "Error"):
        for line in lines:
            if key in line:
                return line[:300]
    return (lines[-1] if lines else "the converter wrote no model")[:300]


def convert_onnx(onnx_path: str | Path, out_dir: str | Path) -> Conversion:
    """The cached .mnn of ``onnx_path`` in ``out_dir`` (converted now if it is not there yet)."""
    from edgeprof.spec import content_hash, file_sha256

    onnx_path = check_file(onnx_path, "ONNX file")
    version = converter_version()
    key = content_hash({"onnx_sha256": file_sha256(onnx_path), "converter": CONVERTER, "version": version,
                        "options": list(CONVERT_OPTIONS)})
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write MNN models to {out_dir}: {exc.strerror or exc}") from None
    target = out_dir / f"{onnx_path.stem}-mnn-{key}.mnn"
    conversion = Conversion(target, CONVERTER, version)
    if target.is_file() and target.stat().st_size > 0 and origin_path(target).is_file():
        return conversion
    tmp = out_dir / f".{target.name}.{os.getpid()}.tmp"
    try:
        log = run_converter([*CONVERT_OPTIONS, "--modelFile", str(onnx_path), "--MNNModel", str(tmp)])
        if not tmp.is_file() or tmp.stat().st_size == 0 or "Converted Success" not in log:
            raise UnsupportedModel(f"MNN's converter cannot convert {onnx_path.name}: {failure_reason(log)}")
        write_origin(onnx_path, tmp, origin_path(target))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return conversion


def origin_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".origin.json")


def mnn_graph(mnn_path: str | Path) -> list[dict]:
    """The ops of a .mnn file, as MNN's converter dumps them to JSON (in-process): name, type, parameters,
    input and output tensor indexes; weights left out."""
    with tempfile.TemporaryDirectory(prefix="edgeprof-mnn-") as tmp:
        out = Path(tmp) / "graph.json"
        log = run_converter(["-f", "MNN", "--modelFile", str(mnn_path), "--JsonFile", str(out)])
        if not out.is_file():
            raise InputError(f"cannot read the MNN model {mnn_path}: {failure_reason(log)}")
        net = json.loads(out.read_text())
    ops = []
    for op in net.get("oplists", []):
        main = op.get("main") or {}
        if isinstance(main, dict):
            main = {k: v for k, v in main.items() if k not in ("weight", "bias", "float32s", "int32s", "quanParameter")}
        ops.append({"name": op.get("name", ""), "type": op.get("type", ""), "main_type": op.get("main_type", ""),
                    "main": main, "inputs": op.get("inputIndexes") or [], "outputs": op.get("outputIndexes") or []})
    return ops


def write_origin(onnx_path: Path, mnn_path: Path, out: Path) -> None:
    """Map each op of the converted graph to the ONNX node it came from (``{mnn op name: [onnx node name, onnx
    op type]}``): by output tensor name, and an op MNN made itself (``UnaryOp3``) to the named op it feeds."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    producer = {}
    for node in model.graph.node:
        for output in node.output:
            producer[output] = [node.name, node.op_type]
    ops = mnn_graph(mnn_path)
    consumers: dict[int, list[dict]] = {}
    for op in ops:
        for index in op["inputs"]:
            consumers.setdefault(index, []).append(op)
    origin: dict[str, list[str]] = {}

    def find(op: dict, depth: int = 0) -> list[str] | None:
        if op["name"] in producer:
            return producer[op["name"]]
        if depth > 8:
            return None
        # an op the converter made (UnaryOp3) or a layout conversion (X___tr4Y): part of the ONNX node it feeds
        for index in op["outputs"]:
            for consumer in consumers.get(index, []):
                found = find(consumer, depth + 1)
                if found:
                    return found
        return None

    for op in ops:
        if op["type"] in ("Input", "Const"):
            continue
        found = find(op)
        if found:
            origin[op["name"]] = found
    out.write_text(json.dumps(origin, indent=1) + "\n")
