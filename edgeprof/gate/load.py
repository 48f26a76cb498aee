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

# a host counts as loaded above these
OTHER_CORES_LOADED = 0.25  # other processes kept a quarter of a core busy on average
STEAL_LOADED = 0.05  # 5% of the CPU time was stolen by the hypervisor


def _proc_stat() -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq steal, in clock ticks."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    try:
        values = [int(v) for v in fields[1:9]]
    except ValueError:
        return None
    return values + [0] * (8 - len(values))


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


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
            delta = [b - a for a, b in zip(self.stat0, stat1, strict=True)]
            ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            total = sum(delta)
            user, nice, system, _idle, _iowait, irq, softirq, steal = delta
            busy_s = (user + nice + system + irq + softirq) / ticks
            own_s = max(0.0, own1 - self.own0)
            other = max(0.0, busy_s - own_s) / wall_s
            out["steal_pct"] = round(100.0 * steal / total, 2) if total > 0 else 0.0
            out["other_cpu_cores"] = round(other, 2)
            out["own_cpu_cores"] = round(own_s / wall_s, 2)
            if other > OTHER_CORES_LOADED:
                why.append(f"other processes kept {other:.2f} of {os.cpu_count()} CPUs busy on average")
            if total > 0 and steal / total > STEAL_LOADED:
                why.append(f"{100.0 * steal / total:.0f}% of CPU time stolen by the hypervisor")
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
