"""`edgeprof lab check`: the regression gate (``edgeprof.gate``) on every device at once.

The head chooses the current models (ONNX files, or blocks it builds with torch), ships them with the baseline
folder through Ray's object store, and each device runs ``run_check`` on them, as `edgeprof check` would there. The
run fails if any device regressed, naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.lab.cluster import device_nodes, import_ray, resource_name
from edgeprof.lab.devices import list_devices, refusals, select
from edgeprof.lab.sweep import DEFAULT_TIMEOUT_S, LabInterrupted, TaskClock


def check_devices(baseline_dir: str | Path, current: list, devices: str = "all", mode: str = "relative",
                  rule=None, options=None, shapes: dict | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                  on_progress: Callable[[str, float], None] | None = None,
                  on_note: Callable[[str], None] | None = None) -> tuple[dict, dict[str, str]]:
    """Check ``current`` (``GateModel``s) against the baseline on each device. Return (device -> ``CheckReport``,
    device -> why it has none: refused, failed, timed out)."""
    from edgeprof import __version__
    from edgeprof.gate import baseline as bl
    from edgeprof.gate.decide import DecisionRule
    from edgeprof.gate.measure import GateOptions
    from edgeprof.lab.shipping import ship_files
    from edgeprof.lab.tasks import check_on_device
    from edgeprof.runtime.registry import BUILTIN

    ray = import_ray()
    progress = on_progress or (lambda message, fraction: None)
    note = on_note or (lambda message: None)
    rule = rule or DecisionRule()
    options = options or GateOptions()
    base = bl.load(baseline_dir)  # a bad baseline fails here, before anything is shipped
    runtime = base.manifest["settings"].get("runtime") or "onnxruntime"
    names = select(devices, list(device_nodes()))
    progress("probing the devices", 0.0)
    probed = list_devices(probe_busy=True, names=names, timeout=None)
    problems = refusals(probed, {runtime: runtime if runtime in BUILTIN else ""}, __version__)
    usable = [d.name for d in probed if d.name not in problems]
    if not usable:
        raise InputError("no device can run this check: " + "; ".join(f"{n}: {r}" for n, r in problems.items()))
    for name, reason in problems.items():
        note(f"device {name} refused: {reason}")
    base_dir = Path(baseline_dir)
    files = {f"baseline/{p.relative_to(base_dir)}": p for p in base_dir.rglob("*") if p.is_file()}
    described = []
    for i, m in enumerate(current):
        rel = f"current/{i}-{Path(m.path).name}"
        files[rel] = Path(m.path)
        described.append({"name": m.name, "path": rel, "sha256": m.sha256, "source": m.source, "spec": m.spec,
                          "export": m.export})
    progress(f"shipping the baseline and {len(current)} model(s) to {len(usable)} device(s)", 0.0)
    shipped = ship_files(files)
    clock = ray.remote(TaskClock).options(num_cpus=0).remote()
    task = ray.remote(check_on_device)
    inflight = {}
    for name in usable:
        key = f"check:{name}:{time.time()}"
        ref = task.options(num_cpus=0, resources={resource_name(name): 1}, max_retries=0,
                           name=f"edgeprof-lab-check:{name}").remote(
            shipped, described, mode, asdict(rule), options.as_dict(), shapes, name, clock, key)
        inflight[ref] = (name, key)
    reports, reasons, cancelled = {}, dict(problems), {}
    try:
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                name, key = inflight.pop(ref)
                try:
                    reports[name] = ray.get(ref)["report"]
                    progress(f"{name}: checked", len(reports) / len(usable))
                except ray.exceptions.RayError as exc:
                    from edgeprof.lab.sweep import _why

                    reasons[name] = cancelled.get(key) or _why(exc)
                    note(f"device {name} failed: {reasons[name]}")
            starts = ray.get(clock.get.remote()) if inflight else {}
            alive = device_nodes() if inflight else {}
            for ref, (name, key) in inflight.items():
                if key in cancelled:
                    continue
                if key in starts and time.time() - starts[key] > timeout:
                    cancelled[key] = f"the check did not finish within --timeout {timeout:g} s; cancelled"
                    ray.cancel(ref, force=True)
                elif key not in starts and name not in alive:
                    cancelled[key] = "it left the lab"
                    ray.cancel(ref, force=True)
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise LabInterrupted("interrupted; the remote checks were cancelled") from None
    return reports, reasons


def outcome(reports: dict, reasons: dict[str, str], allow_inconclusive: bool = False) -> tuple[int, str]:
    """The lab's exit code and one line: 1 if a device regressed (naming it and the models), else 3 if a device
    failed or a model failed there, else 4 if inconclusive somewhere (0 with ``allow_inconclusive``), else 0."""
    codes = {name: report.outcome(allow_inconclusive) for name, report in reports.items()}
    regressed = {n: m for n, (c, m) in codes.items() if c == 1}
    if regressed:
        return 1, "regressed on " + "; ".join(f"{n}: {m}" for n, m in regressed.items())
    failed = {n: m for n, (c, m) in codes.items() if c == 3}
    failed.update(reasons)
    if failed:
        return 3, "could not check on " + "; ".join(f"{n}: {m}" for n, m in failed.items())
    unsettled = {n: m for n, (c, m) in codes.items() if c == 4}
    if unsettled:
        return 4, "inconclusive on " + "; ".join(f"{n}: {m}" for n, m in unsettled.items())
    if any(c == 130 for c, _ in codes.values()):
        return 130, "interrupted on " + ", ".join(n for n, (c, _) in codes.items() if c == 130)
    return 0, f"no regression on {len(reports)} device(s): " + "; ".join(f"{n}: {m}" for n, (_, m) in codes.items())
