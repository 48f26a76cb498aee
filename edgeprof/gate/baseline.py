"""The baseline folder: its manifest (schema, validation, one-line errors) and the model files it keeps.

Layout of a baseline folder::

    baseline/
      manifest.json            schema_version, host, versions, settings, per-model figures and raw blocks
      models/<sha256>.onnx     every baseline model, and the stored-mode reference, by content hash

Keeping the models is what lets ``edgeprof check`` re-measure them next to the current ones (relative
mode). The manifest also keeps, per model, the raw per-block samples, the A/A noise measured when the
baseline was made (the model against a second copy of itself) and the sessions of log(model/reference)
that stored mode compares with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import InputError

SCHEMA_VERSION = 1
KIND = "edgeprof-baseline"
MANIFEST = "manifest.json"
MODELS_DIR = "models"
_SHA_FILE = re.compile(r"^[0-9a-f]{64}\.onnx$")
SAVE_HINT = "make one with `edgeprof baseline save ... -o {path}`"

# key -> type(s) the manifest must hold; checked on load so a bad file fails with a line naming the key
_TOP = {"schema_version": int, "kind": str, "created": str, "edgeprof_version": str, "host": dict,
        "host_fingerprint": str, "versions": dict, "settings": dict, "gate": dict, "reference": dict,
        "models": list}
_MODEL = {"name": str, "sha256": str, "file": str, "source": str, "median_ms": (int, float), "aa": dict,
          "stored_sessions": list, "blocks": dict}
_REFERENCE = {"name": str, "sha256": str, "file": str}


@dataclass
class Baseline:
    """A loaded, validated baseline folder."""

    path: Path
    manifest: dict

    @property
    def models(self) -> list[dict]:
        return self.manifest["models"]

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.models]

    @property
    def fingerprint(self) -> str:
        return self.manifest["host_fingerprint"]

    def settings(self):
        """The baseline's runtime settings (onnxruntime's for baselines that do not name a runtime)."""
        from edgeprof.runtime.registry import get_runtime

        return get_runtime(self.manifest["settings"].get("runtime")).settings_from_dict(self.manifest["settings"])

    def shapes(self) -> dict | None:
        shapes = self.manifest.get("shapes")
        return {k: tuple(v) for k, v in shapes.items()} if shapes else None

    def model(self, name: str) -> dict:
        for m in self.models:
            if m["name"] == name:
                return m
        raise KeyError(name)

    def file(self, entry: dict, what: str) -> Path:
        """The stored file of a model or the reference, checked against its sha256."""
        from edgeprof.spec import file_sha256

        path = self.path / entry["file"]
        if not path.is_file():
            raise InputError(f"{what} {entry['name']!r} is missing its file {entry['file']} in {self.path} "
                             f"(deleted, or the folder was only partly restored from a cache); re-save the baseline")
        if file_sha256(path) != entry["sha256"]:
            raise InputError(f"{what} file {path} does not match its sha256 in the manifest (changed on disk); "
                             f"re-save the baseline")
        return path


def _check_keys(data: dict, spec: dict, where: str, manifest: Path) -> None:
    for key, kind in spec.items():
        if key not in data:
            raise InputError(f"baseline manifest {manifest} is malformed: {where}{key} is missing; {_resave(manifest)}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool) and kind is int:
            raise InputError(f"baseline manifest {manifest} is malformed: {where}{key} has the wrong type "
                             f"({type(data[key]).__name__}); {_resave(manifest)}")


def _resave(manifest: Path) -> str:
    return f"re-create it with `edgeprof baseline save ... -o {manifest.parent}`"


def load(path: str | Path) -> Baseline:
    """Read and validate ``path/manifest.json``; every problem is one InputError line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"baseline folder {path} does not exist; {SAVE_HINT.format(path=path)}")
    if not path.is_dir():
        raise InputError(f"--baseline {path} is not a folder; give the folder `edgeprof baseline save -o` wrote")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{path} has no {MANIFEST}, so it is not an edgeprof baseline; {SAVE_HINT.format(path=path)}")
    try:
        data = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"baseline manifest {manifest_path} is not valid JSON (line {exc.lineno}: {exc.msg}); "
                         f"{_resave(manifest_path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read baseline manifest {manifest_path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise InputError(f"{manifest_path} is not an edgeprof baseline manifest (no \"kind\": \"{KIND}\"); "
                         f"{_resave(manifest_path)}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"baseline manifest {manifest_path} is malformed: schema_version is missing or not a "
                         f"whole number; {_resave(manifest_path)}")
    if version < SCHEMA_VERSION:
        raise InputError(f"baseline {path} has schema_version {version}, made by an older edgeprof; this edgeprof "
                         f"reads schema_version {SCHEMA_VERSION}; {_resave(manifest_path)}")
    if version > SCHEMA_VERSION:
        raise InputError(f"baseline {path} has schema_version {version}, made by a newer edgeprof; this edgeprof "
                         f"reads up to {SCHEMA_VERSION}: upgrade edgeprof or {_resave(manifest_path)}")
    _check_keys(data, _TOP, "", manifest_path)
    _check_keys(data["reference"], _REFERENCE, "reference.", manifest_path)
    if not data["models"]:
        raise InputError(f"baseline manifest {manifest_path} lists no models; {_resave(manifest_path)}")
    seen = set()
    for i, model in enumerate(data["models"]):
        if not isinstance(model, dict):
            raise InputError(f"baseline manifest {manifest_path} is malformed: models[{i}] is not an object; "
                             f"{_resave(manifest_path)}")
        _check_keys(model, _MODEL, f"models[{i}].", manifest_path)
        if model["name"] in seen:
            raise InputError(f"baseline manifest {manifest_path} is malformed: model {model['name']!r} appears twice")
        seen.add(model["name"])
        if not _SHA_FILE.match(Path(model["file"]).name) or Path(model["file"]).is_absolute():
            raise InputError(f"baseline manifest {manifest_path} is malformed: models[{i}].file {model['file']!r} "
                             f"is not models/<sha256>.onnx")
    return Baseline(path=path, manifest=data)


def check_output_dir(out: str | Path) -> Path:
    """A folder we may write a baseline to: new, empty, or an earlier baseline (which is replaced)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out} is a file; give a folder for the baseline")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"-o {out} is a non-empty folder that is not an edgeprof baseline (no {MANIFEST}); "
                         f"give a new or empty folder, or an existing baseline to replace")
    try:  # nothing is written to ``out`` itself until the baseline is complete (``staging``)
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.write-test-{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write the baseline to {out}: {exc.strerror or exc}") from None
    return out


def model_file(sha256: str) -> str:
    """Where a baseline keeps a model, relative to its folder: ``models/<sha256>.onnx``."""
    return f"{MODELS_DIR}/{sha256}.onnx"


def write_baseline(out: Path, manifest: dict, sources: dict[str, Path]) -> Path:
    """Write a complete baseline (its models, copied from ``sources`` by SHA-256, and its manifest) into a
    temporary folder beside ``out``, then put that folder in place of ``out``: a save that fails or is
    interrupted leaves ``out`` as it was, never a half-written folder."""
    tmp = out.parent / f".{out.name}.saving-{uuid.uuid4().hex[:8]}"
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / MODELS_DIR).mkdir(parents=True)
        for sha256, source in sources.items():
            store_file(tmp, Path(source), sha256)
        write_manifest(tmp, manifest)
        if out.is_dir():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists() and not out.exists():
                os.replace(old, out)
            raise
    except OSError as exc:
        raise InputError(f"cannot write the baseline to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out / MANIFEST


def store_file(out: Path, source: Path, sha256: str) -> str:
    """Copy a model into ``out/models/<sha256>.onnx`` (once); return its path relative to ``out``."""
    rel = f"{MODELS_DIR}/{sha256}.onnx"
    dest = out / rel
    if not dest.exists():
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
    return rel


def write_manifest(out: Path, manifest: dict) -> Path:
    """Write the manifest atomically and delete model files it no longer references."""
    path = out / MANIFEST
    tmp = out / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    keep = {Path(m["file"]).name for m in manifest["models"]} | {Path(manifest["reference"]["file"]).name}
    for f in (out / MODELS_DIR).iterdir():
        if _SHA_FILE.match(f.name) and f.name not in keep:
            f.unlink(missing_ok=True)
    return path
