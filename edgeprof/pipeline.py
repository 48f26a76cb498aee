"""The pipeline: producers (built blocks, whole networks, bundles, ONNX files, swapped models) -> measure -> record.

Every entry point describes its work as ``Job``s (the configs it will measure, how to get its models, how
its measurements become rows) and hands them to ``record_run``, the one funnel: it measures each job's
models together, interleaved, adds the static figures and the roofline to every row, and gives the rows to
the run recorder (``edgeprof.results.recorder``), which writes them as soon as they are measured, so an
interrupted or failing run keeps every finished row. ``profile_models`` and ``run_onnx_swap`` never import
torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Unpack

import pandas as pd

from edgeprof.errors import InputError
from edgeprof.measure import Measurement, MeasurementInterrupted, MeasureOptions, SessionSettings, measure
from edgeprof.results.recorder import (  # noqa: F401  (SweepInterrupted, ResultsNotSaved: what callers catch)
    RecordOptions,
    ResultsNotSaved,
    RunRecorder,
    SweepInterrupted,
    new_csv_path,
)
from edgeprof.results.rows import measurement_row, per_op_rows
from edgeprof.runtime.base import ModelSource, RuntimeSettings
from edgeprof.runtime.registry import get_runtime
from edgeprof.spec import MODEL_NAMES, BlockSpec
from edgeprof.spec.plan import (  # noqa: F401  (the planner's names, importable from here as before)
    DEFAULT_ACTS,
    SCALES,
    SCALING_MODES,
    SweepPlan,
    labelled_groups,
    plan_groups,
    plan_sizes,
    resolve_acts,
    resolved,
    scale_size,
)

REFERENCE_ACT = "identity"
_MEASURED = ("ok", "interrupted")  # statuses of a model with timed samples (not failed, not unsupported)

ProgressFn = Callable[[str, float], None]


def run_sweep(
    plan: SweepPlan,
    settings: RuntimeSettings | Sequence[RuntimeSettings] = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    models_dir: Path = Path("models"),
    on_progress: ProgressFn | None = None,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Run the plan; return the rows measured and the CSV path. Rows are appended to the CSV group by group.

    ``settings`` may be several runtimes' settings (``--runtimes``): each size group is built and exported once,
    then converted to each runtime's format and measured runtime by runtime (each runtime's models interleaved
    together, so every ratio is within one runtime).

    With ``resume``, configs that ``csv_path`` already holds with the same settings are not measured again
    (a size group with some new activations is measured whole, for the paired ratios, but only the new
    rows are appended).
    """

    plan = resolved(plan)
    groups = labelled_groups(plan)

    return run_groups(plan, groups, lambda group, stage: build_group_models(group, plan, models_dir, stage),
                      settings, options, on_progress, **record)


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
    settings: RuntimeSettings | Sequence[RuntimeSettings],
    options: MeasureOptions,
    on_progress: ProgressFn | None = None,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Measure size groups one after the other: ``get_models(group, stage)`` gives each group's models keyed
    (role, act), as exported (``run_sweep``) or read from a bundle (``run_bundle``, no torch).

    With several runtimes' settings, each group's models are got once and measured runtime by runtime, in the
    order given (a job per group and runtime); ``get_models`` may return, per runtime, only the models that runtime
    has (a bundle's artifacts): ``get_models(group, stage, runtime=settings)`` when it takes ``runtime``."""
    import inspect

    all_settings = _settings_list(settings)
    precisions = ["fp32", *([plan.quantize] if plan.quantize else [])]
    per_runtime = "runtime" in inspect.signature(get_models).parameters
    cache: dict[int, dict] = {}

    def models_of(g: int, group, stage, rt_settings):
        if per_runtime:
            return get_models(group, stage, runtime=rt_settings)
        if g not in cache:
            cache[g] = get_models(group, stage)
        return cache[g]

    jobs = [Job(where=f"{group[0].block} w{group[0].width} {group[0].imgsz}px"
                + _what_differs(rt, all_settings),
                configs=[{**spec.as_dict(), **rt.row(), "exporter": plan.exporter, "opset": plan.opset,
                          "precision": precision} for spec in group for precision in precisions],
                get_models=lambda stage, g=g, group=group, rt=rt: models_of(g, group, stage, rt),
                make_rows=lambda results, group=group, rt=rt: [
                    (row, per_op) for _, row, per_op in _group_rows(group, results, plan.baseline, rt, options)],
                labels=labels, settings=rt, seed=plan.seed, ratios=_group_ratios(group, plan))
            for g, (group, labels) in enumerate(groups) for rt in all_settings]
    info = {"settings": all_settings[0].as_dict()} if len(all_settings) == 1 else \
        {"settings": all_settings[0].as_dict(), "runtimes": [rt.as_dict() for rt in all_settings]}
    recorder = RunRecorder("sweep", {"plan": plan.as_dict(), **info, "measure": asdict(options)}, **record)
    return record_run(jobs, recorder, all_settings[0], options, roofline=plan.roofline, on_progress=on_progress)


def _settings_list(settings: RuntimeSettings | Sequence[RuntimeSettings]) -> list[RuntimeSettings]:
    """One runtime's settings or several, as a non-empty list without repeats."""
    items = [settings] if isinstance(settings, RuntimeSettings) else list(settings)
    if not items:
        raise InputError("no runtime to measure with")
    return list(dict.fromkeys(items))


def _what_differs(settings: RuntimeSettings, all_settings: list[RuntimeSettings]) -> str:
    """What tells a job's settings apart from the run's others, for its progress label: its runtime, its threads."""
    runtime = f" {settings.runtime}" if len({s.runtime for s in all_settings}) > 1 else ""
    return runtime + (f" {settings.threads} thread(s)" if len({s.threads for s in all_settings}) > 1 else "")


@dataclass
class Job:
    """One interleaved measurement, as a producer (blocks, networks, bundles, files, swaps) describes it:
    ``configs`` are the rows it will give (for --resume, before anything is built), ``get_models(stage)``
    builds or finds its models keyed (role, act), ``make_rows(results)`` turns {key: (model, measurement)}
    into rows, each with its per-op rows; ``labels`` go on every row. ``settings``: the runtime this job is
    measured with (None: the run's); ``seed``: what built models were made with (``ModelSource`` for converters
    that rebuild the torch module); ``ratios``: the (numerator, denominator) keys of the ratios its rows report,
    which the rounds stop on (``MeasureOptions.ci_target``)."""

    where: str
    configs: list[dict]
    get_models: Callable[[ProgressFn], dict]
    make_rows: Callable[[dict], list[tuple[dict, list[dict]]]]
    labels: dict = field(default_factory=dict)
    settings: RuntimeSettings | None = None
    seed: int = 0
    ratios: list[tuple[tuple, tuple]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelFile:
    """A model edgeprof did not build (an ONNX file, a swapped model): all a job needs of it is its path."""

    path: str


def record_run(
    jobs: list[Job],
    recorder: RunRecorder,
    settings: SessionSettings,
    options: MeasureOptions,
    roofline: bool = True,
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[pd.DataFrame, Path]:
    """The one funnel every entry point goes through: producers' jobs -> measure -> the run recorder.

    Jobs are measured one after the other (each one's models interleaved); every row gets the static memory
    estimate and, with ``roofline``, the machine's ceilings; the recorder writes it, with its per-op rows.
    With ``options.total_time``, each job's rounds get an equal share of what is left of it.
    """
    from edgeprof.analysis import graph_macs, try_estimate_memory

    progress = on_progress or (lambda message, fraction: None)
    with recorder as rec:
        from edgeprof.runtime.cache import cache_metadata

        rec.add_metadata(cache=cache_metadata(getattr(settings, "cache", "warm")))  # cold: the eviction buffer
        t_start = time.perf_counter()
        ceilings: dict[int, dict] = {}  # the machine's ceilings at each thread count the jobs run with
        if roofline:
            from edgeprof.measure.machine import machine_ceilings

            progress("measuring this machine's ceilings (cached after the first time)", 0.0)
            for threads in dict.fromkeys([settings.threads, *(job.settings.threads for job in jobs if job.settings)]):
                ceilings[threads] = machine_ceilings(threads)
            rec.add_metadata(machine=ceilings[settings.threads],
                             **({"machine_by_threads": {str(t): c for t, c in ceilings.items()}}
                                if len(ceilings) > 1 else {}))
        rec.announce([config for job in jobs for config in job.configs])
        for j, job in enumerate(jobs):
            def stage(message: str, fraction: float, j=j, job=job) -> None:
                where = f"[{j + 1}/{len(jobs)}] {job.where}: " if len(jobs) > 1 or job.where else ""
                progress(f"{where}{message}", (j + fraction) / len(jobs))

            if rec.resume and job.configs and all(rec.is_done(config) for config in job.configs):
                stage("already in the CSV (--resume)", 1.0)
                continue
            models = job.get_models(stage)
            run_settings = job.settings or settings
            # a model the runtime cannot handle, known before measuring (a bundle says so): a row, not measured
            unsupported = {str(m.path): m.unsupported for m in models.values() if getattr(m, "unsupported", "")}
            paths = [p for p in dict.fromkeys(str(m.path) for m in models.values()) if p not in unsupported]
            sources = {str(m.path): ModelSource(m.spec.as_dict(), job.seed) for m in models.values()
                       if isinstance(getattr(m, "spec", None), BlockSpec)}
            refs = {str(m.path): str(m.ref) for m in models.values() if getattr(m, "ref", None)}
            pairs = [(str(models[a].path), str(models[b].path)) for a, b in job.ratios if a in models and b in models]
            pairs = [(a, b) for a, b in pairs if a in paths and b in paths]
            # an activation alone is timed for its median (fused_by_timing): its per-op profile is never read
            alone = {str(m.path) for k, m in models.items() if k[0] == "alone"}
            per_op = [p for p in paths if p not in alone]
            cap = None if options.total_time is None else \
                max(0.0, options.total_time - (time.perf_counter() - t_start)) / (len(jobs) - j)
            try:
                measured = measure(paths, run_settings, options, shapes=shapes,
                                   on_progress=lambda m, f, stage=stage: stage(m, 0.05 + 0.95 * f), sources=sources,
                                   refs=refs, pairs=pairs, time_cap_s=cap, per_op=per_op,
                                   on_note=lambda message, job=job: rec.note(f"{job.where}: {message}" if job.where
                                                                             else message))
                interrupted = False
            except MeasurementInterrupted as exc:
                measured, interrupted = exc.partial, True
            by_path = dict(zip(paths, measured, strict=True))
            for path, reason in unsupported.items():
                by_path[path] = Measurement(path=path, status="unsupported", error=reason,
                                            runtime=run_settings.runtime,
                                            runtime_version=get_runtime(run_settings.runtime).version())
            for m in models.values():  # a bundle's artifact: its converter is in the manifest
                measured_m = by_path[str(m.path)]
                if getattr(m, "converter", "") and not measured_m.converter:
                    measured_m.converter, measured_m.converter_version = m.converter, m.converter_version
            results = {key: (model, by_path[str(model.path)]) for key, model in models.items()}
            entries = [(row, ops) for row, ops in job.make_rows(results) if not rec.is_done(row)]
            for row, _ in entries:  # the static figures, for models edgeprof did not build too
                if row.get("weights_mb") is None and row.get("model"):
                    row.update(try_estimate_memory(row["model"]))
                if row.get("macs") is None and row.get("model") and row.get("status") not in ("failed", "unsupported"):
                    row["macs"] = graph_macs(row["model"])
                row.update(job.labels)
            add_roofline([row for row, _ in entries], ceilings.get(run_settings.threads))
            rec.record(entries)
            if interrupted:
                raise KeyboardInterrupt
    return rec.frame(), rec.csv_path


def _group_ratios(group: list[BlockSpec], plan: SweepPlan) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The ratios a size group's rows report, as (numerator, denominator) model keys: each activation's block to the
    baseline's; with --quantize, each quantized block to the quantized baseline's and to its own float block."""
    acts = [spec.act for spec in group]
    ratios = [(("block", act), ("block", plan.baseline)) for act in acts if act != plan.baseline]
    if plan.quantize:
        q = plan.quantize
        ratios += [((f"{q}-block", act), (f"{q}-block", plan.baseline)) for act in acts if act != plan.baseline]
        ratios += [((f"{q}-block", act), ("block", act)) for act in acts]
    return ratios


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


def _group_rows(group, results, baseline, settings, options) -> list[tuple[tuple[str, str], dict, list[dict]]]:
    """The group's rows, each with the (role, act) key of the model it describes and its per-op rows: every
    activation's block, then, with --quantize, every activation's quantized block (ratios there are to the
    quantized baseline)."""
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
                                  static_memory=try_estimate_memory(built.path))
            if spec.block == "act":
                row["fused"] = None
            row["precision"] = precision
            alone = results.get(("alone", spec.act)) if not prefix else None
            if alone is not None and alone[1].status in _MEASURED:
                row["act_alone_ms"] = alone[1].stats.get("median_ms")
                row["act_alone_elements"] = int(math.prod(spec.output_shape()))
                if reference is not None and reference[1].status in _MEASURED and spec.act != REFERENCE_ACT:
                    row["conv_alone_ms"] = reference[1].stats.get("median_ms")
                    row["fused_by_timing"] = fused_by_timing(row["conv_alone_ms"], row["act_alone_ms"],
                                                             m.stats.get("median_ms"))
            if prefix:
                fp32 = results[("block", spec.act)][1]
                if m.status in _MEASURED and fp32.status in _MEASURED and m.stats.get("n") and fp32.stats.get("n"):
                    row["ratio_to_fp32"] = paired_ratio_to(m, fp32)[0]
                row["quant_max_abs_err"] = getattr(built, "quant_max_abs_err", None)
                row["quant_rel_err"] = getattr(built, "quant_rel_err", None)
            out.append((key, row, per_op_rows(row, m.nodes, ref_nodes)))
    return out


def profile_models(
    paths: list[str | Path],
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
    roofline: bool = False,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Measure existing ONNX files interleaved (no torch); ratios are to the first file."""
    from edgeprof.runtime.registry import runtime_of

    if not paths:
        raise InputError("no ONNX files given")
    for path in paths:  # bad input fails fast, before any measuring: missing, corrupt, unfed dynamic dims
        runtime_of(settings).validate(path, settings, shapes)
    paths = [str(p) for p in paths]
    models = {("file", path): ModelFile(path) for path in paths}

    def make_rows(results: dict) -> list[tuple[dict, list[dict]]]:
        measured = [results[("file", path)][1] for path in paths]
        base = measured[0] if len(measured) > 1 else None
        base_name = Path(paths[0]).name if base is not None else ""
        rows = [measurement_row(m, settings.as_dict(), options.rel_ci, baseline=base, baseline_name=base_name)
                for m in measured]
        return [(row, per_op_rows(row, m.nodes, None)) for m, row in zip(measured, rows, strict=True)]

    job = Job(where="", configs=[{**settings.row(), "model": path} for path in paths],
              get_models=lambda stage: models, make_rows=make_rows,
              ratios=[(("file", path), ("file", paths[0])) for path in paths[1:]])
    recorder = RunRecorder("profile", {"models": paths, "settings": settings.as_dict(), "measure": asdict(options)},
                           **record)
    return record_run([job], recorder, settings, options, roofline=roofline, shapes=shapes, on_progress=on_progress)


def run_onnx_swap(
    src: str | Path,
    acts: list[str] | tuple[str, ...],
    baseline: str = "relu",
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    models_dir: Path = Path("models"),
    shapes: dict | None = None,
    on_progress: ProgressFn | None = None,
    roofline: bool = True,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Profile your own ONNX model with each activation swapped in (``edgeprof.swap``), interleaved.

    Needs the onnx package, not torch. The model is also swapped to ``identity`` (not a row): the ops each
    activation runs beyond that reference are what it ran as, as for built blocks.
    """
    import json

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
    models = {("block", act): ModelFile(str(path)) for act, path in swapped.items()}
    block = f"onnx:{src.stem}"

    def make_rows(results: dict) -> list[tuple[dict, list[dict]]]:
        reference = results[("block", REFERENCE_ACT)][1]
        ref_counts = op_counts[REFERENCE_ACT]["op_counts"]
        out = []
        for act in labels:
            counts = op_counts[act]["op_counts"]
            act_ops = [op for op, n in counts.items() if n > ref_counts.get(op, 0)]
            build = {"act": act, "block": block, "opset": op_counts[act]["opset"], "act_ops": act_ops}
            m = results[("block", act)][1]
            row = measurement_row(m, settings.as_dict(), options.rel_ci, build=build,
                                  baseline=results[("block", baseline)][1], baseline_name=baseline,
                                  reference_nodes=reference.nodes or None)
            out.append((row, per_op_rows(row, m.nodes, reference.nodes or None)))
        return out

    job = Job(where="", configs=[{**settings.row(), "act": act, "block": block, "opset": op_counts[act]["opset"],
                                  "model": str(swapped[act])} for act in labels],
              get_models=lambda stage: models, make_rows=make_rows,
              ratios=[(("block", act), ("block", baseline)) for act in labels if act != baseline])
    recorder = RunRecorder("swap", {"source_model": str(src), "acts": labels, "baseline": baseline,
                                    "settings": settings.as_dict(), "measure": asdict(options)}, **record)
    return record_run([job], recorder, settings, options, roofline=roofline, shapes=shapes, on_progress=on_progress)
