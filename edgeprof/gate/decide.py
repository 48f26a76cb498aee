"""The regression gate's statistics and verdicts: paired log-ratios in, one verdict per model out (numpy, scipy).

What the decision sees for one model is a list of *sessions*: each session is one fresh worker process
(and onnxruntime session) per side, and holds the paired log-ratios ``log(current_block / baseline_block)``
of the interleaved blocks it measured. Blocks of one session share that process's offset, which moves a
model's speed by ~0.5-1% at random (measured on the development machine), so blocks are not independent
and a test over blocks would be far too sure of itself. The unit of the test is therefore the session:
each session's median log-ratio is one observation, and a Student t-test on those (one-sided,
Bonferroni-corrected for the number of models) gives the p-value and a confidence interval that
includes the process-to-process noise. The reported change is the median of all paired block ratios.

Verdicts, with ``lo, hi`` the (1 - 2·alpha/m) two-sided CI of the ratio and ``limit = 1 + threshold``.
The interval decides; the spread of the blocks only widens it and never vetoes what it shows:

- ``regressed``: ``lo > limit``: the whole interval lies above the threshold, however wide it is;
- ``slower-within-threshold``: ``1 < lo`` and ``hi < limit``;
- ``faster``: ``hi < 1``;
- ``same``: ``lo <= 1 <= hi < limit``: no significant change, and a slowdown over the threshold is excluded;
- otherwise (the interval straddles the limit) undecided: more sessions are measured for that model,
  and what is still undecided when the sessions or the time run out is ``inconclusive``, with its
  interval as the plausible range of the change (as it is with fewer than ``min_sessions`` sessions);
- ``failed``: the model could not be measured (its worker died, say); the reason says why.

``Decision.noisy`` flags a model whose paired block ratios have an IQR over ``noisy_iqr`` of their median:
a note for the reader, not a verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeprof.errors import InputError

REGRESSED = "regressed"
SLOWER = "slower-within-threshold"
SAME = "same"
FASTER = "faster"
INCONCLUSIVE = "inconclusive"
FAILED = "failed"
UNDECIDED = "undecided"  # only between measurement batches, never in a final report
VERDICTS = (FASTER, SAME, SLOWER, REGRESSED, INCONCLUSIVE, FAILED)


@dataclass(frozen=True)
class DecisionRule:
    """The gate's thresholds. ``alpha`` is one-sided and split over the models (Bonferroni)."""

    threshold: float = 0.10
    alpha: float = 0.01
    noisy_iqr: float = 0.10
    min_sessions: int = 3

    def __post_init__(self) -> None:
        if not (0 < self.threshold < 10):
            raise InputError(f"--threshold must be a positive fraction (0.10 = 10% slower), got {self.threshold}")
        if not (0 < self.alpha < 0.5):
            raise InputError(f"--alpha must be between 0 and 0.5 (e.g. 0.01), got {self.alpha}")
        if not (0 < self.noisy_iqr):
            raise InputError(f"the noisy IQR fraction must be positive, got {self.noisy_iqr}")
        if self.min_sessions < 2:
            raise InputError(f"min_sessions must be at least 2 (a t-test needs 2), got {self.min_sessions}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PairData:
    """What is known about one model. ``sessions``: per session, the paired block log-ratios.

    Relative mode: log(current / baseline). Stored mode: log(current / reference), and ``stored``
    holds the baseline's sessions of log(baseline / reference) measured when the baseline was saved.
    """

    name: str
    sessions: list[list[float]] = field(default_factory=list)
    stored: list[list[float]] | None = None

    @property
    def n_blocks(self) -> int:
        return sum(len(s) for s in self.sessions)


@dataclass
class Decision:
    name: str
    verdict: str
    ratio: float = math.nan  # median of the paired block ratios (stored mode: ratio of the two medians)
    lo: float = math.nan  # confidence interval of the ratio at the corrected level
    hi: float = math.nan
    confidence: float = math.nan  # two-sided confidence of [lo, hi]
    p_slower: float = math.nan  # one-sided p-value of "no slowdown" (uncorrected; compare with alpha / m)
    p_faster: float = math.nan
    alpha_corrected: float = math.nan
    sessions: int = 0
    blocks: int = 0
    iqr_frac: float = math.nan  # IQR of the paired block ratios over their median
    noisy: bool = False  # iqr_frac over the rule's noisy_iqr: a note, never a verdict
    reason: str = ""

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100.0


# -- the decision ---------------------------------------------------------------------------------


def _session_medians(sessions: list[list[float]]) -> np.ndarray:
    return np.array([float(np.median(s)) for s in sessions if len(s) > 0], dtype=float)


def _iqr_frac(log_ratios: np.ndarray) -> float:
    if log_ratios.size == 0:
        return math.nan
    ratios = np.exp(log_ratios)
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else math.inf


def _t_stats(diff: float, se: float, df: float, alpha_m: float) -> tuple[float, float, float, float]:
    """One-sided p-values (slower, faster) and the CI bounds of the log-ratio at level alpha_m per side."""
    from scipy import stats

    se = max(se, 1e-9)  # identical sessions: a zero spread must not divide by zero
    t = diff / se
    p_slower = float(stats.t.sf(t, df))
    crit = float(stats.t.ppf(1.0 - alpha_m, df))
    return p_slower, 1.0 - p_slower, diff - crit * se, diff + crit * se


def decide(data: PairData, rule: DecisionRule = DecisionRule(), n_models: int = 1, final: bool = True) -> Decision:
    """One model's verdict. ``n_models`` is the number of models judged together (Bonferroni);
    ``final=False`` returns ``undecided`` where more sessions could still settle it."""
    alpha_m = rule.alpha / max(1, n_models)
    sessions = [list(map(float, s)) for s in data.sessions if len(s) > 0]
    blocks = np.concatenate([np.asarray(s, dtype=float) for s in sessions]) if sessions else np.array([])
    out = Decision(name=data.name, verdict=UNDECIDED, sessions=len(sessions), blocks=int(blocks.size),
                   alpha_corrected=alpha_m, confidence=1.0 - 2.0 * alpha_m)
    if blocks.size and not np.all(np.isfinite(blocks)):
        out.verdict, out.reason = INCONCLUSIVE, "non-finite timings"
        return out
    stored = None
    if data.stored is not None:
        stored = [list(map(float, s)) for s in data.stored if len(s) > 0]
        if len(stored) < 2:
            out.verdict, out.reason = INCONCLUSIVE, "the baseline holds too few stored sessions for stored mode"
            return out
    if len(sessions) < rule.min_sessions:
        out.verdict = INCONCLUSIVE if final else UNDECIDED
        out.reason = f"too few samples: {len(sessions)} session(s), at least {rule.min_sessions} needed"
        if blocks.size:
            out.ratio = float(np.exp(np.median(blocks)))
        return out

    x = _session_medians(sessions)
    if stored is None:
        diff = float(x.mean())
        se = float(x.std(ddof=1) / math.sqrt(x.size))
        df = float(x.size - 1)
        out.ratio = float(np.exp(np.median(blocks)))
        out.iqr_frac = _iqr_frac(blocks)
    else:
        y = _session_medians(stored)
        stored_blocks = np.concatenate([np.asarray(s, dtype=float) for s in stored])
        diff = float(x.mean() - y.mean())
        vx, vy = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
        se = math.sqrt(vx + vy)
        # Welch-Satterthwaite degrees of freedom (the smaller sample's when both spreads are zero)
        denom = (vx**2 / (x.size - 1) if vx else 0.0) + (vy**2 / (y.size - 1) if vy else 0.0)
        df = float((vx + vy) ** 2 / denom) if denom > 0 else float(min(x.size, y.size) - 1)
        out.ratio = float(np.exp(np.median(blocks) - np.median(stored_blocks)))
        out.iqr_frac = max(_iqr_frac(blocks), _iqr_frac(stored_blocks))

    out.p_slower, out.p_faster, lo, hi = _t_stats(diff, se, df, alpha_m)
    out.lo, out.hi = float(math.exp(lo)), float(math.exp(hi))
    limit = 1.0 + rule.threshold
    out.noisy = bool(out.iqr_frac > rule.noisy_iqr)
    ci = f"CI [{(out.lo - 1) * 100:+.1f}%, {(out.hi - 1) * 100:+.1f}%]"
    noise = (f"; blocks noisy (IQR of the paired ratios {out.iqr_frac:.0%} of the median), which widens the CI"
             if out.noisy else "")
    if out.lo > limit:
        out.verdict = REGRESSED
        out.reason = f"the whole {ci} lies above the +{rule.threshold:.0%} threshold (p={out.p_slower:.2g}){noise}"
    elif out.hi < limit and out.lo > 1.0:
        out.verdict = SLOWER
        out.reason = f"significantly slower (p={out.p_slower:.2g}), but the whole {ci} is within the threshold"
    elif out.hi < 1.0:
        out.verdict = FASTER
        out.reason = f"significantly faster (p={out.p_faster:.2g})"
    elif out.hi < limit:
        out.verdict = SAME
        out.reason = f"no significant change; the {ci} excludes a slowdown over {rule.threshold:.0%}"
    else:
        out.verdict = INCONCLUSIVE if final else UNDECIDED
        side = "significantly slower, but" if out.lo > 1.0 else "no significant change, but"
        out.reason = (f"{side} the {ci} straddles the +{rule.threshold:.0%} threshold: a slowdown over it is "
                      f"neither shown nor excluded after {len(sessions)} sessions{noise}")
    return out


def decide_all(pairs: list[PairData], rule: DecisionRule = DecisionRule(), final: bool = True) -> list[Decision]:
    """Every model's verdict, corrected for the number of models judged together."""
    return [decide(p, rule, n_models=len(pairs), final=final) for p in pairs]


def sessions_to_decide(d: Decision, rule: DecisionRule, upto: int) -> int | None:
    """How many sessions in all would likely settle an undecided model, if its interval keeps its centre and
    its width shrinks like t(K-1)/sqrt(K); None when that takes more than ``upto`` (or cannot be told)."""
    from scipy import stats

    if not (d.sessions >= 2 and math.isfinite(d.lo) and math.isfinite(d.hi) and d.lo > 0):
        return None
    centre, half = (math.log(d.hi) + math.log(d.lo)) / 2, (math.log(d.hi) - math.log(d.lo)) / 2
    gap = abs(centre - math.log1p(rule.threshold))
    q = 1.0 - d.alpha_corrected
    width_now = stats.t.ppf(q, d.sessions - 1) / math.sqrt(d.sessions)
    for k in range(d.sessions + 1, upto + 1):
        if half * stats.t.ppf(q, k - 1) / math.sqrt(k) / width_now < gap:
            return k
    return None


def judge_sequentially(
    pairs: list[PairData],
    fetch: Callable[[list[str]], dict[str, list[float]]],
    rule: DecisionRule = DecisionRule(),
    first: int = 4,
    step: int = 2,
    most: int = 10,
    grow_to: int | None = None,
    budget_s: float = math.inf,
    clock: Callable[[], float] = time.monotonic,
    failures: Mapping[str, str] | None = None,
    on_plan: Callable[[list[str], int], None] | None = None,
) -> tuple[list[Decision], int]:
    """Measure sessions until every model is decided, the session cap is reached or the time is out.

    ``fetch(names)`` measures one more session for the models named and returns each one's paired
    block log-ratios. The verdicts are first looked at after ``first`` sessions and then after every
    ``step`` more; only undecided models go on. The cap is ``most`` sessions; a model still undecided there
    goes on up to ``grow_to`` sessions when its interval is projected to clear the threshold by then (a
    noisy model needs more sessions to be decided; one whose change sits right on the threshold never
    will). No session past ``rule.min_sessions`` is started that is predicted to end after ``budget_s``
    seconds (by ``clock``, from the call), the prediction being the measured time per model and session.
    ``failures`` (name -> reason, filled in by ``fetch``) names models that can no longer be measured:
    they drop out and are ``failed``. ``on_plan(active, sessions_left)`` says, after each look, which models
    go on and how many more sessions they may take at most. Returns the decisions and the sessions measured.
    """
    grow_to = max(most, grow_to or most)
    if not (1 <= first <= most) or step < 1:
        raise InputError(f"sessions: need 1 <= first ({first}) <= most ({most}) and step ({step}) >= 1")
    failures = failures if failures is not None else {}
    start = clock()
    by_name = {p.name: p for p in pairs}
    active = list(by_name)
    cap = most
    done = 0
    spent_s, model_sessions = 0.0, 0
    stopped: dict[str, str] = {}  # why measuring stopped for a model still undecided
    if on_plan:
        on_plan(list(active), cap)
    while active and done < cap:
        if done >= rule.min_sessions and model_sessions:
            per_model_s = spent_s / model_sessions
            if clock() - start + per_model_s * len(active) > budget_s:
                stopped.update({n: f"the time budget of {budget_s:.0f} s (--max-time) was spent" for n in active})
                break
        t0 = clock()
        for name, logs in fetch(active).items():
            if name not in failures:
                by_name[name].sessions.append(list(logs))
        spent_s += clock() - t0
        model_sessions += len(active)
        done += 1
        active = [n for n in active if n not in failures]
        # look after ``first`` sessions, then every ``step`` more, and always at the cap (never past it)
        if done < cap and (done < first or (done - first) % step):
            continue
        decisions = {d.name: d for d in decide_all(pairs, rule, final=False)}
        active = [n for n in active if decisions[n].verdict == UNDECIDED]
        if done >= cap and active and cap < grow_to:
            wanted = [sessions_to_decide(decisions[n], rule, grow_to) for n in active]
            stopped.update({n: f"up to {grow_to} sessions are not projected to settle it"
                            for n, k in zip(active, wanted, strict=True) if k is None})
            if any(k is not None for k in wanted):
                active = [n for n, k in zip(active, wanted, strict=True) if k is not None]
                needed = max(k for k in wanted if k is not None)
                cap = min(grow_to, first + math.ceil((needed - first) / step) * step)
        if on_plan:
            on_plan(list(active), max(0, cap - done))
    final = decide_all(pairs, rule, final=True)
    for i, d in enumerate(final):
        if d.verdict == INCONCLUSIVE and d.name not in failures:
            why = stopped.get(d.name) or (f"the session cap ({done}) was reached" if done >= cap else "")
            d.reason += f"; stopped: {why}" if why else ""
        if d.name in failures:
            final[i] = Decision(name=d.name, verdict=FAILED, ratio=d.ratio, sessions=d.sessions, blocks=d.blocks,
                                alpha_corrected=d.alpha_corrected, confidence=d.confidence,
                                reason=failures[d.name])
    return final, done
