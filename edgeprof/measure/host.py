"""What machine and software a measurement ran on: CPU, cores, quota, OS, versions, load. No torch import."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("edgeprof", "onnxruntime", "onnx", "torch", "numpy", "pandas", "typer")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def isa_flags() -> list[str]:
    """The SIMD flags that decide which onnxruntime kernels run (AVX2, AVX-512, VNNI, NEON, ...)."""
    text = _read("/proc/cpuinfo") or ""
    interesting = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                   "amx_tile", "asimd", "asimddp", "sve", "i8mm"}
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return sorted(set(line.split(":", 1)[1].split()) & interesting)
    return []


def cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (cpu.max), or None when unlimited or unknown."""
    text = _read("/sys/fs/cgroup/cpu.max")
    if text:
        quota, _, period = text.strip().partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
    return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "isa_flags": isa_flags(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "hostname": platform.node(),
    }


def fingerprint(info: dict | None = None) -> str:
    """A short class of host: same CPU model, ISA flags, cores and quota -> same fingerprint."""
    from edgeprof.spec import content_hash

    info = info or host_info()
    keys = ("cpu_model", "isa_flags", "machine", "usable_cores", "cgroup_cpu_quota")
    return content_hash({k: info.get(k) for k in keys}, length=10)


def run_metadata(extra: dict | None = None) -> dict:
    info = host_info()
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": info,
        "host_fingerprint": fingerprint(info),
        "versions": versions(),
        "load_average_start": load_average(),
        **(extra or {}),
    }
