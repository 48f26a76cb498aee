"""Does the same sweep give the same ratios? Runs the default sweep (`edgeprof sweep` with no options) three
times, prints the spread of its ratios and its wall time.

For each (size, activation), the spread is (max - min) / mean of ratio_to_baseline across the runs.
Targets on this 2-core machine: worst spread <= 2%, one default sweep <= 60 s. Each run re-measures everything;
the models are exported once before the timed runs (untimed), so every run finds them in the export cache, as a
second `edgeprof sweep` would.

    .venv/bin/python benchmarks/reproducibility.py [--runs 3] [--acts ...] [--widths 16,32,64] [--no-act-alone]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from edgeprof.measure import MeasureOptions, SessionSettings
from edgeprof.measure.host import cpu_model
from edgeprof.pipeline import SweepPlan, build_group_models, labelled_groups, resolved, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--acts", default=",".join(SweepPlan().acts))
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--max-time", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=MeasureOptions().sessions)
    parser.add_argument("--no-act-alone", action="store_true", help="leave out the activations timed alone")
    args = parser.parse_args()
    plan = SweepPlan(acts=tuple(args.acts.split(",")), widths=tuple(int(w) for w in args.widths.split(",")),
                     imgsz=(args.imgsz,), act_alone=not args.no_act_alone)
    frames, walls = [], []
    t0 = time.perf_counter()
    runs = resolved(plan)
    for group, _ in labelled_groups(runs):  # what a first sweep would export: not part of any timed run
        build_group_models(group, runs, Path("models"), lambda message, fraction: None)
    print(f"models exported (or found in ./models) in {time.perf_counter() - t0:.1f} s, before the timed runs",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            t0 = time.perf_counter()
            df, _ = run_sweep(plan, SessionSettings(), MeasureOptions(max_time=args.max_time, sessions=args.sessions),
                              csv_path=Path(tmp) / f"run{run}.csv", models_dir=Path("models"))
            walls.append(time.perf_counter() - t0)
            df["run"] = run
            frames.append(df)
            print(f"run {run + 1}/{args.runs} done in {walls[-1]:.0f} s (load {os.getloadavg()[0]:.2f}; "
                  f"{int(df['ci_reached'].fillna(False).sum())}/{len(df)} rows reached --rel-ci)", flush=True)
    all_runs = pd.concat(frames)
    table = all_runs.pivot_table(index=["width", "act"], columns="run", values="ratio_to_baseline", sort=False)
    table.columns = [f"run{c + 1}" for c in table.columns]
    table["spread_%"] = (table.max(axis=1) - table.min(axis=1)) / table.mean(axis=1) * 100
    medians = all_runs.pivot_table(index=["width", "act"], columns="run", values="median_ms", sort=False)
    table["median_ms_spread_%"] = (medians.max(axis=1) - medians.min(axis=1)) / medians.mean(axis=1) * 100
    table = table[[not a == plan.baseline for _, a in table.index]]
    pd.set_option("display.width", 160)
    print(table.round(3).to_string())
    # are the CIs honest? another run's ratio falls inside a run's 95% CI ~83% of the time when both are (the
    # difference of two independent estimates has sqrt(2) times one's spread: P(|Z| < 1.96 / sqrt(2)) = 0.83)
    ratios = all_runs[all_runs["act"] != plan.baseline]
    inside = total = 0
    for _, rows in ratios.groupby(["width", "act"]):
        for _, a in rows.iterrows():
            for _, b in rows.iterrows():
                if a["run"] != b["run"]:
                    total += 1
                    inside += bool(a["ratio_ci95_low"] <= b["ratio_to_baseline"] <= a["ratio_ci95_high"])
    share = inside / max(1, total)
    verdict = "far less: the CIs are too narrow" if share < 0.75 else "about as honest CIs give"
    print(f"another run's ratio inside a run's 95% CI: {inside}/{total} = {share:.0%} "
          f"(~83% expected of honest CIs; {verdict})")
    worst = table["spread_%"].max()
    print(f"host: {cpu_model()}, {os.cpu_count()} cores; load (1 min) at end "
          f"{os.getloadavg()[0]:.2f}")
    print(f"worst ratio spread: {worst:.2f}% (target <= 2%: {'met' if worst <= 2 else 'NOT met'}); "
          f"absolute medians spread up to {table['median_ms_spread_%'].max():.1f}% for comparison")
    print(f"wall time of one sweep: {min(walls):.0f}-{max(walls):.0f} s, median {sorted(walls)[len(walls) // 2]:.0f} s "
          f"({args.sessions} sessions per model; target <= 60 s: {'met' if max(walls) <= 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
