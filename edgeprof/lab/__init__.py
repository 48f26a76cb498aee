"""The lab: one sweep on many devices at once, through Ray, one measurement per device at a time.

A device is a Ray node advertising one unit of ``edgeprof-device:NAME`` (``edgeprof lab join HEAD --name NAME``).
The head builds and exports a bundle (``edgeprof.bundle``, the only step that needs torch), ships it through Ray's
object store, and runs each size group on each device as a Ray task that needs only the on-device install; rows come
back as each group finishes and go to one CSV per device.

- ``cluster``: importing Ray (the ``lab`` extra), connecting or starting an embedded instance, the head's address.
- ``devices``: listing and probing devices, choosing them, refusing those that cannot run a bundle.
- ``shipping``: the bundle into the object store and onto a device, checked by its SHA-256 manifest there.
- ``tasks``: what runs on a device (no torch, no Ray import).
- ``sweep``: the head's loop: per-device lanes, resume, timeouts, Ctrl-C, --shard and its outliers, the
  cross-device table.
- ``check``: the regression gate on every device.

``lab_sweep(plan, out_dir, ...)`` builds the bundle and runs it; ``run_lab(bundle_dir, out_dir, ...)`` runs a bundle
made before.
"""

from __future__ import annotations

from pathlib import Path

from edgeprof.lab.cluster import RayMissing, connect, disconnect, import_ray  # noqa: F401
from edgeprof.lab.sweep import LabInterrupted, LabResult, Session, cross_device_table, run_lab  # noqa: F401


def lab_sweep(plan, out_dir: str | Path, bundle_runtimes: list[str] | None = None, on_progress=None,
              **run) -> LabResult:
    """Build and export ``plan``'s models into ``out_dir/bundle`` (here, with torch) and measure them on the lab's
    devices (``run``: the keyword arguments of ``run_lab``)."""
    from edgeprof.bundle import make_bundle

    manifest = make_bundle(plan, Path(out_dir) / "bundle", on_progress=on_progress, runtime=bundle_runtimes)
    return run_lab(manifest.parent, out_dir, on_progress=on_progress, **run)
