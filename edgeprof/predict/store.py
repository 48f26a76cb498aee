"""Whose figures a dataset or a predictor holds (host fingerprint, runtime, its version and settings), where they
are kept by default, and the refusal to use them for another host or runtime version."""

from __future__ import annotations

import os
from pathlib import Path

from edgeprof.errors import InputError

IDENTITY_KEYS = ("host_fingerprint", "runtime", "runtime_version", "runtime_settings", "threads")


def identity_of(settings) -> dict:
    """This host's fingerprint and the runtime's name, installed version and settings."""
    from edgeprof.measure.host import fingerprint
    from edgeprof.runtime.registry import get_runtime

    row = settings.row()
    return {"host_fingerprint": fingerprint(), "runtime": settings.runtime,
            "runtime_version": get_runtime(settings.runtime).version(), "runtime_settings": row["runtime_settings"],
            "threads": int(settings.threads)}


def check_identity(stored: dict, current: dict, what: str, force: bool, hint: str) -> list[str]:
    """The ways ``stored`` differs from ``current``; a one-line ``InputError`` unless ``force`` (then the
    differences are returned for a warning)."""
    labels = {"host_fingerprint": "host", "runtime": "runtime", "runtime_version": "runtime version",
              "runtime_settings": "runtime settings", "threads": "threads"}
    diffs = [f"{labels[k]} {stored.get(k)} (here {current.get(k)})" for k in IDENTITY_KEYS
             if k in stored and k in current and str(stored.get(k)) != str(current.get(k))]
    if diffs and not force:
        raise InputError(f"{what} belongs to another {'; '.join(diffs)}: its figures do not hold here; {hint}")
    return diffs


def default_dir(identity: dict) -> Path:
    """Where this host's dataset and predictor live: ``$EDGEPROF_CACHE/predict/<host>-<runtime>-<version>-t<threads>``,
    else the per-user cache folder."""
    from platformdirs import user_cache_dir

    from edgeprof.spec import content_hash

    base = os.environ.get("EDGEPROF_CACHE") or user_cache_dir("edgeprof", appauthor=False)
    settings = content_hash({"s": identity["runtime_settings"]}, length=6)
    name = (f"{identity['host_fingerprint']}-{identity['runtime']}-{identity['runtime_version']}"
            f"-t{identity['threads']}-{settings}")
    return Path(base) / "predict" / name


def default_dataset(settings) -> Path:
    return default_dir(identity_of(settings)) / "kernels.csv"


def default_predictor(settings) -> Path:
    return default_dir(identity_of(settings)) / "kernels.predictor.pkl"


def require_file(path: Path, what: str, hint: str) -> Path:
    if not Path(path).is_file():
        raise InputError(f"no {what} at {path}; {hint}")
    return Path(path)
