"""Process memory from /proc/self/status: current and peak resident set, and resetting the peak.

``ru_maxrss`` survives ``exec`` (a worker started by a torch-importing parent would report the
parent's size), so peaks are read from ``VmHWM`` in a worker that never imported torch. Writing "5"
to /proc/self/clear_refs resets ``VmHWM`` to the current RSS, which lets one worker measure the
session-creation peak and the inference peak separately.
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


def peak_rss_mib() -> float | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024.0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
