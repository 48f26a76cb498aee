"""The devices of the lab: who is there (``list_devices``), which ones a sweep may use (``select``), and which of
those are refused before anything runs (``refusals``: a missing runtime, another edgeprof version)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeprof.errors import InputError
from edgeprof.lab.cluster import busy_devices, device_nodes, import_ray, resource_name

PROBE_TIMEOUT_S = 120.0


@dataclass
class Device:
    """One device: its name, its Ray node, and what its probe found (empty while it is busy and was not probed)."""

    name: str
    node_id: str
    address: str
    busy: bool = False
    info: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.info.get("host_fingerprint", "")

    @property
    def runtimes(self) -> dict[str, str]:
        return self.info.get("runtimes", {})

    def row(self) -> dict:
        host = self.info.get("host") or {}
        return {"device": self.name, "address": self.address, "host": host.get("hostname", ""),
                "fingerprint": self.fingerprint, "cpu": host.get("cpu_model", ""),
                "cores": host.get("usable_cores", ""),
                "runtimes": ", ".join(f"{n} {v}" for n, v in self.runtimes.items()),
                "edgeprof": self.info.get("edgeprof", ""),
                "busy": "yes" if self.busy else "no",
                "note": self.info.get("error", "") or ("measuring now: not probed" if self.busy and not self.info
                                                       else "")}


def probe_remote(name: str):
    """The Ray task that probes device ``name``: it takes the device's whole unit, so it never runs beside a
    measurement there."""
    ray = import_ray()
    from edgeprof.lab.tasks import probe

    return ray.remote(probe).options(num_cpus=0, resources={resource_name(name): 1}, max_retries=0,
                                     name=f"edgeprof-lab-probe:{name}")


def list_devices(probe_busy: bool = False, names: list[str] | None = None,
                 timeout: float | None = PROBE_TIMEOUT_S) -> list[Device]:
    """The devices in the cluster, each probed (host, CPU, cores, runtimes). A busy device is probed only with
    ``probe_busy`` (the probe waits for the measurement there to end); otherwise its info stays empty. A probe
    that has not answered within ``timeout`` seconds (None: no limit), or whose device left, is cancelled and
    the device's info says why."""
    import time

    ray = import_ray()
    nodes = device_nodes()
    if names is not None:
        nodes = {n: nodes[n] for n in names if n in nodes}
    busy = busy_devices(nodes)
    devices = [Device(name, node["NodeID"], node.get("NodeManagerAddress", ""), busy=name in busy)
               for name, node in nodes.items()]
    by_name = {d.name: d for d in devices}
    pending = {probe_remote(d.name).remote(): d.name for d in devices if probe_busy or not d.busy}
    t0 = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0)
        for ref in ready:
            d = by_name[pending.pop(ref)]
            try:
                d.info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                d.info = {"error": f"probe failed: {type(exc).__name__}"}
        if not pending:
            break
        alive = device_nodes()
        late = timeout is not None and time.monotonic() - t0 > timeout
        for ref, name in list(pending.items()):
            if late or name not in alive:
                ray.cancel(ref, force=True)
                pending.pop(ref)
                by_name[name].info = {"error": "left the lab" if name not in alive else
                                      f"probe did not answer within {timeout:.0f} s"}
    return devices


def select(spec: str, available: list[str]) -> list[str]:
    """The device names ``--devices`` gives: ``all`` or a comma-separated list, each one in the cluster."""
    items = [s.strip() for s in (spec or "").split(",") if s.strip()]
    if not items:
        raise InputError("--devices: no device given; give all, or names from `edgeprof lab devices`")
    if not available:
        raise InputError("no device in the lab: start one with `edgeprof lab join HEAD --name NAME` (README, Lab)")
    if items == ["all"]:
        return list(available)
    if "all" in items:
        raise InputError("--devices all already means every device; give it alone")
    unknown = [n for n in items if n not in available]
    if unknown:
        raise InputError(f"--devices: no device named {', '.join(unknown)} in the lab; devices: "
                         f"{', '.join(available)}")
    return list(dict.fromkeys(items))


def refusals(devices: list[Device], needed: dict[str, str], edgeprof_version: str) -> dict[str, str]:
    """Device name -> the one-line reason it cannot run a bundle that needs runtimes ``needed`` (name -> extra):
    a runtime missing, another edgeprof version than the head's, or a probe that failed."""
    out = {}
    for d in devices:
        if d.info.get("error"):
            out[d.name] = d.info["error"]
            continue
        missing = [n for n in needed if n not in d.runtimes]
        if missing:
            extras = ",".join(dict.fromkeys(needed[n] or n for n in missing))
            out[d.name] = (f"runtime {', '.join(missing)} not installed (pip install 'edgeprof[{extras}]' on the "
                           "device)")
        elif d.info.get("edgeprof") != edgeprof_version:
            out[d.name] = (f"edgeprof {d.info.get('edgeprof')} there, {edgeprof_version} here: install the same "
                           "edgeprof on every device")
    return out
