"""The gate end to end: save a baseline, then check current models against it (relative or stored mode).

``save_baseline`` times every model against a second copy of itself (the A/A noise of this host) and
against the reference model shipped with edgeprof (what stored mode compares with), interleaved in
fresh worker processes, and writes the baseline folder. ``run_check`` matches current models to the
baseline's by name and judges each one:

- relative mode (default): the baseline's stored models and the current ones are re-measured here,
  interleaved, and the paired log-ratios current/baseline decide;
- stored mode: only the current models are measured, each interleaved with the reference, and the
  ratio model/reference is compared with the one stored in the baseline. That is only meaningful on
  a host of the same fingerprint; on any other host every verdict is inconclusive.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.gate import baseline as bl
from edgeprof.gate.decide import (
    FAILED,
    INCONCLUSIVE,
    REGRESSED,
    SAME,
    Decision,
    DecisionRule,
    PairData,
    decide_all,
    judge_sequentially,
)
from edgeprof.gate.load import LoadProbe
from edgeprof.gate.load import describe as describe_load
from edgeprof.gate.measure import Arm, GateOptions, Group, Interleaver, ProgressFn, resolve_clock
from edgeprof.gate.models import GateModel
from edgeprof.runtime.base import RuntimeSettings
from edgeprof.runtime.onnxruntime.session import SessionSettings

MODES = ("relative", "stored")
REFERENCE_NAME = "gate_ref"
REFERENCE_PATH = Path(__file__).resolve().parent.parent / "data" / "gate_ref.onnx"


@dataclass
class ModelResult:
    name: str
    decision: Decision
    baseline_ms: float = math.nan
    current_ms: float = math.nan
    identical: bool = False  # current model's file has the baseline's sha256
    aa_at_save: dict | None = None
    sessions: list[list[float]] = field(default_factory=list)  # the paired block log-ratios, per session

    @property
    def verdict(self) -> str:
        return self.decision.verdict

    def as_dict(self) -> dict:
        return {"name": self.name, "verdict": self.verdict, "baseline_ms": _num(self.baseline_ms),
                "current_ms": _num(self.current_ms), "change_pct": _num(self.decision.change_pct),
                "ci_low_pct": _num((self.decision.lo - 1) * 100), "ci_high_pct": _num((self.decision.hi - 1) * 100),
                "identical": self.identical, "decision": self.decision.as_dict(), "aa_at_save": self.aa_at_save,
                "sessions_log_ratios": self.sessions}


@dataclass
class CheckReport:
    mode: str
    baseline: str
    rule: dict
    options: dict
    settings: dict
    seed: int
    clock: str
    host_fingerprint: str
    baseline_fingerprint: str
    results: list[ModelResult] = field(default_factory=list)
    not_in_baseline: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    wall_s: float = math.nan
    sessions: int = 0
    interrupted: bool = False
    load: dict = field(default_factory=dict)  # how busy the host was during the check (edgeprof.gate.load)

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.verdict for r in self.results))

    def undecided(self) -> list[dict]:
        """The models the gate could not judge (inconclusive or failed), each with why and its plausible range."""
        out = []
        for r in self.results:
            if r.verdict in (INCONCLUSIVE, FAILED):
                d = r.decision
                out.append({"name": r.name, "verdict": r.verdict, "reason": d.reason, "sessions": d.sessions,
                            "range_pct": [_num((d.lo - 1) * 100), _num((d.hi - 1) * 100)], "noisy": d.noisy})
        return out

    def outcome(self, allow_inconclusive: bool = False) -> tuple[int, str]:
        """Exit code and a one-line summary. 1: a model regressed. 3: a model failed while being measured (the
        others were judged). 4: a model is inconclusive, so a slowdown over the threshold is still plausible
        (0 with ``allow_inconclusive``). 130: interrupted. 0: every model was judged and none regressed."""
        regressed = [r for r in self.results if r.verdict == REGRESSED]
        failed = [r for r in self.results if r.verdict == FAILED]
        unsettled = [r for r in self.results if r.verdict == INCONCLUSIVE]
        n = len(self.results)
        limit = f"{self.rule['threshold']:.0%}"
        if self.interrupted:
            return 130, f"interrupted after {self.sessions} session(s); decided so far: {self._counts_text()}"
        if regressed:
            named = ", ".join(f"{r.name} ({r.decision.change_pct:+.1f}%)" for r in regressed)
            return 1, f"{len(regressed)} of {n} model(s) regressed by more than {limit}: {named}"
        if failed:
            named = ", ".join(f"{r.name} ({r.decision.reason})" for r in failed)
            return 3, f"{len(failed)} of {n} model(s) failed while being measured: {named}"
        if unsettled:
            named = ", ".join(f"{r.name} ({_pct_range(r.decision)})" for r in unsettled)
            text = (f"{len(unsettled)} of {n} model(s) inconclusive: a slowdown over {limit} is still plausible "
                    f"for {named}")
            if allow_inconclusive:
                return 0, f"no regression shown, but {text} (--allow-inconclusive)"
            return 4, text + "; more time (--max-time) or a quieter runner may settle it, or --allow-inconclusive"
        return 0, f"no regression in {n} model(s): {self._counts_text()}"

    def _counts_text(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in sorted(self.counts().items())) or "nothing"

    def as_dict(self, allow_inconclusive: bool = False) -> dict:
        code, message = self.outcome(allow_inconclusive)
        data = asdict(self)
        data["results"] = [r.as_dict() for r in self.results]
        return {"exit_code": code, "summary": message, "counts": self.counts(), "undecided": self.undecided(),
                **data}


class CheckInterrupted(KeyboardInterrupt):
    """Ctrl-C during a check; ``report`` holds what was decided from the sessions measured so far."""

    def __init__(self, report: CheckReport):
        super().__init__("interrupted")
        self.report = report


def _pct_range(d: Decision) -> str:
    if not (math.isfinite(d.lo) and math.isfinite(d.hi)):
        return "range unknown"
    return f"{(d.lo - 1) * 100:+.1f}% to {(d.hi - 1) * 100:+.1f}%"


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _seed(options: GateOptions) -> int:
    if options.seed is not None:
        return int(options.seed)
    return int(np.random.SeedSequence().generate_state(1)[0])


def _runtime_version(settings: RuntimeSettings) -> str:
    from edgeprof.runtime.registry import runtime_of

    return runtime_of(settings).version()


def reference_model() -> GateModel:
    from edgeprof.spec import file_sha256

    if not REFERENCE_PATH.is_file():
        raise InputError(f"the gate's reference model {REFERENCE_PATH} is missing from this edgeprof install; "
                         f"run `python -m edgeprof.data.make_models`")
    return GateModel(name=REFERENCE_NAME, path=REFERENCE_PATH, sha256=file_sha256(REFERENCE_PATH), source="onnx")


# -- save -----------------------------------------------------------------------------------------


def save_baseline(
    models: list[GateModel],
    out: str | Path,
    settings: RuntimeSettings = SessionSettings(),
    options: GateOptions = GateOptions(),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[Path, dict]:
    """Measure ``models`` (each against a copy of itself and against the reference) and write the baseline."""
    import edgeprof
    from edgeprof.measure.host import host_info, load_average, run_metadata

    if not models:
        raise InputError("no models to save; give ONNX files or sweep options (--acts, --widths, ...)")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError(f"model names must be unique, got {names}")
    out = bl.check_output_dir(out)
    ref = reference_model()
    seed = _seed(options)
    rng = np.random.default_rng(seed)
    meta = run_metadata()
    arms = [Arm("ref", str(ref.path), "the gate's reference model")]
    groups = []
    for m in models:
        arms += [Arm(f"a:{m.name}", str(m.path), f"model {m.name}"),
                 Arm(f"a2:{m.name}", str(m.path), f"model {m.name} (second copy)")]
        groups.append(Group(arms=(f"a:{m.name}", f"a2:{m.name}", "ref"),
                            pairs=((f"aa:{m.name}", f"a2:{m.name}", f"a:{m.name}"),
                                   (f"ref:{m.name}", f"a:{m.name}", "ref"))))
    t0 = time.perf_counter()
    inter = Interleaver(arms, settings, options, shapes=shapes, rng=rng, on_progress=on_progress)
    sessions: dict[str, list[list[float]]] = {}
    inter.plan(options.save_sessions, len(arms))
    for _ in range(options.save_sessions):
        for key, logs in inter.session(groups).items():
            sessions.setdefault(key, []).append(logs)
        for reason in getattr(inter, "failed", {}).values():
            raise RuntimeFailure(reason)
    rule = DecisionRule()
    aa = {d.name: d for d in decide_all([PairData(m.name, sessions[f"aa:{m.name}"]) for m in models], rule)}
    entries = []
    for m in models:
        a_blocks, a2_blocks = inter.blocks[f"a:{m.name}"], inter.blocks[f"a2:{m.name}"]
        entries.append({
            **m.describe(),
            "file": bl.model_file(m.sha256),
            "median_ms": inter.median_ms(f"a:{m.name}"),
            "inner_loops": inter.inner_loops.get(f"a:{m.name}"),
            "aa": {**aa[m.name].as_dict(), "sessions_log_ratios": sessions[f"aa:{m.name}"]},
            "stored_sessions": sessions[f"ref:{m.name}"],
            "blocks": {"a": [asdict(b) for b in a_blocks], "a2": [asdict(b) for b in a2_blocks]},
        })
    manifest = {
        "schema_version": bl.SCHEMA_VERSION,
        "kind": bl.KIND,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgeprof_version": edgeprof.__version__,
        "command": meta["command"],
        "host": host_info(),
        "host_fingerprint": meta["host_fingerprint"],
        "versions": meta["versions"],
        "load_average": {"start": meta["load_average_start"], "end": load_average()},
        "settings": {**settings.as_dict(), "execution_mode": "sequential"},
        "runtime": {"name": settings.runtime, "version": _runtime_version(settings)},
        "gate": {**options.as_dict(), "seed": seed, "clock_used": inter.clock, "rule": rule.as_dict(),
                 "wall_s": time.perf_counter() - t0},
        "shapes": {k: list(v) for k, v in (shapes or {}).items()} or None,
        "reference": {"name": ref.name, "sha256": ref.sha256, "file": bl.model_file(ref.sha256),
                      "median_ms": inter.median_ms("ref"),
                      "blocks": [asdict(b) for b in inter.blocks["ref"]]},
        "models": entries,
    }
    sources = {ref.sha256: ref.path, **{m.sha256: m.path for m in models}}
    return bl.write_baseline(out, manifest, sources), manifest  # all at once: an interrupted save writes nothing


# -- check ----------------------------------------------------------------------------------------


def current_from_baseline(baseline: bl.Baseline, models_dir: Path, on_progress: ProgressFn | None = None):
    """Rebuild the baseline's blocks with the code installed now (needs torch)."""
    from edgeprof.gate.models import build
    from edgeprof.spec import BlockSpec

    if any(m["source"] != "block" or not m.get("spec") for m in baseline.models):
        files = ", ".join(m["name"] for m in baseline.models if m["source"] != "block")
        raise InputError(f"baseline {baseline.path} holds ONNX files ({files}); give the current ONNX files to "
                         f"check, e.g. `edgeprof check --baseline {baseline.path} {files.split(',')[0]}.onnx`")
    out: list[GateModel] = []
    by_export: dict[tuple, list] = {}
    for m in baseline.models:
        export = m.get("export") or {}
        key = (export.get("opset", 17), export.get("exporter", "torchscript"), export.get("seed", 0))
        by_export.setdefault(key, []).append(BlockSpec(**m["spec"]))
    for (opset, exporter, seed), specs in by_export.items():
        out += build(specs, models_dir, opset=opset, exporter=exporter, seed=seed, on_progress=on_progress)
    return out


def run_check(
    baseline: str | Path | bl.Baseline,
    current: list[GateModel],
    mode: str = "relative",
    rule: DecisionRule = DecisionRule(),
    options: GateOptions = GateOptions(),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
) -> CheckReport:
    """Judge each current model against the baseline model of the same name."""
    from edgeprof.measure.host import fingerprint, host_info

    t0 = time.perf_counter()
    base = baseline if isinstance(baseline, bl.Baseline) else bl.load(baseline)
    if mode not in MODES:
        raise InputError(f"unknown --mode {mode!r}; valid: {', '.join(MODES)}")
    if not current:
        raise InputError("no current models to check; give ONNX files or sweep options")
    current_names = [m.name for m in current]
    if len(set(current_names)) != len(current_names):
        raise InputError(f"current model names must be unique, got {current_names}")
    matched = [m for m in current if m.name in base.names]
    if not matched:
        raise InputError(f"none of the current models ({', '.join(current_names[:6])}) matches a baseline model by "
                         f"name; the baseline has: {', '.join(base.names[:6])} (names are ONNX file stems and "
                         f"block slugs)")
    settings = base.settings()
    shapes = shapes if shapes is not None else base.shapes()
    seed = _seed(options)
    if mode == "stored":  # the stored ratios were taken with the baseline's clock; compare like with like
        options = replace(options, clock=base.manifest["gate"].get("clock_used", "wall"))
    info = host_info()
    here = fingerprint(info)
    same_host = here == base.fingerprint
    # stored mode on another host measures nothing, so it needs no clock here
    clock = resolve_clock(options.clock, settings) if mode == "relative" or same_host else options.clock
    report = CheckReport(
        mode=mode, baseline=str(base.path), rule=rule.as_dict(), options=options.as_dict(),
        settings=settings.as_dict(), seed=seed, clock=clock, host_fingerprint=here,
        baseline_fingerprint=base.fingerprint,
        not_in_baseline=[n for n in current_names if n not in base.names],
        not_checked=[n for n in base.names if n not in current_names],
    )
    if report.not_in_baseline:
        report.warnings.append(f"not in the baseline, not judged: {', '.join(report.not_in_baseline)}")
    if report.not_checked:
        report.warnings.append(f"in the baseline but not given now, not judged: {', '.join(report.not_checked)}")
    other_host = (f"the baseline was made on another host (fingerprint {base.fingerprint}, "
                  f"{base.manifest['host'].get('cpu_model', '?')}; this host {here}, {info.get('cpu_model', '?')})")
    for m in matched:
        aa = base.model(m.name).get("aa") or {}
        if aa.get("verdict") not in (None, SAME):
            report.warnings.append(f"when the baseline was saved, {m.name} against a copy of itself came out "
                                   f"{aa.get('verdict')} ({(aa.get('ratio') or 1) * 100 - 100:+.1f}%): that host "
                                   f"was noisy")

    if mode == "stored" and not same_host:
        report.warnings.append(other_host + "; stored ratios are only comparable on the same host")
        for m in matched:
            entry = base.model(m.name)
            report.results.append(ModelResult(
                name=m.name, baseline_ms=float(entry["median_ms"]), identical=m.sha256 == entry["sha256"],
                decision=Decision(name=m.name, verdict=INCONCLUSIVE,
                                  reason="stored mode on another host: never pass or fail")))
        report.wall_s = time.perf_counter() - t0
        return report
    if mode == "relative" and not same_host:
        report.warnings.append(other_host + "; relative mode re-measures both sides here, so the verdicts hold "
                                            "for this host")
    if mode == "stored":
        then = (base.manifest.get("runtime") or {}).get("version") or base.manifest["versions"].get("onnxruntime")
        now = _runtime_version(settings)
        if then != now:
            report.warnings.append(f"{settings.runtime} {then} made the baseline, {now} runs now: stored ratios move "
                                   f"with it")

    arms: list[Arm] = []
    groups: dict[str, Group] = {}
    pairs: list[PairData] = []
    if mode == "relative":
        for m in matched:
            entry = base.model(m.name)
            path = base.file(entry, "baseline model")
            arms += [Arm(f"base:{m.name}", str(path), f"baseline model {m.name}"),
                     Arm(f"cur:{m.name}", str(m.path), f"current model {m.name} ({m.path})")]
            groups[m.name] = Group(arms=(f"base:{m.name}", f"cur:{m.name}"),
                                   pairs=((m.name, f"cur:{m.name}", f"base:{m.name}"),))
            pairs.append(PairData(m.name))
    else:
        ref_path = base.file(base.manifest["reference"], "reference model")
        arms.append(Arm("ref", str(ref_path), "the gate's reference model"))
        for m in matched:
            arms.append(Arm(f"cur:{m.name}", str(m.path), f"current model {m.name} ({m.path})"))
            groups[m.name] = Group(arms=(f"cur:{m.name}", "ref"), pairs=((m.name, f"cur:{m.name}", "ref"),))
            pairs.append(PairData(m.name, stored=base.model(m.name)["stored_sessions"]))

    inter = Interleaver(arms, settings, options, shapes=shapes, rng=np.random.default_rng(seed),
                        on_progress=on_progress)
    failures: dict[str, str] = {}
    probe = LoadProbe()

    def fetch(active: list[str]) -> dict[str, list[float]]:
        logs = inter.session([groups[n] for n in active])
        failed_arms = getattr(inter, "failed", {})
        for n in active:
            reasons = [failed_arms[a] for a in groups[n].arms if a in failed_arms]
            if reasons and n not in failures:
                failures[n] = reasons[0]
        return {n: v for n, v in logs.items() if n not in failures}

    def plan(active: list[str], sessions_left: int) -> None:
        inter.plan(sessions_left, sum(len(groups[n].arms) for n in active), options.max_time)

    interrupted = False
    try:
        decisions, _ = judge_sequentially(
            pairs, fetch, rule, first=options.first_sessions, step=options.step_sessions,
            most=options.max_sessions, grow_to=options.max_sessions_noisy,
            budget_s=options.max_time - (time.perf_counter() - t0), failures=failures, on_plan=plan)
    except KeyboardInterrupt:  # what was measured so far is still judged, then the interrupt goes on
        interrupted = True
        decisions = decide_all(pairs, rule, final=True)
        for d in decisions:
            if d.verdict == INCONCLUSIVE:
                d.reason = f"interrupted after {d.sessions} session(s): {d.reason}"
    for m, d, pair in zip(matched, decisions, pairs, strict=True):
        entry = base.model(m.name)
        report.results.append(ModelResult(
            name=m.name, decision=d, current_ms=inter.median_ms(f"cur:{m.name}"), sessions=pair.sessions,
            baseline_ms=inter.median_ms(f"base:{m.name}") if mode == "relative" else float(entry["median_ms"]),
            identical=m.sha256 == entry["sha256"],
            aa_at_save={k: entry["aa"].get(k) for k in ("verdict", "ratio", "lo", "hi", "iqr_frac")}))
    report.load = probe.finish()
    if report.load.get("loaded"):
        report.warnings.append(f"{describe_load(report.load)}: intervals are wider and more sessions are needed")
    report.interrupted = interrupted
    report.sessions = inter.sessions
    report.wall_s = time.perf_counter() - t0
    if interrupted:
        raise CheckInterrupted(report)
    return report
