"""What machine and software a measurement ran on: CPU, cores, quota, OS, versions, load. No torch import."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("edgeprof", "onnxruntime", "onnx", "torch", "numpy", "pandas", "typer")


def _read(path: str, root: str | Path = "/") -> str | None:
    """The text of a system file under ``root`` (tests pass a folder of fake /proc and /sys files)."""
    try:
        return (Path(root) / path.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


ARM_IMPLEMENTERS = {0x41: "Arm", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
                    0x4E: "NVIDIA", 0x50: "APM", 0x51: "Qualcomm", 0x61: "Apple", 0x6D: "Microsoft",
                    0xC0: "Ampere"}
"""The ``CPU implementer`` codes of /proc/cpuinfo on ARM (the Arm ARM's MIDR_EL1 list)."""

ARM_PARTS = {
    0x41: {0xC07: "Cortex-A7", 0xC09: "Cortex-A9", 0xC0D: "Cortex-A17", 0xC0F: "Cortex-A15", 0xD01: "Cortex-A32",
           0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD06: "Cortex-A65", 0xD07: "Cortex-A57",
           0xD08: "Cortex-A72", 0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1",
           0xD0D: "Cortex-A77", 0xD0E: "Cortex-A76AE", 0xD40: "Neoverse-V1", 0xD41: "Cortex-A78",
           0xD42: "Cortex-A78AE", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510", 0xD47: "Cortex-A710", 0xD48: "Cortex-X2",
           0xD49: "Neoverse-N2", 0xD4A: "Neoverse-E1", 0xD4B: "Cortex-A78C", 0xD4C: "Cortex-X1C",
           0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3", 0xD4F: "Neoverse-V2", 0xD80: "Cortex-A520",
           0xD81: "Cortex-A720", 0xD82: "Cortex-X4", 0xD84: "Neoverse-V3", 0xD85: "Cortex-X925",
           0xD87: "Cortex-A725", 0xD8E: "Neoverse-N3"},
    0x48: {0xD01: "TaiShan v110"},
    0x4E: {0x004: "Carmel"},
    0x51: {0x800: "Kryo 2xx Gold", 0x801: "Kryo 2xx Silver", 0x802: "Kryo 3xx Gold", 0x803: "Kryo 3xx Silver",
           0x804: "Kryo 4xx Gold", 0x805: "Kryo 4xx Silver", 0xC00: "Falkor", 0x001: "Oryon"},
    0x61: {0x022: "M1 Icestorm", 0x023: "M1 Firestorm", 0x024: "M1 Pro Icestorm", 0x025: "M1 Pro Firestorm",
           0x028: "M1 Max Icestorm", 0x029: "M1 Max Firestorm", 0x032: "M2 Blizzard", 0x033: "M2 Avalanche"},
    0xC0: {0xAC3: "Ampere-1", 0xAC4: "Ampere-1a"},
}
"""``CPU part`` codes by implementer, for the cores edge boards and ARM servers commonly have."""


def _int(text: str) -> int | None:
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def arm_cores(cpuinfo: str) -> str | None:
    """The cores an ARM /proc/cpuinfo lists, by implementer and part, e.g. ``4x Cortex-A55 + 4x Cortex-A76``
    (one name when all cores are alike, e.g. ``Cortex-A72``). None when it names no CPU part (not ARM)."""
    cores: list[str] = []
    implementer = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "cpu implementer":
            implementer = _int(value)
        elif key == "cpu part":
            part = _int(value)
            if part is None:
                continue
            name = ARM_PARTS.get(implementer, {}).get(part)
            if name is None:
                vendor = ARM_IMPLEMENTERS.get(implementer) or (
                    f"implementer {implementer:#04x}" if implementer is not None else "ARM")
                name = f"{vendor} part {part:#05x}"
            elif implementer != 0x41:
                name = f"{ARM_IMPLEMENTERS.get(implementer, '')} {name}".strip()
            cores.append(name)
    if not cores:
        return None
    counts = {name: cores.count(name) for name in dict.fromkeys(cores)}
    if len(counts) == 1:
        return cores[0]
    return " + ".join(f"{n}x {name}" for name, n in counts.items())


def device_model(root: str | Path = "/") -> str | None:
    """The board's name from the device tree (e.g. ``Raspberry Pi 4 Model B Rev 1.4``), else the ``Model``
    line of /proc/cpuinfo; None on machines without either (most x86 PCs and VMs)."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        text = (_read(path, root) or "").replace("\x00", "").strip()
        if text:
            return text
    for line in (_read("/proc/cpuinfo", root) or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model" and value.strip():
            return value.strip()
    return None


def cpu_model(root: str | Path = "/") -> str:
    """The CPU's name: on ARM, its cores by implementer and part (its "model name" there, when any, is only
    "ARMv7 Processor rev 5 (v7l)"); elsewhere the "model name" line; else what ``platform`` says."""
    text = _read("/proc/cpuinfo", root) or ""
    arm = arm_cores(text)
    if arm:
        return arm
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def isa_flags(root: str | Path = "/") -> list[str]:
    """The SIMD flags that decide which onnxruntime kernels run (AVX2, AVX-512, VNNI, NEON, ...)."""
    text = _read("/proc/cpuinfo", root) or ""
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


def load_average(root: str | Path = "/") -> list[float] | None:
    """The 1-, 5- and 15-minute load averages: /proc/loadavg under ``root``, else (no /proc, e.g. macOS) what
    ``os.getloadavg`` says; None where neither tells."""
    text = _read("/proc/loadavg", root)
    if text is None:
        if Path(root) != Path("/"):
            return None
        try:
            return [round(x, 2) for x in os.getloadavg()]
        except (OSError, AttributeError):
            return None
    try:
        return [round(float(x), 2) for x in text.split()[:3]] or None
    except ValueError:
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
        "device_model": device_model(),
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
    """A short class of host: same CPU model, board, ISA flags, cores and quota -> same fingerprint.

    The board (``device_model``) counts only where there is one, so a PC's fingerprint is what it was before
    boards were told apart."""
    from edgeprof.spec import content_hash

    info = info or host_info()
    keys = ("cpu_model", "isa_flags", "machine", "usable_cores", "cgroup_cpu_quota")
    identity = {k: info.get(k) for k in keys}
    if info.get("device_model"):
        identity["device_model"] = info["device_model"]
    return content_hash(identity, length=10)


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
