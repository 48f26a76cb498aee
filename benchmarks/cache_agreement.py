"""Do edgeprof's ratios under --cache warm and --cache cold agree with a plain warm and a plain cold loop written
here, and which of the two settings does a block inside a whole network resemble?

Models: Conv-BN-Act blocks with relu, silu, hardswish and mish at 32 channels and 80 px, built and exported by
edgeprof's own builders (``export_block``); and yolo-n at 320 px with the same activations (its second stage runs
a 32-channel block at 80 px).

Four arms time the four blocks; every repetition runs the arms in a freshly shuffled order, so drift of the machine
touches them alike:

- edgeprof warm / edgeprof cold: ``edgeprof.measure.measure`` (the engine of every sweep: a fresh worker per model,
  rounds of bursts in shuffled order) with ``SessionSettings(cache=...)``; the ratio is edgeprof's paired ratio.
- plain warm: one onnxruntime ``InferenceSession`` per model, made here with edgeprof's default session options
  (1 intra-op and 1 inter-op thread, sequential, every graph optimisation, no spinning, arena on), ``session.run``
  on a fixed input, each run timed alone with ``perf_counter``, in rounds of back-to-back bursts per model.
- plain cold: the same sessions, but before every timed run this script evicts the caches its own way: it adds 1 to
  every word of a numpy buffer twice the largest cache it reads from sysfs (``--evict-mb`` sets both sides' size).

A plain arm's ratio is the median over rounds of median(model) / median(relu) in the same round; each arm's
figure is the median over repetitions. Agreement is edgeprof's ratio over the plain loop's for the same setting
(target within 3%); the crossed pair (edgeprof warm against plain cold) shows how much the setting itself moves a
ratio. Then yolo-n with each activation is measured whole by edgeprof (warm and cold) and its ratios to relu are
set beside the blocks': the setting whose block ratios follow the network's is the one a block inside a network
resembles. A network's ratio is diluted by its other layers (other sizes, concat, upsampling, the head), so the
verdict compares the pattern: each setting's block overheads (ratio - 1) are scaled by the one factor that fits the
network's best (least squares through 0), and the setting that leaves the smaller residual wins.

    .venv/bin/python benchmarks/cache_agreement.py            # 3 repetitions, a few minutes
    .venv/bin/python benchmarks/cache_agreement.py --quick    # 1 short repetition: checks the script runs
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

ACTS = ("relu", "silu", "hardswish", "mish")
BASELINE = "relu"
WIDTH, IMGSZ = 32, 80
TARGET_PCT = 3.0
ARMS = ("edgeprof warm", "edgeprof cold", "plain warm", "plain cold")


# -- the plain loops: nothing of edgeprof's measuring code ------------------------------------------------------
def largest_cache_bytes() -> int | None:
    """The largest data or unified cache cpu0 reports, read here independently of edgeprof."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:].upper(), 1)
        sizes.append(int(text[:-1] if unit != 1 else text) * unit)
    if not sizes:
        try:
            sizes.append(os.sysconf("SC_LEVEL3_CACHE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(sizes) if sizes and max(sizes) > 0 else None


class PlainLoops:
    """One onnxruntime session per model, timed run by run with perf_counter; cold: this script's own eviction."""

    def __init__(self, paths: dict[str, Path], evict_bytes: int):
        import onnxruntime as ort

        options = ort.SessionOptions()  # edgeprof's defaults, written out here
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = True
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        rng = np.random.default_rng(0)
        self.sessions, self.feeds = {}, {}
        for act, path in paths.items():
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.sessions[act] = session
            self.feeds[act] = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
        self.buffer = np.ones(max(1, evict_bytes // 8), dtype=np.uint64)  # written now: resident from the start
        self.est_ms = {act: self._warm_up(act) for act in self.sessions}

    def _warm_up(self, act: str, seconds: float = 0.3) -> float:
        session, feeds = self.sessions[act], self.feeds[act]
        runs, t0 = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - t0 < seconds:
            session.run(None, feeds)
            runs += 1
        return (time.perf_counter() - t0) * 1e3 / runs

    def evict(self) -> None:
        self.buffer += 1  # reads and writes every word of a buffer twice the last-level cache

    def ratios(self, cold: bool, rounds: int, rng: np.random.Generator, burst_ms: float = 20.0) -> dict[str, float]:
        """Per act (but the baseline): the median over rounds of median(act) / median(baseline) in that round."""
        per_round: dict[str, list[float]] = {act: [] for act in self.sessions}
        for _ in range(rounds):
            for act in rng.permutation(list(self.sessions)):
                session, feeds = self.sessions[act], self.feeds[act]
                runs = 3 if cold else max(3, int(burst_ms / max(self.est_ms[act], 1e-3)))
                times = []
                for _ in range(runs):
                    if cold:
                        self.evict()
                    t0 = time.perf_counter()
                    session.run(None, feeds)
                    times.append(time.perf_counter() - t0)
                per_round[act].append(float(np.median(times)))
        base = np.asarray(per_round[BASELINE])
        return {act: float(np.median(np.asarray(v) / base)) for act, v in per_round.items() if act != BASELINE}


# -- edgeprof's side ------------------------------------------------------------------------------------------
def edgeprof_ratios(paths: dict[str, Path], cache: str, options) -> dict[str, float]:
    """edgeprof's paired ratio to the baseline of every act, measured together, interleaved, with ``--cache``."""
    from edgeprof.measure import SessionSettings, measure, paired_ratio_to

    acts = list(paths)
    measured = dict(zip(acts, measure([str(paths[a]) for a in acts], SessionSettings(cache=cache), options),
                        strict=True))
    for act, m in measured.items():
        if m.status != "ok":
            raise SystemExit(f"edgeprof {cache}: {act} {m.status}: {m.error}")
    return {act: paired_ratio_to(m, measured[BASELINE])[0] for act, m in measured.items() if act != BASELINE}


def measure_options(cache: str, quick: bool, network: bool = False):
    """edgeprof's measuring for one arm: its defaults, but a cold burst of a few runs (each run costs an eviction)
    and per-op profiles cut short (this benchmark reads only the timings)."""
    from edgeprof.measure import MeasureOptions

    budgets = {(False, False): 3.0, (False, True): 8.0, (True, False): 1.0, (True, True): 2.0}  # (quick, cold)
    max_time = budgets[(quick, cache == "cold")] * (2 if network else 1)
    return MeasureOptions(max_time=max_time, min_samples=6 if quick else 20, min_rounds=3 if quick else 10,
                          burst_ms=4.0 if cache == "cold" else 20.0, per_op_runs=1, per_op_s=0.0)


# -- the comparison -------------------------------------------------------------------------------------------
def proportional_residual(block: dict[str, float], network: dict[str, float]) -> tuple[float, float]:
    """Fit network overhead = k * block overhead (overhead = ratio - 1) through 0; return (k, RMS residual in
    percentage points of the network's ratio)."""
    acts = [a for a in block if a in network]
    x = np.array([block[a] - 1 for a in acts])
    y = np.array([network[a] - 1 for a in acts])
    k = float(x @ y / (x @ x)) if float(x @ x) > 0 else math.nan
    return k, float(np.sqrt(np.mean((y - k * x) ** 2)) * 100)


def fmt(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short repetition: checks the script runs")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the four arms (default 3)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the plain loops per repetition")
    parser.add_argument("--net-imgsz", type=int, default=320, help="yolo-n's input size (default 320)")
    parser.add_argument("--no-network", action="store_true", help="leave out the whole-network comparison")
    parser.add_argument("--evict-mb", type=float, default=None,
                        help="both sides' eviction buffer in MiB (default: twice the largest cache; edgeprof's own "
                        "rule may cap it at 1/16 of the memory)")
    parser.add_argument("--models-dir", type=Path, default=None, help="where exported models are cached")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reps, rounds = (1, 5) if args.quick else (args.reps, args.rounds)

    from edgeprof.api import default_models_dir
    from edgeprof.convert.onnx_export import export_block  # the build side (torch): models, once
    from edgeprof.measure.host import cpu_model, load_average, usable_cores
    from edgeprof.runtime.cache import EVICT_ENV, eviction_size
    from edgeprof.runtime.onnxruntime.runtime import OnnxRuntime
    from edgeprof.spec import BlockSpec

    if args.evict_mb is not None:
        os.environ[EVICT_ENV] = f"{args.evict_mb:g}"  # edgeprof's workers inherit it
    llc = largest_cache_bytes()
    own_bytes = int(args.evict_mb * 2**20) if args.evict_mb else 2 * llc if llc else 64 * 2**20
    theirs = eviction_size()
    models_dir = args.models_dir or default_models_dir()
    load_start = load_average()
    print(f"host: {cpu_model()}, {usable_cores()} usable cores; onnxruntime {OnnxRuntime.version()}; "
          f"load average {load_start} at start", flush=True)
    print(f"eviction buffer: edgeprof {theirs.evict_bytes / 2**20:.0f} MiB ({theirs.how}); this script "
          f"{own_bytes / 2**20:.0f} MiB (largest cache {llc / 2**20 if llc else float('nan'):.1f} MiB)", flush=True)

    blocks = {act: export_block(BlockSpec("conv", act, width=WIDTH, imgsz=IMGSZ), models_dir).path for act in ACTS}
    plain = PlainLoops(blocks, own_bytes)
    rng = np.random.default_rng(args.seed)
    figures: dict[str, dict[str, list[float]]] = {arm: {a: [] for a in ACTS if a != BASELINE} for arm in ARMS}
    t_start = time.perf_counter()
    for rep in range(reps):
        for arm in rng.permutation(ARMS):
            side, cache = arm.split()
            if side == "edgeprof":
                ratios = edgeprof_ratios(blocks, cache, measure_options(cache, args.quick))
            else:
                ratios = plain.ratios(cache == "cold", rounds, rng)
            for act, ratio in ratios.items():
                figures[arm][act].append(ratio)
        print(f"repetition {rep + 1}/{reps} done ({time.perf_counter() - t_start:.0f} s, load "
              f"{load_average()})", flush=True)
    del plain  # its buffer and sessions, before the networks' workers start
    block = {arm: {a: float(np.median(v)) for a, v in acts.items()} for arm, acts in figures.items()}

    print(f"\nratio to {BASELINE}, conv block {WIDTH} ch {IMGSZ} px (median of {reps} repetition(s)); "
          "Δ = edgeprof / plain - 1")
    head = (f"{'act':<10} {'edgeprof warm':>13} {'plain warm':>10} {'Δ warm %':>9} {'edgeprof cold':>13} "
            f"{'plain cold':>10} {'Δ cold %':>9} {'edgeprof warm / plain cold %':>29}")
    print(head)
    worst = {"warm": 0.0, "cold": 0.0}
    crossed = 0.0
    for act in figures["plain warm"]:
        d = {c: (block[f"edgeprof {c}"][act] / block[f"plain {c}"][act] - 1) * 100 for c in ("warm", "cold")}
        cross = (block["edgeprof warm"][act] / block["plain cold"][act] - 1) * 100
        for c in d:
            worst[c] = max(worst[c], abs(d[c]))
        crossed = max(crossed, abs(cross))
        print(f"{act:<10} {fmt(block['edgeprof warm'][act]):>13} {fmt(block['plain warm'][act]):>10} "
              f"{d['warm']:>+9.2f} {fmt(block['edgeprof cold'][act]):>13} {fmt(block['plain cold'][act]):>10} "
              f"{d['cold']:>+9.2f} {cross:>+29.2f}")
    verdicts = [f"{c}: worst |Δ| {worst[c]:.2f}% (target <= {TARGET_PCT:g}%: "
                f"{'met' if worst[c] <= TARGET_PCT else 'NOT met'})" for c in ("warm", "cold")]
    print("agreement for the matching setting: " + "; ".join(verdicts)
          + f"; crossed (edgeprof warm against plain cold) up to {crossed:.2f}%")

    if not args.no_network:
        nets = {act: export_block(BlockSpec("yolo-n", act, width=3, imgsz=args.net_imgsz), models_dir).path
                for act in ACTS}
        network = {c: edgeprof_ratios(nets, c, measure_options(c, args.quick, network=True))
                   for c in rng.permutation(["warm", "cold"])}
        print(f"\nwhole network yolo-n at {args.net_imgsz} px (edgeprof, warm and cold) beside the block's ratios")
        print(f"{'act':<10} {'block warm':>10} {'block cold':>10} {'yolo-n warm':>11} {'yolo-n cold':>11}")
        for act in figures["plain warm"]:
            print(f"{act:<10} {fmt(block['edgeprof warm'][act]):>10} {fmt(block['edgeprof cold'][act]):>10} "
                  f"{fmt(network['warm'][act]):>11} {fmt(network['cold'][act]):>11}")
        fits = {c: proportional_residual(block[f"edgeprof {c}"], network["warm"]) for c in ("warm", "cold")}
        for c, (k, rms) in fits.items():
            raw = np.mean([abs(math.log(block[f"edgeprof {c}"][a] / network["warm"][a])) for a in network["warm"]])
            print(f"blocks --cache {c}: yolo-n overhead = {k:.2f} x block overhead, residual {rms:.2f} points; "
                  f"mean |log(block / network)| {raw * 100:.1f}%")
        best = min(fits, key=lambda c: fits[c][1])
        print(f"a block inside yolo-n (run back to back, as a video loop runs it) resembles --cache {best}: its "
              f"block ratios follow the network's with the smaller residual ({fits[best][1]:.2f} against "
              f"{fits['cold' if best == 'warm' else 'warm'][1]:.2f} points)")
    print(f"\nload average {load_start} at start, {load_average()} at the end; "
          f"{time.perf_counter() - t_start:.0f} s of measuring")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
