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
from edgeprof.profile import MeasurementInterrupted, MeasureOptions, SessionSettings, measure
from edgeprof.report.results import (
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
from edgeprof.spec import BlockSpec

DEFAULT_ACTS = ("relu", "leakyrelu", "silu", "hardswish", "mish")
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
    from edgeprof.build.activations import canonical_act

    canon = []
    for a in acts:
        c = canonical_act(a)
        if c not in canon:
            canon.append(c)
    base = canonical_act(baseline)
    if base not in canon:
        canon.insert(0, base)
    return canon, base


def plan_groups(plan: SweepPlan) -> list[list[BlockSpec]]:
    """Specs grouped by size: each group is one block at one size, with every activation."""
    groups = []
    seen = set()
    for block, width, depth, imgsz, batch in itertools.product(
        plan.blocks, plan.widths, plan.depths, plan.imgsz, plan.batch
    ):
        if block not in ("c3", "c2f"):
            depth = 1  # depth only means something for blocks with a chain of bottlenecks
        kernel, stride = (plan.kernel, plan.stride) if block == "conv" else (3, 1)  # conv-only options
        key = (block, width, depth, imgsz, batch)
        if key in seen:
            continue
        seen.add(key)
        groups.append([
            BlockSpec(block=block, act=act, width=width, depth=depth, imgsz=imgsz, batch=batch,
                      kernel=kernel, stride=stride)
            for act in plan.acts
        ])
    return groups


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
) -> tuple[pd.DataFrame, Path]:
    """Run the plan; return all rows and the CSV path. Rows are appended to the CSV group by group."""
    from edgeprof.build.export import export_block
    from edgeprof.hostinfo import load_average, run_metadata

    progress = on_progress or (lambda message, fraction: None)
    acts, baseline = resolve_acts(plan.acts, plan.baseline)
    plan = SweepPlan(**{**plan.as_dict(), "acts": tuple(acts), "baseline": baseline})
    groups = plan_groups(plan)
    csv_path = check_writable(csv_path or new_csv_path())
    run_id = uuid.uuid4().hex[:12]
    meta = run_metadata({"run_id": run_id, "plan": plan.as_dict(), "settings": settings.as_dict(),
                         "measure": asdict(options), **(metadata or {})})
    machine = None
    if plan.roofline:
        from edgeprof.profile.machine import machine_ceilings

        progress("measuring this machine's ceilings (cached after the first time)", 0.0)
        machine = machine_ceilings(settings.threads)
        meta["machine"] = machine
    write_metadata(csv_path, meta)
    all_rows: list[dict] = []
    try:
        for g, group in enumerate(groups):
            def stage(message: str, fraction: float, g=g, group=group) -> None:
                spec = group[0]
                where = f"[{g + 1}/{len(groups)}] {spec.block} w{spec.width} {spec.imgsz}px"
                progress(f"{where}: {message}", (g + fraction) / len(groups))

            jobs = _group_jobs(group, plan)
            exported = {}
            for key, spec in jobs.items():
                stage(f"exporting {spec.act}" + (" alone" if key[0] == "alone" else ""), 0.0)
                exported[key] = export_block(spec, models_dir, opset=plan.opset, exporter=plan.exporter,
                                             seed=plan.seed)
            paths = list(dict.fromkeys(str(e.path) for e in exported.values()))
            try:
                measured = measure(paths, settings, options,
                                   on_progress=lambda m, f, stage=stage: stage(m, 0.05 + 0.95 * f))
                interrupted = None
            except MeasurementInterrupted as exc:
                measured, interrupted = exc.partial, exc
            by_path = dict(zip(paths, measured, strict=True))
            results = {key: (exported[key], by_path[str(exported[key].path)]) for key in jobs}
            rows = _group_rows(group, results, baseline, settings, options, run_id)
            add_roofline(rows, machine)
            stamp_rows(rows, meta)
            append_per_op(per_op_path(csv_path), _group_per_op(group, results, rows))
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
    if plan.act_alone:
        for spec in group:
            if spec.act != REFERENCE_ACT:
                jobs[("alone", spec.act)] = spec.act_alone()
    return jobs


def fused_by_timing(t_conv: float, t_act: float, t_both: float) -> bool | None:
    """nn-Meter's rule: two ops are fused when T(conv) + T(act) - T(conv+act) > 0.5 * min(T(conv), T(act))."""
    if any(t is None or not t > 0 for t in (t_conv, t_act, t_both)):
        return None
    return bool(t_conv + t_act - t_both > 0.5 * min(t_conv, t_act))


def _group_per_op(group, results, rows) -> list[dict]:
    reference = results.get(("reference", REFERENCE_ACT))
    out = []
    for spec, row in zip(group, rows, strict=True):
        out += per_op_rows(row, results[("block", spec.act)][1].nodes, reference[1].nodes if reference else None)
    return out


def add_roofline(rows: list[dict], machine: dict | None) -> None:
    """Achieved GFLOP/s of each block and GB/s of each activation alone, as fractions of the ceilings."""
    for row in rows:
        median, macs = row.get("median_ms"), row.get("macs")
        if median and macs and median > 0:
            row["achieved_gflops"] = 2.0 * macs / (median * 1e6)
            if machine:
                row["frac_peak_gflops"] = row["achieved_gflops"] / machine["peak_gflops"]
        alone, elements = row.get("act_alone_ms"), row.get("act_alone_elements")
        if alone and elements and alone > 0:
            row["act_alone_gbs"] = 2.0 * elements * 4 / (alone * 1e6)
            if machine:
                row["frac_bandwidth"] = row["act_alone_gbs"] / machine["bandwidth_gbs"]


def _group_rows(group, results, baseline, settings, options, run_id) -> list[dict]:
    from edgeprof.analysis import try_estimate_memory

    reference = results.get(("reference", REFERENCE_ACT))
    reference_nodes = reference[1].nodes if reference else None
    base_m = results[("block", baseline)][1]
    rows = []
    for spec in group:
        exp, m = results[("block", spec.act)]
        build = {**spec.as_dict(), "params": exp.params, "macs": exp.macs, "exporter": exp.exporter,
                 "opset": exp.opset, "parity_max_abs_err": exp.parity_max_abs_err, "act_ops": exp.act_ops}
        row = measurement_row(m, settings.as_dict(), options.rel_ci, build=build, baseline=base_m,
                              baseline_name=baseline, reference_nodes=reference_nodes or None,
                              run_id=run_id, static_memory=try_estimate_memory(exp.path))
        alone = results.get(("alone", spec.act))
        if alone is not None and alone[1].status != "failed":
            row["act_alone_ms"] = alone[1].stats.get("median_ms")
            row["act_alone_elements"] = int(math.prod(spec.output_shape()))
            if reference is not None and reference[1].status != "failed" and spec.act != REFERENCE_ACT:
                row["conv_alone_ms"] = reference[1].stats.get("median_ms")
                row["fused_by_timing"] = fused_by_timing(row["conv_alone_ms"], row["act_alone_ms"],
                                                         m.stats.get("median_ms"))
        rows.append(row)
    return rows


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
    from edgeprof.hostinfo import load_average, run_metadata
    from edgeprof.profile.session import create_session, make_inputs

    if not paths:
        raise InputError("no ONNX files given")
    for path in paths:  # bad input fails fast, before any measuring: missing, corrupt, unfed dynamic dims
        make_inputs(create_session(path, settings), shapes)
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
