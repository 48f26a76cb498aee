"""Paired, interleaved timing for the gate: blocks of runs from fresh worker processes, in random order.

Every model ("arm") runs in its own ``python -m edgeprof.runtime.worker`` process (the runtime of the
settings and numpy only, never torch), started, set up and closed by the worker pool the sweep uses too
(``edgeprof.measure.pool``). Arms that are compared sit in a *group*: in each round the groups are visited in a
fresh random order and a group's arms time one block each, back to back and in random order, so the
two blocks of a pair are taken within milliseconds of each other and machine drift touches both. A
block is ``count`` calibrated samples (each sample at least ``min_sample_ms``, the block about
``block_ms``).

What a block's value is depends on the clock. ``cpu`` (the default whenever onnxruntime runs on one
thread): the worker's on-CPU time per run over the block, read by the parent from the kernel's
per-thread ``/proc/<pid>/task/*/schedstat`` before and after the block, minus the measured CPU cost
of one request to the worker. Time spent waiting for a core behind other processes is left out: on
the shared 2-core development machine, at a load average of 4, the worker waited for a core 10-40%
of each block, and the IQR of A/A paired block ratios was 2-26% by wall time against 0.6-3% by CPU
time. ``wall``: the median of the block's wall-clock samples (what the worker reports). Both are kept.

A *session* is one fresh worker process per arm: a new process and onnxruntime session, a discarded
first run and warm-up (run for all arms in parallel on the usable cores, since none of it is timed),
calibration, then ``rounds`` rounds of timed blocks, one block at a time. Every session has new
processes because a process carries an offset of its own: on the development machine, re-creating the
onnxruntime session inside the same process left a per-process component of 0.5-0.8% in A/A ratios
(the spread of per-process means was 1.2-2x what the spread of sessions within a process predicted),
so sessions sharing a process are not independent and the decision's test, whose unit is the session,
would be over-confident. Workers are closed at the end of every session, and killed on Ctrl-C or an error.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeprof.errors import EdgeprofError, InputError, RuntimeFailure
from edgeprof.measure.host import usable_cores
from edgeprof.measure.pool import PoolOptions, WorkerPool
from edgeprof.runtime.base import RuntimeSettings

ProgressFn = Callable[[str, float], None]
CLOCKS = ("auto", "cpu", "wall")


@dataclass(frozen=True)
class GateOptions(PoolOptions):
    """How long and how the gate measures. Defaults: 4 sessions (fresh processes) of 6 rounds of ~20 ms blocks
    per model and side before the first look, then 2 more sessions at a time for undecided models, up to 10;
    up to ``max_sessions_noisy`` for a model whose interval is projected to clear the threshold by then.
    ``max_time``: the wall-time budget of a check's measuring (seconds), past which no session is started."""

    block_ms: float = 20.0
    rounds: int = 6
    first_sessions: int = 4
    step_sessions: int = 2
    max_sessions: int = 10
    max_sessions_noisy: int = 30
    save_sessions: int = 6
    warmup_s: float = 0.05
    max_time: float = 120.0
    parallel_setup: int = 0  # threads for untimed set-up; 0 = the usable cores
    clock: str = "auto"  # cpu, wall, or auto (cpu when the runtime runs on one thread and schedstat is readable)
    pin: bool = False  # pin every worker of a session to one core (the idlest) while timing
    drop_preempted: float = 0.0  # >0: leave out a pair whose arm waited for a core more than this share of its block
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.block_ms > 0):
            raise InputError(f"block length must be positive milliseconds, got {self.block_ms}")
        if min(self.rounds, self.first_sessions, self.step_sessions, self.save_sessions) < 1:
            raise InputError("rounds and session counts must be at least 1")
        if self.max_sessions < self.first_sessions:
            raise InputError(f"max sessions ({self.max_sessions}) is below the first look ({self.first_sessions})")
        if (self.max_sessions - self.first_sessions) % self.step_sessions:
            valid = ", ".join(str(self.first_sessions + k * self.step_sessions) for k in range(4))
            raise InputError(f"max sessions ({self.max_sessions}) must be the first look ({self.first_sessions}) plus "
                             f"a whole number of steps of {self.step_sessions}: e.g. {valid}")
        if self.max_sessions_noisy < self.max_sessions:
            raise InputError(f"max sessions when noisy ({self.max_sessions_noisy}) must be at least max sessions "
                             f"({self.max_sessions})")
        if self.clock not in CLOCKS:
            raise InputError(f"unknown --clock {self.clock!r}; valid: {', '.join(CLOCKS)}")
        if not (0.0 <= self.drop_preempted < 1.0):
            raise InputError(f"drop_preempted must be a share in [0, 1), got {self.drop_preempted}")


def _task_times(pid: int) -> tuple[int, int] | None:
    """Nanoseconds the process's threads have run on a CPU and waited for one (kernel schedstat)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    run = wait = 0
    seen = False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                fields = handle.read().split()
            run += int(fields[0])
            wait += int(fields[1])
            seen = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return (run, wait) if seen else None


def cpu_clock_available() -> bool:
    return _task_times(os.getpid()) is not None


def resolve_clock(clock: str, settings: RuntimeSettings) -> str:
    """``auto`` -> ``cpu`` when the runtime runs on one thread (its on-CPU time is then its latency
    without the wait for a core) and the kernel exposes schedstat; else ``wall``."""
    if clock not in CLOCKS:
        raise InputError(f"unknown --clock {clock!r}; valid: {', '.join(CLOCKS)}")
    if clock == "cpu" and not cpu_clock_available():
        raise InputError("--clock cpu needs /proc/<pid>/task/*/schedstat (Linux with schedstats); use --clock wall")
    if clock != "auto":
        return clock
    return "cpu" if settings.single_threaded() and cpu_clock_available() else "wall"


@dataclass(frozen=True)
class Arm:
    """One model file to time; ``label`` names it in errors (``current model conv_relu``)."""

    key: str
    path: str
    label: str


@dataclass(frozen=True)
class Group:
    """Arms timed back to back; ``pairs`` are (pair key, numerator arm, denominator arm)."""

    arms: tuple[str, ...]
    pairs: tuple[tuple[str, str, str], ...]


@dataclass
class Block:
    """One block of one arm: its wall-clock samples (per-run ms), its on-CPU ms per run and the ms its
    threads waited for a core; ``value`` is what the decision uses (per-run ms by the gate's clock)."""

    session: int
    round: int
    samples_ms: list[float] = field(default_factory=list)
    cpu_ms: float | None = None
    wait_ms: float | None = None
    value: float = math.nan


class Interleaver:
    """Times arms in sessions of fresh worker processes; keeps every block's raw samples in ``blocks``."""

    def __init__(
        self,
        arms: list[Arm],
        settings: RuntimeSettings,
        options: GateOptions = GateOptions(),
        shapes: dict | None = None,
        rng: np.random.Generator | None = None,
        on_progress: ProgressFn | None = None,
    ):
        self.arms = {a.key: a for a in arms}
        self.settings = settings
        self.options = options
        self.clock = resolve_clock(options.clock, settings)
        self.shapes = shapes
        self.rng = rng if rng is not None else np.random.default_rng(options.seed)
        self.progress = on_progress or (lambda message, fraction: None)
        self.blocks: dict[str, list[Block]] = {a.key: [] for a in arms}
        self.inner_loops: dict[str, int] = {}
        self.sessions = 0
        self.failed: dict[str, str] = {}  # arm key -> why it can no longer be measured (its worker died, ...)
        self.dropped_pairs = 0  # pairs left out because an arm was preempted (``drop_preempted``)
        self._overhead_ns: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._blocks_done = 0
        self._blocks_ahead = 0  # blocks the plan still expects, counted from _blocks_at_plan
        self._blocks_at_plan = 0
        self._budget_s: float | None = None

    def median_ms(self, key: str) -> float:
        """Median block value of an arm (per-run ms by the gate's clock)."""
        values = [b.value for b in self.blocks.get(key, [])]
        return float(np.median(values)) if values else math.nan

    def plan(self, sessions: int, arms: int, budget_s: float | None = None) -> None:
        """The work still ahead, for progress: at most ``sessions`` more sessions of ``arms`` arms in all, within
        ``budget_s`` seconds from the start (progress is the larger of the work done and the time spent)."""
        self._blocks_ahead = max(0, sessions) * max(0, arms) * self.options.rounds
        self._blocks_at_plan = self._blocks_done
        self._budget_s = budget_s

    def session(self, groups: list[Group]) -> dict[str, list[float]]:
        """One session: a fresh process per arm of ``groups``; returns per pair the session's block log-ratios."""
        opts = self.options
        groups = [g for g in groups if not any(a in self.failed for a in g.arms)]
        keys = list(dict.fromkeys(a for g in groups for a in g.arms))
        logs: dict[str, list[float]] = {pk: [] for g in groups for pk, _, _ in g.pairs}
        self.progress(f"session {self.sessions + 1}: starting {len(keys)} worker processes", self._fraction())
        with WorkerPool(self.settings, self.shapes, seed=0) as pool:
            runners = pool.runners
            per_sample = self._prepare_all(pool, keys)
            if opts.pin:
                _pin([r.proc.pid for r in runners.values()], _idlest_core())
            counts = {k: max(1, round(opts.block_ms / max(per_sample[k], 1e-6))) for k in per_sample}
            for r in range(opts.rounds):
                self.progress(f"session {self.sessions + 1}: timing {len(keys)} models, round {r + 1}/{opts.rounds}",
                              self._fraction())
                for gi in self.rng.permutation(len(groups)):
                    group = groups[gi]
                    if any(a in self.failed for a in group.arms):
                        continue
                    values = {}
                    for ai in self.rng.permutation(len(group.arms)):
                        key = group.arms[ai]
                        try:
                            block = self._block(runners[key], key, counts[key], r)
                        except RuntimeFailure as exc:  # this group is out; the others go on
                            self.failed[key] = str(exc)
                            break
                        self.blocks[key].append(block)
                        values[key] = block.value
                        self._blocks_done += 1
                    if len(values) < len(group.arms):
                        continue
                    for pk, num, den in group.pairs:
                        if opts.drop_preempted and (self._preempted(num) or self._preempted(den)):
                            self.dropped_pairs += 1
                            continue
                        logs[pk].append(math.log(values[num] / values[den]))
        self.sessions += 1
        for g in groups:
            if any(a in self.failed for a in g.arms):
                for pk, _, _ in g.pairs:
                    logs.pop(pk, None)
        self.progress(f"session {self.sessions} done", self._fraction())
        return logs

    # -- internals --------------------------------------------------------------------------------
    def _preempted(self, key: str) -> bool:
        """Whether the arm's last block waited for a core more than ``drop_preempted`` of its run time."""
        block = self.blocks[key][-1]
        if block.wait_ms is None:
            return False
        run_ms = sum(block.samples_ms) * self.inner_loops.get(key, 1)
        return run_ms > 0 and block.wait_ms / run_ms > self.options.drop_preempted

    def _fraction(self) -> float:
        ahead = max(0, self._blocks_ahead - (self._blocks_done - self._blocks_at_plan))
        work = self._blocks_done / max(1, self._blocks_done + ahead)
        spent = (time.monotonic() - self._t0) / self._budget_s if self._budget_s else 0.0
        return min(1.0, max(work, spent))

    def _block(self, runner, key: str, count: int, round_no: int) -> Block:
        pid = runner.proc.pid
        before = _task_times(pid) if self.clock == "cpu" else None
        try:
            samples = runner.sample(count=count)
        except EdgeprofError as exc:
            raise RuntimeFailure(f"{self.arms[key].label} failed while being timed: {exc}") from None
        after = _task_times(pid) if before is not None else None
        if not samples or not all(x > 0 and math.isfinite(x) for x in samples):
            raise RuntimeFailure(f"{self.arms[key].label} returned unusable timings: {samples[:3]}")
        block = Block(session=self.sessions, round=round_no, samples_ms=samples)
        block.value = float(np.median(samples))
        if before is not None and after is not None:
            runs = len(samples) * self.inner_loops.get(key, 1)
            cpu_ns = after[0] - before[0] - self._overhead_ns.get(key, 0.0)
            block.wait_ms = (after[1] - before[1]) / 1e6
            if cpu_ns > 0:
                block.cpu_ms = cpu_ns / 1e6 / runs
                block.value = block.cpu_ms
        return block

    def _prepare_all(self, pool: WorkerPool, keys: list[str]) -> dict[str, float]:
        """Untimed set-up of every arm, in parallel on the usable cores: new process and session, first run,
        warm-up, calibration. Returns the per-sample time of each arm that is ready; an arm that could not start
        is out (``failed``, with why) and the others go on; a model that is bad input stops the check."""
        failed = pool.start({k: self.arms[k].path for k in keys})
        setups, more = pool.prepare_all(self.options.warmup_s, self.options.min_sample_ms,
                                        parallel=self.options.parallel_setup or usable_cores())
        failed.update(more)
        for key in keys:
            if key in failed:
                exc, label = failed[key], self.arms[key].label
                if isinstance(exc, InputError):
                    raise InputError(f"{label}: {exc}") from None
                self.failed[key] = f"{label} failed to load or run: {exc}"
        per_sample = {}
        for key in setups:
            self.inner_loops[key] = setups[key].inner_loops
            if self.clock == "cpu":
                self._overhead_ns[key] = _request_overhead_ns(pool.runners[key])
            per_sample[key] = setups[key].sample_ms
        return per_sample


def _request_overhead_ns(runner, calls: int = 7) -> float:
    """The worker's on-CPU cost of one request that times nothing (``sample(count=0)``), median of ``calls``."""
    costs = []
    for _ in range(calls):
        before = _task_times(runner.proc.pid)
        runner.sample(count=0)
        after = _task_times(runner.proc.pid)
        if before is not None and after is not None:
            costs.append(after[0] - before[0])
    return float(np.median(costs)) if costs else 0.0


def _idlest_core(window_s: float = 0.1) -> int | None:
    """The usable core that was busiest least over a short window, or None when /proc/stat is unreadable."""
    from edgeprof.measure.devstate import core_ticks

    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    before = core_ticks()
    time.sleep(window_s)
    after = core_ticks()

    def busy_share(c: int) -> float:  # idle and iowait are fields 3 and 4
        delta = [b - a for a, b in zip(before[c], after[c], strict=True)]
        return (sum(delta) - delta[3] - delta[4]) / max(1, sum(delta))

    shares = {c: busy_share(c) for c in usable if c in before and c in after}
    return min(shares, key=shares.get) if shares else None


def _pin(pids: list[int], core: int | None) -> None:
    """Every thread of every pid onto ``core`` (best effort: a thread that ended or a refusal is skipped)."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        return
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            tids = [pid]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, {core})
            except OSError:
                continue

