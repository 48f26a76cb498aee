"""How busy the host was during a check: load average, steal time and the other processes' CPU share (Linux /proc).

A check's figures are paired, so a busy host mostly widens their intervals rather than biasing them, but
the reader of a CI summary should know when a check ran on a loaded machine. ``LoadProbe`` reads the
kernel's CPU counters (``/proc/stat``) and this process's CPU time with its reaped children (the worker
processes, ``os.times``) at the start and at the end; what the CPUs did besides idling, minus what this
check did itself, is the other processes' share. Steal time is what the hypervisor gave to other guests.
Off Linux only the load average (where there is one) is reported.
"""

from __future__ import annotations

import os
import time

from edgeprof.measure.devstate import cpu_ticks as _proc_stat
from edgeprof.measure.devstate import cpu_use
from edgeprof.measure.devstate import own_cpu_s as _own_cpu_s
from edgeprof.measure.host import load_average as _loadavg

# a host counts as loaded above these
OTHER_CORES_LOADED = 0.25  # other processes kept a quarter of a core busy on average
STEAL_LOADED = 0.05  # 5% of the CPU time was stolen by the hypervisor


class LoadProbe:
    """Start it before measuring, ``finish()`` after: a dict of how busy the host was in between."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.stat0 = _proc_stat()
        self.own0 = _own_cpu_s()
        self.load0 = _loadavg()

    def finish(self) -> dict:
        wall_s = time.monotonic() - self.t0
        stat1, own1, load1 = _proc_stat(), _own_cpu_s(), _loadavg()
        out: dict = {"wall_s": round(wall_s, 2), "load_average_start": self.load0, "load_average_end": load1,
                     "cpus": os.cpu_count(), "steal_pct": None, "other_cpu_cores": None, "own_cpu_cores": None,
                     "loaded": False, "why": ""}
        why = []
        loads = [x[0] for x in (self.load0, load1) if x]
        if loads and max(loads) > (os.cpu_count() or 1):
            why.append(f"load average {max(loads):.1f} over {os.cpu_count()} CPUs")
        if self.stat0 and stat1 and wall_s > 0:
            use = cpu_use(self.stat0, stat1, own1 - self.own0, wall_s)
            other, steal_pct = use["other_cores"], use["steal_pct"]
            out["steal_pct"] = round(steal_pct, 2)
            out["other_cpu_cores"] = round(other, 2)
            out["own_cpu_cores"] = round(use["own_cores"], 2)
            if other > OTHER_CORES_LOADED:
                why.append(f"other processes kept {other:.2f} of {os.cpu_count()} CPUs busy on average")
            if steal_pct > 100.0 * STEAL_LOADED:
                why.append(f"{steal_pct:.0f}% of CPU time stolen by the hypervisor")
        out["loaded"] = bool(why)
        out["why"] = "; ".join(why)
        return out


def describe(load: dict) -> str:
    """One line for a summary: the figures, and whether the host counts as loaded."""
    if not load:
        return ""
    parts = []
    if load.get("load_average_start") or load.get("load_average_end"):
        la = [f"{x[0]:.1f}" if x else "?" for x in (load.get("load_average_start"), load.get("load_average_end"))]
        parts.append(f"load average {la[0]} → {la[1]} ({load.get('cpus')} CPUs)")
    if load.get("other_cpu_cores") is not None:
        parts.append(f"other processes {load['other_cpu_cores']:.2f} CPUs busy on average")
    if load.get("steal_pct") is not None:
        parts.append(f"steal {load['steal_pct']:.1f}%")
    head = "loaded host" if load.get("loaded") else "host load"
    return f"{head}: " + ", ".join(parts)
