"""A whole edgeprof runtime in one file, for the runtime-seam test: ``--runtime tests._fake_runtime:FakeRuntime``.

It "runs" any model file by timing a numpy function: ``np.tanh`` over a float32 buffer with as many elements
as the file has bytes times ``work``, so bigger models take longer. Its executed ops are the ONNX op types
whose names appear in the file's bytes (protobuf keeps them as plain text), each with an equal share of the
measured time; it has no memory arena, so its runtime memory figures are empty. Nothing but this file is
needed to add it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError
from edgeprof.runtime.base import Runner, Runtime, RuntimeSettings, check_file

_OP_TYPES = (b"Conv", b"Relu", b"Softplus", b"Tanh", b"Mul", b"Sigmoid", b"HardSigmoid", b"LeakyRelu", b"Add")


@dataclass(frozen=True)
class FakeSettings(RuntimeSettings):
    work: float = 4.0  # buffer elements per byte of the model file

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.work > 0:
            raise InputError(f"work must be positive, got {self.work}")


class FakeRunner(Runner):
    def load(self) -> dict:
        self._start_memory()
        t0 = time.perf_counter()
        data = Path(self.path).read_bytes()
        self.ops = [op.decode() for op in _OP_TYPES if op in data] or ["Tanh"]
        size = max(1024, int(len(data) * self.settings.work))
        self.x = np.random.default_rng(self.seed).standard_normal(size).astype(np.float32)
        self.y = np.empty_like(self.x)
        return {"session_ms": (time.perf_counter() - t0) * 1e3, "peak_rss_session_mb": self._peak_since_start(),
                "inputs": {"x": [size]}}

    def first_run(self) -> dict:
        t0 = time.perf_counter()
        self.run()
        return {"first_run_ms": (time.perf_counter() - t0) * 1e3, "outputs": [list(self.y.shape)]}

    def run(self) -> None:
        np.tanh(self.x, out=self.y)

    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5) -> dict:
        runs = 0
        t0 = time.perf_counter()
        while runs < min_runs or time.perf_counter() - t0 < min_seconds:
            self.run()
            runs += 1
        per_run_us = (time.perf_counter() - t0) * 1e6 / runs
        nodes = [{"name": f"fake_{op}_{i}", "op_type": op, "calls": runs, "mean_us": per_run_us / len(self.ops),
                  "output_bytes": self.y.nbytes, "mem_in_use_delta": None} for i, op in enumerate(self.ops)]
        return {"nodes": nodes, "runs": runs, "peak_in_use_mb": None, "arena_held_mb": None}


class FakeRuntime(Runtime):
    name = "fake"
    settings_class = FakeSettings
    per_op_times = True

    @classmethod
    def version(cls) -> str:
        return "0.0.1-fake"

    def validate(self, path, settings, shapes=None) -> None:
        check_file(path)

    def runner(self, path, settings, shapes=None, seed=0) -> Runner:
        return FakeRunner(path, settings, shapes, seed)


# -- a second fake runtime, with its own artifact format: for several runtimes in one sweep -----------------------
# ``--runtime tests._fake_runtime:ConvertingFakeRuntime``. Its converter copies the ONNX file into a two-file artifact
# (``<name>.fake2`` with the model's bytes, ``<name>.fake2w`` with the ModelSource it was given), cached by content,
# and refuses any model with a Softplus node (mish), as a real converter refuses an op it lacks. Its ``infer`` runs the
# artifact's ONNX bytes with onnxruntime (so parity against torch is real), plus ``perturb`` (to test a parity failure).


@dataclass(frozen=True)
class ConvertingFakeSettings(FakeSettings):
    perturb: float = 0.0  # added to every output of ``infer``


class ConvertingFakeRunner(FakeRunner):
    def infer(self, feeds):
        import onnxruntime as ort

        session = ort.InferenceSession(Path(self.path).read_bytes(), providers=["CPUExecutionProvider"])
        return [out + np.float32(self.settings.perturb) for out in session.run(None, feeds)]

    def threads_effective(self):
        return self.settings.threads


class ConvertingFakeRuntime(FakeRuntime):
    name = "fake2"
    extra = "fake2"
    artifact_suffix = ".fake2"
    settings_class = ConvertingFakeSettings
    fusion_info = True
    conversions = 0  # how many conversions were made in this process (not served from the cache)

    @classmethod
    def version(cls) -> str:
        return "2.0.0-fake"

    def convert(self, onnx_path, out_dir, source=None):
        import hashlib
        import json

        from edgeprof.runtime.base import Conversion, UnsupportedModel

        data = Path(onnx_path).read_bytes()
        if b"Softplus" in data:
            raise UnsupportedModel("fake-converter: op Softplus is not supported")
        key = hashlib.sha256(data + b"fake-converter 9.9").hexdigest()[:12]
        out = Path(out_dir) / f"{Path(onnx_path).stem}-{key}.fake2"
        if not out.exists():
            type(self).conversions += 1
            out.write_bytes(data)
            out.with_suffix(".fake2w").write_text(json.dumps({"spec": source.spec if source else None,
                                                              "seed": source.seed if source else None}))
        return Conversion(out, "fake-converter", "9.9")

    def artifact_files(self, path):
        return [Path(path), Path(path).with_suffix(".fake2w")]

    def runner(self, path, settings, shapes=None, seed=0):
        return ConvertingFakeRunner(path, settings, shapes, seed)


class MissingRuntime(FakeRuntime):
    """A runtime whose package is not installed here (for ``--runtimes all`` and the missing-runtime error)."""

    name = "nothere"
    extra = "nothere"

    @classmethod
    def available(cls) -> bool:
        return False


class CrashingRunner(FakeRunner):
    """Ends its whole process in its first timed burst when its file's name says ``crash`` (set-up runs fine)."""

    def sample(self, count: int = 1) -> list[float]:
        if "crash" in Path(self.path).name:
            import os

            os._exit(3)
        return super().sample(count)


class CrashingRuntime(FakeRuntime):
    """FakeRuntime whose ``crash`` models kill the worker that times them: ``tests._fake_runtime:CrashingRuntime``."""

    def runner(self, path, settings, shapes=None, seed=0) -> Runner:
        return CrashingRunner(path, settings, shapes, seed)
