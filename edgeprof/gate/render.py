"""The gate's report as rows, Markdown (for $GITHUB_STEP_SUMMARY) and JSON; no measuring here."""

from __future__ import annotations

import json
import math

from edgeprof.gate.check import CheckReport
from edgeprof.gate.load import describe as describe_load

_CLOCK = {"cpu": "on-CPU ms per run (waiting for a core excluded)", "wall": "wall-clock ms per run"}
COLUMNS = ("model", "baseline ms", "current ms", "change", "CI", "verdict", "notes")
_ICONS = {"regressed": "❌", "inconclusive": "⚠️", "failed": "💥", "faster": "✅", "same": "✅",
          "slower-within-threshold": "✅"}
_HEAD = {0: "✅ ", 1: "❌ ", 3: "💥 ", 4: "⚠️ ", 130: "⏹️ "}


def _ms(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{(x - 1) * 100:+.1f}%"


def rows(report: CheckReport) -> list[tuple[str, ...]]:
    """One row of strings per judged model, in COLUMNS order."""
    out = []
    for r in report.results:
        d = r.decision
        ci = "—" if not math.isfinite(d.lo) else f"[{_pct(d.lo)}, {_pct(d.hi)}]"
        notes = []
        if r.identical:
            notes.append("identical file")
        if d.sessions:
            notes.append(f"{d.sessions} sessions, {d.blocks} blocks")
        if d.noisy and d.verdict not in ("inconclusive", "failed"):
            notes.append(f"noisy blocks (IQR {d.iqr_frac:.0%})")
        if d.verdict in ("inconclusive", "failed") and d.reason:
            notes.append(d.reason)
        out.append((r.name, _ms(r.baseline_ms), _ms(r.current_ms), _pct(d.ratio), ci, d.verdict, "; ".join(notes)))
    return out


def caption(report: CheckReport) -> str:
    conf = report.results[0].decision.confidence if report.results else math.nan
    ci = f"{conf * 100:.4g}% CI" if math.isfinite(conf) else "CI"
    what = ("current vs baseline, both re-measured here, interleaved" if report.mode == "relative"
            else "current/reference vs the baseline's stored model/reference")
    return (f"{report.mode} mode ({what}); threshold {report.rule['threshold']:.0%}, one-sided alpha "
            f"{report.rule['alpha']:g} over {len(report.results)} model(s) (Bonferroni; CI is the two-sided "
            f"{ci}); times are {_CLOCK[report.clock]}; {report.settings.get('runtime', 'onnxruntime')}, "
            f"{report.settings['threads']} thread(s)"
            + (f", opt level {report.settings['opt_level']}" if "opt_level" in report.settings else "") + "; "
            f"{report.sessions} sessions (fresh processes), {report.wall_s:.0f} s"
            + (f"; {describe_load(report.load)}" if report.load else ""))


def markdown(report: CheckReport, allow_inconclusive: bool = False) -> str:
    code, message = report.outcome(allow_inconclusive)
    lines = [f"### edgeprof check: {_HEAD.get(code, '')}{message} (exit {code})", "", caption(report), ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows(report):
        cells = list(row)
        cells[5] = f"{_ICONS.get(cells[5], '')} {cells[5]}".strip()
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    undecided = report.undecided()
    if undecided:
        lines += ["", "**Not judged** (a slowdown over the threshold is not ruled out for these):", ""]
        for u in undecided:
            lo, hi = u["range_pct"]
            plausible = f"plausible change {lo:+.1f}% to {hi:+.1f}%" if lo is not None and hi is not None else \
                "plausible change unknown"
            lines.append(f"- `{u['name']}`: {u['verdict']} after {u['sessions']} session(s), {plausible}: "
                         f"{u['reason']}")
    for w in report.warnings:
        lines.append(f"\n> ⚠️ {w}")
    return "\n".join(lines) + "\n"


def to_json(report: CheckReport, allow_inconclusive: bool = False) -> str:
    return json.dumps(clean(report.as_dict(allow_inconclusive)), indent=2, allow_nan=False, default=str)


def clean(obj):
    """``obj`` with non-finite floats as None, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj
