"""Self-contained bundles for on-device profiling: exported models plus a manifest, measured without torch.

``make_bundle`` (workstation, needs torch) exports every model a sweep plan measures into DIR/models, converts
each to every runtime asked for (``Runtime.convert``; every file of an artifact, ``Runtime.artifact_files``) and
writes DIR/manifest.json: the plan, the runtimes, each size group's specs and labels, and for every model its role
(block, reference, alone), spec, file, SHA-256, torch's reference for parity, params, MACs, exporter, opset, parity
error, and per runtime its artifact files with their SHA-256s and converter (or why that runtime cannot take it).
``run_bundle`` (device: a runtime, numpy, pandas only) checks the files against the manifest and runs the same
interleaved sweep per runtime, writing the same CSV, which ``edgeprof report`` merges with other runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Unpack

import pandas as pd

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.measure import MeasureOptions, SessionSettings
from edgeprof.pipeline import ProgressFn, RecordOptions, SweepPlan, labelled_groups, resolved, run_groups
from edgeprof.runtime.base import RuntimeSettings
from edgeprof.spec import BlockSpec, ModelRecord, file_sha256

MANIFEST = "manifest.json"
BUNDLE_SCHEMA_VERSION = 2  # 2: several runtimes, each model's artifacts per runtime, torch's reference
READABLE_VERSIONS = (1, 2)


def make_bundle(plan: SweepPlan, out_dir: Path, on_progress: ProgressFn | None = None,
                runtime: str | list[str] | None = None) -> Path:
    """Export the plan's models into ``out_dir``, convert each to the artifact of every runtime in ``runtime`` (a
    name or several; default onnxruntime, which reads the ONNX file itself) and write the manifest; return the
    manifest's path. A model a runtime or its converter cannot handle is listed as unsupported for it."""
    import shutil

    from edgeprof.measure.host import run_metadata
    from edgeprof.pipeline import build_group_models
    from edgeprof.runtime.base import ModelSource, UnsupportedModel, ref_path
    from edgeprof.runtime.registry import get_runtime

    runtimes = [get_runtime(name) for name in dict.fromkeys(
        [runtime] if runtime is None or isinstance(runtime, str) else runtime)]

    progress = on_progress or (lambda message, fraction: None)
    plan = resolved(plan)
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
            spec = getattr(model, "spec", None)
            source = ModelSource(spec.as_dict(), plan.seed) if isinstance(spec, BlockSpec) else None
            artifacts = {}
            for rt in runtimes:
                try:
                    conversion = rt.convert(model.path, models_dir, source=source)
                except UnsupportedModel as exc:
                    artifacts[rt.spec] = {"unsupported": str(exc)}
                    continue
                files = []
                for file in rt.artifact_files(conversion.path):  # every file the artifact needs, in the bundle
                    file = Path(file)
                    if models_dir.resolve() not in file.resolve().parents:
                        file = Path(shutil.copy2(file, models_dir / file.name))
                    files.append(file)
                artifacts[rt.spec] = {"files": [str(f.relative_to(out_dir)) for f in files],
                                      "sha256": [file_sha256(f) for f in files], "converter": conversion.converter,
                                      "converter_version": conversion.converter_version}
            ref = ref_path(model.path)
            jobs.append({"role": role, "act": act, "file": str(Path(model.path).relative_to(out_dir)),
                         "artifacts": artifacts,
                         **({"ref": str(ref.relative_to(out_dir)), "ref_sha256": file_sha256(ref)}
                            if ref.is_file() else {}),
                         "sha256": file_sha256(Path(model.path)), "params": model.params, "macs": model.macs,
                         "exporter": model.exporter, "opset": model.opset,
                         "parity_max_abs_err": model.parity_max_abs_err, "act_ops": model.act_ops,
                         "quant_max_abs_err": getattr(model, "quant_max_abs_err", None),
                         "quant_rel_err": getattr(model, "quant_rel_err", None)})
        entries.append({"labels": labels, "specs": [s.as_dict() for s in group], "models": jobs})
    manifest = {"schema_version": BUNDLE_SCHEMA_VERSION, "plan": plan.as_dict(), "groups": entries,
                "runtimes": [{"name": rt.spec, "version": rt.version(), "extra": rt.extra} for rt in runtimes],
                "built": run_metadata()}
    path = out_dir / MANIFEST
    try:
        path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        listed = {Path(name).name for entry in entries for job in entry["models"]
                  for name in [job["file"], job.get("ref", ""),
                               *(f for a in job["artifacts"].values() for f in a.get("files", []))] if name}
        listed |= {Path(name).with_suffix(".json").name for entry in entries for job in entry["models"]
                   for name in [job["file"]]}  # the export's sidecar
        for old in models_dir.iterdir():  # a bundle replaced: no stale models (or sidecars) beside the manifest
            if old.name not in listed and old.is_file():
                old.unlink()
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def is_bundle(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def bundle_runtimes(bundle_dir: str | Path) -> dict[str, str]:
    """The runtimes a bundle's artifacts were made for, name -> the pip extra that installs it (onnxruntime for
    bundles that do not say)."""
    try:
        manifest = json.loads((Path(bundle_dir) / MANIFEST).read_text())
        listed = manifest.get("runtimes") or [manifest.get("runtime") or {}]
        return {str(r.get("name") or "onnxruntime"): str(r.get("extra") or "") for r in listed} or \
            {"onnxruntime": ""}
    except (OSError, ValueError, AttributeError):
        return {"onnxruntime": ""}  # load_bundle says what is wrong with the manifest


def bundle_runtime(bundle_dir: str | Path) -> str:
    """The (first) runtime a bundle's artifacts were made for."""
    return next(iter(bundle_runtimes(bundle_dir)))


def installed_bundle_runtimes(bundle_dir: str | Path) -> tuple[list[str], str]:
    """The bundle's runtimes installed here, and one line naming those skipped and why (empty when none was)."""
    from edgeprof.runtime.registry import get_runtime

    here, skipped = [], []
    for name, extra in bundle_runtimes(bundle_dir).items():
        try:
            get_runtime(name)
            here.append(name)
        except InputError:
            skipped.append(f"{name} (not installed here: pip install 'edgeprof[{extra or name}]')")
    note = f"skipped the bundle's models for {', '.join(skipped)}" if skipped else ""
    return here, note


def _artifact_of(m: dict, runtime: str, version: int) -> dict | None:
    """A manifest model's artifact for ``runtime`` ({"files", "sha256", "converter", ...} or {"unsupported"})."""
    if version == 1:
        return {"files": [m.get("artifact", m["file"])], "sha256": [m.get("artifact_sha256", m["sha256"])]}
    return (m.get("artifacts") or {}).get(runtime)


def load_bundle(bundle_dir: str | Path, runtime: str | None = None
                ) -> tuple[SweepPlan, list[tuple[list[BlockSpec], dict, dict]]]:
    """The plan and, per size group, its specs, labels and models for ``runtime`` (default the bundle's first);
    InputError if anything is off."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError:
        raise InputError(f"not an edgeprof bundle: {path} is missing (make one with `edgeprof bundle`)") from None
    except ValueError as exc:
        raise InputError(f"bundle manifest {path} is not valid JSON: {exc}") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version not in READABLE_VERSIONS:
        raise InputError(f"bundle {bundle_dir} has schema version {version!r}; this edgeprof reads version "
                         f"{BUNDLE_SCHEMA_VERSION} (rebuild it with this edgeprof's `edgeprof bundle`)")
    try:
        runtime = runtime or next(iter(bundle_runtimes(bundle_dir)))
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
                art = _artifact_of(m, runtime, version)
                if art is None:
                    raise InputError(f"bundle {bundle_dir} has no artifact of {m['file']} for runtime {runtime}")
                for name, sha in zip(art.get("files", []), art.get("sha256", []), strict=True):
                    if bundle_dir / name != file and (not (bundle_dir / name).is_file()
                                                      or file_sha256(bundle_dir / name) != sha):
                        raise InputError(f"bundle {bundle_dir}: artifact {name} is missing or does not match its "
                                         "manifest")
                ref = bundle_dir / m["ref"] if m.get("ref") else None
                if ref is not None and (not ref.is_file() or file_sha256(ref) != m.get("ref_sha256")):
                    raise InputError(f"bundle {bundle_dir}: {m['ref']} is missing or does not match its manifest")
                models[(m["role"], m["act"])] = ModelRecord(
                    path=bundle_dir / art["files"][0] if art.get("files") else file, params=int(m["params"]),
                    macs=int(m["macs"]), exporter=m["exporter"],
                    opset=int(m["opset"]), parity_max_abs_err=float(m["parity_max_abs_err"]),
                    act_ops=list(m.get("act_ops") or []), quant_max_abs_err=m.get("quant_max_abs_err"),
                    quant_rel_err=m.get("quant_rel_err"), ref=ref, converter=art.get("converter", ""),
                    converter_version=art.get("converter_version", ""), unsupported=art.get("unsupported", ""))
            groups.append((specs, entry["labels"], models))
    except (KeyError, TypeError) as exc:
        raise InputError(f"bundle manifest {path} is malformed (missing or bad field {exc})") from None
    return plan, groups


def run_bundle(
    bundle_dir: str | Path,
    settings: RuntimeSettings | list[RuntimeSettings] = SessionSettings(),
    options: MeasureOptions = MeasureOptions(),
    on_progress: ProgressFn | None = None,
    roofline: bool = True,
    **record: Unpack[RecordOptions],
) -> tuple[pd.DataFrame, Path]:
    """Run a bundle's sweep on this machine (no torch): the same rows and CSV as ``run_sweep``, with each runtime
    of ``settings`` (one or several), each of which the bundle must have artifacts for, measured runtime by
    runtime."""
    all_settings = [settings] if isinstance(settings, RuntimeSettings) else list(settings)
    made_for = list(bundle_runtimes(bundle_dir))
    for rt in all_settings:
        if rt.runtime not in made_for:
            raise InputError(f"bundle {bundle_dir} was made for runtime {', '.join(made_for)}, not {rt.runtime}; run "
                             f"it with --runtime {made_for[0]}, or make a bundle with --runtimes {rt.runtime}")
    loaded_by_runtime = {rt.runtime: load_bundle(bundle_dir, rt.runtime) for rt in all_settings}
    plan, loaded = loaded_by_runtime[all_settings[0].runtime]
    plan = SweepPlan(**{**plan.as_dict(), "roofline": plan.roofline and roofline})
    index = {id(specs): g for g, (specs, _, _) in enumerate(loaded)}
    groups = [(specs, labels) for specs, labels, _ in loaded]
    record["metadata"] = {"bundle": str(Path(bundle_dir).resolve()), **(record.get("metadata") or {})}

    def get_models(group, stage, runtime):
        return loaded_by_runtime[runtime.runtime][1][index[id(group)]][2]

    return run_groups(plan, groups, get_models, all_settings, options, on_progress, **record)
