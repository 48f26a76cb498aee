"""What the lab path costs against `edgeprof profile DIR` on the same machine and the same bundle: set-up time and
per-model measurement time, as ratios lab / direct.

Both paths measure the same bundle with the same options, in this process:
- direct: ``edgeprof.api.profile(DIR)`` (what `edgeprof profile DIR` calls). Its measurement runs from the first
  progress message of the first size group to the last group's rows; set-up is the rest of its wall time (loading
  and checking the bundle, opening the results).
- lab: ``connect()`` (an embedded Ray instance, this machine the one device) and ``run_lab(DIR)``. Its measurement
  is the sum of the device tasks' spans (each: unpacking, the SHA-256 check, the group's measurement); set-up is
  the rest of its wall time (starting Ray, probing the device, shipping the bundle, scheduling, writing the rows
  on the head, stopping Ray).
Per-model time = measurement / models measured. The two paths alternate (direct, lab, direct, lab...) --repeat
times; the medians are reported.

    .venv/bin/python benchmarks/lab_overhead.py                   # builds a small bundle (needs torch)
    .venv/bin/python benchmarks/lab_overhead.py --bundle DIR --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def direct(bundle: Path, options, out: Path) -> dict:
    from edgeprof import api
    from edgeprof.measure import SessionSettings

    marks: list[float] = []
    first: list[float] = []

    def progress(message: str, fraction: float) -> None:
        if not first and message.startswith("[1/"):
            first.append(time.perf_counter())

    t0 = time.perf_counter()
    df, _ = api.profile([bundle], [SessionSettings()], options, on_progress=progress, roofline=False,
                        csv_path=out, on_rows=lambda rows: marks.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    start = first[0] if first else t0
    measuring = marks[-1] - start
    return {"wall": wall, "setup": wall - measuring, "measuring": measuring, "rows": len(df)}


def lab(bundle: Path, options, out: Path) -> dict:
    from edgeprof.lab import connect, disconnect, run_lab

    t0 = time.perf_counter()
    connected = connect()
    try:
        result = run_lab(bundle, out, options=options, roofline=False)
    finally:
        disconnect(connected)
    wall = time.perf_counter() - t0
    measuring = sum(t["end"] - t["start"] for t in result.tasks)
    return {"wall": wall, "setup": wall - measuring, "measuring": measuring,
            "rows": sum(len(f) for f in result.rows.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, help="a bundle from `edgeprof bundle` (default: build a small one)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each path (default 3)")
    parser.add_argument("--rel-ci", type=float, default=0.99, help="the CI target (default 0.99: the minimum rounds "
                        "only, the same work on both paths; 0.02 as a sweep: rounds until the CI is reached)")
    args = parser.parse_args()

    from edgeprof.bundle import load_bundle
    from edgeprof.measure import MeasureOptions
    from edgeprof.measure.host import cpu_model, load_average, usable_cores

    # the minimum rounds only (--rel-ci 0.99 is met at once): both paths do the same fixed work, so per-model time is
    # that work plus each path's overhead, not how soon a noisier machine reaches a CI target
    options = MeasureOptions(sessions=1, rel_ci=args.rel_ci)
    with tempfile.TemporaryDirectory(prefix="edgeprof-lab-bench-") as tmp:
        tmp = Path(tmp)
        bundle = args.bundle
        if bundle is None:
            from edgeprof.api import make_plan
            from edgeprof.bundle import make_bundle

            plan = make_plan(acts="relu,silu,hardswish,mish", widths="16,32", imgsz="80", roofline=False)
            bundle = make_bundle(plan, tmp / "bundle").parent
        _, groups = load_bundle(bundle)
        models = sum(len(models) for _, _, models in groups)
        runs: dict[str, list[dict]] = {"direct": [], "lab": []}
        for i in range(args.repeat):
            runs["direct"].append(direct(bundle, options, tmp / f"direct-{i}.csv"))
            runs["lab"].append(lab(bundle, options, tmp / f"lab-{i}"))

    def med(path: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[path])

    print(f"host: {cpu_model()}, {usable_cores()} usable cores, load average {load_average()} at the end; bundle: "
          f"{len(groups)} size group(s), {models} models; sessions=1, rel_ci={args.rel_ci}; {args.repeat} "
          "alternating run(s) per path, medians")
    print(f"{'':22}{'direct':>10}{'lab':>10}{'lab/direct':>12}")
    for key, label in (("wall", "wall s"), ("setup", "set-up s")):
        d, l_ = med("direct", key), med("lab", key)
        print(f"{label:22}{d:10.2f}{l_:10.2f}{l_ / d:11.2f}x")
    d, l_ = med("direct", "measuring") / models, med("lab", "measuring") / models
    print(f"{'measuring per model s':22}{d:10.3f}{l_:10.3f}{l_ / d:11.2f}x")
    print("raw: " + "; ".join(f"{p} run {i + 1}: wall {r['wall']:.2f} s, set-up {r['setup']:.2f} s, measuring "
                              f"{r['measuring']:.2f} s, {r['rows']} rows" for p in runs for i, r in
                              enumerate(runs[p])))


if __name__ == "__main__":
    main()
