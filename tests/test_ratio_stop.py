"""The sweep's stopping rule: ratio targets, widest first, sessions, levels and budgets, on synthetic samples.

Every test here but the last two drives ``Schedule`` (the stopping rule without processes) with a synthetic host on
a virtual clock, with fixed seeds: nothing is timed.
"""

import math
from collections import defaultdict
from functools import partial

import numpy as np
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.measure.interleave import (
    LONG_RUN_S,
    MAX_SESSIONS_FACTOR,
    UNTARGETED_ROUNDS,
    Measurement,
    MeasureOptions,
    Schedule,
    Target,
    paired_ratio_detail,
    plan_targets,
    rounds_needed,
    time_budget_s,
)
from edgeprof.measure.pool import sample_each
from edgeprof.measure.stats import BetweenEstimate, between_estimate, distinct_levels, median_ci, session_interval

runner = CliRunner()


class SyntheticHost:
    """Synthetic samples on a virtual clock. A run of model i in round r of session s takes ``base_ms[i]`` times the
    host's level in that round (one of ``levels``, drawn per round: every model of a round sees the same level),
    times the offset of model i's process in session s (log-normal, sd ``session_offset``), times ``1 + drift[i] *
    r``, times log-normal noise (sd ``noise``, or ``noise[i]``). Sampling advances the clock by what it sampled."""

    def __init__(self, base_ms, levels=(1.0,), noise=0.01, session_offset=0.0, drift=None, seed=0):
        self.base_ms = list(base_ms)
        self.levels = levels
        self.noise = noise if isinstance(noise, list | tuple) else [noise] * len(self.base_ms)
        self.session_offset = session_offset
        self.drift = drift or {}
        self.rng = np.random.default_rng(seed)
        self.now = 0.0
        self.calls: dict[int, list[int]] = defaultdict(list)  # round -> the models sampled, in order
        self._level: dict[int, float] = {}
        self._offset: dict[tuple[int, int], float] = {}

    def clock(self) -> float:
        return self.now

    def sampler(self, schedule: Schedule, i: int):
        def sample(count: int) -> list[float]:
            r, s = schedule.round_no, schedule.session
            level = self._level.setdefault(r, float(self.rng.choice(self.levels)))
            offset = self._offset.setdefault((i, s), math.exp(self.rng.normal(0.0, self.session_offset)))
            x = self.base_ms[i] * level * offset * (1 + self.drift.get(i, 0.0) * r) * \
                np.exp(self.rng.normal(0.0, self.noise[i], count))
            self.now += float(x.sum()) / 1e3
            self.calls[r].append(i)
            return x.tolist()

        return sample


def run(host: SyntheticHost, pairs, options: MeasureOptions, cap_s=None, notes=None):
    """Measure the host's models as ``measure`` does (session after session), with ``pairs`` of model indices."""
    results = [Measurement(path=f"m{i}") for i in range(len(host.base_ms))]
    targets = plan_targets([m.path for m in results], [(f"m{a}", f"m{b}") for a, b in pairs], options.ci_target)
    schedule = Schedule(results, targets, options, cap_s=cap_s, clock=host.clock,
                        on_note=notes.append if notes is not None else None)
    keys = list(range(len(results)))
    while keys:
        schedule.run_session({i: host.base_ms[i] for i in keys},
                             partial(sample_each, {i: host.sampler(schedule, i) for i in keys}))
        keys = schedule.next_session()
    return results, schedule


def rounds_of(m: Measurement) -> set[int]:
    return set(m.sample_round)


# -- stop on the ratio ---------------------------------------------------------------------------------------------
def test_a_bimodal_host_with_a_stable_ratio_stops_after_the_minimum_rounds():
    opts = MeasureOptions()
    host = SyntheticHost([1.0, 1.5], levels=(1.0, 1.35), noise=0.02, session_offset=0.002, seed=1)
    results, schedule = run(host, [(1, 0)], opts)
    minimum = opts.rounds_per_session * opts.sessions
    assert schedule.round_no == minimum and schedule.session == opts.sessions
    ci = paired_ratio_detail(results[1], results[0])
    assert ci.rel_halfwidth <= opts.rel_ci and ci.lo <= 1.5 <= ci.hi
    assert ci.sessions == opts.sessions
    # the host is bimodal: both models' per-round medians fall into two levels
    for m in results:
        assert distinct_levels(list(m.round_medians().values())) == 2
    # asking for absolute medians on the same host does not stop early: the levels make them uncertain
    host = SyntheticHost([1.0, 1.5], levels=(1.0, 1.35), noise=0.02, session_offset=0.002, seed=1)
    absolute, schedule_abs = run(host, [(1, 0)], MeasureOptions(ci_target="absolute"))
    assert schedule_abs.round_no > minimum
    assert [m.target for m in results] == ["ratio", "ratio"] and absolute[0].target == "absolute"


def test_a_drifting_ratio_does_not_stop_early():
    opts = MeasureOptions()
    host = SyntheticHost([1.0, 1.5], levels=(1.0, 1.35), noise=0.02, drift={1: 0.01}, seed=2)
    results, schedule = run(host, [(1, 0)], opts)
    assert schedule.round_no > opts.rounds_per_session * opts.sessions
    assert schedule.session > opts.sessions  # the sessions disagree: more sessions were measured
    assert paired_ratio_detail(results[1], results[0]).rel_halfwidth > opts.rel_ci


def test_widest_first_spends_rounds_on_the_wide_ratio_and_keeps_its_sides_paired():
    opts = MeasureOptions(sessions=1, min_rounds=6)
    host = SyntheticHost([1.0, 1.2, 1.2], noise=[0.002, 0.002, 0.15], seed=3)
    results, schedule = run(host, [(1, 0), (2, 0)], opts)
    base, tight, wide = (rounds_of(m) for m in results)
    assert len(tight) == opts.rounds_per_session  # reached its target in the rounds every model takes
    assert len(wide) > 2 * len(tight)
    assert wide <= base  # every round that timed the wide model timed its baseline too
    orders = {tuple(v) for v in host.calls.values() if len(v) == 3}
    assert len(orders) > 1  # the order of the models is shuffled round by round
    ci = paired_ratio_detail(results[2], results[0])
    assert ci.rel_halfwidth <= opts.rel_ci or schedule.over_budget() or \
        schedule.session == opts.sessions * MAX_SESSIONS_FACTOR


def test_models_in_no_ratio_take_only_the_first_sessions_first_rounds():
    opts = MeasureOptions()
    host = SyntheticHost([1.0, 1.2, 0.5], noise=[0.01, 0.15, 0.01], seed=4)
    results, schedule = run(host, [(1, 0)], opts)
    assert len(rounds_of(results[2])) == min(UNTARGETED_ROUNDS, opts.rounds_per_session) < schedule.round_no
    assert set(results[2].sample_session) == {0} and set(results[1].sample_session) >= set(range(opts.sessions))
    assert results[2].target == "" and results[1].target == "ratio"


def test_without_pairs_every_median_is_a_target():
    assert plan_targets(["a", "b"], None, "ratio") == [Target((0,)), Target((1,))]
    assert plan_targets(["a", "b"], [("b", "a")], "absolute") == [Target((0,)), Target((1,))]
    assert plan_targets(["a", "b"], [("b", "a"), ("b", "a"), ("a", "a")], "ratio") == [Target((1, 0))]
    with pytest.raises(ValueError, match="not measured"):
        plan_targets(["a"], [("b", "a")], "ratio")


# -- sessions ------------------------------------------------------------------------------------------------------
def test_spread_between_sessions_widens_the_ci():
    rng = np.random.default_rng(5)
    within = [rng.normal(0.1, 0.01, 8) for _ in range(4)]  # 4 sessions of 8 paired log-ratios
    shifted = [w + offset for w, offset in zip(within, (-0.02, 0.015, -0.01, 0.02), strict=True)]
    plain, spread = session_interval(within), session_interval(shifted)
    assert spread.rel_halfwidth > 1.5 * plain.rel_halfwidth
    assert spread.between > plain.between and spread.between_share > 0.5 > plain.between_share
    assert spread.lo < math.exp(0.1) < spread.hi
    # one session: the order-statistic interval of the median alone
    single = session_interval([np.concatenate(within)])
    lo, hi = median_ci(np.concatenate(within))
    assert single.between == 0 and math.isnan(single.between_share)
    assert single.lo == pytest.approx(math.exp(lo)) and single.hi == pytest.approx(math.exp(hi))


def test_a_ratio_measured_in_several_processes_covers_their_offsets():
    """The same paired rounds, once known to come from 4 processes with offsets and once as if from one: the ratio's
    CI over the sessions is the wider, and says how much of the spread is between sessions."""
    rng = np.random.default_rng(6)
    offsets = (1.0, 1.02, 0.985, 1.015)
    num, den = Measurement(path="num"), Measurement(path="den")
    for r in range(24):
        s = r // 6
        level = rng.choice((1.0, 1.3))
        for m, base, offset in ((num, 1.5, offsets[s]), (den, 1.0, 1.0)):
            x = base * level * offset * np.exp(rng.normal(0, 0.01, 10))
            m.samples_ms += x.tolist()
            m.sample_round += [r] * 10
            m.sample_session += [s] * 10
    by_session = paired_ratio_detail(num, den)
    as_one = paired_ratio_detail(Measurement(path="n", samples_ms=num.samples_ms, sample_round=num.sample_round),
                                 Measurement(path="d", samples_ms=den.samples_ms, sample_round=den.sample_round))
    assert by_session.value == pytest.approx(as_one.value)
    assert by_session.rel_halfwidth > as_one.rel_halfwidth and by_session.between_share > 0.5
    assert by_session.sessions == 4 and as_one.sessions == 1


def test_each_session_is_judged_by_its_own_noise():
    """Two sessions of a few noisy rounds and one of many quiet ones, with no offsets between them: the noisy
    sessions' medians stray by their own noise, which is not taken for a session offset (judged against the quiet
    session's noise, it would be)."""
    covered, betweens = 0, []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        ci = session_interval([rng.normal(0, 0.08, 4), rng.normal(0, 0.08, 4), rng.normal(0, 0.005, 400)])
        covered += ci.lo <= 1.0 <= ci.hi
        betweens.append(ci.between)
    assert covered >= 95
    # judged against the quiet session's noise, nearly every seed would get an offset near ±10%
    assert np.mean(np.asarray(betweens) == 0) >= 0.3 and np.median(betweens) < 0.05


def test_pooling_the_offsets_over_a_measurements_ratios_narrows_their_cis_and_they_still_cover():
    """Four ratios measured in the same three sessions, each with real session offsets (sd 1%): pooled over the
    four (6 degrees of freedom instead of 2), the CIs are narrower and still cover the true ratio ~95% of the time."""
    covered, own_widths, pooled_widths = 0, [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        targets = [[rng.normal(0, 0.01, 10) + rng.normal(0, 0.01) for _ in range(3)] for _ in range(4)]
        pooled = BetweenEstimate.pool([between_estimate(t) for t in targets])
        assert pooled.df == 8
        ci, own = session_interval(targets[0], pooled=pooled), session_interval(targets[0])
        covered += ci.lo <= 1.0 <= ci.hi
        own_widths.append(own.rel_halfwidth)
        pooled_widths.append(ci.rel_halfwidth)
    assert covered >= 0.92 * 300
    assert np.median(pooled_widths) < 0.8 * np.median(own_widths)
    # a pooled estimate with fewer degrees of freedom than the target's own is not used
    rng = np.random.default_rng(1)
    many = [rng.normal(0, 0.01, 10) + rng.normal(0, 0.01) for _ in range(6)]
    assert session_interval(many, pooled=BetweenEstimate(1.0, 2)) == session_interval(many)


# -- levels --------------------------------------------------------------------------------------------------------
def test_distinct_levels():
    rng = np.random.default_rng(7)

    def level(value, n):
        return value * np.exp(rng.normal(0, 0.01, n))

    assert distinct_levels(level(1.0, 40)) == 1
    assert distinct_levels(np.concatenate([level(1.0, 20), level(1.3, 20)])) == 2
    assert distinct_levels(np.concatenate([level(1.0, 15), level(1.2, 15), level(1.45, 15)])) == 3
    assert distinct_levels(np.append(level(1.0, 40), 2.0)) == 1  # one slow round is not a level
    assert distinct_levels(np.exp(rng.standard_exponential(40) * 0.05)) == 1  # a long tail without a gap
    assert distinct_levels([]) == 0


# -- budgets -------------------------------------------------------------------------------------------------------
def test_the_budget_follows_the_models_run_time():
    opts = MeasureOptions(max_time=3.0)
    assert time_budget_s([0.5, 2.0], opts) == pytest.approx(6.0)  # blocks: --max-time per model
    # a whole network timed one 150 ms run at a time: as many bursts as a block gets, so as many rounds
    assert time_budget_s([150.0, 150.0], opts) == pytest.approx(2 * 3.0 * 150.0 / opts.burst_ms)


def test_rounds_needed_from_the_first_rounds():
    assert rounds_needed(10, 0.04, 0.02) == 40  # half the width: four times the rounds
    assert rounds_needed(10, 0.01, 0.02) == 10
    assert math.isinf(rounds_needed(10, math.inf, 0.02))


def test_a_long_measurement_is_announced_before_its_long_part():
    opts = MeasureOptions(max_time=10.0)
    host = SyntheticHost([150.0, 160.0], noise=0.20, seed=8)  # a whole network, one noisy run per round
    notes: list[str] = []
    seen = []
    results = [Measurement(path="m0"), Measurement(path="m1")]
    schedule = Schedule(results, [Target((1, 0))], opts, clock=host.clock,
                        on_note=lambda message: (notes.append(message), seen.append(schedule.round_no)))
    keys = [0, 1]
    while keys:
        schedule.run_session({i: host.base_ms[i] for i in keys},
                             partial(sample_each, {i: host.sampler(schedule, i) for i in keys}))
        keys = schedule.next_session()
    assert len(notes) == 1 and "min for 2 models" in notes[0] and "--total-time caps it" in notes[0]
    # announced after the first session's minimum rounds, before the rounds the target needs
    assert seen == [opts.rounds_per_session] and schedule.round_no > opts.rounds_per_session * opts.sessions
    # what the estimate counts is the budget's at most: the rounds the target needs are more than it allows
    assert LONG_RUN_S <= schedule.estimate_s <= schedule.cap + opts.per_op_s * 2 + 5


def test_the_callers_cap_stops_the_rounds_but_not_the_minimum():
    opts = MeasureOptions(max_time=10.0)
    host = SyntheticHost([150.0, 160.0], noise=0.10, seed=9)
    results, schedule = run(host, [(1, 0)], opts, cap_s=20.0)
    assert schedule.cap == 20.0 and schedule.spent < 20.0 + 0.5  # at most one round over
    host = SyntheticHost([150.0, 160.0], noise=0.10, seed=9)
    results, schedule = run(host, [(1, 0)], opts, cap_s=0.0)
    assert schedule.round_no == opts.rounds_per_session * opts.sessions


# -- options and notes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"sessions": 0}, {"sessions": 51}, {"ci_target": "median"},
                                    {"total_time": 0}, {"total_time": -5.0}])
def test_bad_measure_options_are_input_errors(kwargs):
    with pytest.raises(InputError):
        MeasureOptions(**kwargs)


@pytest.mark.parametrize("args, needle", [
    (["--sessions", "0"], "--sessions"),
    (["--ci-target", "median"], "--ci-target"),
    (["--total-time=-5"], "--total-time"),
    (["--total-time", "0"], "--total-time"),
])
def test_bad_measuring_options_are_one_line_errors(args, needle):
    assert needle in one_line_error(runner.invoke(app, ["sweep", *args, "--quiet"]))


def test_measuring_options_reach_the_library(monkeypatch):
    seen = {}

    def fake_run_sweep(plan, settings, options, **kwargs):
        seen["options"] = options
        raise InputError("stopped before measuring")

    import sys

    monkeypatch.setattr(sys.modules["edgeprof.cli.sweep"], "run_sweep", fake_run_sweep)
    result = runner.invoke(app, ["sweep", "--ci-target", "absolute", "--sessions", "2", "--total-time", "90",
                                 "--quiet"])
    assert "stopped before measuring" in one_line_error(result)
    options = seen["options"]
    assert (options.ci_target, options.sessions, options.total_time) == ("absolute", 2, 90.0)
    runner.invoke(app, ["sweep", "--quiet"])
    default = MeasureOptions()
    assert (seen["options"].ci_target, seen["options"].sessions, seen["options"].total_time) == \
        ("ratio", default.sessions, None)


def test_notes_say_only_what_to_act_on(monkeypatch):
    from edgeprof.report import notes
    from edgeprof.report.table import display_frame
    from edgeprof.results.rows import to_frame

    assert notes.row_notes({"status": "ok", "noisy": True, "ci_reached": True, "levels": 1}) == []
    assert notes.row_notes({"status": "ok", "ci_reached": False, "ci_target": "ratio", "levels": 2}) == \
        ["ratio CI target not reached", "bimodal"]
    assert notes.row_notes({"status": "ok", "ci_reached": False, "ci_target": "absolute", "levels": 3}) == \
        ["CI target not reached", "3 levels"]
    monkeypatch.setattr(notes, "NOTE_RULES", [lambda row: "load changed" if row.get("load_1m", 0) > 4 else None])
    assert notes.row_notes({"status": "ok", "ci_reached": True, "load_1m": 5.0}) == ["load changed"]
    rows = [{"act": "relu", "block": "conv", "width": 16, "imgsz": 32, "median_ms": 1.0, "noisy": True, "levels": 2,
             "ci_reached": True, "ci_target": "ratio", "status": "ok", "model": "relu.onnx"},
            {"act": "mish", "block": "conv", "width": 16, "imgsz": 32, "median_ms": 3.0, "noisy": True, "levels": 1,
             "ci_reached": False, "ci_target": "ratio", "status": "ok", "model": "mish.onnx"}]
    shown = display_frame(to_frame(rows))
    assert list(shown["notes"]) == ["bimodal", "ratio CI target not reached"]


# -- through real worker processes ---------------------------------------------------------------------------------
def test_profile_rows_stop_on_the_ratio_over_sessions(tiny_models, tmp_path):
    from edgeprof.pipeline import profile_models

    opts = MeasureOptions(max_time=0.3, min_samples=10, min_rounds=6, warmup_s=0.02, sessions=2)
    df, _ = profile_models([tiny_models["relu"], tiny_models["mish"]], options=opts, csv_path=tmp_path / "r.csv")
    assert list(df["ci_target"]) == ["ratio", "ratio"] and (df["sessions"] >= 2).all()
    assert (df["levels"] >= 1).all()
    mish = df.iloc[1]
    assert mish["ratio_to_baseline"] > 1 and 0 <= mish["between_session_share"] <= 1
    assert bool(mish["ci_reached"]) == (max(mish["ratio_to_baseline"] - mish["ratio_ci95_low"],
                                            mish["ratio_ci95_high"] - mish["ratio_to_baseline"])
                                        / mish["ratio_to_baseline"] <= opts.rel_ci)
