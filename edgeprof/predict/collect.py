"""Kernel data: measure the kernels YOLO-style networks are made of at sampled configurations, into a dataset CSV.

Each sample is a small model built from edgeprof's own blocks (``edgeprof.blocks.yolo``: a Conv-BN-Act at any
channels, size, kernel and stride, with every activation and without one; a C2f, which brings Split, Add and
Concat; an SPPF, which brings MaxPool; an upsample-and-concat of the neck; a detection head's branch with its
flatten, concat and Sigmoid; an activation alone; and whole networks of the network builder at sampled depth and
width multipliers and sizes, whose kernels are the same kinds measured in context: on the 2-core VM this was built
on, predictors fitted on kernels alone predicted convs at 0.65-0.9 and small memory-bound ops at 0.1-0.6 of their
time inside a network, and the ``in_network`` column lets the predictors learn that difference), exported as
the networks are (``convert.onnx_export``) and
measured with edgeprof's interleaved measurement (``measure.interleave.measure``: fresh worker processes, rounds
in a shuffled order) in batches. The runtime's profiler, read in the same workers, splits each model's measured
median over the nodes the runtime ran (``kernels``), so every row is one kernel as the runtime runs it, fused or
not. A tiny probe model in every batch measures what one run costs beyond its kernels (``overhead_ms``).

**Sampling** (nn-Meter's adaptive sampling): the first share of the budget draws configurations uniformly over
the space (channels and sizes log-uniform); after that, each round fits the predictors, ranks the samples by how
far their kernels' out-of-bag predictions miss, and draws half of the next batch near the worst (channels and
size scaled by 0.7-1.4) and half uniformly. **Fusion by timing**: for every activation, a conv with it, the same
conv without it and the activation alone on the conv's output are measured in one batch, for nn-Meter's rule.

The dataset resumes: rows are appended batch by batch (each whole line flushed), samples already in the file are
not measured again, and the budget already spent is read from its sidecar JSON.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError
from edgeprof.predict.kernels import FEATURES, split_kernels
from edgeprof.predict.store import check_identity, identity_of

FAMILIES = ("conv", "c2f", "sppf", "upcat", "head", "act", "net")
# share of the samples each family gets when drawn uniformly: convs dominate every network, and whole networks are
# the only place some kernels exist (HardSwish fuses into NCHWc convs only there) and where every kernel runs in the
# context predictions are made for
FAMILY_WEIGHTS = {"conv": 0.35, "c2f": 0.10, "sppf": 0.04, "upcat": 0.06, "head": 0.05, "act": 0.10, "net": 0.30}
NET_DEPTHS = (0.2, 0.33, 0.5, 0.67)  # depth and width multipliers of the sampled networks (YOLOv8's n/s are inside)
NET_WIDTHS = (0.125, 0.1875, 0.25, 0.3125, 0.375, 0.5)
def registry_acts() -> tuple[str, ...]:
    """Every activation of the registry but identity (a conv without activation is sampled anyway)."""
    from edgeprof.spec.acts import spec_names

    return tuple(a for a in spec_names() if a != "identity")


DEFAULT_ACTS = registry_acts()
REFIT_EVERY = 4  # adaptive rounds between fits that rank the samples
REFIT_TREES = 40  # trees of those fits (the ranking needs no more)
FIT_TREES = 150  # trees of the predictor's final fit
DATASET_COLUMNS = (
    "host_fingerprint", "runtime", "runtime_version", "runtime_settings", "threads", "sample", "family", "config",
    "round", "model_median_ms", "model_rel_ci", "overhead_ms", "node", "kind", "op_type", "fused", *FEATURES,
    "in_network", "node_us", "kernel_ms", "timestamp",
)

DATASET_TEXT = ("host_fingerprint", "runtime", "runtime_version", "runtime_settings", "sample", "family", "config",
                "node", "kind", "op_type", "timestamp")
"""Read as text: a fingerprint or sample id of hex digits alone would be a number to pandas, and match nothing."""


@dataclass(frozen=True)
class CollectOptions:
    """What ``collect`` samples and how long it may take. ``budget_s`` counts measuring, building and the final fit
    across resumed runs (no batch is begun that would end past it); ``explore_share`` of it is uniform sampling
    before the adaptive rounds."""

    budget_s: float = 1800.0
    acts: tuple[str, ...] = DEFAULT_ACTS
    batch: int = 8
    seed: int = 0
    explore_share: float = 0.4
    fusion_checks: int = 1  # conv / act / conv+act triples per activation, for the timing rule
    max_width: int = 512
    max_imgsz: int = 320
    max_macs: int = 600_000_000
    rel_ci: float = 0.03
    max_time: float = 0.3  # seconds of rounds per model (its share of the budget beyond the minimum rounds)
    min_rounds: int = 6

    def __post_init__(self) -> None:
        from edgeprof.spec.acts import parse_act

        if not (self.budget_s > 0):
            raise InputError(f"--budget must be positive, got {self.budget_s:g} s")
        if not self.acts:
            raise InputError("--acts needs at least one activation (edgeprof acts lists them)")
        for act in self.acts:
            parse_act(act)
        if not (1 <= self.batch <= 32):
            raise InputError(f"batch must be 1 to 32 models, got {self.batch}")
        if not (0 < self.explore_share <= 1):
            raise InputError(f"explore share must be in (0, 1], got {self.explore_share}")


@dataclass
class CollectResult:
    dataset: Path
    samples: int  # samples in the dataset (all runs)
    measured: int  # samples this run measured
    failed: int
    spent_s: float  # budget spent measuring and building, all runs
    fusion: dict = field(default_factory=dict)
    fit_s: float = 0.0  # seconds this run's final fit took (within the budget's reserve for it)


# -- the sample space ------------------------------------------------------------------------------------------------
def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _width(rng, low: int, high: int) -> int:
    return int(max(8, min(high, round(_log_uniform(rng, low, high) / 8) * 8)))


def _imgsz(rng, low: int, high: int) -> int:
    return int(max(low, min(high, round(_log_uniform(rng, low, high) / 2) * 2)))


def conv_macs(cin: int, cout: int, hw: int, k: int, s: int) -> int:
    out = math.ceil(hw / s)
    return cin * cout * k * k * out * out


def sample_config(rng: np.random.Generator, family: str, options: CollectOptions) -> dict:
    """One configuration of ``family`` drawn uniformly (channels and sizes log-uniform), within ``max_macs``."""
    acts = list(options.acts)
    for _ in range(100):
        act = acts[int(rng.integers(len(acts)))]
        hw = _imgsz(rng, 4, options.max_imgsz)
        if family == "conv":
            cin = 3 if rng.random() < 0.08 else _width(rng, 8, options.max_width)
            cfg = {"family": family, "act": "identity" if rng.random() < 0.12 else act, "cin": cin,
                   "cout": _width(rng, 8, options.max_width), "imgsz": hw, "k": 3 if rng.random() < 0.6 else 1,
                   "s": 2 if rng.random() < 0.25 else 1}
        elif family == "c2f":
            cfg = {"family": family, "act": act, "width": _width(rng, 16, options.max_width), "imgsz": hw,
                   "n": int(rng.integers(1, 4))}
        elif family == "sppf":
            cfg = {"family": family, "act": act, "width": _width(rng, 16, options.max_width), "imgsz": hw}
        elif family == "upcat":
            hw = max(4, hw // 4 * 4)
            cfg = {"family": family, "act": act, "c1": _width(rng, 8, options.max_width),
                   "c2": _width(rng, 8, options.max_width), "imgsz": hw}
        elif family == "head":
            cfg = {"family": family, "act": act, "width": _width(rng, 16, options.max_width // 2),
                   "hidden": _width(rng, 16, 128), "out": int(rng.choice([64, 80])), "imgsz": min(hw, 160)}
        elif family == "act":
            cfg = {"family": family, "act": act, "width": _width(rng, 8, options.max_width), "imgsz": hw}
        elif family == "net":
            sizes = list(range(64, max(64, options.max_imgsz) + 1, 32))
            cfg = {"family": family, "act": act, "depth": float(rng.choice(NET_DEPTHS)),
                   "width": float(rng.choice(NET_WIDTHS)), "imgsz": int(rng.choice(sizes))}
        else:
            raise InputError(f"unknown kernel family {family!r}; valid: {', '.join(FAMILIES)}")
        if config_macs(cfg) <= options.max_macs:
            return cfg
    return cfg


def config_macs(cfg: dict) -> int:
    f, hw = cfg["family"], cfg["imgsz"]
    if f == "conv":
        return conv_macs(cfg["cin"], cfg["cout"], hw, cfg["k"], cfg["s"])
    if f == "c2f":
        c = cfg["width"] // 2
        return conv_macs(cfg["width"], 2 * c, hw, 1, 1) + cfg["n"] * 2 * conv_macs(c, c, hw, 3, 1) + \
            conv_macs((2 + cfg["n"]) * c, cfg["width"], hw, 1, 1)
    if f == "sppf":
        w = cfg["width"]
        return conv_macs(w, w // 2, hw, 1, 1) + conv_macs(w * 2, w, hw, 1, 1)
    if f == "upcat":
        return conv_macs(cfg["c2"], cfg["c1"], hw, 3, 2)
    if f == "head":
        return conv_macs(cfg["width"], cfg["hidden"], hw, 3, 1) + conv_macs(cfg["hidden"], cfg["hidden"], hw, 3, 1)
    return 0


def perturb(rng: np.random.Generator, cfg: dict, options: CollectOptions) -> dict:
    """A configuration near ``cfg``: each channel count and the size scaled by 0.7-1.4 (adaptive sampling); a
    network: the next multiplier or size up or down."""
    out = dict(cfg)
    if out["family"] == "net":
        for key, choices in (("depth", NET_DEPTHS), ("width", NET_WIDTHS)):
            i = choices.index(out[key]) + int(rng.integers(-1, 2))
            out[key] = choices[min(len(choices) - 1, max(0, i))]
        out["imgsz"] = int(min(max(64, options.max_imgsz), max(64, out["imgsz"] + 32 * int(rng.integers(-1, 2)))))
        return out
    for key in ("cin", "cout", "width", "c1", "c2", "hidden"):
        if key in out and out[key] != 3:
            out[key] = int(max(8, min(options.max_width, round(out[key] * rng.uniform(0.7, 1.4) / 8) * 8)))
    step = 4 if out["family"] == "upcat" else 2  # upcat's stride-2 conv and upsample must meet the input's size
    out["imgsz"] = int(max(4, min(options.max_imgsz, round(out["imgsz"] * rng.uniform(0.7, 1.4) / step) * step)))
    if config_macs(out) > options.max_macs:
        return cfg
    return out


def sample_id(cfg: dict) -> str:
    from edgeprof.spec import content_hash

    return content_hash(cfg, length=12)


# -- building (torch) ------------------------------------------------------------------------------------------------
def build_sample(cfg: dict):
    """The torch module and input shape of a configuration, from edgeprof's blocks with seeded weights."""
    import torch
    from torch import nn

    from edgeprof.blocks.yolo import SPPF, ActAlone, C2f, Conv, _randomize_batchnorm

    f, hw = cfg["family"], cfg["imgsz"]

    class UpCat(nn.Module):
        """The neck's step: a stride-2 conv makes the deeper map, upsampled by 2 and concatenated with the input."""

        def __init__(self, c1: int, c2: int, act):
            super().__init__()
            self.down = Conv(c2, c1, 3, 2, act=act)
            self.up = nn.Upsample(scale_factor=2.0, mode="nearest")

        def forward(self, x):
            return torch.cat([self.up(self.down(x)), x], 1)

    class Head(nn.Module):
        """One level of the detector's head: box and class branches, flattened, concatenated, class Sigmoid."""

        def __init__(self, c: int, hidden: int, out: int, act):
            super().__init__()
            self.box = nn.Sequential(Conv(c, hidden, 3, act=act), Conv(hidden, hidden, 3, act=act),
                                     nn.Conv2d(hidden, 64, 1))
            self.cls = nn.Sequential(Conv(c, hidden, 3, act=act), Conv(hidden, hidden, 3, act=act),
                                     nn.Conv2d(hidden, out, 1))

        def forward(self, x):
            return torch.cat([self.box(x).flatten(2), self.cls(x).flatten(2).sigmoid()], 1)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if f == "conv":
            model, shape = Conv(cfg["cin"], cfg["cout"], cfg["k"], cfg["s"], act=cfg["act"]), (1, cfg["cin"], hw, hw)
        elif f == "c2f":
            model, shape = C2f(cfg["width"], cfg["width"], cfg["n"], True, act=cfg["act"]), (1, cfg["width"], hw, hw)
        elif f == "sppf":
            model, shape = SPPF(cfg["width"], cfg["width"], 5, act=cfg["act"]), (1, cfg["width"], hw, hw)
        elif f == "upcat":
            model, shape = UpCat(cfg["c1"], cfg["c2"], cfg["act"]), (1, cfg["c2"], hw, hw)
        elif f == "head":
            model, shape = Head(cfg["width"], cfg["hidden"], cfg["out"], cfg["act"]), (1, cfg["width"], hw, hw)
        elif f == "act":
            model, shape = ActAlone(cfg["act"]), (1, cfg["width"], hw, hw)
        elif f == "net":
            from edgeprof.blocks.networks import YOLO_SCALES, YoloDetector

            scale = f"collect-d{cfg['depth']}-w{cfg['width']}"
            YOLO_SCALES.setdefault(scale, (cfg["depth"], cfg["width"], 1024))  # the builder's table of scales
            model, shape = YoloDetector(scale, act=cfg["act"]), (1, 3, hw, hw)
        else:
            raise InputError(f"unknown kernel family {f!r}; valid: {', '.join(FAMILIES)}")
        _randomize_batchnorm(model)
    return model.eval(), shape


def write_probe(path: Path) -> Path:
    """The overhead probe: one Relu on 8 numbers, so its run time is what a run costs beyond its kernels."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 8, 1, 1])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8, 1, 1])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["output"], name="probe")], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# -- the dataset file ------------------------------------------------------------------------------------------------
def sidecar(dataset: Path) -> Path:
    return dataset.with_suffix(".json")


def read_dataset(dataset: Path):
    """The dataset's rows as a DataFrame (empty when the file does not exist); a file of another schema is refused."""
    import pandas as pd

    dataset = Path(dataset)
    if not dataset.exists() or dataset.stat().st_size == 0:
        return pd.DataFrame(columns=list(DATASET_COLUMNS))
    try:
        df = pd.read_csv(dataset, dtype=dict.fromkeys(DATASET_TEXT, str))
    except Exception as exc:
        raise InputError(f"cannot read the dataset {dataset}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in DATASET_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{dataset} is not an edgeprof predict dataset (missing columns: {', '.join(missing[:5])})")
    return df


def _append(dataset: Path, rows: list[dict]) -> None:
    import csv

    new = not dataset.exists() or dataset.stat().st_size == 0
    with dataset.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(DATASET_COLUMNS), extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def _read_meta(dataset: Path) -> dict:
    path = sidecar(dataset)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(dataset: Path, meta: dict) -> None:
    path = sidecar(dataset)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(path)


# -- measuring a batch -----------------------------------------------------------------------------------------------
def _measure_batch(configs: list[dict], settings, options: CollectOptions, workdir: Path, identity: dict,
                   round_no: int, on_progress) -> tuple[list[dict], int]:
    """Export and measure one batch of samples with the probe, interleaved; the kernel rows and the failures."""
    from edgeprof.convert.onnx_export import export_module
    from edgeprof.errors import EdgeprofError
    from edgeprof.measure.interleave import MeasureOptions, measure

    paths, kept, failed = [], [], 0
    for cfg in configs:
        path = workdir / f"{sample_id(cfg)}.onnx"
        try:
            model, shape = build_sample(cfg)
            export_module(model, shape, path)
        except EdgeprofError:
            failed += 1
            continue
        paths.append(str(path))
        kept.append(cfg)
    probe = write_probe(workdir / "probe.onnx")
    mopts = MeasureOptions(ci_target="absolute", rel_ci=options.rel_ci, sessions=1, min_rounds=options.min_rounds,
                           min_samples=10, max_time=options.max_time, warmup_s=0.05, per_op_runs=20, per_op_s=0.15,
                           seed=options.seed + round_no)
    results = measure([*paths, str(probe)], settings, mopts,
                      on_progress=lambda message, fraction: on_progress(message) if on_progress else None)
    probe_m = results[-1]
    overhead = math.nan
    if probe_m.status == "ok" and probe_m.nodes:
        overhead = max(0.0, probe_m.stats["median_ms"] - sum(n["mean_us"] for n in probe_m.nodes) / 1000)
    rows = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for cfg, path, m in zip(kept, paths, results[:-1], strict=True):
        if m.status != "ok" or not m.nodes:
            failed += 1
            continue
        graph = split_kernels(path, settings)
        matched = match_nodes(m.nodes, graph.kernels)
        total_us = sum(n["mean_us"] for n in m.nodes)
        median = m.stats["median_ms"]
        kernels_ms = median - overhead
        if not (total_us > 0 and kernels_ms > 0):  # no probe figure, or a model within the probe's overhead
            failed += 1
            continue
        scale = kernels_ms / (total_us / 1000)
        for node, k in zip(m.nodes, matched, strict=True):
            if k is None or not k.shapes_known:
                continue
            rows.append({**identity, "sample": sample_id(cfg), "family": cfg["family"],
                         "config": json.dumps(cfg, sort_keys=True), "round": round_no, "model_median_ms": median,
                         "model_rel_ci": m.stats.get("rel_ci"), "overhead_ms": overhead, "node": k.name,
                         "kind": k.kind, "op_type": k.op_type, "fused": k.fused,
                         **{f: getattr(k, f) for f in FEATURES}, "in_network": int(cfg["family"] == "net"),
                         "node_us": node["mean_us"],
                         "kernel_ms": node["mean_us"] / 1000 * scale, "timestamp": stamp})
    return rows, failed


def match_nodes(nodes: list[dict], kernels: list) -> list:
    """The kernel of each profiled node: by name, and for the nodes onnxruntime names with a counter that differs
    from one session to the next (``ReorderOutput_token_24``), by op type and the closest output size (two such
    nodes of one size have the same features, so which is which does not matter)."""
    import re

    by_name = {k.name: k for k in kernels}
    out = [by_name.get(n["name"]) if not re.search(r"_token_\d+$|^Reorder", n["name"]) else None for n in nodes]
    used = {id(k) for k in out if k is not None}
    for i, n in enumerate(nodes):
        if out[i] is not None:
            continue
        candidates = [k for k in kernels if id(k) not in used and k.op_type == n["op_type"] and k.out_elements > 0]
        if not candidates:
            continue
        size = float(n.get("output_bytes") or 0) / 4
        best = min(candidates, key=lambda k: abs(math.log(size / k.out_elements)) if size > 0 else 0.0)
        out[i] = best
        used.add(id(best))
    return out


def fusion_configs(rng: np.random.Generator, options: CollectOptions) -> list[list[dict]]:
    """For each activation, ``fusion_checks`` triples at one size: conv+act, the conv alone, the act alone."""
    triples = []
    for act in options.acts:
        for _ in range(options.fusion_checks):
            w, hw = _width(rng, 16, min(128, options.max_width)), _imgsz(rng, 20, min(80, options.max_imgsz))
            base = {"cin": w, "cout": w, "imgsz": hw, "k": 3, "s": 1}
            triples.append([{"family": "conv", "act": act, **base}, {"family": "conv", "act": "identity", **base},
                            {"family": "act", "act": act, "width": w, "imgsz": hw}])
    return triples


def fusion_summary(df) -> dict:
    """Per activation: what the runtime's optimised graph did with it after a conv (fused into the conv, or the
    op types it ran as) and nn-Meter's timing rule on the triples measured together."""
    from edgeprof.pipeline import fused_by_timing

    out: dict[str, dict] = {}
    if df.empty:
        return out
    samples = df.drop_duplicates("sample").set_index("sample")
    conv = df[df["family"] == "conv"]
    for sample, group in conv.groupby("sample"):
        cfg = json.loads(group["config"].iloc[0])
        act = cfg["act"]
        if act == "identity":
            continue
        entry = out.setdefault(act, {"graph": "", "ran_as": set(), "timing": []})
        fused = sorted({f for f in group["fused"].fillna("") if f})
        others = sorted({k for k in group["kind"] if not k.startswith("Conv") and not k.startswith("Reorder")})
        entry["ran_as"].update(others)
        entry["graph"] = f"fused into the conv ({'+'.join(fused)})" if fused and not others else \
            f"ran as {'+'.join(others) or '?'}"
        alone_cfg = {"family": "act", "act": act, "width": cfg["cout"], "imgsz": math.ceil(cfg["imgsz"] / cfg["s"])}
        ident_cfg = {**cfg, "act": "identity"}
        alone, ident = sample_id(alone_cfg), sample_id(ident_cfg)
        if alone in samples.index and ident in samples.index:
            def kernels_ms(key: str) -> float:  # the model's time less what one run costs beyond its kernels
                return float(samples.loc[key, "model_median_ms"]) - float(samples.loc[key, "overhead_ms"])

            rule = fused_by_timing(kernels_ms(ident), kernels_ms(alone), kernels_ms(sample))
            if rule is not None:
                entry["timing"].append(rule)
    for entry in out.values():
        entry["ran_as"] = sorted(entry["ran_as"])
        t = entry.pop("timing")
        entry["timing"] = f"fused by timing in {sum(t)} of {len(t)}" if t else "not measured"
    return out


# -- the collection --------------------------------------------------------------------------------------------------
def collect(dataset: str | Path, settings=None, options: CollectOptions = CollectOptions(),
            on_progress: Callable[[str], None] | None = None, fit: bool = True,
            predictor_path: str | Path | None = None) -> CollectResult:
    """Measure kernels into ``dataset`` until ``options.budget_s`` is spent (across resumed runs), then, with
    ``fit``, fit and save the predictors beside it (``predictor_path``, default ``<dataset>.predictor.pkl``)."""
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    settings = settings or SessionSettings()
    if settings.runtime != "onnxruntime":
        raise InputError(f"edgeprof predict collect reads onnxruntime's optimised graph and profiler; runtime "
                         f"{settings.runtime!r} is not supported (valid: onnxruntime)")
    dataset = Path(dataset)
    dataset.parent.mkdir(parents=True, exist_ok=True)
    identity = identity_of(settings)
    existing = read_dataset(dataset)
    if not existing.empty:
        check_identity(dict(existing.iloc[0][list(identity)]), identity, what=f"the dataset {dataset}",
                       force=False, hint="give another --dataset")
    meta = _read_meta(dataset)
    spent = float(meta.get("spent_s", 0.0))
    done = set(existing["sample"]) if not existing.empty else set()
    rng = np.random.default_rng([options.seed, len(done)])
    say = on_progress or (lambda message: None)
    measured = failed = 0
    round_no = int(existing["round"].max()) + 1 if not existing.empty else 0
    start = time.perf_counter()

    # what each batch took, and what fitting the predictors is expected to take (kept in the sidecar for a resume)
    batch_s: list[float] = [float(meta["batch_s"])] if meta.get("batch_s") else []
    fit_s = float(meta.get("fit_s", 0.0))

    def left() -> float:
        return options.budget_s - spent - (time.perf_counter() - start)

    def typical_batch() -> float:
        return float(np.median(batch_s[-8:])) if batch_s else 0.0

    def room() -> bool:
        """Whether the budget has room for another batch and the final fit (the budget is a limit, not a start
        line: a batch is not begun that would end past it)."""
        return left() > typical_batch() + fit_s

    def run(configs: list[dict]) -> None:
        nonlocal measured, failed, round_no, existing
        configs = [c for c in configs if sample_id(c) not in done]
        if not configs:
            return
        began = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgeprof-collect-") as tmp:
            rows, bad = _measure_batch(configs, settings, options, Path(tmp), identity, round_no,
                                       lambda m: say(f"round {round_no}: {m}"))
        _append(dataset, rows)
        import pandas as pd

        existing = pd.concat([existing, pd.DataFrame(rows)], ignore_index=True) if rows else existing
        done.update(sample_id(c) for c in configs)
        measured += len(configs) - bad
        failed += bad
        round_no += 1
        batch_s.append(time.perf_counter() - began)
        _write_meta(dataset, {**_read_meta(dataset), **identity, "spent_s": spent + time.perf_counter() - start,
                              "acts": list(options.acts), "samples": int(existing["sample"].nunique()),
                              "batch_s": typical_batch(), "fit_s": fit_s})
        say(f"{int(existing['sample'].nunique())} samples, {max(0.0, left()):.0f} s of the budget left")

    try:
        if not meta.get("fusion_done"):
            triples = fusion_configs(rng, options)
            complete = True
            for first in range(0, len(triples), 2):  # two triples per batch; each triple's three in one batch
                if not room():
                    complete = False
                    break
                run([cfg for triple in triples[first:first + 2] for cfg in triple])
            meta["fusion_done"] = complete
            _write_meta(dataset, {**_read_meta(dataset), **identity, "fusion_done": meta["fusion_done"]})
        worst: list[str] = []
        adaptive = 0
        families = list(FAMILY_WEIGHTS)
        weights = np.array([FAMILY_WEIGHTS[f] for f in families])
        while room():
            explore = spent + (time.perf_counter() - start) < options.explore_share * options.budget_s
            uniform = [sample_config(rng, families[int(rng.choice(len(families), p=weights / weights.sum()))],
                                     options) for _ in range(options.batch)]
            if explore or existing.empty:
                run(uniform)
                continue
            if not worst or adaptive % REFIT_EVERY == 0:  # refit every few rounds: a fit takes seconds on a big dataset
                began = time.perf_counter()
                worst = _worst_samples(existing, REFIT_EVERY * options.batch)
                # the final fit has FIT_TREES / REFIT_TREES times the trees of this one, on a little more data
                fit_s = (time.perf_counter() - began) * FIT_TREES / REFIT_TREES
            adaptive += 1
            picked = [worst.pop(0) for _ in range(min(len(worst), max(1, options.batch // 2)))]
            near = [perturb(rng, json.loads(cfg), options) for cfg in picked]
            run(near + uniform[: max(1, options.batch - len(near))])
    finally:
        _write_meta(dataset, {**_read_meta(dataset), **identity, "spent_s": spent + time.perf_counter() - start})
    result = CollectResult(dataset, int(existing["sample"].nunique()) if not existing.empty else 0, measured, failed,
                           spent + time.perf_counter() - start, fusion_summary(existing))
    if fit and not existing.empty:
        from edgeprof.predict.fit import fit_predictor, save_predictor

        began = time.perf_counter()
        predictor = fit_predictor(existing, identity, fusion=result.fusion, trees=FIT_TREES)
        save_predictor(predictor, Path(predictor_path) if predictor_path else predictor_default(dataset))
        result.fit_s = time.perf_counter() - began
    return result


def predictor_default(dataset: Path) -> Path:
    return Path(dataset).with_name(Path(dataset).stem + ".predictor.pkl")


def _worst_samples(df, count: int) -> list[str]:
    """The configurations whose kernels the current predictors miss most (out-of-bag), worst first."""
    from edgeprof.predict.fit import fit_predictor

    try:
        predictor = fit_predictor(df, {}, trees=REFIT_TREES)
    except InputError:
        return []
    errors = predictor.oob_error_by_row(df)
    frame = df.assign(err=errors).groupby("config")["err"].mean().sort_values(ascending=False)
    return list(frame.index[:count])


def as_dict(result: CollectResult) -> dict:
    data = asdict(result)
    data["dataset"] = str(result.dataset)
    return data
