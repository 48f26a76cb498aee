"""How much edgeprof adds to what it measures: its reported per-run time against bare loops, ABAB.

For a tiny model (well under 0.1 ms) and a block of about 5 ms, in one process on one session:
A = edgeprof's ModelRunner.sample (what every figure comes from), B = a bare loop timing each
``session.run_with_iobinding`` call (the same call path), C = a bare loop of plain ``session.run(None, feeds)``.
Blocks alternate A B C A B C ...; the overhead is median(A) - median(B) per run.
Targets: <= 1% on the 5 ms block, <= 10 us per call on the tiny model.

    .venv/bin/python benchmarks/overhead.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _models import conv_relu  # noqa: E402

from edgeprof.runtime.onnxruntime.runner import ModelRunner  # noqa: E402
from edgeprof.runtime.onnxruntime.session import SessionSettings  # noqa: E402


def bare_iobinding(runner: ModelRunner, calls: int) -> list[float]:
    run, binding, clock = runner.session.run_with_iobinding, runner.binding, time.perf_counter_ns
    out = []
    for _ in range(calls):
        t0 = clock()
        run(binding)
        out.append((clock() - t0) / 1e6)
    return out


def bare_run(runner: ModelRunner, calls: int) -> list[float]:
    run, feeds, clock = runner.session.run, runner.feeds, time.perf_counter_ns
    out = []
    for _ in range(calls):
        t0 = clock()
        run(None, feeds)
        out.append((clock() - t0) / 1e6)
    return out


def measure(path: Path, blocks: int, seconds_per_block: float) -> dict:
    runner = ModelRunner(str(path), SessionSettings(threads=1))
    runner.load()
    runner.first_run()
    runner.warmup(seconds=0.5)
    runner.calibrate()
    est = statistics.median(runner.sample(count=20))
    calls = max(20, int(seconds_per_block * 1e3 / est))
    samples = max(1, calls // runner.inner_loops)
    a, b, c = [], [], []
    for _ in range(blocks):
        a.append(statistics.median(runner.sample(count=samples)))
        b.append(statistics.median(bare_iobinding(runner, calls)))
        c.append(statistics.median(bare_run(runner, calls)))
    med_a, med_b, med_c = statistics.median(a), statistics.median(b), statistics.median(c)
    return {"inner_loops": runner.inner_loops, "edgeprof_ms": med_a, "bare_iobinding_ms": med_b,
            "bare_run_ms": med_c, "overhead_us": (med_a - med_b) * 1e3, "overhead_pct": (med_a / med_b - 1) * 100,
            "vs_run_us": (med_a - med_c) * 1e3}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tiny = conv_relu(Path(tmp) / "tiny.onnx", channels=4, size=8)
        block = conv_relu(Path(tmp) / "block.onnx", channels=64, size=80)
        rows = [("tiny conv4x8x8", measure(tiny, blocks=30, seconds_per_block=0.1)),
                ("block conv64x80x80", measure(block, blocks=20, seconds_per_block=0.3))]
    print(f"{'model':<20} {'loops':>5} {'edgeprof ms':>12} {'bare iobind ms':>15} {'bare run ms':>12} "
          f"{'overhead us':>12} {'overhead %':>11} {'vs run() us':>12}")
    for name, r in rows:
        print(f"{name:<20} {r['inner_loops']:>5} {r['edgeprof_ms']:>12.5f} {r['bare_iobinding_ms']:>15.5f} "
              f"{r['bare_run_ms']:>12.5f} {r['overhead_us']:>12.2f} {r['overhead_pct']:>11.2f} {r['vs_run_us']:>12.2f}")
    tiny_ok = abs(rows[0][1]["overhead_us"]) <= 10
    block_ok = abs(rows[1][1]["overhead_pct"]) <= 1
    print(f"target tiny <= 10 us/call: {'met' if tiny_ok else 'NOT met'}; "
          f"target 5 ms block <= 1%: {'met' if block_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
