"""onnxruntime's Runner: one model's session, fed and timed on pre-bound inputs and outputs (io-binding).

Built inside a worker process (``edgeprof.runtime.worker``) or, with ``--no-isolate``, in the current one.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeprof.runtime.base import Runner
from edgeprof.runtime.onnxruntime.ops import ort_memory_view, parse_trace
from edgeprof.runtime.onnxruntime.session import SessionSettings, create_session, make_inputs, run_once


class ModelRunner(Runner):
    """Times ``session.run_with_iobinding`` on pre-bound inputs and outputs (the low-overhead path)."""

    def __init__(self, path: str, settings: dict | SessionSettings, shapes: dict | None = None, seed: int = 0):
        settings = settings if isinstance(settings, SessionSettings) else SessionSettings(**settings)
        super().__init__(path, settings, shapes, seed)
        self.session = None
        self.binding = None
        self.feeds: dict[str, np.ndarray] = {}

    # -- set-up -------------------------------------------------------------------------------
    def load(self) -> dict:
        """Create the session; return its creation time and the RSS peak it caused (MiB over baseline)."""
        self.session, session_ms, peak = self._timed_load(lambda: create_session(self.path, self.settings))
        self.feeds = make_inputs(self.session, self.shapes, self.seed)
        return self._loaded(session_ms, peak)

    def first_run(self) -> dict:
        """The first inference (timed alone: it includes onnxruntime's lazy set-up), then bind outputs."""
        import onnxruntime as ort

        from edgeprof.measure import memory

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

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def infer(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(run_once(self.session, feeds))

    def threads_effective(self) -> int | None:
        """The intra-op thread count the session was created with, read back from its options (0 = onnxruntime
        chooses, reported as None)."""
        try:
            return int(self.session.get_session_options().intra_op_num_threads) or None
        except Exception:
            return None

    def run_fn(self):
        """``run_with_iobinding`` bound to the binding: the timed loop calls onnxruntime, not a Python method."""
        return functools.partial(self.session.run_with_iobinding, self.binding)

    # -- per-op figures ---------------------------------------------------------------------------
    def executed_ops(self, min_runs: int = 20, min_seconds: float = 0.5, max_runs: int = 1000) -> dict:
        """The nodes onnxruntime ran after optimisation with their mean kernel time over at least ``min_runs``
        runs and ``min_seconds`` (so the per-op shares are stable; at most ``max_runs``, which keeps the trace of
        a microsecond model small), and its memory view.

        Uses a second session with profiling on, so the timed session is never profiled.
        """
        with tempfile.TemporaryDirectory(prefix="edgeprof-trace-") as tmp:
            sess = create_session(self.path, self.settings, profile_prefix=os.path.join(tmp, "trace"))
            run_once(sess, self.feeds)  # the first run carries onnxruntime's lazy set-up: left out below
            runs = 0
            t0 = time.perf_counter()
            while runs < min_runs or (time.perf_counter() - t0 < min_seconds and runs < max_runs):
                run_once(sess, self.feeds)
                runs += 1
            trace = json.loads(Path(sess.end_profiling()).read_text())
        nodes = parse_trace(trace, skip_runs=1)
        return {
            "nodes": [{"name": n.name, "op_type": n.op_type, "calls": n.calls, "mean_us": n.mean_us,
                       "output_bytes": n.output_bytes, "mem_in_use_delta": n.mem_in_use_delta} for n in nodes],
            "runs": runs,
            **ort_memory_view(trace),
        }

    def close(self) -> None:
        self.binding = None
        self.session = None
