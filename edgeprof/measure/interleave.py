"""Interleaved, adaptive measurement of several models: the heart of every edgeprof figure.

The models of one comparison are measured round by round in a freshly shuffled order each round
(A C B, B A C, ...), so drift of a shared machine touches them all alike. Each round takes a short
burst of samples from every model; rounds go on until every model's median is known to within
``rel_ci`` (95% CI half-width as a fraction of the median) and ``min_samples``/``min_rounds`` are met,
or the time budget (``max_time`` seconds per model) is spent. Ratios between models are taken from
the medians of the same round (paired), so a slow round slows both sides of a ratio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeprof.errors import EdgeprofError, InputError
from edgeprof.measure.devstate import DeviceState, device_states, snapshot
from edgeprof.measure.pool import PoolOptions, WorkerPool
from edgeprof.measure.stats import paired_ratio, summarize
from edgeprof.runtime.base import RuntimeSettings


@dataclass(frozen=True)
class MeasureOptions(PoolOptions):
    """The sweep's measuring: rounds of ~``burst_ms`` bursts until every median's CI is within ``rel_ci``."""

    rel_ci: float = 0.02
    min_samples: int = 20
    min_rounds: int = 10
    burst_ms: float = 20.0
    isolate: bool = True
    seed: int = 0
    per_op_runs: int = 20  # per-op profile: at least this many runs ...
    per_op_s: float = 0.5  # ... and this many seconds

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.rel_ci < 1):
            raise InputError(f"--rel-ci must be between 0 and 1 (e.g. 0.02 for ±2%), got {self.rel_ci}")
        if self.min_samples < 6:
            raise InputError(f"--min-samples must be at least 6 (a 95% CI of a median needs 6), got {self.min_samples}")


@dataclass
class Measurement:
    """Everything measured for one model; ``stats`` is computed from ``samples_ms``."""

    path: str
    status: str = "ok"  # ok | failed | interrupted
    error: str = ""
    session_ms: float = math.nan
    first_run_ms: float = math.nan
    inner_loops: int = 0
    peak_rss_session_mb: float | None = None
    peak_rss_run_mb: float | None = None
    device_state: DeviceState = field(default_factory=DeviceState)  # CPU MHz, load, context switches, contended
    samples_ms: list[float] = field(default_factory=list)
    sample_round: list[int] = field(default_factory=list)
    nodes: list[dict] = field(default_factory=list)
    per_op_runs: int = 0
    runtime: str = ""
    runtime_version: str = ""
    runtime_peak_in_use_mb: float | None = None
    runtime_arena_held_mb: float | None = None
    converter: str = ""
    converter_version: str = ""
    runtime_parity_max_abs_err: float | None = None
    threads_effective: int | None = None
    per_op_source: str = ""
    stats: dict = field(default_factory=dict)

    def round_medians(self) -> dict[int, float]:
        by_round: dict[int, list[float]] = {}
        for r, x in zip(self.sample_round, self.samples_ms, strict=True):
            by_round.setdefault(r, []).append(x)
        return {r: float(np.median(v)) for r, v in by_round.items()}

    def as_dict(self) -> dict:
        return asdict(self)


class MeasurementInterrupted(EdgeprofError):
    """Ctrl-C during measurement; ``partial`` holds what was measured up to then."""

    exit_code = 130

    def __init__(self, partial: list[Measurement]):
        super().__init__("interrupted")
        self.partial = partial


def paired_ratio_to(current: Measurement, baseline: Measurement) -> tuple[float, float, float]:
    """Ratio of current to baseline from the medians of the rounds both took part in, with its 95% CI."""
    a, b = current.round_medians(), baseline.round_medians()
    common = sorted(set(a) & set(b))
    if not common:
        return (math.nan, math.nan, math.nan)
    return paired_ratio([a[r] for r in common], [b[r] for r in common])


ProgressFn = Callable[[str, float], None]


def measure(
    paths: list[str],
    settings: RuntimeSettings,
    options: MeasureOptions = MeasureOptions(),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
    sources: dict | None = None,
    refs: dict | None = None,
) -> list[Measurement]:
    """Measure ``paths`` interleaved with the runtime of ``settings``; one Measurement each, in the order given.

    An ONNX file is converted to the runtime's own format first (``Runtime.convert``; ``sources`` maps a path to
    its ``ModelSource`` for torch-based converters). A model the runtime or its converter cannot handle becomes an
    ``unsupported`` Measurement with the converter's reason; one that fails to load or run, or whose outputs miss
    torch's reference (``refs[path]``, else ``<model>.ref.npz`` beside the file, when there is one) by more than
    the parity tolerance, a ``failed`` one; the others go on. Ctrl-C raises MeasurementInterrupted carrying what
    was measured so far.
    """
    from edgeprof.runtime.base import ref_path

    progress = on_progress or (lambda message, fraction: None)
    results = [Measurement(path=str(p)) for p in paths]
    try:
        with WorkerPool(settings, shapes, options.seed, options.isolate) as pool:
            version = pool.runtime.version()
            for m in results:
                m.runtime, m.runtime_version = settings.runtime, version
            keyed_sources = {i: (sources or {}).get(m.path) for i, m in enumerate(results)}
            for i, exc in pool.start({i: m.path for i, m in enumerate(results)}, keyed_sources).items():
                _fail(results[i], exc)
            for i, conversion in pool.conversions.items():
                results[i].converter, results[i].converter_version = conversion.converter, conversion.converter_version
            setups, failed = pool.prepare_all(
                options.warmup_s, options.min_sample_ms,
                on_each=lambda i: progress(f"loading {_short(results[i].path)}", 0.0))
            for i, exc in failed.items():
                _fail(results[i], exc)
            for i, runner in list(pool.runners.items()):  # untimed: threads read back, parity against torch
                m = results[i]
                try:
                    m.threads_effective = runner.threads_effective()
                    ref = Path((refs or {}).get(m.path) or ref_path(m.path))
                    check = runner.parity(ref=str(ref)) if ref.exists() else None
                except EdgeprofError as exc:
                    _fail(m, exc)
                    pool.drop(i)
                    continue
                if check is not None:
                    m.runtime_parity_max_abs_err = check["max_abs_err"]
                    if not check["ok"]:
                        err = "different output shapes" if check["max_abs_err"] is None else \
                            f"max abs error {check['max_abs_err']:.3g}"
                        _fail(m, EdgeprofError(f"parity against torch failed: {err} over the tolerance "
                                               f"{check['tol']:.3g} (1e-3 of torch's output range)"))
                        pool.drop(i)
            for i, setup in setups.items():
                m = results[i]
                m.session_ms, m.first_run_ms, m.inner_loops = setup.session_ms, setup.first_run_ms, setup.inner_loops
                if options.isolate:
                    m.peak_rss_session_mb = setup.peak_rss_session_mb
            device_before = snapshot(pool.pids())
            _rounds(results, pool, options, progress)
            timed_s = {i: sum(results[i].samples_ms) * results[i].inner_loops / 1000 for i in device_before.processes}
            for i, state in device_states(device_before, snapshot(pool.pids()), timed_s, settings.threads).items():
                results[i].device_state = state
            for i, runner in list(pool.runners.items()):
                m = results[i]
                try:
                    if options.isolate:
                        m.peak_rss_run_mb = runner.peak_run_mb()
                    progress(f"reading executed ops of {_short(m.path)}", 1.0)
                    ops = runner.executed_ops(min_runs=options.per_op_runs, min_seconds=options.per_op_s)
                    m.nodes = ops["nodes"]
                    m.per_op_runs = int(ops.get("runs") or 0)
                    m.runtime_peak_in_use_mb = ops.get("peak_in_use_mb")
                    m.runtime_arena_held_mb = ops.get("arena_held_mb")
                    m.per_op_source = pool.runtime.per_op_label(m.nodes)
                except EdgeprofError as exc:
                    _fail(m, exc)
                    pool.drop(i)
    except KeyboardInterrupt:
        for m in results:
            if m.status == "ok":
                m.status = "interrupted"
            m.stats = summarize(m.samples_ms)
        raise MeasurementInterrupted(results) from None
    for m in results:
        m.stats = summarize(m.samples_ms)
    return results


def _rounds(results: list[Measurement], pool: WorkerPool, options: MeasureOptions, progress: ProgressFn) -> None:
    runners = pool.runners
    rng = np.random.default_rng(options.seed)
    budget = options.max_time * max(1, len(runners))
    t_start = time.perf_counter()
    round_no = 0
    while runners:
        order = list(runners)
        rng.shuffle(order)
        for i in order:
            m = results[i]
            per_sample_ms = np.median(m.samples_ms[-5:]) * m.inner_loops if m.samples_ms else None
            count = 1 if per_sample_ms is None else max(1, min(1000, int(options.burst_ms / per_sample_ms)))
            try:
                samples = runners[i].sample(count=count)
            except EdgeprofError as exc:
                _fail(m, exc)
                pool.drop(i)
                continue
            m.samples_ms.extend(samples)
            m.sample_round.extend([round_no] * len(samples))
        round_no += 1
        elapsed = time.perf_counter() - t_start
        worst = _worst_rel_ci(results, runners, options, round_no)
        fraction = min(1.0, max(elapsed / budget, options.rel_ci / worst if worst > 0 else 1.0))
        progress(f"round {round_no}, widest CI ±{worst * 100:.1f}%", fraction)
        if worst <= options.rel_ci or elapsed >= budget:
            break


def _worst_rel_ci(results, runners, options: MeasureOptions, round_no: int) -> float:
    if round_no < options.min_rounds:
        return math.inf
    worst = 0.0
    for i in runners:
        samples = results[i].samples_ms
        if len(samples) < options.min_samples:
            return math.inf
        worst = max(worst, summarize(samples)["rel_ci"])
    return worst


def _fail(m: Measurement, exc: Exception) -> None:
    from edgeprof.runtime.base import UnsupportedModel

    m.status = "unsupported" if isinstance(exc, UnsupportedModel) else "failed"
    m.error = str(exc)


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]
