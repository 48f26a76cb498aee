"""Device state beside every result: CPU frequency, temperature, load, steal time, the other processes' CPU share
and a worker's context switches, read cheaply and without root from Linux /proc and /sys. No torch import.

Every reader takes ``root``, the folder that stands for ``/`` (tests pass a folder of fake /proc and /sys files),
and gives None for what the OS does not expose (a VM without cpufreq or thermal zones, macOS without /proc).
``snapshot`` reads the host and the worker processes at one moment; ``device_states`` turns the snapshots taken
before and after a group's timed rounds into one ``DeviceState`` per model, with the ``contended`` flag: the
model was measured while another process (or, for steal, another guest of the hypervisor) took the core.

The kernel's CPU counters (``cpu_ticks``), this process's own CPU time (``own_cpu_s``) and the split of the
CPUs' busy time into ours, the other processes' and the stolen (``cpu_use``) are shared with the regression
gate's load probe (edgeprof.gate.load).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeprof.measure.host import _read, load_average, usable_cores

# the contended rule (``is_contended``): a row counts as measured while another process took the core when
INVOLUNTARY_PER_S = 200.0  # the worker was preempted over 200 times per second on a CPU: near every 4 ms scheduler
# tick, as when it shares its core with a busy process (a quiet 2-core VM: up to ~90 per timed second)
OTHER_CORES = 0.5  # or the other processes kept over half a core busy beyond the cores the runtime left free
STEAL_PCT = 10.0  # or the hypervisor gave over 10% of the CPU time to other guests


def _text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


# -- the kernel's CPU counters (/proc/stat) -----------------------------------------------------------------
def _ticks(fields: list[str]) -> list[int] | None:
    """One /proc/stat cpu line's fields after its name: user nice system idle iowait irq softirq steal, in clock
    ticks (missing trailing fields, as on old kernels, are 0); None when they are not numbers."""
    try:
        values = [int(v) for v in fields[:8]]
    except ValueError:
        return None
    return values + [0] * (8 - len(values))


def parse_cpu_ticks(text: str) -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat (``_ticks``). None when there is no such line."""
    fields = (text or "").split("\n", 1)[0].split()
    if not fields or fields[0] != "cpu":
        return None
    return _ticks(fields[1:])


def parse_core_ticks(text: str) -> dict[int, list[int]]:
    """Each core's ``cpuN`` line of /proc/stat (``_ticks``), by core number."""
    out = {}
    for line in (text or "").splitlines():
        name, *fields = line.split() or [""]
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = _ticks(fields)
            if ticks is not None:
                out[int(name[3:])] = ticks
    return out


def cpu_ticks(root: str | Path = "/") -> list[int] | None:
    """``parse_cpu_ticks`` of /proc/stat under ``root``; None off Linux."""
    text = _read("/proc/stat", root)
    return parse_cpu_ticks(text) if text is not None else None


def core_ticks(root: str | Path = "/") -> dict[int, list[int]]:
    """``parse_core_ticks`` of /proc/stat under ``root``; empty off Linux."""
    return parse_core_ticks(_read("/proc/stat", root) or "")


def ticks_per_second() -> int:
    """Clock ticks per second, the unit of /proc/stat and /proc/<pid>/stat (100 nearly everywhere)."""
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError):
        return 100


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children it has waited for (closed worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_use(ticks0: list[int], ticks1: list[int], own_s: float, wall_s: float,
            per_second: int | None = None) -> dict:
    """Between two ``cpu_ticks`` readings ``wall_s`` apart, of which ``own_s`` CPU seconds were ours: ``steal_pct``
    (% of all CPU time the hypervisor gave to other guests), ``other_cores`` (the other processes' busy CPU time
    per second of wall time: 1.0 is one core kept busy throughout) and ``own_cores`` (ours, likewise)."""
    per_second = per_second or ticks_per_second()
    delta = [b - a for a, b in zip(ticks0, ticks1, strict=True)]
    user, nice, system, _idle, _iowait, irq, softirq, steal = delta
    total = sum(delta)
    busy_s = (user + nice + system + irq + softirq) / per_second
    own_s = max(0.0, own_s)
    return {"steal_pct": 100.0 * steal / total if total > 0 else 0.0,
            "other_cores": max(0.0, busy_s - own_s) / wall_s if wall_s > 0 else None,
            "own_cores": own_s / wall_s if wall_s > 0 else None}


# -- CPU frequency ------------------------------------------------------------------------------------------
def parse_cpuinfo_mhz(text: str) -> dict[int, float]:
    """Each processor's ``cpu MHz`` line of /proc/cpuinfo (x86; ARM kernels print none), by processor number."""
    out: dict[int, float] = {}
    cpu = None
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        try:
            if key == "processor":
                cpu = int(value)
            elif key == "cpu mhz" and cpu is not None:
                out[cpu] = float(value)
        except ValueError:
            continue
    return out


def _cpu_dirs(root: str | Path) -> dict[int, Path]:
    base = Path(root) / "sys/devices/system/cpu"
    out = {}
    for path in base.glob("cpu[0-9]*"):
        if path.name[3:].isdigit():
            out[int(path.name[3:])] = path
    return out


def _khz_file(path: Path) -> float | None:
    """A cpufreq file (kHz) as MHz; None when absent or not a number."""
    try:
        khz = int((_text(path) or "").strip())
    except ValueError:
        return None
    return khz / 1000.0 if khz > 0 else None


def core_mhz(root: str | Path = "/") -> dict[int, float]:
    """Each core's current frequency in MHz: cpufreq's ``scaling_cur_freq``, else /proc/cpuinfo's ``cpu MHz``
    (what a VM without cpufreq shows); empty where neither is exposed."""
    dirs = _cpu_dirs(root)
    out = {cpu: mhz for cpu, path in dirs.items()
           if (mhz := _khz_file(path / "cpufreq" / "scaling_cur_freq")) is not None}
    if out and len(out) == len(dirs):
        return out
    for cpu, mhz in parse_cpuinfo_mhz(_read("/proc/cpuinfo", root) or "").items():
        out.setdefault(cpu, mhz)
    return out


def core_max_mhz(root: str | Path = "/") -> dict[int, float]:
    """Each core's maximum frequency in MHz (cpufreq's ``cpuinfo_max_freq``); empty where cpufreq is not exposed."""
    return {cpu: mhz for cpu, path in _cpu_dirs(root).items()
            if (mhz := _khz_file(path / "cpufreq" / "cpuinfo_max_freq")) is not None}


def mean_mhz(per_core: Mapping[int, float], cores: set[int] | None = None) -> float | None:
    """The mean over ``cores`` (those of them known), else over every known core; None when none is known."""
    values = [per_core[c] for c in cores or () if c in per_core] or list(per_core.values())
    return round(sum(values) / len(values), 1) if values else None


# -- temperature --------------------------------------------------------------------------------------------
_CPU_SENSOR = re.compile(r"cpu|x86_pkg|soc|core|pkg|package|k10temp|zenpower|tctl|cluster|big|little", re.I)


def _celsius(text: str | None) -> float | None:
    """A sysfs temperature (millidegrees; a few drivers give degrees) as °C; None when absent or implausible."""
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    celsius = value / 1000.0 if abs(value) >= 1000 else value
    return celsius if -40.0 < celsius < 150.0 else None


def temperature_c(root: str | Path = "/") -> float | None:
    """The CPU's temperature in °C: the hottest thermal zone (/sys/class/thermal) or hwmon sensor
    (/sys/class/hwmon) whose name says it is the CPU's or the SoC's, else the hottest of any; None where the
    OS exposes none (most VMs)."""
    cpu_like: list[float] = []
    other: list[float] = []
    for zone in sorted((Path(root) / "sys/class/thermal").glob("thermal_zone*")):
        celsius = _celsius(_text(zone / "temp"))
        if celsius is not None:
            (cpu_like if _CPU_SENSOR.search(_text(zone / "type") or "") else other).append(celsius)
    for chip in sorted((Path(root) / "sys/class/hwmon").glob("hwmon*")):
        name = _text(chip / "name") or ""
        for sensor in sorted(chip.glob("temp*_input")):
            celsius = _celsius(_text(sensor))
            label = _text(sensor.with_name(sensor.name.replace("_input", "_label"))) or ""
            if celsius is not None:
                (cpu_like if _CPU_SENSOR.search(name + " " + label) else other).append(celsius)
    values = cpu_like or other
    return round(max(values), 1) if values else None


# -- one process: context switches, CPU time, cores -------------------------------------------------------
def parse_ctx_switches(status: str) -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches from a /proc/<pid>/status or /proc/<pid>/task/<tid>/status."""
    found: dict[str, int] = {}
    for line in (status or "").splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            try:
                found[key] = int(value)
            except ValueError:
                return None
    if len(found) != 2:
        return None
    return found["voluntary_ctxt_switches"], found["nonvoluntary_ctxt_switches"]


def parse_pid_stat(text: str) -> tuple[int, int | None] | None:
    """(utime + stime in clock ticks, the CPU it last ran on) from a /proc/<pid>/stat line; None if unreadable.
    The command name in parentheses may hold spaces and parentheses, so fields are counted after the last ')'."""
    _, paren, rest = (text or "").rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 13:
        return None
    try:
        ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15: utime, stime
        cpu = int(fields[36]) if len(fields) > 36 else None  # field 39: processor
    except ValueError:
        return None
    return ticks, cpu


@dataclass
class ProcessState:
    """One process at one moment: its threads' summed context switches, its CPU time and the cores its threads
    last ran on."""

    pid: int
    ctx_voluntary: int | None = None
    ctx_involuntary: int | None = None
    cpu_s: float | None = None
    cores: set[int] = field(default_factory=set)


def process_state(pid: int, root: str | Path = "/") -> ProcessState | None:
    """``ProcessState`` of ``pid`` from /proc/<pid>/stat and each /proc/<pid>/task/<tid>/status and stat (the
    process's own status counts only its main thread); None when the process is gone or /proc is absent."""
    proc = Path(root) / "proc" / str(pid)
    stat = parse_pid_stat(_text(proc / "stat") or "")
    if stat is None:
        return None
    state = ProcessState(pid=pid, cpu_s=stat[0] / ticks_per_second())
    tasks = sorted((proc / "task").glob("[0-9]*")) or [proc]
    switches = [parse_ctx_switches(_text(task / "status") or "") for task in tasks]
    switches = [s for s in switches if s is not None]  # a thread that ended between listing and reading
    if switches:
        state.ctx_voluntary = sum(s[0] for s in switches)
        state.ctx_involuntary = sum(s[1] for s in switches)
    for task in tasks:
        task_stat = parse_pid_stat(_text(task / "stat") or "")
        if task_stat is not None and task_stat[1] is not None:
            state.cores.add(task_stat[1])
    if not state.cores and stat[1] is not None:
        state.cores.add(stat[1])
    return state


# -- snapshots and the state of each model ------------------------------------------------------------------
@dataclass
class Snapshot:
    """The host and the workers at one moment: ``wall_s`` (a monotonic clock), the CPU counters, our CPU seconds
    (this process, its closed workers, its live workers), each core's MHz, and each worker's ``ProcessState``."""

    wall_s: float
    ticks: list[int] | None
    own_s: float
    mhz: dict[int, float]
    processes: dict[Hashable, ProcessState | None]


def snapshot(pids: Mapping[Hashable, int | None], root: str | Path = "/") -> Snapshot:
    """Read the host and each worker (key -> pid; None for one that has none) now. A worker that is this process
    (a runner without isolation) adds nothing to our CPU time twice, nor does a worker that holds several models."""
    states = {pid: process_state(pid, root) for pid in set(pids.values()) if pid}
    processes = {key: states.get(pid) if pid else None for key, pid in pids.items()}
    children = sum(p.cpu_s or 0.0 for p in states.values() if p is not None and p.pid != os.getpid())
    return Snapshot(wall_s=time.monotonic(), ticks=cpu_ticks(root), own_s=own_cpu_s() + children,
                    mhz=core_mhz(root), processes=processes)


@dataclass
class DeviceState:
    """The device's state while one model was timed: its row's device columns (edgeprof.results.schema)."""

    cpu_mhz: float | None = None
    cpu_max_mhz: float | None = None
    temp_c: float | None = None
    load_1m: float | None = None
    steal_pct: float | None = None
    other_cpu_share: float | None = None
    ctx_voluntary: int | None = None
    ctx_involuntary: int | None = None
    contended: bool | None = None

    def columns(self) -> dict:
        return asdict(self)


def is_contended(involuntary_per_s: float | None, other_cores: float | None, steal_pct: float | None,
                 free_cores: float = 0.0) -> bool | None:
    """Whether a model was measured while another process took the core: its worker was preempted more than
    ``INVOLUNTARY_PER_S`` times per second it was on a CPU, or the other processes kept more than ``OTHER_CORES`` of a
    core busy beyond the ``free_cores`` the runtime's threads left idle (they could not all have run elsewhere), or
    over ``STEAL_PCT`` of the CPU time was stolen by the hypervisor. None when none of the three is known."""
    known = [x for x in (involuntary_per_s, other_cores, steal_pct) if x is not None]
    if not known:
        return None
    return bool((involuntary_per_s is not None and involuntary_per_s > INVOLUNTARY_PER_S)
                or (other_cores is not None and other_cores > max(0.0, free_cores) + OTHER_CORES)
                or (steal_pct is not None and steal_pct > STEAL_PCT))


def device_states(before: Snapshot, after: Snapshot, timed_s: Mapping[Hashable, float], threads: int = 1,
                  cores: int | None = None, root: str | Path = "/") -> dict[Hashable, DeviceState]:
    """One ``DeviceState`` per key of ``timed_s`` (the seconds its timed runs took) from the snapshots taken
    before and after the group's timed rounds. The host's figures (load, steal, the other processes' share,
    temperature) are the group's; the frequency is that of the cores the model's worker ran on, averaged over
    both snapshots; the context switches are its worker's between the snapshots (None for a worker that was
    replaced or gone by then). ``threads`` are the runtime's compute threads, ``cores`` the usable ones."""
    cores = cores or usable_cores()
    use = None
    if before.ticks and after.ticks:
        use = cpu_use(before.ticks, after.ticks, after.own_s - before.own_s, after.wall_s - before.wall_s)
    steal = round(use["steal_pct"], 2) if use else None
    other = round(use["other_cores"], 2) if use and use["other_cores"] is not None else None
    free = max(0, cores - min(threads, cores))
    max_mhz = core_max_mhz(root)
    temp = temperature_c(root)
    load = (load_average(root) or [None])[0]
    out = {}
    for key, seconds in timed_s.items():
        p0, p1 = before.processes.get(key), after.processes.get(key)
        state = DeviceState(temp_c=temp, load_1m=load, steal_pct=steal, other_cpu_share=other)
        ran_on = (p0.cores if p0 else set()) | (p1.cores if p1 else set())
        now = [m for m in (mean_mhz(before.mhz, ran_on), mean_mhz(after.mhz, ran_on)) if m is not None]
        state.cpu_mhz = round(sum(now) / len(now), 1) if now else None
        state.cpu_max_mhz = mean_mhz(max_mhz, ran_on)
        rate = None
        if p0 and p1 and p0.pid == p1.pid and None not in (p0.ctx_voluntary, p1.ctx_voluntary):
            state.ctx_voluntary = max(0, p1.ctx_voluntary - p0.ctx_voluntary)
            state.ctx_involuntary = max(0, p1.ctx_involuntary - p0.ctx_involuntary)
            # per second the worker was on a CPU (its timed runs and the rest of its rounds' work): a quiet
            # first session of 11 models gave up to 14 preemptions over 0.16 timed seconds (87/s by timed time)
            on_cpu = max(seconds, (p1.cpu_s - p0.cpu_s) if None not in (p0.cpu_s, p1.cpu_s) else 0.0)
            rate = state.ctx_involuntary / on_cpu if on_cpu > 0 else None
        state.contended = is_contended(rate, other, steal, free)
        out[key] = state
    return out
