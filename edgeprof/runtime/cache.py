"""Cache state between timed runs (``--cache``): ``warm`` times runs back to back, so each run finds the model's
weights and tensors in the caches the previous run left them in; ``cold`` evicts the caches before every timed run
by reading and writing a buffer larger than the last-level cache, outside the timed interval, and times each run
alone.

The eviction buffer is twice the largest data cache cpu0 reports (``/sys/devices/system/cpu/cpu0/cache/index*/size``,
else ``sysconf``), at most 1/16 of the machine's memory (a worker per model holds one), 64 MiB where the cache size
cannot be read; ``EDGEPROF_EVICT_MB`` sets it by hand (a VM that reports its host's whole cache, a quick test). Used
inside the worker process, so numpy only, never torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeprof.errors import InputError

CACHE_STATES = ("warm", "cold")
EVICT_ENV = "EDGEPROF_EVICT_MB"
MIB = 1 << 20
FALLBACK_BYTES = 64 * MIB  # where no cache size can be read
MIN_BYTES = 1 * MIB
MEMORY_SHARE = 16  # at most 1/16 of MemTotal per worker
_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
_MEMINFO = Path("/proc/meminfo")


def check_cache_state(value: str) -> str:
    """``value`` if it is a cache state, else a one-line InputError naming the valid ones."""
    if value not in CACHE_STATES:
        raise InputError(f"unknown cache state {value!r} (--cache); valid: {', '.join(CACHE_STATES)}")
    return value


def _size_bytes(text: str) -> int:
    """A sysfs cache size (``48K``, ``2048K``, ``32M``, or plain bytes) in bytes."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text[:-1] if scale != 1 else text) * scale


def largest_cache(cache_dir: Path = _CACHE_DIR) -> tuple[int | None, str, int]:
    """(bytes of the largest data or unified cache cpu0 sees, where that was read, its line size in bytes);
    (None, "", 64) when no size can be read."""
    best: tuple[int | None, str, int] = (None, "", 64)
    for index in sorted(cache_dir.glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            size = _size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
        try:
            line = int((index / "coherency_line_size").read_text()) or 64
        except (OSError, ValueError):
            line = 64
        if size > 0 and (best[0] is None or size > best[0]):
            best = (size, str(index / "size"), line)
    if best[0] is None:
        for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
            try:
                size = os.sysconf(name)
            except (ValueError, OSError):
                continue
            if size > 0:
                return size, f"sysconf {name}", 64
    return best


def _mem_total_bytes() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class EvictionSize:
    """How large the eviction buffer is (``evict_bytes``), the cache it must exceed (``llc_bytes``, None where
    unknown) and how the size was chosen (``how``)."""

    evict_bytes: int
    llc_bytes: int | None
    how: str
    line_bytes: int = 64

    def as_dict(self) -> dict:
        return asdict(self)


def eviction_size(cache_dir: Path = _CACHE_DIR, mem_total: int | None = None) -> EvictionSize:
    """The eviction buffer's size on this machine (see the module's docstring)."""
    llc, where, line = largest_cache(cache_dir)
    text = os.environ.get(EVICT_ENV, "").strip()
    if text:
        try:
            mib = float(text)
        except ValueError:
            mib = -1.0
        if not mib > 0:
            raise InputError(f"{EVICT_ENV}={text!r}: give the eviction buffer's size in MiB, a positive number")
        return EvictionSize(max(line, int(mib * MIB)), llc, f"${EVICT_ENV}", line)
    if llc is None:
        return EvictionSize(FALLBACK_BYTES, None, "fallback (the cache size could not be read)", line)
    size, how = 2 * llc, f"2 x {where}"
    total = mem_total if mem_total is not None else _mem_total_bytes()
    if total and size > total // MEMORY_SHARE:
        size, how = total // MEMORY_SHARE, f"{how}, capped at 1/{MEMORY_SHARE} of MemTotal"
    return EvictionSize(max(MIN_BYTES, size), llc, how, line)


class Evictor:
    """A buffer of ``nbytes``, written once when made (so its pages are resident before any memory baseline), and
    ``evict``: read and write one word of every cache line of it, which pushes everything else out of the caches."""

    def __init__(self, nbytes: int, line_bytes: int = 64):
        self.buffer = np.ones(max(1, nbytes // 8), dtype=np.uint64)
        self._lines = self.buffer[:: max(1, line_bytes // 8)]
        self.nbytes = int(self.buffer.nbytes)
        self.evictions = 0
        self._evict_ns = 0

    def _touch(self) -> int:
        """Read and write one word of every cache line; the ns it took."""
        t0 = time.perf_counter_ns()
        np.add(self._lines, 1, out=self._lines)
        return time.perf_counter_ns() - t0

    def evict(self) -> None:
        self._evict_ns += self._touch()
        self.evictions += 1

    def probe_ms(self, times: int = 2) -> float:
        """Evict ``times`` times and return the mean ms one took (not counted among ``sample``'s evictions)."""
        return sum(self._touch() for _ in range(times)) / 1e6 / times

    def mean_evict_ms(self) -> float | None:
        return self._evict_ns / 1e6 / self.evictions if self.evictions else None


_EVICTORS: dict[tuple[int, int], Evictor] = {}


def evictor(size: EvictionSize | None = None) -> Evictor:
    """This process's evictor of ``size`` (default ``eviction_size()``): one buffer per process, however many
    runners it holds (``--no-isolate``)."""
    size = size or eviction_size()
    key = (size.evict_bytes, size.line_bytes)
    if key not in _EVICTORS:
        _EVICTORS[key] = Evictor(size.evict_bytes, size.line_bytes)
    return _EVICTORS[key]


def cache_metadata(cache: str) -> dict:
    """What a run's metadata says of its cache state: the state, and for ``cold`` the eviction buffer's size, the
    cache it exceeds and how the size was chosen."""
    if cache != "cold":
        return {"state": cache}
    return {"state": cache, **eviction_size().as_dict()}
