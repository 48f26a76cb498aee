"""How much edgeprof adds to what it measures, per runtime: its reported per-run time against that runtime's own
bare loop, interleaved ABAB, with a 95% CI.

For every runtime asked for (default: every built-in runtime installed here), a Conv-BN-ReLU block of about 5 ms
(64 channels, 80 px) and a tiny one (4 channels, 8 px) are exported once, converted to the runtime's format
(``Runtime.convert``, from a ``ModelSource``), loaded in this process by the runtime's own Runner, and timed in
alternating blocks (A B B A A B ...): A = ``Runner.sample`` (what every edgeprof figure comes from), B = a bare loop
over the runner's ``run_fn()`` (the runtime's own call on pre-bound inputs, where its API allows),
each call timed alone.
The overhead is the median of the per-block paired ratios median(A) / median(B) - 1, with the 95% CI of that
median; blocks go on until the CI's half-width is within ±0.5% or the time budget per runtime is spent.
Target: <= 2% on the 5 ms block for every runtime (<= 10 us per call on the tiny one).

    .venv/bin/python benchmarks/overhead.py                        # every installed runtime, up to 60 s each
    .venv/bin/python benchmarks/overhead.py --runtimes onnxruntime --quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from edgeprof.measure.stats import paired_ratio
from edgeprof.runtime.base import ModelSource, UnsupportedModel
from edgeprof.runtime.registry import BUILTIN, get_runtime, missing_runtimes
from edgeprof.spec import BlockSpec

TARGET_PCT = 2.0  # per runtime, on the 5 ms block
TINY_TARGET_US = 10.0
RESOLVE_PCT = 0.5  # stop when the CI half-width is within this


def bare_loop(run, calls: int) -> list[float]:
    """The runtime's own call, each timed alone (ms)."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(calls):
        t0 = clock()
        run()
        out.append((clock() - t0) / 1e6)
    return out


def measure(runtime, onnx_path: Path, source: ModelSource, out_dir: Path, budget_s: float, block_s: float,
            min_blocks: int) -> dict:
    conversion = runtime.convert(onnx_path, out_dir, source=source)
    settings = runtime.settings(threads=1)
    runner = runtime.runner(str(conversion.path), settings)
    try:
        runner.load()
        runner.first_run()
        runner.warmup(seconds=0.5)
        runner.calibrate()
        est = statistics.median(runner.sample(count=10))
        calls = max(10, int(block_s * 1e3 / est))
        samples = max(1, calls // runner.inner_loops)
        run = runner.run_fn()
        a, b = [], []
        t_start = time.perf_counter()
        while True:  # A B, then B A: neither side always goes first (ABBA cancels a linear drift)
            if len(a) % 2 == 0:
                a.append(statistics.median(runner.sample(count=samples)))
                b.append(statistics.median(bare_loop(run, calls)))
            else:
                b.append(statistics.median(bare_loop(run, calls)))
                a.append(statistics.median(runner.sample(count=samples)))
            if len(a) >= min_blocks:
                ratio, lo, hi = paired_ratio(a, b)
                half = max(ratio - lo, hi - ratio) * 100
                if half <= RESOLVE_PCT or time.perf_counter() - t_start > budget_s:
                    break
    finally:
        runner.close()
    med_a, med_b = statistics.median(a), statistics.median(b)
    return {"loops": runner.inner_loops, "blocks": len(a), "edgeprof_ms": med_a, "bare_ms": med_b,
            "overhead_us": (ratio - 1) * med_b * 1e3, "overhead_pct": (ratio - 1) * 100,
            "ci_low_pct": (lo - 1) * 100, "ci_high_pct": (hi - 1) * 100}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default="", help="comma-separated (default: every built-in one installed)")
    parser.add_argument("--quick", action="store_true", help="a few blocks only: checks the script runs")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per runtime and model")
    args = parser.parse_args(argv)
    missing = missing_runtimes()
    names = [n.strip() for n in args.runtimes.split(",") if n.strip()] or [n for n in BUILTIN if n not in missing]
    if missing and not args.runtimes:
        print("not installed, so left out: " + ", ".join(f"{n} (pip install 'edgeprof[{e}]')"
                                                          for n, e in missing.items()))
    budget, block_s, min_blocks = (2.0, 0.05, 6) if args.quick else (args.budget, 0.3, 20)
    from edgeprof.convert.onnx_export import export_block  # the build side: torch, once for every runtime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, spec in (("tiny conv4x8x8", BlockSpec("conv", "relu", width=4, imgsz=8)),
                           ("block conv64x80x80", BlockSpec("conv", "relu", width=64, imgsz=80))):
            models[name] = (export_block(spec, Path(tmp)).path, ModelSource(spec.as_dict(), 0))
        for runtime_name in names:
            runtime = get_runtime(runtime_name)
            for model, (path, source) in models.items():
                try:
                    r = measure(runtime, path, source, Path(tmp), budget, block_s if "block" in model else 0.05,
                                min_blocks)
                except UnsupportedModel as exc:
                    print(f"{runtime_name}: {model} unsupported: {exc}")
                    continue
                rows.append((runtime_name, model, r))
    print(f"{'runtime':<14} {'model':<20} {'loops':>5} {'blocks':>6} {'edgeprof ms':>12} {'bare ms':>10} "
          f"{'overhead us':>12} {'overhead % [95% CI]':>24}")
    verdicts = []
    for runtime_name, model, r in rows:
        ci = f"{r['overhead_pct']:+.2f} [{r['ci_low_pct']:+.2f}, {r['ci_high_pct']:+.2f}]"
        print(f"{runtime_name:<14} {model:<20} {r['loops']:>5} {r['blocks']:>6} {r['edgeprof_ms']:>12.5f} "
              f"{r['bare_ms']:>10.5f} {r['overhead_us']:>12.2f} {ci:>24}")
        half = max(r["overhead_pct"] - r["ci_low_pct"], r["ci_high_pct"] - r["overhead_pct"])
        if model.startswith("block"):
            verdicts.append(f"{runtime_name} 5 ms block <= {TARGET_PCT:g}%: "
                            f"{'met' if abs(r['overhead_pct']) <= TARGET_PCT else 'NOT met'} (CI ±{half:.2f}%: "
                            f"{'resolved' if half <= RESOLVE_PCT else 'NOT resolved'} to ±{RESOLVE_PCT:g}%)")
        else:
            verdicts.append(f"{runtime_name} tiny <= {TINY_TARGET_US:g} us/call: "
                            f"{'met' if abs(r['overhead_us']) <= TINY_TARGET_US else 'NOT met'}")
    print("; ".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
