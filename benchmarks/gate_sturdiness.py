"""Which way of timing makes the gate sturdier under load, measured on this machine.

The gate's power rests on how much a paired ratio moves between sessions (fresh processes) and between blocks
within a session. This script times the same arms in sessions under each variant of the gate's measurement,
quiet and under background load (a CPU hog on one core, a memory-bandwidth hog; both started and bounded here,
as in ``gate_validation.py``), the variants interleaved session by session so drift touches them alike:

- ``wall``: wall-clock medians of each block;
- ``cpu``: on-CPU time per run from schedstat (the gate's default when the runtime runs on one thread);
- ``cpu+pin``: the same, every worker of a session pinned to the idlest core (``os.sched_setaffinity``), so the
  two arms of a pair run on the same core;
- ``cpu+drop``: the same, a pair left out when an arm waited for a core more than 2% of its block (preempted);
- ``cpu+short``: the same with 10 ms blocks and twice the rounds (more, shorter blocks).

Arms: an A/A pair (a 32-channel Conv3x3+Relu at 80 px against a copy of itself) and an A/B pair (the same
against a copy with an extra Conv over its first 12 rows, about +15%), beside the mish and silu blocks the
validation uses. Printed per condition and variant: the spread of session medians of the A/A log-ratio
(what decides how many sessions the gate needs), the median within-session IQR of block ratios, the A/A bias,
the A/B estimate and its spread, and pairs dropped.

    .venv/bin/python benchmarks/gate_sturdiness.py                # 10 sessions per variant and condition
    .venv/bin/python benchmarks/gate_sturdiness.py --sessions 3   # a smoke test
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate_validation import CONDITIONS, TRIAL_MODELS, Hog, _log, conv_model  # noqa: E402

from edgeprof.gate.measure import Arm, GateOptions, Group, Interleaver  # noqa: E402
from edgeprof.measure.host import cpu_model, load_average  # noqa: E402
from edgeprof.runtime.onnxruntime.session import SessionSettings  # noqa: E402

VARIANTS = {
    "wall": dict(clock="wall"),
    "cpu": dict(clock="cpu"),
    "cpu+pin": dict(clock="cpu", pin=True),
    "cpu+drop": dict(clock="cpu", drop_preempted=0.02),
    "cpu+short": dict(clock="cpu", block_ms=10.0, rounds=12),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10, help="sessions per variant and condition")
    ap.add_argument("--conditions", default="quiet,cpu,membw", help="background loads: quiet, cpu, membw")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    conditions = [c for c in args.conditions.split(",") if c]
    started = time.perf_counter()
    load_start = load_average()
    rng = np.random.default_rng(args.seed)
    results: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgeprof-gate-sturdiness-") as tmp:
        work = Path(tmp)
        ch, size, act = TRIAL_MODELS["conv32_relu"]
        base = conv_model(work / "a.onnx", ch, size, act)
        slow = conv_model(work / "b.onnx", ch, size, act, extra_rows=12)
        others = [conv_model(work / f"{n}.onnx", *spec) for n, spec in TRIAL_MODELS.items() if n != "conv32_relu"]
        arms = [Arm("a1", str(base), "a1"), Arm("a2", str(base), "a2"), Arm("b1", str(base), "b1"),
                Arm("b2", str(slow), "b2")]
        groups = [Group(("a1", "a2"), (("aa", "a2", "a1"),)), Group(("b1", "b2"), (("ab", "b2", "b1"),))]
        for i, path in enumerate(others):
            arms += [Arm(f"n{i}", str(path), path.stem), Arm(f"m{i}", str(path), path.stem)]
            groups.append(Group((f"n{i}", f"m{i}"), ()))
        for cond in conditions:
            with Hog(None if cond == "quiet" else cond, limit_s=1800):
                inters = {v: Interleaver(arms, SessionSettings(), GateOptions(seed=args.seed, **kw))
                          for v, kw in VARIANTS.items()}
                per = {v: {"aa": [], "ab": [], "iqr": [], "wall": [], "load": []} for v in VARIANTS}
                for s in range(args.sessions):
                    for v in rng.permutation(list(VARIANTS)):
                        t0 = time.perf_counter()
                        logs = inters[v].session(groups)
                        per[v]["wall"].append(time.perf_counter() - t0)
                        per[v]["load"].append((load_average() or [math.nan])[0])
                        if logs.get("aa"):
                            per[v]["aa"].append(float(np.median(logs["aa"])))
                            q1, q3 = np.percentile(logs["aa"], [25, 75])
                            per[v]["iqr"].append(float(q3 - q1))
                        if logs.get("ab"):
                            per[v]["ab"].append(float(np.median(logs["ab"])))
                    _log(f"{cond}: session {s + 1}/{args.sessions} of every variant done")
                for v in VARIANTS:
                    results[cond, v] = {**per[v], "dropped": inters[v].dropped_pairs}

    pct = lambda x: 100 * (math.exp(x) - 1)  # noqa: E731
    print(f"\nedgeprof gate sturdiness on {cpu_model()}, {os.cpu_count()} cores; {args.sessions} sessions per "
          f"variant and condition; load average at start {load_start}, at end {load_average()}; "
          f"{(time.perf_counter() - started) / 60:.0f} min in all\n")
    print("| condition | variant | A/A: SD of session medians | A/A: median within-session IQR | A/A bias | "
          "A/B (~+15%): mean, SD of sessions | pairs dropped | s per session | load (1 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (cond, v), r in results.items():
        aa, ab = np.array(r["aa"]), np.array(r["ab"])
        sd = f"{100 * np.std(aa, ddof=1):.2f}%" if len(aa) > 1 else "—"
        iqr = f"{100 * np.median(r['iqr']):.2f}%" if r["iqr"] else "—"
        bias = f"{pct(np.mean(aa)):+.2f}%" if len(aa) else "—"
        abt = f"{pct(np.mean(ab)):+.1f}%, {100 * np.std(ab, ddof=1):.2f}%" if len(ab) > 1 else "—"
        print(f"| {CONDITIONS[cond]} | {v} | {sd} | {iqr} | {bias} | {abt} | {r['dropped']} | "
              f"{np.mean(r['wall']):.1f} | {np.mean(r['load']):.1f} |")


if __name__ == "__main__":
    main()
