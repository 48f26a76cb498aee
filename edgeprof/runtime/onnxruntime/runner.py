"""One model's session, fed and timed: load, first run, warm-up, calibrated samples, memory, executed ops.

A ``ModelRunner`` works in the current process; ``edgeprof.runtime.worker`` hosts one in a fresh
worker process and ``WorkerRunner`` drives it with the same methods, so one model's allocator and
thread-pool state cannot leak into another's figures and a crash costs one row, not the sweep.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeprof.errors import RuntimeFailure
from edgeprof.measure import memory
from edgeprof.runtime.onnxruntime.ops import ort_memory_view, parse_trace
from edgeprof.runtime.onnxruntime.session import SessionSettings, create_session, make_inputs, run_once


class ModelRunner:
    """Times ``session.run_with_iobinding`` on pre-bound inputs and outputs (the low-overhead path)."""

    def __init__(self, path: str, settings: dict | SessionSettings, shapes: dict | None = None, seed: int = 0):
        self.path = str(path)
        self.settings = settings if isinstance(settings, SessionSettings) else SessionSettings(**settings)
        self.shapes = {k: tuple(v) for k, v in (shapes or {}).items()}
        self.seed = seed
        self.session = None
        self.binding = None
        self.feeds: dict[str, np.ndarray] = {}
        self.inner_loops = 1
        self._base_rss = None

    # -- set-up -------------------------------------------------------------------------------
    def load(self) -> dict:
        """Create the session; return its creation time and the RSS peak it caused (MiB over baseline)."""
        memory.reset_peak()
        self._base_rss = memory.rss_mib()
        t0 = time.perf_counter()
        self.session = create_session(self.path, self.settings)
        session_ms = (time.perf_counter() - t0) * 1e3
        peak = memory.peak_rss_mib()
        self.feeds = make_inputs(self.session, self.shapes, self.seed)
        return {
            "session_ms": session_ms,
            "peak_rss_session_mb": _delta(peak, self._base_rss),
            "inputs": {k: list(v.shape) for k, v in self.feeds.items()},
        }

    def first_run(self) -> dict:
        """The first inference (timed alone: it includes onnxruntime's lazy set-up), then bind outputs."""
        import onnxruntime as ort

        memory.reset_peak()
        t0 = time.perf_counter()
        outputs = run_once(self.session, self.feeds)
        first_ms = (time.perf_counter() - t0) * 1e3
        binding = self.session.io_binding()
        for name, value in self.feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        self._outputs = []
        for meta, value in zip(self.session.get_outputs(), outputs, strict=True):
            ov = ort.OrtValue.ortvalue_from_numpy(np.empty_like(value))
            self._outputs.append(ov)
            binding.bind_ortvalue_output(meta.name, ov)
        self.binding = binding
        return {"first_run_ms": first_ms, "outputs": [list(np.shape(o)) for o in outputs]}

    def _run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def warmup(self, seconds: float = 0.2, min_runs: int = 3) -> dict:
        """Run until ``seconds`` have passed and at least ``min_runs`` runs; return the per-run estimate."""
        runs = 0
        t0 = time.perf_counter()
        try:
            while runs < min_runs or time.perf_counter() - t0 < seconds:
                self._run()
                runs += 1
        except Exception as exc:
            raise RuntimeFailure(f"onnxruntime failed during warm-up: {str(exc).splitlines()[0][:300]}") from None
        return {"runs": runs, "est_ms": (time.perf_counter() - t0) * 1e3 / runs}

    def calibrate(self, min_sample_ms: float = 1.0) -> dict:
        """Choose how many runs one sample times, so a sample lasts at least ``min_sample_ms``.

        Blocks of a millisecond or more are timed one run per sample (so p90/p99 are per-run latencies);
        faster models are timed in loops so the timer and loop overhead stay small against the sample.
        """
        t0 = time.perf_counter_ns()
        for _ in range(5):
            self._run()
        est_ms = (time.perf_counter_ns() - t0) / 5e6
        self.inner_loops = max(1, math.ceil(min_sample_ms / max(est_ms, 1e-6)))
        return {"inner_loops": self.inner_loops, "est_ms": est_ms}

    # -- measurement ------------------------------------------------------------------------------
    def sample(self, count: int = 1) -> list[float]:
        """``count`` samples, each the mean per-run time in ms of ``inner_loops`` back-to-back runs."""
        run = self.session.run_with_iobinding
        binding = self.binding
        loops = range(self.inner_loops)
        clock = time.perf_counter_ns
        out = []
        for _ in range(count):
            t0 = clock()
            for _ in loops:
                run(binding)
            out.append((clock() - t0) / 1e6 / self.inner_loops)
        return out

    def peak_run_mb(self) -> float | None:
        """Peak RSS over the pre-session baseline since the first run began (MiB)."""
        return _delta(memory.peak_rss_mib(), self._base_rss)

    def executed_ops(self, runs: int = 3) -> dict:
        """The nodes onnxruntime ran after optimisation with their mean kernel time, and its memory view.

        Uses a second session with profiling on, so the timed session is never profiled.
        """
        with tempfile.TemporaryDirectory(prefix="edgeprof-trace-") as tmp:
            sess = create_session(self.path, self.settings, profile_prefix=os.path.join(tmp, "trace"))
            for _ in range(runs + 1):
                run_once(sess, self.feeds)
            trace = json.loads(Path(sess.end_profiling()).read_text())
        # the first run carries onnxruntime's lazy set-up: leave it out of the per-node means
        nodes = parse_trace(trace, skip_runs=1)
        return {
            "nodes": [{"name": n.name, "op_type": n.op_type, "calls": n.calls, "mean_us": n.mean_us,
                       "output_bytes": n.output_bytes, "mem_in_use_delta": n.mem_in_use_delta} for n in nodes],
            **ort_memory_view(trace),
        }

    def close(self) -> None:
        self.binding = None
        self.session = None


def _delta(peak: float | None, base: float | None) -> float | None:
    if peak is None or base is None:
        return None
    return max(0.0, peak - base)
