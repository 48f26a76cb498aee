"""MNN as an edgeprof runtime: ONNX -> .mnn by MNN's converter (in-process, never its phoning-home wrapper), a
session at ``numThread`` threads timed with ``runSession`` on a pre-copied input, per-op times from MNN's
callbacks, and what the activation ran as read from the converted graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.runtime.base import Conversion, ModelSource, Runner, Runtime, RuntimeSettings, check_file

PRECISIONS = ("normal", "high", "low")


@dataclass(frozen=True)
class MnnSettings(RuntimeSettings):
    """MNN's session settings: ``threads`` is the session config's ``numThread``; ``precision`` its ``precision``
    (normal is MNN's default; low allows fp16/bf16 where the CPU has it); ``winograd`` whether MNN may compute
    3x3 convolutions by Winograd (its default; off sets the hint WINOGRAD_MEMORY_LEVEL to 0)."""

    precision: str = "normal"
    winograd: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown MNN precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")

    def label(self) -> str:
        return f"{super().label()}, precision {self.precision}" + ("" if self.winograd else ", no Winograd")


class MnnRuntime(Runtime):
    name = "mnn"
    extra = "mnn"  # pip install 'edgeprof[mnn]': the MNN wheel (runtime and converter in one, needs only numpy)
    artifact_suffix = ".mnn"
    settings_class = MnnSettings
    per_op_times = True  # runSessionWithCallBackInfo: a clock around every op
    fusion_info = True  # the converted graph: a ReLU/ReLU6 merged into the Convolution is relu=true/relu6=true

    @staticmethod
    def parity_tolerance(settings: MnnSettings) -> float:
        """Max abs error against torch's output allowed, as a fraction of max(1, max|output|): 1e-2 with MNN's
        default Winograd 3x3 convolution (measured up to 1.3e-3 on conv blocks, growing with image and channels),
        1e-4 without it (measured within 2e-6). See docs/runtimes/mnn.md."""
        return 1e-2 if settings.winograd else 1e-4

    @classmethod
    def version(cls) -> str:
        from edgeprof.runtime.mnn.convert import converter_version

        return converter_version()

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("MNN") is not None and importlib.util.find_spec("_tools") is not None

    def artifact_files(self, path: str | Path) -> list[Path]:
        """The .mnn and, where the conversion wrote it, ``<artifact>.origin.json`` (which ONNX node each MNN op
        came from: without it, ops MNN made itself stay unattributed)."""
        from edgeprof.runtime.mnn.convert import origin_path

        origin = origin_path(path)
        return [Path(path), *([origin] if origin.exists() else [])]

    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        """ONNX -> .mnn by MNN's converter called in-process (``_tools.mnnconvert``), cached by content in
        ``out_dir``; an op MNN lacks (an opset-20 ``Mish``) is ``UnsupportedModel`` with the converter's reason."""
        from edgeprof.runtime.mnn.convert import convert_onnx

        return convert_onnx(onnx_path, out_dir)

    def validate(self, path: str | Path, settings: MnnSettings, shapes: dict | None = None) -> None:
        """Load the model and make its inputs here, in the parent: a missing or corrupt file or an unfed input
        fails before any measuring."""
        check_file(path, "MNN model" if str(path).endswith(".mnn") else "model file")
        if not str(path).endswith(self.artifact_suffix):
            return  # an ONNX file: the pool converts it first
        runner = self.runner(str(path), settings, shapes)
        try:
            runner.load()
        finally:
            runner.close()

    def runner(self, path: str, settings: MnnSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.mnn.runner import MnnRunner

        if isinstance(settings, dict):
            settings = self.settings_from_dict(settings)
        return MnnRunner(path, settings, shapes, seed)
