"""The regression gate's statistics and verdicts: paired log-ratios in, one verdict per model out (numpy, scipy).

What the decision sees for one model is a list of *sessions*: each session is one fresh worker process
(and onnxruntime session) per side, and holds the paired log-ratios ``log(current_block / baseline_block)``
of the interleaved blocks it measured. Blocks of one session share that process's offset, which moves a
model's speed by ~0.5-1% at random (measured on the development machine), so blocks are not independent
and a test over blocks would be far too sure of itself. The unit of the test is therefore the session:
each session's median log-ratio is one observation, and a Student t-test on those (one-sided,
Bonferroni-corrected for the number of models) gives the p-value and a confidence interval that
includes the process-to-process noise. The reported change is the median of all paired block ratios.

Verdicts, with ``lo, hi`` the (1 - 2·alpha/m) two-sided CI of the ratio (so ``lo > 1`` exactly when
the one-sided test for a slowdown is significant at alpha/m, ``hi < 1`` for a speed-up):

- ``noisy``: the paired block ratios' IQR is over 10% of their median; never fails the gate;
- ``regressed``: ``lo > 1`` and the median ratio > 1 + threshold;
- ``slower-within-threshold``: ``lo > 1`` and ``hi < 1 + threshold``;
- ``faster``: ``hi < 1``;
- ``same``: no significant change either way and ``hi < 1 + threshold``;
- otherwise undecided: more sessions are measured, and at the cap the verdict is ``inconclusive``
  (as it is with fewer than ``min_sessions`` sessions).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeprof.errors import InputError

REGRESSED = "regressed"
SLOWER = "slower-within-threshold"
SAME = "same"
FASTER = "faster"
NOISY = "noisy"
INCONCLUSIVE = "inconclusive"
UNDECIDED = "undecided"  # only between measurement batches, never in a final report
VERDICTS = (FASTER, SAME, SLOWER, REGRESSED, INCONCLUSIVE, NOISY)


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

    if out.iqr_frac > rule.noisy_iqr:
        out.verdict = NOISY if final else UNDECIDED
        out.reason = f"blocks too noisy to judge: IQR of the paired ratios is {out.iqr_frac:.0%} of the median"
    elif out.lo > 1.0 and out.ratio > limit:
        out.verdict = REGRESSED
        out.reason = (f"significantly slower (p={out.p_slower:.2g} < {alpha_m:.2g}) and over the "
                      f"{rule.threshold:.0%} threshold")
    elif out.hi < limit and out.lo > 1.0:
        out.verdict = SLOWER
        out.reason = f"significantly slower (p={out.p_slower:.2g}) but within the {rule.threshold:.0%} threshold"
    elif out.hi < 1.0:
        out.verdict = FASTER
        out.reason = f"significantly faster (p={out.p_faster:.2g})"
    elif out.hi < limit:
        out.verdict = SAME
        out.reason = f"no significant change; the CI excludes a slowdown over {rule.threshold:.0%}"
    else:
        out.verdict = INCONCLUSIVE if final else UNDECIDED
        if out.lo > 1.0:
            out.reason = f"significantly slower, but cannot tell whether by more than {rule.threshold:.0%}"
        else:
            out.reason = f"cannot exclude a slowdown over {rule.threshold:.0%} nor show one"
    return out


def decide_all(pairs: list[PairData], rule: DecisionRule = DecisionRule(), final: bool = True) -> list[Decision]:
    """Every model's verdict, corrected for the number of models judged together."""
    return [decide(p, rule, n_models=len(pairs), final=final) for p in pairs]


def judge_sequentially(
    pairs: list[PairData],
    fetch: Callable[[list[str]], dict[str, list[float]]],
    rule: DecisionRule = DecisionRule(),
    first: int = 4,
    step: int = 2,
    most: int = 10,
    out_of_time: Callable[[], bool] = lambda: False,
) -> tuple[list[Decision], int]:
    """Measure sessions until every model is decided, ``most`` sessions are spent or time is out.

    ``fetch(names)`` measures one more session for the models named and returns each one's paired
    block log-ratios. The verdicts are first looked at after ``first`` sessions and then after every
    ``step`` more; only undecided models go on. Returns the final decisions and the sessions measured.
    """
    if not (1 <= first <= most) or step < 1:
        raise InputError(f"sessions: need 1 <= first ({first}) <= most ({most}) and step ({step}) >= 1")
    by_name = {p.name: p for p in pairs}
    active = list(by_name)
    done = 0
    while active and done < most:
        for name, logs in fetch(active).items():
            by_name[name].sessions.append(list(logs))
        done += 1
        # look after ``first`` sessions, then every ``step`` more, and always at the cap (never past it)
        if done < most and (done < first or (done - first) % step):
            continue
        if done >= most or out_of_time():
            break
        decisions = decide_all(pairs, rule, final=False)
        active = [d.name for d in decisions if d.verdict == UNDECIDED]
    return decide_all(pairs, rule, final=True), done
