"""The one worker pool both measuring engines use (the sweep's ``measure`` and the gate's ``Interleaver``).

It starts one runner per model (a fresh ``python -m edgeprof.runtime.worker`` process each; with ``shared=True``
all of them in one fresh process; with ``isolate=False`` runners in this process), waits until every worker is up
before any model is loaded and timed, sets each model up untimed (load, first run, warm-up, calibration), and
closes every runner at the end, killing those that do not close and all of them on Ctrl-C or an error. What each
engine then times (rounds of bursts; paired blocks) is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from edgeprof.errors import EdgeprofError, InputError
from edgeprof.measure.host import usable_cores
from edgeprof.runtime.base import RuntimeSettings
from edgeprof.runtime.registry import get_runtime

SPIN_S = 0.05  # a shared process polls this long for its next request before it sleeps (edgeprof.runtime.worker)


class SessionEnded(EdgeprofError):
    """A model's session ended under it (its shared worker died in another model's burst): no samples, no fault."""


@dataclass(frozen=True)
class PoolOptions:
    """What both engines' options share: the untimed warm-up, the shortest timed sample (faster models are
    timed in loops of runs), and the time budget. ``MeasureOptions`` and ``GateOptions`` add what differs."""

    warmup_s: float = 0.2
    min_sample_ms: float = 1.0
    max_time: float = 3.0

    def __post_init__(self) -> None:
        if not (self.max_time > 0):
            raise InputError(f"--max-time must be positive seconds, got {self.max_time}")
        if not (self.warmup_s >= 0 and self.min_sample_ms > 0):
            raise InputError(f"warm-up must be >= 0 s and the shortest sample > 0 ms, got {self.warmup_s} s and "
                             f"{self.min_sample_ms} ms")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Setup:
    """What setting one model up gave: load time and memory, first-run time, runs per sample, and what one sample
    costs in ms (with a cold cache, its untimed eviction too: bursts and budgets follow what is spent)."""

    session_ms: float
    peak_rss_session_mb: float | None
    first_run_ms: float
    inner_loops: int
    sample_ms: float


class WorkerPool:
    """Runners of one runtime, keyed by the caller's keys. Use as a context manager: every runner is closed
    (or killed) on the way out, whatever happened."""

    def __init__(self, settings: RuntimeSettings, shapes: dict | None = None, seed: int = 0, isolate: bool = True,
                 shared: bool = False):
        self.settings = settings
        self.runtime = get_runtime(settings.runtime)
        self.shapes = shapes
        self.seed = seed
        self.isolate = isolate
        self.shared = shared and isolate  # every model in one worker process (its memory figures are not one model's)
        self._process = None  # that process, once started
        self.runners: dict[Hashable, object] = {}
        self.conversions: dict[Hashable, object] = {}  # key -> the runtime's Conversion of that model

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close_all()

    # -- start ------------------------------------------------------------------------------------------
    def start(self, paths: dict[Hashable, str], sources: dict | None = None) -> dict[Hashable, EdgeprofError]:
        """Start a runner per model (all processes first, so their interpreters start side by side), then wait
        until each is up. ``sources`` (key -> ModelSource) lets a torch-based converter rebuild the module. Returns
        the keys that failed to start, with why (``UnsupportedModel`` when the runtime or its converter cannot
        handle the model); the others are in ``runners``."""
        failed: dict[Hashable, EdgeprofError] = {}
        for key, path in paths.items():
            try:
                self.runners[key] = self._new_runner(str(path), key, (sources or {}).get(key))
            except EdgeprofError as exc:
                failed[key] = exc
        for key in list(self.runners):
            ready = getattr(self.runners[key], "ready", None)
            try:
                if ready is not None:
                    ready()
            except EdgeprofError as exc:
                failed[key] = exc
                self.drop(key)
        return failed

    def _new_runner(self, path: str, key: Hashable = None, source=None):
        artifact = path
        if not path.endswith(self.runtime.artifact_suffix):  # an ONNX file for a runtime with its own format
            conversion = self.runtime.convert(path, _artifact_dir(path), source=source)
            self.conversions[key] = conversion
            artifact = str(conversion.path)
        if self.shared:
            from edgeprof.runtime.worker import WorkerProcess

            if self._process is None:
                # it polls between requests only where this process has a core of its own to send them from
                self._process = WorkerProcess(spin_s=SPIN_S if usable_cores() >= 2 else 0.0)
            return self._process.runner(artifact, self.settings, self.shapes, self.seed)
        if self.isolate:
            from edgeprof.runtime.worker import WorkerRunner

            return WorkerRunner(artifact, self.settings, self.shapes, self.seed)
        return self.runtime.runner(artifact, self.settings, self.shapes, self.seed)

    # -- set up -----------------------------------------------------------------------------------------
    def prepare(self, key: Hashable, warmup_s: float, min_sample_ms: float) -> Setup:
        """Untimed set-up of one model: load, first run, warm-up and, for models faster than ``min_sample_ms``
        a run, calibration of the runs per sample (slower models keep one run per sample)."""
        return self._settle(key, self._load(key), warmup_s, min_sample_ms)

    def _load(self, key: Hashable) -> dict:
        """Load and first run (both are figures): ``{"loaded", "first"}``."""
        runner = self.runners[key]
        return {"loaded": runner.load(), "first": runner.first_run()}

    def _settle(self, key: Hashable, started: dict, warmup_s: float, min_sample_ms: float) -> Setup:
        """Warm-up and calibration after ``_load``."""
        runner = self.runners[key]
        warm = runner.warmup(seconds=warmup_s)
        est_ms = float(warm["est_ms"])
        evict_ms = float(warm.get("evict_ms") or 0.0)  # a cold sample's untimed eviction: a burst holds fewer samples
        loops = 1
        if est_ms < min_sample_ms:
            cal = runner.calibrate(min_sample_ms=min_sample_ms)
            loops, est_ms = int(cal["inner_loops"]), float(cal["est_ms"])
        loaded, first = started["loaded"], started["first"]
        return Setup(session_ms=loaded["session_ms"], peak_rss_session_mb=loaded.get("peak_rss_session_mb"),
                     first_run_ms=first["first_run_ms"], inner_loops=loops, sample_ms=est_ms * loops + evict_ms)

    def prepare_all(
        self,
        warmup_s: float,
        min_sample_ms: float,
        parallel: int = 1,
        on_each: Callable[[Hashable], None] | None = None,
        serial_load: bool = False,
    ) -> tuple[dict[Hashable, Setup], dict[Hashable, EdgeprofError]]:
        """``prepare`` every running model, ``parallel`` at a time (nothing is timed yet, so set-up may use every
        core); with ``serial_load``, every model's load and first run (figures of their own) happen one at a time
        first, and only the warm-ups and calibrations run ``parallel`` at a time. A model that fails is dropped
        (closed) and returned with why."""
        keys = list(self.runners)
        done: dict[Hashable, Setup] = {}
        failed: dict[Hashable, EdgeprofError] = {}
        started: dict[Hashable, dict] = {}
        if serial_load:
            for key in keys:
                if on_each is not None:
                    on_each(key)
                try:
                    started[key] = self._load(key)
                except EdgeprofError as exc:
                    failed[key] = exc
                    self.drop(key)
            keys = [k for k in keys if k in started]

        def one(key):
            if key in started:
                return self._settle(key, started[key], warmup_s, min_sample_ms)
            if on_each is not None:
                on_each(key)
            return self.prepare(key, warmup_s, min_sample_ms)

        results = _map(one, keys, 1 if self.shared else parallel)
        for key, value in results.items():
            if isinstance(value, EdgeprofError):
                failed[key] = value
                self.drop(key)
            else:
                done[key] = value
        return done, failed

    def sample_round(self, bursts: list[tuple[Hashable, int]]) -> dict[Hashable, list[float] | EdgeprofError]:
        """One round: ``(key, count)`` bursts in this order, each ``count`` samples of that model; per key its
        samples or the EdgeprofError it raised. In a shared process the round is one request, timed back to back."""
        if self._process is not None:
            from edgeprof.runtime.worker import WorkerDied

            try:
                results = self._process.round([(self.runners[k].key, c) for k, c in bursts])
            except WorkerDied as exc:  # the model whose burst ran failed; the others' session is over, not them
                return {k: exc if self.runners[k].key == exc.key or exc.key is None else SessionEnded(str(exc))
                        for k, _ in bursts}
            return {k: r for (k, _), r in zip(bursts, results, strict=True)}
        return sample_each({k: self.runners[k].sample for k, _ in bursts}, bursts)

    def pids(self) -> dict[Hashable, int | None]:
        """The process each running model runs in: its worker's pid, or this process's without isolation (None
        for a runner that says neither); edgeprof.measure.devstate reads their context switches."""
        import os

        return {key: getattr(getattr(runner, "proc", None), "pid", None) or (None if self.isolate else os.getpid())
                for key, runner in self.runners.items()}

    # -- close ------------------------------------------------------------------------------------------
    def drop(self, key: Hashable) -> None:
        """Close (or kill) one runner and forget it."""
        runner = self.runners.pop(key, None)
        if runner is not None:
            _close(runner)

    def close_all(self) -> None:
        """Close every runner and wait until their worker processes have ended: all are asked at once, so they end
        side by side. Nothing may still be tearing down when the next session starts: with the last session's
        processes ending in the background, a new session's ratios moved by up to 7% (hardswish at w32: 1.15-1.28
        over three sweeps, against 1.24-1.28 when each ended first)."""
        if self._process is not None:  # the process ends with all its models
            self.runners.clear()
        ending = []
        for key in list(self.runners):
            runner = self.runners.pop(key)
            try:
                ending.append(runner.close(wait=False) if self.isolate else runner.close())
            except Exception:
                _close(runner)
        if self._process is not None:
            try:
                ending.append(self._process.close(wait=False))
            except Exception:
                self._process.kill()
            self._process = None
        for thread in ending:
            if thread is not None:
                thread.join(10.0)


def sample_each(samplers: dict, bursts: list[tuple[Hashable, int]]) -> dict:
    """A round from one sampler per model (a Runner's ``sample``, or any ``f(count=...)``), called in the bursts'
    order: per key its samples or the EdgeprofError it raised."""
    out: dict = {}
    for key, count in bursts:
        try:
            out[key] = samplers[key](count=count)
        except EdgeprofError as exc:
            out[key] = exc
    return out


def _map(fn, keys: list, parallel: int) -> dict:
    """``fn(key)`` for every key, ``parallel`` at a time: each result, or the EdgeprofError it raised."""
    results: dict = {}
    if parallel <= 1 or len(keys) <= 1:
        for key in keys:
            try:
                results[key] = fn(key)
            except EdgeprofError as exc:
                results[key] = exc
        return results
    pool = ThreadPoolExecutor(max_workers=min(parallel, len(keys)))
    try:
        futures = {k: pool.submit(fn, k) for k in keys}
        for k, f in futures.items():
            try:
                results[k] = f.result()
            except EdgeprofError as exc:
                results[k] = exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def _close(runner) -> None:
    try:
        runner.close()
    except Exception:  # a runner that will not close is killed
        kill = getattr(runner, "kill", None)
        if kill is not None:
            try:
                kill()
            except Exception:
                pass


def _artifact_dir(path: str):
    from pathlib import Path

    return Path(path).parent
