"""ONNX file -> ``.tflite`` by litert-torch, Google's torch -> LiteRT converter (build side: imports torch lazily).

litert-torch starts from the torch module, not the ONNX file: the module is rebuilt from the ``ModelSource``
(or the export's sidecar JSON beside the ONNX file, seed 0) with ``edgeprof.blocks``, wrapped so its inputs and
outputs are channels-last (NHWC, LiteRT's layout: no TRANSPOSE ops run inside the timed model), converted, and
checked against the ONNX file in onnxruntime on a seeded input, so the artifact is known to be the same model.
An ONNX file edgeprof did not build would need onnx2tf, which pulls tensorflow and pins old numpy/onnx/
onnxruntime, so it cannot share edgeprof's venv: it is ``UnsupportedModel``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from edgeprof.errors import RuntimeFailure
from edgeprof.runtime.base import Conversion, ModelSource, UnsupportedModel, check_file

CONVERTER = "litert-torch"
LAYOUT = "nhwc-io"  # the one conversion option: channels-last inputs and outputs
# |litert - onnxruntime| <= PARITY_TOL * max(1, max|output|): both compute in fp32; XNNPACK's conv and its
# exp/log/tanh kernels round differently from onnxruntime's: <= 1.2e-6 on 8-channel blocks, 3e-5 on 32-channel ones
PARITY_TOL = 1e-4


def converter_version() -> str:
    try:
        from importlib.metadata import version

        return version("litert-torch")
    except Exception:
        return ""


def _source_of(onnx_path: Path, source: ModelSource | None) -> ModelSource | None:
    if source is not None:
        return source
    sidecar = onnx_path.with_suffix(".json")  # written by edgeprof.convert.onnx_export beside each model
    try:
        data = json.loads(sidecar.read_text())
        spec = data["spec"]
        if data.get("path") == onnx_path.name and isinstance(spec, dict):
            return ModelSource(spec=spec, seed=int(data.get("seed", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _perm_to_last(rank: int) -> list[int] | None:
    """NCHW -> NHWC axis order for 4-D tensors (None for other ranks: fed as they are)."""
    return [0, 2, 3, 1] if rank == 4 else None


def convert_to_tflite(onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
    """``<onnx stem>.tflite`` in ``out_dir``, cached by the ONNX bytes, the converter's version and the block spec
    and seed (kept in the model's metadata with its I/O layout, so the file carries them into a bundle);
    UnsupportedModel with the converter's one-line reason for what it cannot convert."""
    from edgeprof.runtime.litert.runner import io_layout
    from edgeprof.spec import content_hash, file_sha256

    onnx_path = check_file(onnx_path, "ONNX file")
    version = converter_version()
    if not version:
        raise UnsupportedModel("litert: converting needs litert-torch (pip install 'edgeprof[litert-convert]' on "
                               "the build side)")
    source = _source_of(onnx_path, source)
    if source is None:
        raise UnsupportedModel("litert: only blocks edgeprof built convert (litert-torch rebuilds them in torch); "
                               "an ONNX file needs onnx2tf, which pins old numpy/onnx/onnxruntime: give a .tflite")
    key = content_hash({"onnx": file_sha256(onnx_path), "converter": CONVERTER, "version": version,
                        "layout": LAYOUT, "spec": source.spec, "seed": source.seed})
    out_dir = Path(out_dir)
    target = out_dir / f"{onnx_path.stem}.tflite"
    if target.exists() and io_layout(str(target)).get("key") == key:
        return Conversion(target, CONVERTER, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, shapes = _build(source)
    tmp = out_dir / f".{target.name}.{os.getpid()}.tmp"
    try:
        _convert(model, shapes, tmp)
        input_names = _onnx_input_names(onnx_path)
        _embed_layout(tmp, {
            "key": key, "onnx": onnx_path.name, "converter": CONVERTER, "converter_version": version,
            "spec": source.spec, "seed": source.seed,
            "inputs": [{"name": name, "perm": _perm_to_last(len(shape))}
                       for name, (_, shape) in zip(input_names, shapes["inputs"], strict=True)],
            "outputs": [{"perm": _perm_to_last(rank)} for rank in shapes["output_ranks"]],
        })
        err, ref = _parity(onnx_path, tmp, source.seed)
        if err > PARITY_TOL * max(1.0, ref):
            raise UnsupportedModel(f"litert: the converted model differs from the ONNX model by {err:.3g} "
                                   f"(tolerance {PARITY_TOL * max(1.0, ref):.3g})")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return Conversion(target, CONVERTER, version)


def _onnx_input_names(onnx_path: Path) -> list[str]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def _embed_layout(path: Path, layout: dict) -> None:
    """Add edgeprof's I/O description to the model's metadata (a named buffer LiteRT ignores when running)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from edgeprof.runtime.litert.runner import METADATA_NAME

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(layout, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())),
                      entry]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def _build(source: ModelSource):
    """The torch module of ``source`` (same seed => same weights as the ONNX file) and its I/O shapes."""
    import torch

    from edgeprof.blocks.yolo import build_block
    from edgeprof.spec import BlockSpec

    spec = BlockSpec(**source.spec)
    model = build_block(spec, seed=source.seed).eval()
    with torch.no_grad():
        out = model(torch.zeros(spec.input_shape))
    outs = out if isinstance(out, list | tuple) else [out]
    return model, {"inputs": [("x", list(spec.input_shape))], "output_ranks": [o.dim() for o in outs]}


def _channels_last(model):
    import torch

    class ChannelsLastIO(torch.nn.Module):
        """NHWC in, NHWC out around an NCHW module (LiteRT's layout at the model's boundary)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x.permute(0, 3, 1, 2) if x.dim() == 4 else x)
            if isinstance(out, list | tuple):
                return tuple(o.permute(0, 2, 3, 1) if o.dim() == 4 else o for o in out)
            return out.permute(0, 2, 3, 1) if out.dim() == 4 else out

    return ChannelsLastIO(model).eval()


def _convert(model, shapes: dict, path: Path) -> None:
    import torch

    example = tuple(torch.zeros([s[0], *s[2:], s[1]] if len(s) == 4 else s) for _, s in shapes["inputs"])
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), _quiet_fds():
            import litert_torch

            litert_torch.convert(_channels_last(model), example).export(str(path))
    except UnsupportedModel:
        raise
    except Exception as exc:  # the converter raises many types; its first line is the reason
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UnsupportedModel(f"litert-torch cannot convert it: {first[:300]}") from None


@contextlib.contextmanager
def _quiet_fds():
    """Silence what the converter's native code prints on fds 1 and 2 (progress, MLIR logs)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        try:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _parity(onnx_path: Path, tflite_path: Path, seed: int) -> tuple[float, float]:
    """Max abs difference between LiteRT and onnxruntime on the ONNX file on a seeded input, and max|ref|."""
    import onnxruntime as ort

    from edgeprof.runtime.litert.runner import LiteRTRunner
    from edgeprof.runtime.litert.runtime import LiteRTSettings

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
    ref = session.run(None, feeds)
    try:
        got = LiteRTRunner(str(tflite_path), LiteRTSettings(runtime="litert")).infer(feeds)
    except Exception as exc:
        raise RuntimeFailure(f"LiteRT cannot run the converted model: {str(exc).splitlines()[0][:300]}") from None
    if len(got) != len(ref):
        raise UnsupportedModel(f"litert: the converted model has {len(got)} outputs, the ONNX model {len(ref)}")
    err = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got, ref, strict=True))
    return err, max(float(np.max(np.abs(r))) for r in ref)
