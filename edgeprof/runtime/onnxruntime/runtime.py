"""onnxruntime as an edgeprof runtime: reads ONNX as is, io-binding runner, profiler per-op times and fusion."""

from __future__ import annotations

from pathlib import Path

from edgeprof.runtime.base import Runner, Runtime
from edgeprof.runtime.onnxruntime.session import SessionSettings


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    extra = ""  # the on-device install itself: pip install edgeprof
    artifact_suffix = ".onnx"
    settings_class = SessionSettings
    per_op_times = True  # its profiler's per-node kernel times
    per_op_source = "onnxruntime profiler"
    fusion_info = True  # the profiler names the nodes that ran after graph optimisation

    @classmethod
    def version(cls) -> str:
        try:
            from importlib.metadata import version

            return version("onnxruntime")
        except Exception:
            return ""

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    def validate(self, path: str | Path, settings: SessionSettings, shapes: dict | None = None) -> None:
        """Create a session here, in the parent, and make the inputs: a missing or corrupt file, an unavailable
        provider or an unfed dynamic dimension fails before any measuring."""
        from edgeprof.runtime.onnxruntime.session import create_session, make_inputs

        make_inputs(create_session(path, settings), shapes)

    def runner(self, path: str, settings: SessionSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.onnxruntime.runner import ModelRunner

        return ModelRunner(path, settings, shapes, seed)
