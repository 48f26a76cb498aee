"""ONNX -> ncnn with pnnx, ncnn's own converter (its command-line program, from the ``pnnx`` wheel), cached by content.

pnnx reads the ONNX file, runs its own graph passes and ncnn's (``pass_ncnn``: BN folded into the convolution, the
activations ncnn can fuse written as the convolution's ``activation_type``) and writes ``.ncnn.param`` (the graph,
text) and ``.ncnn.bin`` (the weights, fp32 with ``fp16=0``). Runs on the build side, never in a worker. pnnx also
writes a pnnx graph and two Python scripts; they stay in a temporary folder that is removed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.runtime.base import Conversion, UnsupportedModel, check_file
from edgeprof.runtime.ncnn.param import ParamError, parse_param, render_param, with_input_shapes

# Bump when what this module writes changes for the same ONNX file and pnnx (part of the cache key).
CONVERT_VERSION = 1
PNNX_TIMEOUT_S = 600
# pnnx's options: fp32 weights (its default fp16=1 would halve the weights' precision), its default graph passes
PNNX_OPTIONS = ("fp16=0", "optlevel=2", "device=cpu")
SUBDIR = "ncnn"  # artifacts go to <out_dir>/ncnn/, beside the ONNX files' folder, never mixed with them


def pnnx_executable() -> Path:
    """The pnnx program inside the installed ``pnnx`` wheel (found without importing the package: its
    ``__init__`` imports torch); a one-line InputError naming the extra when it is not installed."""
    spec = importlib.util.find_spec("pnnx")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        exe = Path(folder) / ("pnnx.exe" if os.name == "nt" else "pnnx")
        if exe.is_file():
            return exe
    raise InputError("ncnn's converter pnnx is not installed here; pip install 'edgeprof[ncnn-convert]' "
                     "(or give an already converted .ncnn.param)")


def pnnx_version() -> str:
    try:
        from importlib.metadata import version

        return version("pnnx")
    except Exception:
        return ""


def onnx_inputs(onnx_path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """The ONNX model's graph inputs (initializers left out) with their fixed shapes; UnsupportedModel for what
    ncnn cannot take: non-float32 inputs, dynamic dimensions (pnnx needs fixed shapes), a batch other than 1."""
    try:
        import onnx
    except ImportError:
        raise InputError("converting to ncnn reads the ONNX file with the onnx package; "
                         "pip install 'edgeprof[ncnn-convert]'") from None
    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others
        raise InputError(f"cannot read ONNX model {onnx_path}: {_first_line(str(exc)) or type(exc).__name__}") from None
    initializers = {t.name for t in graph.initializer}
    inputs = []
    for inp in graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        if tensor.elem_type != onnx.TensorProto.FLOAT:
            raise UnsupportedModel(f"ncnn takes float32 inputs; input {inp.name!r} is "
                                   f"{onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}")
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise UnsupportedModel(f"pnnx needs fixed input shapes; input {inp.name!r} has {dims}")
        if not 2 <= len(dims) <= 5:
            raise UnsupportedModel(f"ncnn takes inputs of 2 to 5 dims (batch first); input {inp.name!r} has {dims}")
        if dims[0] != 1:
            raise UnsupportedModel(f"ncnn runs one sample at a time; input {inp.name!r} has batch {dims[0]}")
        inputs.append((inp.name, tuple(dims)))
    if not inputs:
        raise UnsupportedModel("the ONNX model has no inputs to feed")
    return inputs


def convert_onnx(onnx_path: str | Path, out_dir: str | Path) -> Conversion:
    """``onnx_path`` as ncnn's ``.ncnn.param`` + ``.ncnn.bin`` in ``out_dir/ncnn/`` (the artifact is the .param;
    the .bin has the same name), made by pnnx unless a file of the same content key is there. The key hashes the
    ONNX file's bytes, pnnx's version and options and this module's CONVERT_VERSION."""
    from edgeprof.spec import content_hash, file_sha256

    onnx_path = check_file(onnx_path, "ONNX file")
    inputs = onnx_inputs(onnx_path)
    exe = pnnx_executable()
    version = pnnx_version()
    shapes_arg = "inputshape=" + ",".join("[" + ",".join(map(str, shape)) + "]f32" for _, shape in inputs)
    key = content_hash({"onnx_sha256": file_sha256(onnx_path), "pnnx": version, "options": [*PNNX_OPTIONS, shapes_arg],
                        "convert_version": CONVERT_VERSION})
    folder = Path(out_dir) / SUBDIR
    param = folder / f"{onnx_path.stem}-{key}.ncnn.param"
    weights = bin_path(param)
    conversion = Conversion(param, "pnnx", version)
    if param.is_file() and weights.is_file():
        return conversion
    try:
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pnnx-", dir=folder))
    except OSError as exc:
        raise InputError(f"cannot write ncnn models to {folder}: {exc.strerror or exc}") from None
    try:
        shutil.copyfile(onnx_path, work / "model.onnx")
        outputs = {"pnnxparam": "model.pnnx.param", "pnnxbin": "model.pnnx.bin", "pnnxpy": "model_pnnx.py",
                   "pnnxonnx": "model.pnnx.onnx", "ncnnparam": "model.ncnn.param", "ncnnbin": "model.ncnn.bin",
                   "ncnnpy": "model_ncnn.py"}
        argv = [str(exe), "model.onnx", shapes_arg, *PNNX_OPTIONS, *(f"{k}={v}" for k, v in outputs.items())]
        try:
            proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, errors="replace",
                                  timeout=PNNX_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"pnnx did not convert {onnx_path.name} within {PNNX_TIMEOUT_S} s") from None
        log = proc.stdout + "\n" + proc.stderr
        made_param, made_bin = work / outputs["ncnnparam"], work / outputs["ncnnbin"]
        if proc.returncode != 0 or not made_param.is_file() or not made_bin.is_file():
            how = f"exit code {proc.returncode}" if proc.returncode >= 0 else f"killed by signal {-proc.returncode}"
            raise UnsupportedModel(f"pnnx could not convert {onnx_path.name} ({how}): {_reason(log)}")
        try:
            layers = parse_param(made_param.read_text())
            missing = unknown_layer_types(layers)
            if missing:
                raise UnsupportedModel(f"pnnx left {', '.join(missing)} unconverted: ncnn has no such layer "
                                       f"({_reason(log, prefer='ignore ')})")
            text = render_param(with_input_shapes(layers, [shape for _, shape in inputs]))
        except ParamError as exc:
            raise UnsupportedModel(f"pnnx wrote an ncnn graph edgeprof cannot read: {exc}") from None
        staged = work / "artifact.ncnn.param"
        staged.write_text(text)
        os.replace(made_bin, weights)  # the weights first: a .param present means its .bin is there too
        os.replace(staged, param)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write ncnn model {param}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return conversion


def bin_path(param: str | Path) -> Path:
    """The weights file of an ncnn artifact: ``x.ncnn.param`` -> ``x.ncnn.bin`` (``x.param`` -> ``x.bin``)."""
    return Path(param).with_suffix(".bin")


def unknown_layer_types(layers) -> list[str]:
    """Layer types ncnn cannot create (an op pnnx passed through unconverted, e.g. ``Hardmax``), first-seen order."""
    import ncnn

    seen: list[str] = []
    for layer in layers:
        if layer.type not in seen and ncnn.create_layer(layer.type) is None:
            seen.append(layer.type)
    return seen


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:300]


def _reason(log: str, prefer: str = "") -> str:
    """pnnx's most telling line: one starting with ``prefer`` if any, else its last line that is not a banner,
    a pass name or a table row."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    if prefer:
        for ln in lines:
            if ln.startswith(prefer):
                return ln[:300]
    for ln in reversed(lines):
        if ln[0] in "#│├┌└─" or ln.startswith(("model inputshape", "FLOPS", "memory OPS")):
            continue
        return ln[:300]
    return "no message"
