"""How good the regression gate is on this machine, measured: false alarms, detection, inconclusive rate, wall time.

Runs the gate (``edgeprof.gate.run_check``, relative mode, default options) for real and prints one table.
Every trial runs under three conditions, the background load started and bounded by this script:

- quiet: nothing added (other users of the machine still count; the load is reported);
- CPU hog: one busy Python process (``while True: pass``) keeping one core busy;
- bandwidth hog: one process streaming over a buffer twice the last-level cache (numpy copies), which
  loads the memory system rather than the core the gate is on.

Trials, per condition:

- A/A: three small conv models checked against a baseline of themselves; a false alarm is a check that
  would exit 1 (a model `regressed`); an inconclusive check would exit 4. Real checks, then checks
  resampled from the sessions the real ones recorded (drawn with replacement and run through the same
  sequential decision, without the time budget) up to the total;
- injected slowdowns of about 10/15/20/50% (and 5% quiet, full run only) on one of the three models: an
  extra Conv on the first rows of the input, added to the graph as a second output, whose row count is
  calibrated and whose true cost is then measured separately (quiet, interleaved A/B, 64 paired blocks);
  detection is the share of checks in which that model is `regressed`.

Then stored mode against a baseline whose host fingerprint is another host's (must be inconclusive), a few
stored-mode A/A checks on this host, and the wall time of ``edgeprof check`` (the whole command, as CI
runs it) on the default sweep's 15 blocks, quiet and under the CPU hog.

    .venv/bin/python benchmarks/gate_validation.py --quick    # about 10 minutes: small numbers, a smoke test
    .venv/bin/python benchmarks/gate_validation.py            # the full run (hours on 2 cores)
    .venv/bin/python benchmarks/gate_validation.py --aa-real 1 --aa-total 2 --hog-real 1 --hog-total 2 \
        --inject-real 1 --inject-total 2 --levels 0.5 --conditions quiet,cpu --stored-real 0 --wall-checks 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edgeprof.gate import DecisionRule, GateOptions, PairData, from_files, run_check, save_baseline
from edgeprof.gate.decide import INCONCLUSIVE, REGRESSED, judge_sequentially
from edgeprof.gate.measure import Arm, Group, Interleaver
from edgeprof.measure.host import cpu_model, load_average
from edgeprof.measure.stats import median_ci
from edgeprof.runtime.onnxruntime.session import SessionSettings

TRIAL_MODELS = {"conv32_relu": (32, 80, "relu"), "conv16_mish": (16, 96, "mish"), "conv48_silu": (48, 48, "silu")}
TARGET = "conv32_relu"  # the model slowdowns are injected into
LEVELS = (0.05, 0.10, 0.15, 0.20, 0.50)
QUICK_LEVELS = (0.10, 0.15, 0.20, 0.50)
CONDITIONS = {"quiet": "quiet", "cpu": "CPU hog on 1 of 2 cores", "membw": "memory-bandwidth hog"}


# -- models -----------------------------------------------------------------------------------------


def conv_model(path: Path, channels: int, size: int, act: str, extra_rows: int = 0) -> Path:
    """Conv3x3 (pad 1) + activation; with ``extra_rows``, a second output: the same Conv on the input's
    first ``extra_rows`` rows (the injected cost, roughly proportional to the rows)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(channels)
    inits = [numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(channels, np.float32), "b")]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, size, size])
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1])]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["output"]))
    elif act == "mish":
        nodes += [helper.make_node("Softplus", ["c"], ["sp"]), helper.make_node("Tanh", ["sp"], ["t"]),
                  helper.make_node("Mul", ["c", "t"], ["output"])]
    else:
        nodes += [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["output"])]
    if extra_rows:
        inits += [numpy_helper.from_array(np.array([0], np.int64), "start"),
                  numpy_helper.from_array(np.array([extra_rows], np.int64), "end"),
                  numpy_helper.from_array(np.array([2], np.int64), "axis")]
        nodes += [helper.make_node("Slice", ["images", "start", "end", "axis"], ["rows"]),
                  helper.make_node("Conv", ["rows", "w", "b"], ["extra"], pads=[1, 1, 1, 1])]
        outputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, None))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def true_ratio(base: Path, other: Path, neighbours: list[Path], seed: int) -> tuple[float, float, float]:
    """other/base measured apart from the gate, in the same company as in a check (the other trial models
    interleaved too): 8 sessions of fresh processes x 8 rounds = 64 paired blocks; the median paired
    ratio with its 95% order-statistic CI."""
    options = GateOptions(rounds=8, seed=seed)
    arms = [Arm("b", str(base), "base"), Arm("o", str(other), "injected")]
    groups = [Group(("b", "o"), (("r", "o", "b"),))]
    for i, path in enumerate(neighbours):
        arms += [Arm(f"n{i}", str(path), path.stem), Arm(f"m{i}", str(path), path.stem)]
        groups.append(Group((f"n{i}", f"m{i}"), ()))
    inter = Interleaver(arms, SessionSettings(), options)
    logs: list[float] = []
    for _ in range(8):
        logs += inter.session(groups)["r"]
    lo, hi = median_ci(logs)
    return math.exp(float(np.median(logs))), math.exp(lo), math.exp(hi)


def inject(work: Path, levels: tuple[float, ...], seed: int) -> dict[float, dict]:
    """For each level, a slowed-down copy of the target with its true cost. The cost is not proportional to the
    rows (the Slice and the second output cost something of their own), so two probes fit a line with an
    intercept; a level whose measured cost misses it by more than 2.5 points is re-fitted and made again, at
    most twice. Whatever the last try measured is the level's true cost, reported as measured."""
    channels, size, act = TRIAL_MODELS[TARGET]
    base = work / "models" / f"{TARGET}.onnx"
    neighbours = [work / "models" / f"{name}.onnx" for name in TRIAL_MODELS if name != TARGET]
    points: list[tuple[int, float]] = []
    for k, rows in enumerate((size // 8, size // 2)):
        probe = conv_model(work / f"probe-{rows}" / f"{TARGET}.onnx", channels, size, act, rows)
        points.append((rows, true_ratio(base, probe, neighbours, seed + 50 + k)[0] - 1.0))
    (r1, c1), (r2, c2) = points
    slope = max((c2 - c1) / (r2 - r1), 1e-4)
    intercept = c1 - slope * r1
    _log(f"calibration: {r1} extra rows cost {100 * c1:+.1f}%, {r2} rows {100 * c2:+.1f}%: "
         f"{100 * intercept:+.1f}% + {100 * slope:.2f}% per row")
    out = {}
    for i, level in enumerate(levels):
        rows = int(min(size, max(1, round((level - intercept) / slope))))
        for attempt in range(3):
            path = conv_model(work / f"inject-{round(level * 100):02d}" / f"{TARGET}.onnx", channels, size, act, rows)
            r, lo, hi = true_ratio(base, path, neighbours, seed + 1 + i + 10 * attempt)
            _log(f"injected ~{level:.0%}: {rows} rows, true slowdown {100 * (r - 1):+.1f}% "
                 f"[{100 * (lo - 1):+.1f}, {100 * (hi - 1):+.1f}]")
            if abs(r - 1 - level) <= 0.025 or attempt == 2:
                break
            better = int(min(size, max(1, rows + round((level - (r - 1)) / slope))))
            if better == rows:
                break
            rows = better
        out[level] = {"path": path, "rows": rows, "true": r, "true_lo": lo, "true_hi": hi}
    return out


# -- checks ------------------------------------------------------------------------------------------


class Trial:
    """Real and resampled checks of one condition; ``pools`` keep every real session per model."""

    def __init__(self, name: str, condition: str = "quiet"):
        self.name = name
        self.condition = condition
        self.real: list[dict] = []
        self.resampled: list[dict] = []
        self.pools: dict[str, list[list[float]]] = {}
        self.loads: list[float] = []
        self.others: list[float] = []  # other processes' CPU share during each real check (cores)
        self.steals: list[float] = []
        self.wall: list[float] = []

    def add_real(self, report) -> None:
        verdicts = {r.name: r.verdict for r in report.results}
        self.real.append({"exit": report.outcome()[0], "verdicts": verdicts, "sessions": report.sessions,
                          "change": {r.name: r.decision.change_pct for r in report.results}})
        self.wall.append(report.wall_s)
        self.loads.append((load_average() or [math.nan])[0])
        load = report.load or {}
        if load.get("other_cpu_cores") is not None:
            self.others.append(load["other_cpu_cores"])
        if load.get("steal_pct") is not None:
            self.steals.append(load["steal_pct"])

    def all(self) -> list[dict]:
        return self.real + self.resampled


def real_check(baseline: Path, current: list[Path], trial: Trial, rule: DecisionRule) -> None:
    """One real check; the sessions it measured go to the trial's pools (for resampling)."""
    report = run_check(baseline, from_files(current), rule=rule)
    trial.add_real(report)
    for r in report.results:
        trial.pools.setdefault(r.name, []).extend(r.sessions)


def resample(trial: Trial, total: int, rule: DecisionRule, rng: np.random.Generator) -> None:
    """Checks made of sessions drawn with replacement from the real ones, judged by the same sequential rule
    (same looks, cap and grown cap; no time budget, since resampling takes none)."""
    options = GateOptions()
    names = sorted(trial.pools)
    if not names:
        return
    while len(trial.all()) < total:
        pairs = [PairData(n) for n in names]

        def fetch(active):
            return {n: trial.pools[n][rng.integers(len(trial.pools[n]))] for n in active}

        decisions, done = judge_sequentially(pairs, fetch, rule, options.first_sessions, options.step_sessions,
                                             options.max_sessions, grow_to=options.max_sessions_noisy)
        verdicts = {d.name: d.verdict for d in decisions}
        code = 1 if REGRESSED in verdicts.values() else 4 if INCONCLUSIVE in verdicts.values() else 0
        trial.resampled.append({"exit": code, "verdicts": verdicts, "sessions": done,
                                "change": {d.name: d.change_pct for d in decisions}})


def run_trial(name: str, condition: str, baseline: Path, current: list[Path], n_real: int, total: int,
              rule: DecisionRule, rng: np.random.Generator) -> Trial:
    trial = Trial(name, condition)
    t0 = time.perf_counter()
    for i in range(n_real):
        real_check(baseline, current, trial, rule)
        last = trial.real[-1]
        _log(f"{name}: real check {i + 1}/{n_real} exit {last['exit']} "
             f"{dict(Counter(last['verdicts'].values()))} ({trial.wall[-1]:.0f} s, load {trial.loads[-1]:.1f}, "
             f"{last['sessions']} sessions)")
    resample(trial, total, rule, rng)
    _log(f"{name}: {n_real} real + {len(trial.resampled)} resampled checks in {time.perf_counter() - t0:.0f} s")
    return trial


def _llc_bytes() -> int:
    """The last-level cache's size from sysfs (the largest cache level of CPU 0), or 32 MiB when unknown."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
            best = max(best, int(text.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            continue
    return best or 32 << 20


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1 << 30


class Hog:
    """Background load started by this script and bounded by it: ``cpu`` (one busy process) or ``membw`` (one
    process copying a buffer twice the last-level cache back and forth). Killed on exit, and it stops
    itself after ``limit_s`` in any case. ``None`` starts nothing."""

    def __init__(self, kind: str | None, limit_s: float):
        self.kind, self.proc = kind, None
        if kind == "cpu":
            code = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"
        elif kind == "membw":
            size = int(min(max(2 * _llc_bytes(), 64 << 20), _available_bytes() // 8)) // 8
            code = (f"import time\nimport numpy as np\na = np.ones({size // 2}, np.float64)\nb = np.empty_like(a)\n"
                    f"end = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    np.copyto(b, a)\n"
                    f"    np.copyto(a, b)\n")
            _log(f"bandwidth hog: streaming over {size * 8 / 2**20:.0f} MiB (last-level cache "
                 f"{_llc_bytes() / 2**20:.0f} MiB)")
        elif kind is not None:
            raise ValueError(f"unknown hog {kind!r}")
        if kind is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", code])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


# -- figures ----------------------------------------------------------------------------------------


def upper_95(k: int, n: int) -> float:
    """One-sided 95% upper bound of a binomial proportion (Clopper-Pearson, exact)."""
    from scipy import stats

    if n == 0:
        return math.nan
    if k >= n:
        return 1.0
    return float(stats.beta.ppf(0.95, k + 1, n - k))


def rate(checks: list[dict], hit) -> tuple[int, int]:
    return sum(1 for c in checks if hit(c)), len(checks)


def fmt_rate(k: int, n: int) -> str:
    return f"{k}/{n} = {100 * k / n:.1f}%" if n else "—"


def verdict_mix(checks: list[dict], names=None) -> str:
    counts = Counter(v for c in checks for n, v in c["verdicts"].items() if names is None or n in names)
    total = sum(counts.values())
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in counts.most_common()) if total else "—"


def wall_time(work: Path, checks: int, hog: str | None) -> list[dict]:
    """`edgeprof check` (the whole command) on the default sweep's 15 blocks against their own baseline."""
    exe = Path(sys.executable).with_name("edgeprof")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edgeprof.cli"]
    baseline, models = work / "default-baseline", work / "default-models"
    if not (baseline / "manifest.json").exists():
        _log("default set: exporting the default sweep's blocks and saving their baseline")
        subprocess.run([*cmd, "baseline", "save", "-o", str(baseline), "--models-dir", str(models), "-q"],
                       check=True, capture_output=True)
    out = []
    with Hog(hog, limit_s=900):
        for i in range(checks):
            t0 = time.perf_counter()
            proc = subprocess.run([*cmd, "check", "--baseline", str(baseline), "--models-dir", str(models), "--json",
                                   "-q"], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            report = json.loads(proc.stdout) if proc.stdout.strip() else {}
            verdicts = dict(Counter(r["verdict"] for r in report.get("results", [])))
            out.append({"wall_s": wall, "exit": proc.returncode, "verdicts": verdicts, "load": report.get("load")})
            _log(f"default set ({hog or 'quiet'}): check {i + 1}/{checks} took {wall:.0f} s, exit {proc.returncode}, "
                 f"{verdicts}")
    return out


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- main -------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small numbers: a smoke test of about 10 minutes")
    ap.add_argument("--aa-real", type=int, help="real A/A checks, quiet (full: 100)")
    ap.add_argument("--aa-total", type=int, help="A/A checks with the resampled ones, quiet (full: 300)")
    ap.add_argument("--hog-real", type=int, help="real A/A checks under each hog (full: 30)")
    ap.add_argument("--hog-total", type=int, help="A/A checks under each hog with the resampled ones (full: 300)")
    ap.add_argument("--inject-real", type=int, help="real checks per injected level and condition (full: 20)")
    ap.add_argument("--inject-total", type=int, help="checks per level and condition with resampled ones (full: 100)")
    ap.add_argument("--stored-real", type=int, help="real stored-mode A/A checks on this host (full: 10)")
    ap.add_argument("--wall-checks", type=int, help="timed checks of the default 15-block set per condition "
                    "(quiet and CPU hog; full: 3)")
    ap.add_argument("--levels", help="injected slowdowns, comma-separated fractions (full: 0.05,0.10,0.15,0.20,0.50; "
                    "quick: 0.10,0.15,0.20,0.50; 0.05 only quiet)")
    ap.add_argument("--conditions", default="quiet,cpu,membw", help="background loads: quiet, cpu, membw")
    ap.add_argument("--alpha", type=float, default=DecisionRule().alpha,
                    help="the decision rule's one-sided alpha, split over the models (default: the gate's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    ap.add_argument("--json", type=Path, help="also write every check's verdicts here")
    args = ap.parse_args()
    full = dict(aa_real=100, aa_total=300, hog_real=30, hog_total=300, inject_real=20, inject_total=100,
                stored_real=10, wall_checks=3)
    quick = dict(aa_real=3, aa_total=30, hog_real=2, hog_total=30, inject_real=1, inject_total=10, stored_real=1,
                 wall_checks=1)
    n = {k: getattr(args, k) if getattr(args, k) is not None else (quick if args.quick else full)[k] for k in full}
    levels = tuple(float(x) for x in args.levels.split(",")) if args.levels else (QUICK_LEVELS if args.quick
                                                                                  else LEVELS)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        ap.error(f"unknown --conditions {unknown}; valid: {', '.join(CONDITIONS)}")
    rule = DecisionRule(alpha=args.alpha)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    load_start = load_average()

    trials: list[Trial] = []
    aa_trials: dict[str, Trial] = {}
    inj_trials: dict[tuple[str, float], Trial] = {}
    walls: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeprof-gate-validation-") as tmp:
        work = Path(tmp)
        models = [conv_model(work / "models" / f"{name}.onnx", *spec) for name, spec in TRIAL_MODELS.items()]
        baseline = work / "baseline"
        _log("saving the trial baseline")
        save_baseline(from_files(models), baseline)
        injected = inject(work, levels, seed=args.seed + 100) if levels else {}

        for cond in conditions:
            hog = None if cond == "quiet" else cond
            real, total = (n["aa_real"], n["aa_total"]) if cond == "quiet" else (n["hog_real"], n["hog_total"])
            with Hog(hog, limit_s=3 * 3600):
                name = "A/A" if cond == "quiet" else f"A/A + {CONDITIONS[cond]}"
                aa_trials[cond] = run_trial(name, cond, baseline, models, real, total, rule, rng)
                trials.append(aa_trials[cond])
                for level, info in injected.items():
                    if level < 0.10 and cond != "quiet":
                        continue
                    current = [info["path"] if m.stem == TARGET else m for m in models]
                    name = f"injected ~{level:.0%}" + ("" if cond == "quiet" else f" + {CONDITIONS[cond]}")
                    inj_trials[cond, level] = run_trial(name, cond, baseline, current, n["inject_real"],
                                                        n["inject_total"], rule, rng)
                    trials.append(inj_trials[cond, level])

        # stored mode: a copy of the baseline whose host is another one, then real stored checks on this host
        other = work / "other-host"
        shutil.copytree(baseline, other)
        manifest = json.loads((other / "manifest.json").read_text())
        manifest["host_fingerprint"] = "0" * 10
        manifest["host"]["cpu_model"] = "another CPU"
        (other / "manifest.json").write_text(json.dumps(manifest))
        slow = [injected[max(injected)]["path"] if injected and m.stem == TARGET else m for m in models]
        other_report = run_check(other, from_files(slow), mode="stored", rule=rule)
        other_verdicts = [r.verdict for r in other_report.results]
        stored = Trial("stored A/A")
        for i in range(n["stored_real"]):
            stored.add_real(run_check(baseline, from_files(models), mode="stored", rule=rule))
            _log(f"stored A/A: check {i + 1}/{n['stored_real']} {stored.real[-1]['verdicts']}")
        if stored.real:
            trials.append(stored)

        if n["wall_checks"]:
            for cond in [c for c in ("quiet", "cpu") if c in conditions]:
                walls[cond] = wall_time(work, n["wall_checks"], None if cond == "quiet" else cond)

    # -- the table ------------------------------------------------------------------------------------
    rows = []
    for cond, trial in aa_trials.items():
        k_real, n_real = rate(trial.real, lambda c: c["exit"] == 1)
        k_all, n_all = rate(trial.all(), lambda c: c["exit"] == 1)
        target = 0.01 if cond == "quiet" else 0.02
        rows.append((f"{trial.name}: false alarms", len(trial.real), len(trial.resampled),
                     f"{fmt_rate(k_all, n_all)} (real {fmt_rate(k_real, n_real)}; 95% upper "
                     f"{100 * upper_95(k_all, n_all):.1f}%)", f"≤ {target:.0%}", k_all / max(1, n_all) <= target))
        k_inc, n_inc = rate(trial.all(), lambda c: c["exit"] == 4)
        k_inc_real, _ = rate(trial.real, lambda c: c["exit"] == 4)
        rows.append((f"{trial.name}: inconclusive (exit 4)", len(trial.real), len(trial.resampled),
                     f"{fmt_rate(k_inc, n_inc)} (real {fmt_rate(k_inc_real, n_real)})",
                     "≤ 5%" if cond != "quiet" else "—", (k_inc / max(1, n_inc) <= 0.05) if cond != "quiet" else None))
    for (cond, level), trial in inj_trials.items():
        info = injected[level]
        k_real, n_real = rate(trial.real, lambda c: c["verdicts"].get(TARGET) == REGRESSED)
        k_all, n_all = rate(trial.all(), lambda c: c["verdicts"].get(TARGET) == REGRESSED)
        k_inc, _ = rate(trial.all(), lambda c: c["verdicts"].get(TARGET) == INCONCLUSIVE)
        goal = None
        if level == 0.05:
            goal = ("0% regressed", lambda x: x == 0)
        elif level == 0.20:
            goal = ("≥ 95%", lambda x: x >= 0.95)
        elif level == 0.15 and cond == "cpu":
            goal = ("≥ 80%", lambda x: x >= 0.80)
        target, ok = goal if goal else ("—", None)
        rows.append((f"{trial.name} (true {100 * (info['true'] - 1):+.1f}% "
                     f"[{100 * (info['true_lo'] - 1):+.1f}, {100 * (info['true_hi'] - 1):+.1f}])",
                     len(trial.real), len(trial.resampled),
                     f"regressed {fmt_rate(k_all, n_all)} (real {fmt_rate(k_real, n_real)}); inconclusive "
                     f"{fmt_rate(k_inc, n_all)}", target, ok(k_all / max(1, n_all)) if ok else None))
    rows.append(("stored mode, baseline from another host", 1, 0,
                 f"{', '.join(other_verdicts)}; exit {other_report.outcome()[0]}", "all inconclusive",
                 all(v == "inconclusive" for v in other_verdicts)))
    if stored.real:
        k, m = rate(stored.real, lambda c: c["exit"] == 1)
        rows.append(("stored mode A/A, same host", len(stored.real), 0,
                     f"false alarms {fmt_rate(k, m)}; {verdict_mix(stored.real)}", "—", None))
    for cond, checks in walls.items():
        times = [c["wall_s"] for c in checks]
        limit = 60 if cond == "quiet" else 120
        rows.append((f"wall time of `edgeprof check`, default 15-block set, {CONDITIONS[cond]}", len(times), 0,
                     f"median {np.median(times):.0f} s, max {max(times):.0f} s; exits "
                     f"{dict(Counter(c['exit'] for c in checks))}", f"≤ {limit} s", max(times) <= limit))

    print(f"\nedgeprof gate validation on {cpu_model()}, {os.cpu_count()} cores; load average at start "
          f"{load_start}, at end {load_average()}; {(time.perf_counter() - started) / 60:.0f} min in all; "
          f"threshold {rule.threshold:.0%}, one-sided alpha {rule.alpha} split over the models\n")
    print("| trial | real checks | resampled | result | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, real, res, result, target, ok in rows:
        met = "—" if ok is None else ("yes" if ok else "**no**")
        print(f"| {name} | {real} | {res} | {result} | {target} | {met} |")
    print("\nVerdicts of every model in every check (real + resampled), time and load of the real checks:\n")
    print("| trial | verdicts | mean wall s per real check | mean sessions | load average (1 min) | "
          "other processes, CPUs busy | steal % |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for trial in trials:
        load = f"{np.mean(trial.loads):.1f} (max {max(trial.loads):.1f})" if trial.loads else "—"
        wall = f"{np.mean(trial.wall):.1f}" if trial.wall else "—"
        sessions = f"{np.mean([c['sessions'] for c in trial.real]):.1f}" if trial.real else "—"
        others = f"{np.mean(trial.others):.2f} (max {max(trial.others):.2f})" if trial.others else "—"
        steal = f"{np.mean(trial.steals):.1f}" if trial.steals else "—"
        print(f"| {trial.name} | {verdict_mix(trial.all())} | {wall} | {sessions} | {load} | {others} | {steal} |")
    for trial in inj_trials.values():
        changes = [c["change"][TARGET] for c in trial.real if c["change"].get(TARGET) is not None]
        if changes:
            print(f"\n{trial.name}: the gate's estimate of the slowdown in real checks: median "
                  f"{np.median(changes):+.1f}%, range {min(changes):+.1f} to {max(changes):+.1f}%", end="")
    print()
    if args.json:
        args.json.write_text(json.dumps({
            "counts": n, "levels": levels, "conditions": conditions,
            "trials": {t.name: {"condition": t.condition, "real": t.real, "resampled": t.resampled,
                                "loads": t.loads, "other_cpu_cores": t.others, "steal_pct": t.steals, "wall": t.wall,
                                "pools": t.pools}
                       for t in trials},
            "injected": {str(k): {kk: (str(vv) if kk == "path" else vv) for kk, vv in v.items()}
                         for k, v in injected.items()},
            "other_host": other_verdicts, "wall_times": walls,
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
