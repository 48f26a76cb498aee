"""OpenVINO as an edgeprof runtime: ONNX -> IR by ``openvino.convert_model``, the CPU plugin at one thread, fusion
from its runtime model, per-op times from its performance counters."""

from __future__ import annotations

from pathlib import Path

from edgeprof.runtime.base import Conversion, ModelSource, Runner, Runtime
from edgeprof.runtime.openvino.settings import OpenVinoSettings


class OpenVinoRuntime(Runtime):
    name = "openvino"
    extra = "openvino"  # the runtime and its ONNX converter in one wheel: no torch, no onnx
    artifact_suffix = ".xml"  # OpenVINO IR: the .xml graph with its .bin weights beside it
    settings_class = OpenVinoSettings
    per_op_times = True  # PERF_COUNT: request.get_profiling_info()
    fusion_info = True  # the runtime model's nodes after the CPU plugin's fusions

    @classmethod
    def version(cls) -> str:
        from edgeprof.runtime.openvino.convert import openvino_version

        return openvino_version()

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("openvino") is not None

    def artifact_files(self, path: str | Path) -> list[Path]:
        """The IR: the .xml graph and its .bin weights."""
        return [Path(path), Path(path).with_suffix(".bin")]

    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        """OpenVINO's standard path from ONNX (its ONNX frontend; ``source`` is not needed), cached by content."""
        from edgeprof.runtime.openvino.convert import convert_onnx

        return convert_onnx(onnx_path, out_dir)

    def validate(self, path: str | Path, settings: OpenVinoSettings, shapes: dict | None = None) -> None:
        """Read the model (IR or ONNX) here, in the parent, and resolve its input shapes: a missing or corrupt file
        or an unfed dynamic dimension fails before any measuring."""
        from edgeprof.runtime.openvino.convert import import_openvino
        from edgeprof.runtime.openvino.runner import input_shapes, read_model

        ov = import_openvino()

        input_shapes(read_model(ov.Core(), str(path)), shapes)

    def runner(self, path: str, settings: OpenVinoSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.openvino.runner import OpenVinoRunner

        return OpenVinoRunner(path, settings, shapes, seed)
