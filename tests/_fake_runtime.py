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
