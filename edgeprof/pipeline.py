"""The pipeline: spec -> build/export (torch) -> profile (onnxruntime) -> rows and CSV (pandas).

``run_sweep`` builds every (block, size, activation) of a plan, measures the activations of each size
together, interleaved, and appends that size's rows to the CSV as soon as they are measured, so an
interrupted or failing sweep keeps every finished row. ``profile_models`` does the same for ONNX files
edgeprof did not build, and never imports torch.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from edgeprof.errors import EdgeprofError, InputError
from edgeprof.measure import MeasurementInterrupted, MeasureOptions, SessionSettings, measure
from edgeprof.results.rows import (
    append_per_op,
    append_rows,
    check_writable,
    measurement_row,
    per_op_path,
    per_op_rows,
    stamp_rows,
    to_frame,
    write_metadata,
)
from edgeprof.spec import MODEL_NAMES, BlockSpec

DEFAULT_ACTS = ("relu", "leakyrelu", "silu", "hardswish", "mish")

# YOLOv8's depth and width multipliers, applied to a P3-stage C2f (256 channels, 6 bottlenecks at scale l).
SCALES: dict[str, tuple[float, float]] = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75),
                                          "l": (1.00, 1.00), "x": (1.00, 1.25)}
SCALE_BASE_WIDTH = 256
SCALE_BASE_DEPTH = 6
SCALING_MODES = ("auto", "grid", "width", "imgsz", "fixed-tensor")
# the settings that must match for a row of an earlier run to count as already measured (--resume)
RESUME_KEYS = ("precision", "act", "block", "width", "depth", "imgsz", "batch", "kernel", "stride", "threads",
               "runtime", "runtime_settings", "exporter", "opset")
REFERENCE_ACT = "identity"

ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep builds: every combination of blocks, sizes and activations."""

    acts: tuple[str, ...] = DEFAULT_ACTS
    blocks: tuple[str, ...] = ("conv",)
    widths: tuple[int, ...] = (16, 32, 64)
    depths: tuple[int, ...] = (1,)
    imgsz: tuple[int, ...] = (160,)
    batch: tuple[int, ...] = (1,)
    kernel: int = 3
    stride: int = 1
    baseline: str = "relu"
    opset: int = 17
    exporter: str = "torchscript"
    seed: int = 0
    act_alone: bool = True
    roofline: bool = True
    scales: tuple[str, ...] = ()
    scaling: str = "auto"
    quantize: str | None = None
    calib: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class SweepInterrupted(EdgeprofError):
    """Ctrl-C: the rows measured so far are in the CSV."""

    exit_code = 130

    def __init__(self, csv_path: Path, rows_kept: int):
        super().__init__(f"interrupted; {rows_kept} measured rows kept in {csv_path}")
        self.csv_path = csv_path
        self.rows_kept = rows_kept


def resolve_acts(acts: list[str] | tuple[str, ...], baseline: str) -> tuple[list[str], str]:
    """Canonical activation specs (validated) with the baseline first if it was not asked for."""
    from edgeprof.blocks.activations import canonical_act

    canon = []
    for a in acts:
        c = canonical_act(a)
        if c not in canon:
            canon.append(c)
    base = canonical_act(baseline)
    if base not in canon:
        canon.insert(0, base)
    return canon, base


def scale_size(scale: str) -> tuple[int, int]:
    """(width, depth) of a YOLO scale preset: a P3-stage C2f with YOLOv8's multipliers."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    depth_mult, width_mult = SCALES[scale]
    width = max(8, int(round(SCALE_BASE_WIDTH * width_mult / 8)) * 8)
    return width, max(1, round(SCALE_BASE_DEPTH * depth_mult))


def plan_sizes(plan: SweepPlan) -> list[dict]:
    """The sizes a plan measures, each labelled with its scaling mode (and scale preset, if any)."""
    if plan.scaling not in SCALING_MODES:
        raise InputError(f"unknown scaling mode {plan.scaling!r}; valid: {', '.join(SCALING_MODES)}")
    sizes = []
    if plan.scales:
        for scale in plan.scales:
            width, depth = scale_size(scale)
            for imgsz in plan.imgsz:
                sizes.append({"width": width, "depth": depth, "imgsz": imgsz, "scale": scale, "scaling": "preset"})
        return sizes
    mode = plan.scaling
    if mode == "auto":
        mode = ("width" if len(plan.widths) > 1 and len(plan.imgsz) == 1 else
                "imgsz" if len(plan.imgsz) > 1 and len(plan.widths) == 1 else "grid")
    if mode == "width" and len(plan.imgsz) != 1:
        raise InputError("--scaling width grows the width at one input size: give a single --imgsz")
    if mode == "imgsz" and len(plan.widths) != 1:
        raise InputError("--scaling imgsz grows the input at one width: give a single --widths")
    if mode == "fixed-tensor":
        if len(plan.imgsz) != 1:
            raise InputError("--scaling fixed-tensor takes one --imgsz: the input side at the first width")
        w0, side0 = plan.widths[0], plan.imgsz[0]
        for width in plan.widths:
            side = max(1, round(side0 * math.sqrt(w0 / width)))  # width * side^2 stays (nearly) constant
            for depth in plan.depths:
                sizes.append({"width": width, "depth": depth, "imgsz": side, "scale": "", "scaling": mode})
        return sizes
    for width, depth, imgsz in itertools.product(plan.widths, plan.depths, plan.imgsz):
        sizes.append({"width": width, "depth": depth, "imgsz": imgsz, "scale": "", "scaling": mode})
    return sizes


def plan_groups(plan: SweepPlan) -> list[list[BlockSpec]]:
    """Specs grouped by size: each group is one block at one size, with every activation."""
    return [specs for specs, _ in labelled_groups(plan)]


def labelled_groups(plan: SweepPlan) -> list[tuple[list[BlockSpec], dict]]:
    """``plan_groups`` with each group's labels (``scaling``, ``scale``)."""
    groups = []
    seen = set()
    for block, size, batch in itertools.product(plan.blocks, plan_sizes(plan), plan.batch):
        depth = size["depth"] if block in ("c3", "c2f") else 1  # only blocks with a chain of bottlenecks
        kernel, stride = (plan.kernel, plan.stride) if block == "conv" else (3, 1)  # conv-only options
        key = (block, size["width"], depth, size["imgsz"], batch)
        if key in seen:
            continue
        seen.add(key)
        specs = [BlockSpec(block=block, act=act, width=size["width"], depth=depth, imgsz=size["imgsz"], batch=batch,
                           kernel=kernel, stride=stride) for act in plan.acts]
        groups.append((specs, {"scaling": size["scaling"], "scale": size["scale"]}))
    return groups


def done_configs(csv_path: Path) -> tuple[set[tuple], int]:
    """For --resume: the configs an earlier run finished (ok or failed) in ``csv_path``, keyed by RESUME_KEYS.

    Rows left ``interrupted`` are dropped from the file (atomically), so they are measured again rather
    than duplicated. Returns the keys and how many interrupted rows were dropped.
    """
    from edgeprof.results.rows import read_results, to_frame
    from edgeprof.results.schema import COLUMNS

    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return set(), 0
    with open(csv_path) as fh:
        header = fh.readline().strip().split(",")
    if header != list(COLUMNS):
        raise InputError(f"cannot resume {csv_path}: its columns differ from this edgeprof's (another version "
                         "wrote it); start a new CSV")
    df = read_results(csv_path)
    missing = [k for k in RESUME_KEYS if k not in df.columns]
    if missing:
        raise InputError(f"cannot resume from {csv_path}: missing columns {', '.join(missing)}")
    interrupted = df["status"] == "interrupted"
    if interrupted.any():
        keep = to_frame(df[~interrupted].to_dict("records"))
        tmp = csv_path.with_suffix(".csv.tmp")
        try:
            keep.to_csv(tmp, index=False)
            tmp.replace(csv_path)
        except OSError as exc:
            raise InputError(f"cannot rewrite {csv_path} to resume: {exc.strerror or exc}") from None
        df = keep
    return {_resume_key(r) for r in df.to_dict("records")}, int(interrupted.sum())


def _config_key(spec: BlockSpec, plan: SweepPlan, settings: SessionSettings) -> dict:
    """The RESUME_KEYS of a config before it is measured (opset as requested: the written one may differ,
    in which case the config is measured again rather than wrongly skipped)."""
    return {**spec.as_dict(), **settings.row(), "exporter": plan.exporter, "opset": plan.opset,
            "precision": "fp32"}


def _resume_key(row: dict) -> tuple:
    return tuple(str(row.get(k)) for k in RESUME_KEYS)


def new_csv_path(results_dir: Path = Path("results"), prefix: str = "sweep") -> Path:
    from datetime import datetime

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(results_dir) / f"{prefix}-{stamp}.csv"
    n = 1
    while path.exists():
        n += 1
        path = Path(results_dir) / f"{prefix}-{stamp}-{n}.csv"
    return path


def run_sweep(
    plan: SweepPlan,
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    csv_path: Path | None = None,
    models_dir: Path = Path("models"),
    on_progress: ProgressFn | None = None,
    metadata: dict | None = None,
    resume: bool = False,
) -> tuple[pd.DataFrame, Path]:
    """Run the plan; return the rows measured and the CSV path. Rows are appended to the CSV group by group.

    With ``resume``, configs that ``csv_path`` already holds with the same settings are not measured again
    (a size group with some new activations is measured whole, for the paired ratios, but only the new
    rows are appended).
    """

    acts, baseline = resolve_acts(plan.acts, plan.baseline)
    plan = SweepPlan(**{**plan.as_dict(), "acts": tuple(acts), "baseline": baseline})
    groups = labelled_groups(plan)

    return run_groups(plan, groups, lambda group, stage: build_group_models(group, plan, models_dir, stage),
                      settings, options, csv_path, on_progress, metadata, resume)


def build_group_models(group: list[BlockSpec], plan: SweepPlan, models_dir: Path, stage: ProgressFn) -> dict:
    """Export (and with ``plan.quantize``, quantize) the models of one size group, keyed (role, act)."""
    from edgeprof.convert.onnx_export import export_block

    built = {}
    for key, spec in _group_jobs(group, plan).items():
        stage(f"exporting {spec.act}" + (" alone" if key[0] == "alone" else ""), 0.0)
        built[key] = export_block(spec, models_dir, opset=plan.opset, exporter=plan.exporter, seed=plan.seed)
    if plan.quantize:
        from edgeprof.quantize import quantize_model

        for (role, act), model in list(built.items()):
            if role in ("block", "reference"):
                stage(f"quantizing {act} ({plan.quantize})", 0.0)
                built[(f"{plan.quantize}-{role}", act)] = quantize_model(model, plan.quantize, seed=plan.seed,
                                                                               calib=plan.calib)
    return built


def run_groups(
    plan: SweepPlan,
    groups: list[tuple[list[BlockSpec], dict]],
    get_models: Callable,
    settings: SessionSettings,
    options: MeasureOptions,
    csv_path: Path | None = None,
    on_progress: ProgressFn | None = None,
    metadata: dict | None = None,
    resume: bool = False,
) -> tuple[pd.DataFrame, Path]:
    """Measure size groups one after the other: ``get_models(group, stage)`` gives each group's models keyed
    (role, act), as exported (``run_sweep``) or read from a bundle (``run_bundle``, no torch)."""
    from edgeprof.measure.host import load_average, run_metadata

    progress = on_progress or (lambda message, fraction: None)
    if resume and csv_path is None:
        raise InputError("--resume needs --csv: the results file of the sweep to continue")
    csv_path = check_writable(csv_path or new_csv_path())
    done, dropped = done_configs(csv_path) if resume else (set(), 0)
    run_id = uuid.uuid4().hex[:12]
    meta = run_metadata({"run_id": run_id, "plan": plan.as_dict(), "settings": settings.as_dict(),
                         "measure": asdict(options), **(metadata or {})})
    machine = None
    if plan.roofline:
        from edgeprof.measure.machine import machine_ceilings

        progress("measuring this machine's ceilings (cached after the first time)", 0.0)
        machine = machine_ceilings(settings.threads)
        meta["machine"] = machine
    meta_path = csv_path.with_suffix(".json")
    if resume and meta_path.exists():  # keep the first run's metadata; this run goes under "resumed"
        import json

        try:
            first = json.loads(meta_path.read_text())
        except ValueError:
            first = {}
        meta = {**first, "resumed": [*first.get("resumed", []), {**meta, "dropped_interrupted_rows": dropped}]}
    write_metadata(csv_path, meta)
    all_rows: list[dict] = []
    try:
        for g, (group, labels) in enumerate(groups):
            def stage(message: str, fraction: float, g=g, group=group) -> None:
                spec = group[0]
                where = f"[{g + 1}/{len(groups)}] {spec.block} w{spec.width} {spec.imgsz}px"
                progress(f"{where}: {message}", (g + fraction) / len(groups))

            if resume and all(_resume_key(_config_key(spec, plan, settings)) in done for spec in group):
                stage("already in the CSV (--resume)", 1.0)
                continue
            models = get_models(group, stage)
            paths = list(dict.fromkeys(str(m.path) for m in models.values()))
            try:
                measured = measure(paths, settings, options,
                                   on_progress=lambda m, f, stage=stage: stage(m, 0.05 + 0.95 * f))
                interrupted = None
            except MeasurementInterrupted as exc:
                measured, interrupted = exc.partial, exc
            by_path = dict(zip(paths, measured, strict=True))
            results = {key: (models[key], by_path[str(models[key].path)]) for key in models}
            entries = _group_rows(group, results, plan.baseline, settings, options, run_id)
            if resume:
                entries = [(key, row) for key, row in entries if _resume_key(row) not in done]
            rows = [row for _, row in entries]
            add_roofline(rows, machine)
            stamp_rows(rows, meta)
            for row in rows:
                row.update(labels)
            append_per_op(per_op_path(csv_path), _group_per_op(results, entries))
            append_rows(csv_path, rows)
            all_rows.extend(rows)
            if interrupted is not None:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        write_metadata(csv_path, {**meta, "interrupted": True, "load_average_end": load_average()})
        raise SweepInterrupted(csv_path, len(all_rows)) from None
    write_metadata(csv_path, {**meta, "load_average_end": load_average()})
    return to_frame(all_rows), csv_path


def _group_jobs(group: list[BlockSpec], plan: SweepPlan) -> dict[tuple[str, str], BlockSpec]:
    """What one size group measures, keyed (role, act): each activation's block; the same block without an
    activation (the reference that tells which ops the activation ran as, and T(conv) for fused_by_timing);
    and each activation alone on the block's output tensor (``act_alone_ms``)."""
    jobs = {("block", spec.act): spec for spec in group}
    if group[0].block == "act":
        return jobs  # the activations are already alone: nothing to compare against
    jobs[("reference", REFERENCE_ACT)] = BlockSpec(**{**group[0].as_dict(), "act": REFERENCE_ACT})
    if plan.act_alone and group[0].block not in MODEL_NAMES:  # a whole network has no one output tensor
        for spec in group:
            if spec.act != REFERENCE_ACT:
                jobs[("alone", spec.act)] = spec.act_alone()
    return jobs


def fused_by_timing(t_conv: float, t_act: float, t_both: float) -> bool | None:
    """nn-Meter's rule: two ops are fused when T(conv) + T(act) - T(conv+act) > 0.5 * min(T(conv), T(act))."""
    if any(t is None or not t > 0 for t in (t_conv, t_act, t_both)):
        return None
    return bool(t_conv + t_act - t_both > 0.5 * min(t_conv, t_act))


def _group_per_op(results, entries) -> list[dict]:
    out = []
    for (role, act), row in entries:
        reference = results.get((role.replace("block", "reference"), REFERENCE_ACT))
        ref_nodes = [] if row.get("block") == "act" else (reference[1].nodes if reference else None)
        out += per_op_rows(row, results[(role, act)][1].nodes, ref_nodes)
    return out


def add_roofline(rows: list[dict], machine: dict | None) -> None:
    """Achieved GFLOP/s of each block and GB/s of each activation alone, as fractions of the ceilings."""
    for row in rows:
        median, macs = row.get("median_ms"), row.get("macs")
        if median and macs and median > 0:
            row["achieved_gflops"] = 2.0 * macs / (median * 1e6)
            if machine and row.get("precision", "fp32") == "fp32":  # the ceiling is an fp32 MatMul
                row["frac_peak_gflops"] = row["achieved_gflops"] / machine["peak_gflops"]
        alone, elements = row.get("act_alone_ms"), row.get("act_alone_elements")
        if alone and elements and alone > 0:
            row["act_alone_gbs"] = 2.0 * elements * 4 / (alone * 1e6)
            if machine:
                row["frac_bandwidth"] = row["act_alone_gbs"] / machine["bandwidth_gbs"]


def _group_rows(group, results, baseline, settings, options, run_id) -> list[tuple[tuple[str, str], dict]]:
    """The group's rows, each with the (role, act) key of the model it describes: every activation's block,
    then, with --quantize, every activation's quantized block (ratios there are to the quantized baseline)."""
    from edgeprof.analysis import try_estimate_memory
    from edgeprof.measure import paired_ratio_to

    out = []
    for prefix in ("", *sorted({k[0][: -len("block")] for k in results if k[0].endswith("-block")})):
        precision = prefix.rstrip("-") or "fp32"
        reference = results.get((f"{prefix}reference", REFERENCE_ACT))
        reference_nodes = reference[1].nodes if reference else None
        base_m = results[(f"{prefix}block", baseline)][1]
        for spec in group:
            key = (f"{prefix}block", spec.act)
            built, m = results[key]
            build = {**spec.as_dict(), "params": built.params, "macs": built.macs, "exporter": built.exporter,
                     "opset": built.opset, "parity_max_abs_err": built.parity_max_abs_err,
                     "act_ops": built.act_ops}
            # the activation alone (block "act") is nothing but the activation: all its nodes are the act's
            ref_nodes = [] if spec.block == "act" else (reference_nodes or None)
            row = measurement_row(m, settings.as_dict(), options.rel_ci, build=build, baseline=base_m,
                                  baseline_name=baseline, reference_nodes=ref_nodes,
                                  run_id=run_id, static_memory=try_estimate_memory(built.path))
            if spec.block == "act":
                row["fused"] = None
            row["precision"] = precision
            alone = results.get(("alone", spec.act)) if not prefix else None
            if alone is not None and alone[1].status != "failed":
                row["act_alone_ms"] = alone[1].stats.get("median_ms")
                row["act_alone_elements"] = int(math.prod(spec.output_shape()))
                if reference is not None and reference[1].status != "failed" and spec.act != REFERENCE_ACT:
                    row["conv_alone_ms"] = reference[1].stats.get("median_ms")
                    row["fused_by_timing"] = fused_by_timing(row["conv_alone_ms"], row["act_alone_ms"],
                                                             m.stats.get("median_ms"))
            if prefix:
                fp32 = results[("block", spec.act)][1]
                if m.status != "failed" and fp32.status != "failed" and m.stats.get("n") and fp32.stats.get("n"):
                    row["ratio_to_fp32"] = paired_ratio_to(m, fp32)[0]
                row["quant_max_abs_err"] = getattr(built, "quant_max_abs_err", None)
                row["quant_rel_err"] = getattr(built, "quant_rel_err", None)
            out.append((key, row))
    return out


def profile_models(
    paths: list[str | Path],
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    shapes: dict | None = None,
    csv_path: Path | None = None,
    on_progress: ProgressFn | None = None,
    metadata: dict | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Measure existing ONNX files interleaved (no torch); ratios are to the first file."""
    from edgeprof.measure.host import load_average, run_metadata
    from edgeprof.runtime.registry import runtime_of

    if not paths:
        raise InputError("no ONNX files given")
    for path in paths:  # bad input fails fast, before any measuring: missing, corrupt, unfed dynamic dims
        runtime_of(settings).validate(path, settings, shapes)
    paths = [str(p) for p in paths]
    csv_path = check_writable(csv_path or new_csv_path(prefix="profile"))
    run_id = uuid.uuid4().hex[:12]
    meta = run_metadata({"run_id": run_id, "models": paths, "settings": settings.as_dict(),
                         "measure": asdict(options), **(metadata or {})})
    write_metadata(csv_path, meta)
    interrupted = False
    try:
        measured = measure(paths, settings, options, shapes=shapes, on_progress=on_progress)
    except MeasurementInterrupted as exc:
        measured, interrupted = exc.partial, True
    base = measured[0] if len(measured) > 1 else None
    base_name = Path(paths[0]).name if base is not None else ""
    from edgeprof.analysis import try_estimate_memory

    rows = [measurement_row(m, settings.as_dict(), options.rel_ci, baseline=base, baseline_name=base_name,
                            run_id=run_id, static_memory=try_estimate_memory(m.path)) for m in measured]
    stamp_rows(rows, meta)
    append_rows(csv_path, rows)
    append_per_op(per_op_path(csv_path), [r for m, row in zip(measured, rows, strict=True)
                                          for r in per_op_rows(row, m.nodes, None)])
    write_metadata(csv_path, {**meta, "interrupted": interrupted, "load_average_end": load_average()})
    if interrupted:
        raise SweepInterrupted(csv_path, len(rows))
    return to_frame(rows), csv_path


def run_onnx_swap(
    src: str | Path,
    acts: list[str] | tuple[str, ...],
    baseline: str = "relu",
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    csv_path: Path | None = None,
    models_dir: Path = Path("models"),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
    metadata: dict | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Profile your own ONNX model with each activation swapped in (``edgeprof.swap``), interleaved.

    Needs the onnx package, not torch. The model is also swapped to ``identity`` (not a row): the ops each
    activation runs beyond that reference are what it ran as, as for built blocks.
    """
    import json

    from edgeprof.measure.host import load_average, run_metadata
    from edgeprof.runtime.onnxruntime.session import check_model_file
    from edgeprof.runtime.registry import runtime_of
    from edgeprof.spec import content_hash, file_sha256
    from edgeprof.spec.acts import parse_act
    from edgeprof.swap import swap_model

    progress = on_progress or (lambda message, fraction: None)
    src = check_model_file(src)
    runtime_of(settings).validate(src, settings, shapes)  # unreadable models and unfed dynamic dims fail here
    labels = list(dict.fromkeys(parse_act(a).canonical for a in acts))
    baseline = parse_act(baseline).canonical
    if baseline not in labels:
        labels.insert(0, baseline)
    csv_path = check_writable(csv_path or new_csv_path(prefix="swap"))
    src_hash = file_sha256(src)
    models_dir = Path(models_dir)
    swapped: dict[str, Path] = {}
    op_counts: dict[str, dict] = {}
    for act in [*labels, REFERENCE_ACT] if REFERENCE_ACT not in labels else labels:
        progress(f"swapping {src.name} to {act}", 0.0)
        key = content_hash({"src": src_hash, "act": act, "swap": 1})
        out = models_dir / f"{src.stem}-swap-{act.replace(':', '-')}-{key}.onnx"
        info = out.with_suffix(".json")
        if not (out.exists() and info.exists()):
            try:
                models_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot write to models dir {models_dir}: {exc.strerror or exc}") from None
            report = swap_model(src, act, out=out)
            counts: dict[str, int] = {}
            for node in report.model.graph.node:
                if node.op_type not in ("Constant", "Identity"):
                    counts[node.op_type] = counts.get(node.op_type, 0) + 1
            info.write_text(json.dumps({"source": str(src), "act": act, "opset": report.opset,
                                        "swapped": len(report.swapped), "op_counts": counts}, indent=2))
        swapped[act] = out
        op_counts[act] = json.loads(info.read_text())
    run_id = uuid.uuid4().hex[:12]
    meta = run_metadata({"run_id": run_id, "source_model": str(src), "acts": labels, "baseline": baseline,
                         "settings": settings.as_dict(), "measure": asdict(options), **(metadata or {})})
    write_metadata(csv_path, meta)
    paths = [str(swapped[a]) for a in labels] + ([str(swapped[REFERENCE_ACT])] if REFERENCE_ACT not in labels
                                                   else [])
    try:
        measured = measure(paths, settings, options, shapes=shapes, on_progress=progress)
        interrupted = False
    except MeasurementInterrupted as exc:
        measured, interrupted = exc.partial, True
    by_path = dict(zip(paths, measured, strict=True))
    reference = by_path[str(swapped[REFERENCE_ACT])]
    ref_counts = op_counts[REFERENCE_ACT]["op_counts"]
    rows = []
    for act in labels:
        counts = op_counts[act]["op_counts"]
        act_ops = [op for op, n in counts.items() if n > ref_counts.get(op, 0)]
        build = {"act": act, "block": f"onnx:{src.stem}", "opset": op_counts[act]["opset"], "act_ops": act_ops}
        rows.append(measurement_row(by_path[str(swapped[act])], settings.as_dict(), options.rel_ci, build=build,
                                    baseline=by_path[str(swapped[baseline])], baseline_name=baseline,
                                    reference_nodes=reference.nodes or None, run_id=run_id))
    stamp_rows(rows, meta)
    append_rows(csv_path, rows)
    write_metadata(csv_path, {**meta, "interrupted": interrupted, "load_average_end": load_average()})
    if interrupted:
        raise SweepInterrupted(csv_path, len(rows))
    return to_frame(rows), csv_path
