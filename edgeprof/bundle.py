"""Self-contained bundles for on-device profiling: exported models plus a manifest, measured without torch.

``make_bundle`` (workstation, needs torch) exports every model a sweep plan measures into DIR/models and
writes DIR/manifest.json: the plan, each size group's specs and labels, and for every model its role
(block, reference, alone), spec, file, SHA-256, params, MACs, exporter, opset and parity error.
``run_bundle`` (device: onnxruntime, numpy, pandas only) checks the files against the manifest and runs
the same interleaved sweep, writing the same CSV, which ``edgeprof report`` merges with other runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Unpack

import pandas as pd

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.measure import MeasureOptions, SessionSettings
from edgeprof.pipeline import ProgressFn, RecordOptions, SweepPlan, labelled_groups, resolve_acts, run_groups
from edgeprof.spec import BlockSpec, ModelRecord, file_sha256

MANIFEST = "manifest.json"
BUNDLE_SCHEMA_VERSION = 1


def make_bundle(plan: SweepPlan, out_dir: Path, on_progress: ProgressFn | None = None,
                runtime: str | None = None) -> Path:
    """Export the plan's models into ``out_dir``, convert each to ``runtime``'s artifact (default onnxruntime,
    which reads the ONNX file itself) and write the manifest; return the manifest's path."""
    from edgeprof.measure.host import run_metadata
    from edgeprof.pipeline import build_group_models
    from edgeprof.runtime.registry import get_runtime

    rt = get_runtime(runtime)

    progress = on_progress or (lambda message, fraction: None)
    acts, baseline = resolve_acts(plan.acts, plan.baseline)
    plan = SweepPlan(**{**plan.as_dict(), "acts": tuple(acts), "baseline": baseline})
    out_dir = Path(out_dir)
    models_dir = out_dir / "models"
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"-o {out_dir} is a file; give a folder for the bundle")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_bundle(out_dir):
        raise InputError(f"-o {out_dir} is a non-empty folder that is not an edgeprof bundle (no {MANIFEST}); "
                         "give a new or empty folder, or an existing bundle to replace")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write the bundle to {out_dir}: {exc.strerror or exc}") from None
    groups = labelled_groups(plan)
    entries = []
    for g, (group, labels) in enumerate(groups):
        jobs = []
        built = build_group_models(group, plan, models_dir,
                                   lambda message, fraction, g=g: progress(f"[{g + 1}/{len(groups)}] {message}",
                                                                           g / len(groups)))
        for (role, act), model in built.items():
            artifact = Path(rt.convert(model.path, models_dir).path)
            jobs.append({"role": role, "act": act, "file": str(Path(model.path).relative_to(out_dir)),
                         "artifact": str(artifact.relative_to(out_dir)), "artifact_sha256": file_sha256(artifact),
                         "sha256": file_sha256(Path(model.path)), "params": model.params, "macs": model.macs,
                         "exporter": model.exporter, "opset": model.opset,
                         "parity_max_abs_err": model.parity_max_abs_err, "act_ops": model.act_ops,
                         "quant_max_abs_err": getattr(model, "quant_max_abs_err", None),
                         "quant_rel_err": getattr(model, "quant_rel_err", None)})
        entries.append({"labels": labels, "specs": [s.as_dict() for s in group], "models": jobs})
    manifest = {"schema_version": BUNDLE_SCHEMA_VERSION, "plan": plan.as_dict(), "groups": entries,
                "runtime": {"name": rt.spec, "version": rt.version()}, "built": run_metadata()}
    path = out_dir / MANIFEST
    try:
        path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        listed = {Path(job["file"]).stem for entry in entries for job in entry["models"]}
        for old in models_dir.iterdir():  # a bundle replaced: no stale models (or sidecars) beside the manifest
            if old.stem not in listed and old.is_file():
                old.unlink()
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def is_bundle(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def bundle_runtime(bundle_dir: str | Path) -> str:
    """The runtime a bundle's artifacts were made for (onnxruntime for bundles that do not say)."""
    try:
        manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text())
        return str((manifest.get("runtime") or {}).get("name") or "onnxruntime")
    except (OSError, ValueError, AttributeError):
        return "onnxruntime"  # load_bundle says what is wrong with the manifest


def load_bundle(bundle_dir: str | Path) -> tuple[SweepPlan, list[tuple[list[BlockSpec], dict, dict]]]:
    """The plan and, per size group, its specs, labels and models; InputError if anything is off."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError:
        raise InputError(f"not an edgeprof bundle: {path} is missing (make one with `edgeprof bundle`)") from None
    except ValueError as exc:
        raise InputError(f"bundle manifest {path} is not valid JSON: {exc}") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != BUNDLE_SCHEMA_VERSION:
        raise InputError(f"bundle {bundle_dir} has schema version {version!r}; this edgeprof reads version "
                         f"{BUNDLE_SCHEMA_VERSION} (rebuild it with this edgeprof's `edgeprof bundle`)")
    try:
        plan_fields = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["plan"].items()}
        plan = SweepPlan(**plan_fields)
        groups = []
        for entry in manifest["groups"]:
            specs = [BlockSpec(**s) for s in entry["specs"]]
            models = {}
            for m in entry["models"]:
                file = bundle_dir / m["file"]
                if not file.is_file():
                    raise InputError(f"bundle {bundle_dir} is incomplete: {m['file']} is missing")
                if file_sha256(file) != m["sha256"]:
                    raise InputError(f"bundle {bundle_dir}: {m['file']} does not match its manifest (changed or "
                                     "corrupt)")
                artifact = bundle_dir / m.get("artifact", m["file"])
                if artifact != file and (not artifact.is_file() or file_sha256(artifact) != m.get("artifact_sha256")):
                    raise InputError(f"bundle {bundle_dir}: artifact {m['artifact']} is missing or does not match its "
                                     "manifest")
                models[(m["role"], m["act"])] = ModelRecord(
                    path=artifact, params=int(m["params"]), macs=int(m["macs"]), exporter=m["exporter"],
                    opset=int(m["opset"]), parity_max_abs_err=float(m["parity_max_abs_err"]),
                    act_ops=list(m.get("act_ops") or []), quant_max_abs_err=m.get("quant_max_abs_err"),
                    quant_rel_err=m.get("quant_rel_err"))
            groups.append((specs, entry["labels"], models))
    except (KeyError, TypeError) as exc:
        raise InputError(f"bundle manifest {path} is malformed (missing or bad field {exc})") from None
    return plan, groups


def run_bundle(
    bundle_dir: str | Path,
    settings: SessionSettings = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    on_progress: ProgressFn | None = None,
    roofline: bool = True,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Run a bundle's sweep on this machine (no torch): the same rows and CSV as ``run_sweep``, with the runtime
    the bundle was made for (``settings.runtime`` must be it)."""
    made_for = bundle_runtime(bundle_dir)
    if settings.runtime != made_for:
        raise InputError(f"bundle {bundle_dir} was made for runtime {made_for}, not {settings.runtime}; run it with "
                         f"--runtime {made_for}, or make a bundle with --runtime {settings.runtime}")
    plan, loaded = load_bundle(bundle_dir)
    plan = SweepPlan(**{**plan.as_dict(), "roofline": plan.roofline and roofline})
    models_of = {id(specs): models for specs, _, models in loaded}
    groups = [(specs, labels) for specs, labels, _ in loaded]
    record["metadata"] = {"bundle": str(Path(bundle_dir).resolve()), **(record.get("metadata") or {})}
    return run_groups(plan, groups, lambda group, stage: models_of[id(group)], settings, options, on_progress,
                      **record)
