"""Interleaved, adaptive measurement of several models: the heart of every edgeprof figure.

The models of one comparison are measured round by round in a freshly shuffled order each round
(A C B, B A C, ...), so drift of a shared machine touches them all alike. Each round takes a short
burst of samples (about ``burst_ms``) from every model it times. Ratios between models are taken from the
medians of the same round (paired), so a slow round slows both sides of a ratio.

**What stops the rounds** is the question asked (``ci_target``). ``ratio`` (the default when the caller names
the ``pairs`` of models whose ratios it reports): every ratio's paired 95% CI is within ``rel_ci``; a model in
no ratio (a reference, an activation timed alone) is timed only in the first ``UNTARGETED_ROUNDS`` rounds of the
first session. ``absolute`` (and whenever there are no pairs): every model's median is known to within ``rel_ci``.

**Figures first.** Before any timing, each model alone in a fresh worker process of its own gives the figures
that must be its own: load time and memory, the first run, parity against torch, peak memory and the executed ops
(``_figures``).

**Sessions.** Then the timing: each session is one fresh worker process holding every model it times (set up
untimed: load, warm-up, calibration), each round one request the worker times back to back, polling for the next
between rounds (``_session``; on this VM one process per model made a round's ratio 2-5x noisier). A model lands
1-2% away from itself in another fresh process (where its tensors landed in physical memory), so each model in a
ratio is measured in ``sessions`` sessions, one after the other; a model in no ratio (a reference, an activation
timed alone) is timed in the first session only. Every session takes at least ``rounds_per_session`` rounds of
each of its models. The CIs
are variance-components intervals over the sessions (``stats.session_interval``): the order-statistic CI of the
median over all rounds, widened in quadrature by a Student-t interval on the session offsets, so they cover the
spread between processes. The offsets' variance is judged against each session's own round-to-round noise and,
for ratios, pooled over every ratio of the measurement (the offsets belong to the host and the runtime; three
sessions alone would give a t quantile of 4.3); ``between_session_share`` says how much of one ratio's spread lies
between sessions. Every session takes the same rounds, so no session outweighs the others (one long session would
set the median with its own offset). After the ``sessions``, more sessions are started, **widest first**: each
measures both sides of every target not yet reached whose CI is at least ``WIDEST_SHARE`` of the widest (up to
``MAX_SESSIONS_FACTOR`` times ``sessions``).

**Budget.** The sessions beyond the minimum stop when the budget (their rounds and set-ups) is spent: ``max_time``
seconds per model, scaled by how much longer than a burst one sample of the model takes (a whole network timed one
run at a time gets as many rounds as a small block), and capped by the caller's ``time_cap_s`` (the pipeline's share of
``total_time``). After the first rounds the rounds the target needs are estimated (a CI narrows as
1/sqrt(rounds)), and a run estimated to take over ``LONG_RUN_S`` is announced (``on_note``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeprof.errors import EdgeprofError, InputError
from edgeprof.measure.devstate import DeviceState, device_states, snapshot
from edgeprof.measure.host import usable_cores
from edgeprof.measure.pool import PoolOptions, SessionEnded, WorkerPool, _map
from edgeprof.measure.stats import (
    BetweenEstimate,
    SessionCI,
    between_estimate,
    distinct_levels,
    session_interval,
    summarize,
)
from edgeprof.runtime.base import RuntimeSettings

CI_TARGETS = ("ratio", "absolute")
WIDEST_SHARE = 0.5  # a later session measures the targets whose CI is at least this share of the widest one's
MAX_SESSIONS_FACTOR = 3  # at most this many times --sessions sessions, for the targets not yet reached
UNTARGETED_ROUNDS = 6  # a model in no ratio takes at most this many rounds (all in the first session)
FIRST_WARMUP_S = 0.05  # warm-up of the first timing session (the models ran before, in the figures' processes)
LATER_WARMUP_S = 0.01  # warm-up of the sessions after it and before the figures' runs (at least 3 runs either way)
LONG_RUN_S = 60.0  # a measurement estimated to take longer is announced


@dataclass(frozen=True)
class MeasureOptions(PoolOptions):
    """The sweep's measuring (the module's docstring): rounds of ~``burst_ms`` bursts in ``sessions`` fresh worker
    processes per model, until every ratio's CI (``ci_target="absolute"``: every median's) is within ``rel_ci`` or
    the budget is spent (``max_time`` per model, scaled by its run time; ``total_time`` for a whole run)."""

    rel_ci: float = 0.02
    ci_target: str = "ratio"
    sessions: int = 8
    total_time: float | None = None
    min_samples: int = 20
    min_rounds: int = 32  # 4 rounds a session with 8 sessions: the offsets between processes outweigh a round's noise
    burst_ms: float = 20.0
    isolate: bool = True
    seed: int = 0
    per_op_runs: int = 20  # per-op profile: at least this many runs ...
    per_op_s: float = 0.2  # ... and this many seconds

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.rel_ci < 1):
            raise InputError(f"--rel-ci must be between 0 and 1 (e.g. 0.02 for ±2%), got {self.rel_ci}")
        if self.min_samples < 6:
            raise InputError(f"--min-samples must be at least 6 (a 95% CI of a median needs 6), got {self.min_samples}")
        if self.ci_target not in CI_TARGETS:
            raise InputError(f"--ci-target must be one of {', '.join(CI_TARGETS)}, got {self.ci_target!r}")
        if not (isinstance(self.sessions, int) and 1 <= self.sessions <= 50):
            raise InputError(f"--sessions must be a whole number from 1 to 50 (fresh processes per model), got "
                             f"{self.sessions}")
        if self.total_time is not None and not (self.total_time > 0):
            raise InputError(f"--total-time must be positive seconds, got {self.total_time}")

    @property
    def rounds_per_session(self) -> int:
        """Rounds every model takes in each session: together at least ``min_rounds``, and 2 in each."""
        return max(2, math.ceil(self.min_rounds / self.sessions))


@dataclass
class Measurement:
    """Everything measured for one model; ``stats`` is computed from ``samples_ms``. Each sample carries the
    round (numbered across sessions) and the session (fresh process) it was taken in."""

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
    sample_session: list[int] = field(default_factory=list)
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
    target: str = ""  # what its rounds stopped on: ratio, absolute, or "" (in no ratio: the minimum rounds)
    sessions: int = 0  # sessions (fresh processes) it was timed in
    levels: int | None = None  # distinct levels of its per-round medians (2 or more: a bimodal host)
    between_session_share: float | None = None  # share of its per-round medians' spread between sessions
    ratio_cis: dict = field(default_factory=dict)  # denominator path -> SessionCI of this model's ratio to it (pooled)
    stats: dict = field(default_factory=dict)

    def round_medians(self) -> dict[int, float]:
        by_round: dict[int, list[float]] = {}
        for r, x in zip(self.sample_round, self.samples_ms, strict=True):
            by_round.setdefault(r, []).append(x)
        return {r: float(np.median(v)) for r, v in by_round.items()}

    def round_sessions(self) -> dict[int, int]:
        """The session each round was taken in (0 for samples recorded without one)."""
        sessions = self.sample_session or [0] * len(self.sample_round)
        return dict(zip(self.sample_round, sessions, strict=True))

    def as_dict(self) -> dict:
        return asdict(self)


class MeasurementInterrupted(EdgeprofError):
    """Ctrl-C during measurement; ``partial`` holds what was measured up to then."""

    exit_code = 130

    def __init__(self, partial: list[Measurement]):
        super().__init__("interrupted")
        self.partial = partial


def _paired_logs(current: Measurement, baseline: Measurement) -> dict[int, list[float]]:
    """Per session, the log-ratios of the two models' medians in each round both took part in."""
    a, b = current.round_medians(), baseline.round_medians()
    sessions = current.round_sessions()
    groups: dict[int, list[float]] = {}
    for r in sorted(set(a) & set(b)):
        if a[r] > 0 and b[r] > 0:
            groups.setdefault(sessions.get(r, 0), []).append(math.log(a[r]) - math.log(b[r]))
    return groups


def _round_logs(m: Measurement) -> dict[int, list[float]]:
    """Per session, the logs of the model's per-round medians."""
    sessions = m.round_sessions()
    groups: dict[int, list[float]] = {}
    for r, x in sorted(m.round_medians().items()):
        if x > 0:
            groups.setdefault(sessions.get(r, 0), []).append(math.log(x))
    return groups


def paired_ratio_detail(current: Measurement, baseline: Measurement) -> SessionCI:
    """Ratio of current to baseline from the medians of the rounds both took part in, with its 95% CI over the
    sessions (``stats.session_interval``: round-to-round noise and the offsets of fresh processes). The CI the
    measurement itself settled on (its session-offset variance pooled over the measurement's ratios) when
    ``measure`` left one for this pair."""
    kept = getattr(current, "ratio_cis", {}).get(baseline.path)
    if kept is not None:
        return kept
    return session_interval(list(_paired_logs(current, baseline).values()))


def paired_ratio_to(current: Measurement, baseline: Measurement) -> tuple[float, float, float]:
    """Ratio of current to baseline (paired rounds) with its 95% CI: ``(ratio, lo, hi)``; lo/hi nan under 6 rounds."""
    ci = paired_ratio_detail(current, baseline)
    return (ci.value, ci.lo, ci.hi)


def median_interval(m: Measurement) -> SessionCI:
    """A model's median with its 95% CI: the order-statistic CI of all its samples, widened by the spread of its
    sessions' medians (``stats.session_interval`` on the samples' logs)."""
    sessions = m.sample_session or [0] * len(m.samples_ms)
    groups: dict[int, list[float]] = {}
    for s, x in zip(sessions, m.samples_ms, strict=True):
        if x > 0:
            groups.setdefault(s, []).append(math.log(x))
    return session_interval(list(groups.values()))


# -- what stops the rounds -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One question of a measurement: the ratio of two models ``(numerator, denominator)``, or one model's median
    ``(model,)`` (indices into the measurement's models)."""

    models: tuple[int, ...]

    @property
    def kind(self) -> str:
        return "ratio" if len(self.models) == 2 else "absolute"

    def groups(self, results: list[Measurement]) -> list[list[float]]:
        """The per-round log values of the target, grouped by session."""
        groups = _paired_logs(results[self.models[0]], results[self.models[1]]) if len(self.models) == 2 else \
            _round_logs(results[self.models[0]])
        return list(groups.values())

    def logs(self, results: list[Measurement]) -> list[float]:
        """The per-round log values the target's CI narrows over (for estimating the rounds it needs)."""
        return [x for values in self.groups(results) for x in values]


def plan_targets(paths: Sequence[str], pairs: Sequence[tuple[str, str]] | None, ci_target: str) -> list[Target]:
    """The targets of one measurement: with ``ci_target="ratio"``, one per pair of paths (numerator, denominator);
    otherwise, or without pairs, every model's median."""
    index = {str(p): i for i, p in enumerate(paths)}
    ratios: list[Target] = []
    if ci_target == "ratio":
        for num, den in pairs or ():
            if str(num) not in index or str(den) not in index:
                raise ValueError(f"a ratio names a model that is not measured: {num} / {den}")
            if index[str(num)] != index[str(den)]:
                ratios.append(Target((index[str(num)], index[str(den)])))
    if ratios:
        return list(dict.fromkeys(ratios))
    return [Target((i,)) for i in range(len(paths))]


def time_budget_s(sample_ms: Sequence[float], options: MeasureOptions) -> float:
    """Seconds of rounds one measurement may spend: ``max_time`` per model, times the bursts one of its samples
    takes (at least one), so a model timed one slow run at a time gets as many rounds as a fast block."""
    return options.max_time * sum(max(1.0, s / options.burst_ms) for s in sample_ms if s > 0)


def rounds_needed(rounds: int, halfwidth: float, target: float) -> float:
    """Rounds a CI of relative half-width ``halfwidth`` after ``rounds`` rounds needs to get within ``target`` (a CI
    narrows as 1/sqrt(rounds)); inf when the width is unknown."""
    if halfwidth <= target:
        return float(rounds)
    if not math.isfinite(halfwidth) or rounds <= 0:
        return math.inf
    return float(math.ceil(rounds * (halfwidth / target) ** 2))


def rough_halfwidth(logs: Sequence[float]) -> float:
    """A normal-theory half-width of the median of log values, as a fraction (for estimates from few rounds)."""
    x = np.asarray(logs, dtype=float)
    if x.size < 2:
        return math.inf
    return float(1.96 * math.sqrt(math.pi / 2) * np.std(x, ddof=1) / math.sqrt(x.size))


def long_run_note(seconds: float, models: int, options: MeasureOptions) -> str:
    """The one line announcing a long measurement."""
    what = "ratio's" if options.ci_target == "ratio" else "median's"
    return (f"about {max(1, round(seconds / 60))} min for {models} models ({options.sessions} sessions each, until "
            f"every {what} CI is within ±{options.rel_ci * 100:g}%); --total-time caps it")


RoundFn = Callable[[list[tuple[int, int]]], dict]
ProgressFn = Callable[[str, float], None]


class Schedule:
    """The stopping rule, apart from processes: which models each round times, when a session ends and which
    models the next session measures (the module's docstring). ``run_session`` is given one sampler per model
    (``count -> samples``), so it runs as well on synthetic samples with a synthetic ``clock``."""

    def __init__(self, results: list[Measurement], targets: list[Target], options: MeasureOptions,
                 rng: np.random.Generator | None = None, cap_s: float | None = None,
                 clock: Callable[[], float] = time.perf_counter, on_note: Callable[[str], None] | None = None,
                 on_progress: ProgressFn | None = None):
        self.results = results
        self.targets = targets
        self.options = options
        self.rng = rng if rng is not None else np.random.default_rng(options.seed)
        self.cap_limit = cap_s
        self.cap = math.inf  # seconds of rounds: set from the first session's sample times
        self.clock = clock
        self.note = on_note or (lambda message: None)
        self.progress = on_progress or (lambda message, fraction: None)
        self.session = 0  # sessions finished (the index of the one running)
        self.round_no = 0  # rounds taken in all sessions (the id of the next round)
        self.spent = 0.0  # seconds spent timing rounds
        self.overhead = 0.0  # seconds the sessions after the first spent setting up (counted in the budget)
        self.setup_s = 0.0  # seconds the first session's set-up took (for the estimate)
        self.estimate_s: float | None = None  # the whole measurement's expected seconds, once estimated
        self.expected_rounds = options.rounds_per_session * options.sessions
        self._t0 = clock()
        self._bursts = 0  # bursts taken (one model in one round), for the cost of a round
        self._cache: dict[Target, tuple[int, float, SessionCI]] = {}
        self._groups: dict[Target, tuple[int, list[list[float]]]] = {}
        self._pooled: tuple[int, BetweenEstimate | None] = (-1, None)
        # the models in a ratio; None when every model's median is a target (all of them are)
        self.in_ratio = {i for t in targets if t.kind == "ratio" for i in t.models} \
            if any(t.kind == "ratio" for t in targets) else None
        for t in targets:
            for i in t.models:
                results[i].target = t.kind

    # -- the rule ---------------------------------------------------------------------------------------------------
    def groups(self, target: Target) -> list[list[float]]:
        """``target.groups`` of this round (read once a round: the pooled estimate and the CI both use them)."""
        cached = self._groups.get(target)
        if cached is None or cached[0] != self.round_no:
            self._groups[target] = cached = (self.round_no, target.groups(self.results))
        return cached[1]

    def pooled(self) -> BetweenEstimate | None:
        """The session-offset variance pooled over every ratio target whose models are still measured."""
        if self._pooled[0] != self.round_no:
            estimates = [between_estimate(self.groups(t)) for t in self.targets
                         if t.kind == "ratio" and all(self.results[i].status == "ok" for i in t.models)]
            self._pooled = (self.round_no, BetweenEstimate.pool(estimates))
        return self._pooled[1]

    def interval(self, target: Target) -> SessionCI:
        """The target's CI: a ratio's over its sessions with the pooled offset variance, a median's over its own."""
        cached = self._cache.get(target)
        if cached is None or cached[0] != self.round_no:
            ci = session_interval(self.groups(target), pooled=self.pooled()) if target.kind == "ratio" else \
                median_interval(self.results[target.models[0]])
            short = any(len(self.results[i].samples_ms) < self.options.min_samples for i in target.models)
            self._cache[target] = cached = (self.round_no, math.inf if short else ci.rel_halfwidth, ci)
        return cached[2]

    def width(self, target: Target) -> float:
        """The target's CI half-width as a fraction (inf until its models have ``min_samples`` and 6 rounds)."""
        self.interval(target)
        return self._cache[target][1]

    def unmet(self) -> dict[Target, float]:
        """The targets not yet within ``rel_ci``, with their widths; a target with a failed model is out."""
        out = {}
        for t in self.targets:
            if any(self.results[i].status != "ok" for i in t.models):
                continue
            w = self.width(t)
            if not w <= self.options.rel_ci:
                out[t] = w
        return out

    def choose(self, active: set[int], round_in_session: int) -> list[int]:
        """The models a session's round times, in a fresh random order: every model of the session (a model in no
        ratio, timed for a median that nothing narrows, in the first ``UNTARGETED_ROUNDS`` rounds only)."""
        chosen = sorted(active)
        if round_in_session >= UNTARGETED_ROUNDS and self.in_ratio is not None:
            chosen = [i for i in chosen if i in self.in_ratio] or chosen
        return [chosen[k] for k in self.rng.permutation(len(chosen))]

    def over_budget(self, extra_s: float = 0.0) -> bool:
        """Whether the rounds and the later sessions' set-ups (plus ``extra_s``) exceed the budget."""
        return self.spent + self.overhead + extra_s > self.cap

    def next_session(self) -> list[int]:
        """The models the next session measures (every model in a ratio, or every model when medians are the
        targets, until ``sessions`` are done; then, **widest first**, both sides of every target still short of
        ``rel_ci`` whose CI is at least ``WIDEST_SHARE`` of the widest, while the budget has room for the session's
        set-up and rounds); empty when the measuring is done."""
        opts = self.options
        alive = [i for i, m in enumerate(self.results) if m.status == "ok"]
        if not alive:
            return []
        if self.session == 0:
            return alive
        if self.session < opts.sessions:
            # a model in no ratio (a reference, an activation alone) is timed in the first session only
            return alive if self.in_ratio is None else [i for i in alive if i in self.in_ratio]
        if self.session >= opts.sessions * MAX_SESSIONS_FACTOR:
            return []
        unmet = self.unmet()
        if not unmet:
            return []
        widest = max(unmet.values())
        models = sorted({i for t, w in unmet.items() if w >= WIDEST_SHARE * widest for i in t.models})
        per_burst = self.spent / max(1, self._bursts)
        setup = self.overhead / max(1, self.session - 1) if self.session > 1 else self.setup_s * len(models) / \
            max(1, len(self.results))
        cost = setup + opts.rounds_per_session * len(models) * per_burst
        return [] if self.over_budget(cost) else models

    # -- one session ------------------------------------------------------------------------------------------------
    def run_session(self, sample_ms: dict[int, float], round_fn: RoundFn,
                    on_fail: Callable[[int, Exception], None] | None = None) -> None:
        """Time one session's ``rounds_per_session`` rounds of the models in ``sample_ms`` (every session takes as
        many, so none outweighs the others). ``sample_ms[i]`` is what one sample of model i took at set-up (a burst
        is ~``burst_ms``). ``round_fn`` times one round: ``[(i, count), ...]`` in order -> per model ``count``
        samples (ms per run) from this session, or the EdgeprofError it raised (``WorkerPool.sample_round``, whose
        shared process times the round's bursts back to back; ``sample_each`` over one sampler per model). A model
        whose sampling raised is out (``on_fail``; by default the model is marked failed); one whose session ended
        under it (``SessionEnded``) only for this session."""
        opts = self.options
        active = set(sample_ms)
        counts = {i: max(1, min(1000, int(opts.burst_ms / sample_ms[i]))) if sample_ms[i] > 0 else 1 for i in active}
        if math.isinf(self.cap):
            cap = time_budget_s(list(sample_ms.values()), opts)
            self.cap = min(cap, self.cap_limit) if self.cap_limit is not None else cap
        fail = on_fail or (lambda i, exc: _fail(self.results[i], exc))
        for r in range(1, opts.rounds_per_session + 1):
            if not active:
                break
            order = self.choose(active, r - 1)
            t0 = self.clock()
            taken = round_fn([(i, counts[i]) for i in order])
            for i in order:
                m = self.results[i]
                samples = taken.get(i, EdgeprofError("no samples came back"))
                if isinstance(samples, SessionEnded):  # its process died in another model's burst
                    active.discard(i)
                    continue
                if isinstance(samples, EdgeprofError):
                    active.discard(i)
                    fail(i, samples)
                    continue
                m.samples_ms.extend(samples)
                m.sample_round.extend([self.round_no] * len(samples))
                m.sample_session.extend([self.session] * len(samples))
            self.spent += self.clock() - t0
            self._bursts += len(order)
            self.round_no += 1
            if self.session == 0 and r == opts.rounds_per_session:
                self._estimate(len(order))
            self._report(r)
        self.session += 1

    # -- estimate and progress --------------------------------------------------------------------------------------
    def _estimate(self, timed: int) -> None:
        """After the first session's minimum rounds: the whole measurement's seconds (the sessions still to set up,
        their minimum rounds, the rounds each target is estimated to need, within the budget), and a note when
        that is over ``LONG_RUN_S``."""
        opts = self.options
        rounds = self.round_no
        if rounds == 0:
            return
        round_s = self.spent / rounds
        model_round_s = round_s / max(1, timed)
        total_min = opts.rounds_per_session * opts.sessions
        extra_rounds, extra_models = 0.0, set()
        for t in self.targets:
            need = rounds_needed(rounds, rough_halfwidth(t.logs(self.results)), opts.rel_ci)
            if need > total_min:
                extra_rounds = max(extra_rounds, need - total_min)
                extra_models.update(t.models)
        min_left_s = (total_min - rounds) * round_s
        # the extra rounds come in whole sessions, each with a set-up of its own
        extra_sessions = min(math.ceil(extra_rounds / opts.rounds_per_session) if math.isfinite(extra_rounds) else
                             math.inf, opts.sessions * (MAX_SESSIONS_FACTOR - 1))
        extra_s = min(extra_rounds * model_round_s * len(extra_models) + extra_sessions * self.setup_s *
                      len(extra_models) / max(1, len(self.results)), max(0.0, self.cap - total_min * round_s))
        rest = self.setup_s * (opts.sessions - 1) + min_left_s + extra_s  # the per-op profiles came before
        self.estimate_s = (self.clock() - self._t0) + rest
        if math.isfinite(extra_s) and model_round_s > 0 and extra_models:
            self.expected_rounds = total_min + int(extra_s / (model_round_s * len(extra_models)))
        if self.estimate_s >= LONG_RUN_S:
            self.note(long_run_note(self.estimate_s, len(self.results), opts))

    def _report(self, round_in_session: int) -> None:
        unmet = self.unmet()
        widest = max(unmet.values()) if unmet else max((self.width(t) for t in self.targets), default=0.0)
        kind = self.targets[0].kind if self.targets else "absolute"
        used = self.spent + self.overhead
        fraction = min(1.0, max(used / self.cap if self.cap > 0 else 0.0, self.round_no / self.expected_rounds))
        shown = f"±{widest * 100:.1f}%" if math.isfinite(widest) else "not yet known"
        self.progress(f"session {self.session + 1}, round {round_in_session}: widest {kind} CI {shown}", fraction)


# -- the measurement -----------------------------------------------------------------------------------------------
def measure(
    paths: list[str],
    settings: RuntimeSettings,
    options: MeasureOptions = MeasureOptions(),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
    sources: dict | None = None,
    refs: dict | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    time_cap_s: float | None = None,
    on_note: Callable[[str], None] | None = None,
    per_op: Sequence[str] | None = None,
) -> list[Measurement]:
    """Measure ``paths`` interleaved with the runtime of ``settings``; one Measurement each, in the order given.

    ``pairs`` are the (numerator, denominator) paths of the ratios the caller will report: with ``options.ci_target``
    ``ratio`` the rounds stop on their CIs (module docstring); without pairs, on every median's. ``time_cap_s`` caps
    the seconds of rounds (the caller's share of a whole run's budget); ``on_note`` gets one-line notes (the
    estimate of a long measurement); ``per_op`` the paths whose executed ops (the per-op profile) are read (None:
    every model's).

    An ONNX file is converted to the runtime's own format first (``Runtime.convert``; ``sources`` maps a path to
    its ``ModelSource`` for torch-based converters). A model the runtime or its converter cannot handle becomes an
    ``unsupported`` Measurement with the converter's reason; one that fails to load or run, or whose outputs miss
    torch's reference (``refs[path]``, else ``<model>.ref.npz`` beside the file, when there is one) by more than
    the parity tolerance, a ``failed`` one; the others go on. Load and first-run figures, parity, peak memory and
    the executed ops come from the first session. Ctrl-C raises MeasurementInterrupted carrying what was measured
    so far.
    """
    progress = on_progress or (lambda message, fraction: None)
    results = [Measurement(path=str(p)) for p in paths]
    schedule = Schedule(results, plan_targets([m.path for m in results], pairs, options.ci_target), options,
                        cap_s=time_cap_s, on_note=on_note, on_progress=progress)
    keys = list(range(len(results)))
    ops_of = None if per_op is None else {str(p) for p in per_op}
    try:
        _figures(results, keys, settings, options, shapes, sources, refs, schedule, progress, ops_of)
        keys = schedule.next_session()
        while keys:
            _session(results, keys, settings, options, shapes, sources, schedule, progress)
            keys = schedule.next_session()
    except KeyboardInterrupt:
        for m in results:
            if m.status == "ok":
                m.status = "interrupted"
            _finish(m)
        raise MeasurementInterrupted(results) from None
    for m in results:
        _finish(m)
    _keep_ratio_cis(schedule)
    return results


def _keep_ratio_cis(schedule: Schedule) -> None:
    """Each ratio target's final CI (its session-offset variance pooled over the measurement's ratios), kept on the
    numerator's Measurement for the rows (``paired_ratio_detail``)."""
    results = schedule.results
    for t in schedule.targets:
        if t.kind != "ratio":
            continue
        num, den = (results[i] for i in t.models)
        if num.samples_ms and den.samples_ms:
            num.ratio_cis[den.path] = schedule.interval(t)


def _figures(results, keys, settings, options, shapes, sources, refs, schedule: Schedule, progress,
             ops_of: set[str] | None = None) -> None:
    """Before any timing, each model alone in a fresh worker (or, without isolation, in this process), untimed:
    versions, conversions, load time and memory, the first run, threads, parity against torch, peak memory over a
    few runs and the executed ops. A model that fails here is out of the timing."""
    from edgeprof.runtime.base import ref_path

    with WorkerPool(settings, shapes, options.seed, options.isolate) as pool:
        version = pool.runtime.version()
        for m in results:
            m.runtime, m.runtime_version = settings.runtime, version
        _start(pool, results, keys, sources)
        for i, conversion in pool.conversions.items():
            results[i].converter, results[i].converter_version = conversion.converter, conversion.converter_version
        # loads and first runs one model at a time (their times are figures); the few runs the peak memory is read
        # over, and what is read after, on every usable core, since nothing of it is timed
        parallel = usable_cores() if options.isolate else 1
        setups, failed = pool.prepare_all(
            LATER_WARMUP_S, options.min_sample_ms, parallel=parallel,
            serial_load=True, on_each=lambda i: progress(f"loading {_short(results[i].path)}", 0.0))
        for i, exc in failed.items():
            _fail(results[i], exc)
        for i, setup in setups.items():
            m = results[i]
            m.session_ms, m.first_run_ms = setup.session_ms, setup.first_run_ms
            if options.isolate:
                m.peak_rss_session_mb = setup.peak_rss_session_mb

        def read(i):  # one process per model
            m, runner = results[i], pool.runners[i]
            m.threads_effective = runner.threads_effective()
            ref = Path((refs or {}).get(m.path) or ref_path(m.path))
            check = runner.parity(ref=str(ref)) if ref.exists() else None
            if check is not None:
                m.runtime_parity_max_abs_err = check["max_abs_err"]
                if not check["ok"]:
                    err = "different output shapes" if check["max_abs_err"] is None else \
                        f"max abs error {check['max_abs_err']:.3g}"
                    raise EdgeprofError(f"parity against torch failed: {err} over the tolerance "
                                        f"{check['tol']:.3g} (1e-3 of torch's output range)")
            if options.isolate:  # before the per-op profile, whose second session would add its own memory
                m.peak_rss_run_mb = runner.peak_run_mb()
            if ops_of is not None and m.path not in ops_of:
                return
            progress(f"reading executed ops of {_short(m.path)}", 0.0)
            ops = runner.executed_ops(min_runs=options.per_op_runs, min_seconds=options.per_op_s)
            m.nodes = ops["nodes"]
            m.per_op_runs = int(ops.get("runs") or 0)
            m.runtime_peak_in_use_mb = ops.get("peak_in_use_mb")
            m.runtime_arena_held_mb = ops.get("arena_held_mb")
            m.per_op_source = pool.runtime.per_op_label(m.nodes)

        for i, outcome in _map(read, list(pool.runners), parallel).items():
            if isinstance(outcome, EdgeprofError):
                _fail(results[i], outcome)
                pool.drop(i)


def _session(results, keys, settings, options, shapes, sources, schedule: Schedule, progress) -> None:
    """One timing session: every model of ``keys`` in one fresh worker process (all in this process without
    isolation), set up untimed (load, warm-up, calibration), then the schedule's rounds, each round one request that
    the process times back to back.

    Timing every model of a comparison in one process kept a round's ratio several times steadier than one process
    per model (switching processes between bursts, on the shared VMs edgeprof was built on). A model still lands
    1-2% away from itself in another process (where its tensors landed in physical memory decides which cache sets
    they share), so every session is a fresh process and the CIs cover the spread between them."""
    first = schedule.session == 0
    t0 = time.perf_counter()
    spent_before = schedule.spent
    with WorkerPool(settings, shapes, options.seed, options.isolate, shared=True) as pool:
        _start(pool, results, keys, sources)
        # a later session's warm-up is a few runs: its models were warmed once already, in the first session, and
        # nothing of a session's start outweighs its rounds (every session takes as many)
        warmup_s = min(options.warmup_s, FIRST_WARMUP_S if first else LATER_WARMUP_S)
        setups, failed = pool.prepare_all(
            warmup_s, options.min_sample_ms,
            on_each=lambda i: progress(f"session {schedule.session + 1}: loading {_short(results[i].path)}", 0.0))
        for i, exc in failed.items():
            _fail(results[i], exc)
        if first:
            for i, setup in setups.items():
                results[i].inner_loops = setup.inner_loops
            schedule.setup_s = time.perf_counter() - t0
        def on_fail(i, exc):
            _fail(results[i], exc)
            pool.drop(i)

        device_before = snapshot(pool.pids()) if first else None  # device state beside the first session's rounds
        schedule.run_session({i: setups[i].sample_ms for i in pool.runners}, pool.sample_round, on_fail=on_fail)
        if device_before is not None:
            timed_s = {i: sum(results[i].samples_ms) * results[i].inner_loops / 1000 for i in device_before.processes}
            for i, state in device_states(device_before, snapshot(pool.pids()), timed_s, settings.threads).items():
                results[i].device_state = state
    if not first:  # a later session's set-up and tear-down (all but its rounds) count in the budget
        schedule.overhead += time.perf_counter() - t0 - (schedule.spent - spent_before)


def _finish(m: Measurement) -> None:
    """The statistics of a model's samples; with several sessions its median's CI covers their spread."""
    m.stats = summarize(m.samples_ms)
    m.sessions = len(set(m.sample_session))
    m.levels = distinct_levels(list(m.round_medians().values())) if m.samples_ms else None
    if m.sessions >= 2:
        ci = median_interval(m)
        if math.isfinite(ci.lo):
            m.stats.update(ci95_low_ms=ci.lo, ci95_high_ms=ci.hi, rel_ci=ci.rel_halfwidth)
        share = session_interval(list(_round_logs(m).values())).between_share
        m.between_session_share = None if math.isnan(share) else share


def _start(pool: WorkerPool, results: list[Measurement], keys, sources: dict | None) -> None:
    """Start the runners of ``keys`` in ``pool`` (converted from their sources where the runtime needs it); a
    model that cannot start is failed."""
    for i, exc in pool.start({i: results[i].path for i in keys},
                             {i: (sources or {}).get(results[i].path) for i in keys}).items():
        _fail(results[i], exc)


def _fail(m: Measurement, exc: Exception) -> None:
    from edgeprof.runtime.base import UnsupportedModel

    m.status = "unsupported" if isinstance(exc, UnsupportedModel) else "failed"
    m.error = str(exc)


def _short(path: str) -> str:
    return path.rsplit("/", 1)[-1]
