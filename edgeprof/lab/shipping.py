"""Shipping a bundle to the devices through Ray's object store, and unpacking it on a device.

The head reads every file the bundle's manifest lists (and the manifest) into one payload, ``ray.put``s it once,
and hands each task ``{"digest": ..., "payload": [ref]}``; the reference sits inside a list so Ray does not fetch it
for a device that already unpacked those files (found by their digest). `lab check` ships a baseline folder and
the current models the same way. On the device, the files go
to ``$EDGEPROF_LAB_DIR`` (default: the user's cache folder, ``edgeprof/lab``) under the device's name and the
digest, written to a temporary folder first and renamed, so a half-written bundle is never used. ``load_bundle``
then checks every file against the manifest's SHA-256 before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from edgeprof.errors import InputError

LAB_DIR_ENV = "EDGEPROF_LAB_DIR"


def bundle_files(bundle_dir: Path) -> list[str]:
    """The bundle's files, relative to it: the manifest and every file it lists."""
    from edgeprof.bundle import MANIFEST

    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    names = [MANIFEST]
    for entry in manifest.get("groups", []):
        for m in entry.get("models", []):
            names += [m["file"], *([m["ref"]] if m.get("ref") else [])]
            for art in (m.get("artifacts") or {}).values():
                names += art.get("files", [])
    return list(dict.fromkeys(names))


def pack(files: dict[str, Path]) -> tuple[str, dict[str, bytes]]:
    """Files (relative name -> path here) as their bytes by name, and a digest of all of them."""
    digest = hashlib.sha256()
    data = {}
    for name, path in sorted(files.items()):
        if not Path(path).is_file():
            raise InputError(f"cannot ship {path}: no such file")
        data[name] = Path(path).read_bytes()
        digest.update(name.encode() + b"\0" + hashlib.sha256(data[name]).digest())
    return digest.hexdigest()[:16], data


def ship_files(files: dict[str, Path]) -> dict:
    """Put files into Ray's object store once; what each task is given."""
    from edgeprof.lab.cluster import import_ray

    digest, data = pack(files)
    return {"digest": digest, "payload": [import_ray().put(data)]}


def ship(bundle_dir: str | Path) -> dict:
    """Put a bundle (its manifest and every file it lists) into Ray's object store."""
    bundle_dir = Path(bundle_dir)
    names = bundle_files(bundle_dir)
    missing = [n for n in names if not (bundle_dir / n).is_file()]
    if missing:
        raise InputError(f"bundle {bundle_dir} is incomplete: {missing[0]} is missing")
    return ship_files({name: bundle_dir / name for name in names})


def lab_dir() -> Path:
    if os.environ.get(LAB_DIR_ENV):
        return Path(os.environ[LAB_DIR_ENV])
    from platformdirs import user_cache_path

    return user_cache_path("edgeprof") / "lab"


def materialize(shipped: dict, device: str) -> Path:
    """The shipped files as a folder on this device, unpacked once per device and digest (the folder appears whole,
    by a rename, or not at all)."""
    target = lab_dir() / device / shipped["digest"]
    if target.is_dir():
        return target
    files = shipped["payload"][0]
    if not isinstance(files, dict):  # a Ray object reference: fetched only now, when this device needs it
        import ray

        files = ray.get(files)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, data in files.items():
        path = tmp / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"shipped bundle has a file outside its folder: {name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    try:
        tmp.rename(target)
    except OSError:  # another task of this device unpacked it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return target
