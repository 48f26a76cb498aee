"""The gate's decision rule on synthetic paired log-ratios with fixed seeds: every verdict, and its corner cases."""

import math

import numpy as np
import pytest

from edgeprof.gate.decide import (
    FASTER,
    INCONCLUSIVE,
    REGRESSED,
    SAME,
    SLOWER,
    UNDECIDED,
    DecisionRule,
    PairData,
    decide,
    decide_all,
    judge_sequentially,
)


def sessions(ratio: float, seed: int, n_sessions: int = 6, blocks: int = 4, block_sd: float = 0.01,
             session_sd: float = 0.005) -> list[list[float]]:
    """Log-ratios of ``n_sessions`` sessions: a true ratio, a per-session offset and per-block noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sessions):
        offset = rng.normal(0, session_sd)
        out.append(list(math.log(ratio) + offset + rng.normal(0, block_sd, blocks)))
    return out


def test_interval_is_the_textbook_t_interval_of_session_medians():
    medians = [0.01, 0.03, 0.02, 0.04, 0.00, 0.02]  # one block per session: the medians themselves
    d = decide(PairData("m", [[m] for m in medians]))
    half = 3.364930 * np.std(medians, ddof=1) / math.sqrt(6)  # t(0.99, 5) from the table
    assert d.lo == pytest.approx(math.exp(np.mean(medians) - half), rel=1e-6)
    assert d.hi == pytest.approx(math.exp(np.mean(medians) + half), rel=1e-6)
    assert 0 < d.p_slower < 0.01


@pytest.mark.parametrize("seed", range(5))
def test_no_change_is_same(seed):
    d = decide(PairData("m", sessions(1.0, seed)))
    assert d.verdict == SAME, d
    assert d.lo < 1.0 < d.hi < 1.10
    assert abs(d.change_pct) < 2


@pytest.mark.parametrize("seed", range(5))
def test_clear_slowdown_regresses(seed):
    d = decide(PairData("m", sessions(1.30, seed)))
    assert d.verdict == REGRESSED, d
    assert d.ratio == pytest.approx(1.30, rel=0.02)
    assert d.lo > 1.0 and d.p_slower < 0.01


def test_speed_up_is_faster():
    d = decide(PairData("m", sessions(0.80, 1)))
    assert d.verdict == FASTER and d.hi < 1.0 and d.p_faster < 0.01


def test_significant_change_under_the_threshold_is_slower_within_threshold():
    d = decide(PairData("m", sessions(1.05, 2)))
    assert d.verdict == SLOWER, d
    assert 1.0 < d.lo and d.hi < 1.10


@pytest.mark.parametrize("seed", range(5))
def test_a_wide_but_clearly_regressed_change_is_regressed(seed):
    """Very noisy blocks (IQR far over 10%), but the whole interval lies above +10%: the noise does not veto it."""
    d = decide(PairData("m", sessions(1.60, seed, block_sd=0.25)))
    assert d.noisy and d.iqr_frac > 0.10
    assert d.verdict == REGRESSED and d.lo > 1.10, d
    assert d.hi - d.lo > 0.2  # a wide interval, still wholly above the threshold


@pytest.mark.parametrize("seed", range(5))
def test_a_narrow_change_straddling_the_threshold_is_undecided_then_inconclusive(seed):
    data = PairData("m", sessions(1.10, seed, session_sd=0.004, block_sd=0.004))
    d = decide(data)
    assert d.verdict == INCONCLUSIVE and d.lo < 1.10 < d.hi and d.hi - d.lo < 0.03, d
    assert "straddles the +10% threshold" in d.reason and "CI [+" in d.reason
    assert decide(data, final=False).verdict == UNDECIDED


@pytest.mark.parametrize("seed", range(10))
def test_an_all_noisy_a_a_is_never_regressed(seed):
    d = decide(PairData("m", sessions(1.0, seed, block_sd=0.30, session_sd=0.05)))
    assert d.noisy and d.verdict in (SAME, INCONCLUSIVE), d
    if d.verdict == INCONCLUSIVE:  # reported with the plausible range of its change
        assert d.lo < 1.10 < d.hi


def test_too_few_samples():
    data = PairData("m", sessions(1.50, 4, n_sessions=2))
    assert decide(data).verdict == INCONCLUSIVE
    assert "too few" in decide(data).reason
    assert decide(data, final=False).verdict == UNDECIDED
    assert decide(PairData("empty")).verdict == INCONCLUSIVE


def test_over_the_threshold_but_not_significant_is_inconclusive():
    d = decide(PairData("m", sessions(1.15, 5, n_sessions=3, session_sd=0.15)))
    assert d.verdict == INCONCLUSIVE and d.ratio > 1.10 and d.lo <= 1.0


def test_significant_but_straddling_the_threshold_is_inconclusive():
    d = decide(PairData("m", sessions(1.08, 6, session_sd=0.02, block_sd=0.005)))
    assert d.verdict == INCONCLUSIVE and d.lo > 1.0 and d.hi >= 1.10


def test_bonferroni_widens_the_interval_with_more_models():
    data = PairData("m", sessions(1.25, 4, session_sd=0.04))
    alone, among_many = decide(data, n_models=1), decide(data, n_models=200)
    assert alone.verdict == REGRESSED
    assert among_many.alpha_corrected == pytest.approx(0.01 / 200)
    assert among_many.lo < alone.lo and among_many.hi > alone.hi
    assert among_many.verdict == INCONCLUSIVE


def test_decide_all_corrects_for_the_number_of_models():
    ds = decide_all([PairData(str(i), sessions(1.0, i)) for i in range(4)])
    assert {d.alpha_corrected for d in ds} == {0.0025}
    assert abs(ds[0].confidence - 0.995) < 1e-12


def test_threshold_is_configurable():
    data = PairData("m", sessions(1.05, 2))
    assert decide(data, DecisionRule(threshold=0.03)).verdict == REGRESSED
    assert decide(data, DecisionRule(threshold=0.10)).verdict == SLOWER


def test_identical_sessions_do_not_divide_by_zero():
    assert decide(PairData("m", [[0.0] * 4] * 6)).verdict == SAME
    assert decide(PairData("m", [[math.log(1.2)] * 4] * 6)).verdict == REGRESSED


def test_stored_mode_compares_with_the_stored_sessions():
    stored = sessions(1.0, 10)
    assert decide(PairData("m", sessions(1.0, 11), stored=stored)).verdict == SAME
    regressed = decide(PairData("m", sessions(1.30, 12), stored=stored))
    assert regressed.verdict == REGRESSED and regressed.ratio == pytest.approx(1.30, rel=0.03)
    assert decide(PairData("m", sessions(1.0, 13), stored=stored[:1])).verdict == INCONCLUSIVE


@pytest.mark.parametrize("bad", [dict(threshold=0), dict(threshold=-0.1), dict(alpha=0), dict(alpha=0.7),
                                 dict(min_sessions=1)])
def test_rule_rejects_nonsense(bad):
    from edgeprof.errors import InputError

    with pytest.raises(InputError):
        DecisionRule(**bad)


def test_sequential_stops_once_decided_and_only_remeasures_the_undecided():
    truth = {"same": 1.0, "slow": 1.30, "hard": 1.10}
    spread = {"same": 0.005, "slow": 0.005, "hard": 0.05}
    rng = np.random.default_rng(0)
    calls = []

    def fetch(names):
        calls.append(sorted(names))
        return {n: list(math.log(truth[n]) + rng.normal(0, spread[n]) + rng.normal(0, 0.01, 6)) for n in names}

    pairs = [PairData(n) for n in truth]
    decisions, sessions = judge_sequentially(pairs, fetch, first=4, step=2, most=10)
    verdicts = {d.name: d.verdict for d in decisions}
    assert verdicts["same"] == SAME and verdicts["slow"] == REGRESSED
    assert verdicts["hard"] in (INCONCLUSIVE, REGRESSED, SLOWER, SAME)
    assert calls[:4] == [sorted(truth)] * 4  # the first look comes after four sessions
    assert all(c == ["hard"] for c in calls[4:])  # only the undecided one goes on
    assert sessions == len(calls) <= 10 and (sessions - 4) % 2 == 0
    assert {len(p.sessions) for p in pairs if p.name != "hard"} == {4}


class FakeClock:
    """Each fetch costs ``per_session`` seconds of this clock."""

    def __init__(self, per_session: float):
        self.now, self.per_session = 0.0, per_session

    def __call__(self) -> float:
        return self.now

    def fetch(self, ratio: float, session_sd: float, seed: int = 0):
        rng = np.random.default_rng(seed)

        def fetch(names):
            self.now += self.per_session
            return {n: list(math.log(ratio) + rng.normal(0, session_sd) + rng.normal(0, 0.01, 6)) for n in names}

        return fetch


def test_sequential_stops_within_its_time_budget():
    clock = FakeClock(per_session=10.0)
    decisions, done = judge_sequentially([PairData("x")], clock.fetch(1.10, 0.05), first=4, most=10, grow_to=30,
                                         budget_s=45.0, clock=clock)
    assert done == 4 and clock.now <= 45.0  # a fifth session would have ended at 50 s
    assert decisions[0].verdict == INCONCLUSIVE and "after 4 sessions" in decisions[0].reason
    assert "stopped: the time budget of 45 s (--max-time) was spent" in decisions[0].reason
    clock = FakeClock(per_session=10.0)
    _, done = judge_sequentially([PairData("x")], clock.fetch(1.10, 0.05), first=4, budget_s=1.0, clock=clock)
    assert done == DecisionRule().min_sessions  # no verdict at all is possible with fewer


def test_the_cap_grows_with_noise_within_the_budget():
    """A real +30% slowdown with a wide session-to-session spread: undecided at 10 sessions, so the cap grows
    (up to 30) until the interval clears the threshold; with a tight budget it stops where the time runs out."""
    clock = FakeClock(per_session=1.0)
    decisions, done = judge_sequentially([PairData("x")], clock.fetch(1.30, 0.20, seed=4), first=4, most=10,
                                         grow_to=30, clock=clock)
    assert 10 < done <= 30 and (done - 4) % 2 == 0
    assert decisions[0].verdict == REGRESSED
    clock = FakeClock(per_session=1.0)
    decisions, done = judge_sequentially([PairData("x")], clock.fetch(1.30, 0.20, seed=4), first=4, most=10,
                                         grow_to=30, budget_s=12.5, clock=clock)
    assert done == 12 and decisions[0].verdict == INCONCLUSIVE


def test_the_cap_does_not_grow_for_a_change_sitting_on_the_threshold():
    clock = FakeClock(per_session=1.0)
    decisions, done = judge_sequentially([PairData("x")], clock.fetch(1.10, 0.002), first=4, most=10, grow_to=30,
                                         clock=clock)
    assert done == 10 and decisions[0].verdict == INCONCLUSIVE  # more sessions would not settle it
    assert "stopped: up to 30 sessions are not projected to settle it" in decisions[0].reason


def test_a_model_that_fails_drops_out_and_the_others_are_judged():
    failures = {}
    rng = np.random.default_rng(1)

    def fetch(names):
        if len(failures) == 0 and "b" in names:
            failures["b"] = "worker process died (killed by SIGKILL)"
        return {n: list(rng.normal(0, 0.01, 6)) for n in names if n not in failures}

    decisions, _ = judge_sequentially([PairData("a"), PairData("b")], fetch, failures=failures)
    by_name = {d.name: d for d in decisions}
    assert by_name["a"].verdict == SAME
    assert by_name["b"].verdict == "failed" and "SIGKILL" in by_name["b"].reason


@pytest.mark.parametrize("first, step, most", [(4, 3, 10), (4, 2, 10), (3, 4, 5), (4, 5, 4), (1, 1, 1)])
def test_sequential_never_exceeds_the_session_cap(first, step, most):
    calls = []

    def fetch(names):  # never decided: the median straddles the threshold with a wide spread
        calls.append(names)
        return {n: [math.log(1.10) + (0.3 if len(calls) % 2 else -0.3)] for n in names}

    decisions, done = judge_sequentially([PairData("x")], fetch, first=first, step=step, most=most)
    assert done == len(calls) <= most
    assert done == most  # undecided to the end: the cap itself is reached, not overrun
    assert decisions[0].sessions == done


def test_gate_options_refuse_a_cap_the_steps_do_not_reach():
    from edgeprof.errors import InputError
    from edgeprof.gate.measure import GateOptions

    with pytest.raises(InputError, match=r"max sessions \(10\) must be the first look \(4\) plus"):
        GateOptions(first_sessions=4, step_sessions=4, max_sessions=10)
    assert GateOptions(first_sessions=4, step_sessions=3, max_sessions=10).max_sessions == 10


def test_progress_moves_with_the_work_left_and_the_time_spent():
    from edgeprof.gate.measure import GateOptions, Interleaver
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    inter = Interleaver([], SessionSettings(), GateOptions(rounds=6, clock="wall"))
    inter.plan(10, 4)  # up to 10 sessions of 4 arms: 240 blocks
    inter._blocks_done = 96  # 4 sessions done
    assert inter._fraction() == pytest.approx(96 / 240, abs=0.01)
    inter.plan(2, 2)  # after the first look one model (2 arms) goes on for at most 2 more sessions: 24 blocks
    assert inter._fraction() == pytest.approx(96 / 120)
    inter._blocks_done += 12
    assert inter._fraction() == pytest.approx(108 / 120)
    inter.plan(0, 0, budget_s=1e-9)  # out of budget: the time spent says it is done
    assert inter._fraction() == 1.0
