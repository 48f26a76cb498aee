"""LiteRT (pip ``ai-edge-litert``) as an edgeprof runtime: ``.tflite`` made by litert-torch, the Interpreter runner.

On a device only ``ai-edge-litert`` (and numpy) is needed: extra ``litert``. Converting needs torch and
litert-torch (~1 GB with jax and jaxlib): extra ``litert-convert``, on the build side only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.runtime.base import Conversion, ModelSource, Runner, Runtime, RuntimeSettings, check_file

DELEGATES = ("xnnpack", "none")


@dataclass(frozen=True)
class LiteRTSettings(RuntimeSettings):
    """``threads`` goes to ``Interpreter(num_threads=...)`` (the interpreter and the XNNPACK delegate);
    ``delegate``: ``xnnpack`` (the interpreter's default CPU delegate) or ``none`` (the built-in kernels only)."""

    delegate: str = "xnnpack"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delegate not in DELEGATES:
            raise InputError(f"unknown LiteRT delegate {self.delegate!r}; valid: {', '.join(DELEGATES)}")

    def label(self) -> str:
        return f"{super().label()}, delegate {self.delegate}"


class LiteRTRuntime(Runtime):
    name = "litert"
    extra = "litert"  # the runtime alone; converting needs the build side's 'litert-convert' extra
    artifact_suffix = ".tflite"
    settings_class = LiteRTSettings
    per_op_times = False  # the Python API has no op profiler (verified in ai-edge-litert 2.3.0)
    fusion_info = True  # the interpreter's op list, the delegate partitions and fused_activation_function
    act_nodes_beyond_reference = True  # litert-torch decomposes ELU, PReLU, softplus... into LiteRT primitives

    @classmethod
    def version(cls) -> str:
        return _dist_version("ai-edge-litert")

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("ai_edge_litert") is not None

    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        from edgeprof.runtime.litert.convert import convert_to_tflite

        return convert_to_tflite(onnx_path, out_dir, source)

    def validate(self, path: str | Path, settings: LiteRTSettings, shapes: dict | None = None) -> None:
        """Load a ``.tflite`` here, in the parent: a missing or corrupt file fails before any measuring. An ONNX
        file (to be converted) is only checked to be a readable file; the converter judges the rest."""
        if not str(path).endswith(self.artifact_suffix):
            check_file(Path(path), "model file")
            return
        from edgeprof.runtime.litert.runner import open_interpreter

        open_interpreter(str(path), settings)

    def runner(self, path: str, settings: LiteRTSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.litert.runner import LiteRTRunner

        return LiteRTRunner(path, settings, shapes, seed)


def _dist_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return ""
