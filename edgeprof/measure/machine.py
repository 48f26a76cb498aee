"""This machine's ceilings measured with onnxruntime itself, cached per host, runtime version and thread count.

Peak compute: a square fp32 MatMul (2*N^3 FLOPs a run). Memory bandwidth: a large elementwise op (Neg)
that reads one tensor and writes another (2 * bytes a run). Both are shipped as tiny ONNX files with
dynamic dimensions (edgeprof/data), so this needs neither torch nor onnx. The ceiling is taken from the
fastest sample (what the hardware can do when the shared machine lets it); the median is kept beside it.
With these, a sweep reports each block's achieved GFLOP/s as a fraction of the peak and each standalone
activation's achieved GB/s as a fraction of the bandwidth: a roofline view of which activations are
compute-bound and which memory-bound.

The cache is one JSON file in the per-user cache folder (``platformdirs``: ~/.cache/edgeprof on Linux,
~/Library/Caches/edgeprof on macOS, %LOCALAPPDATA%\\edgeprof\\Cache on Windows; ``EDGEPROF_CACHE`` overrides
it), keyed by host fingerprint, then runtime and its version (a runtime upgrade can change the kernels and so
the ceilings), then threads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgeprof.errors import RuntimeFailure
from edgeprof.runtime.onnxruntime.runner import ModelRunner
from edgeprof.runtime.onnxruntime.session import SessionSettings

DATA = Path(__file__).resolve().parent.parent / "data"
MATMUL_MODEL = DATA / "matmul.onnx"
COPY_MODEL = DATA / "copy.onnx"
MACHINE_SCHEMA_VERSION = 2
RUNTIME = "onnxruntime"
"""The runtime whose kernels measure the ceilings (and whose version is part of the cache key)."""


def cache_path() -> Path:
    """The cache file: ``$EDGEPROF_CACHE/machine.json``, else in the per-user cache folder."""
    from platformdirs import user_cache_dir

    base = os.environ.get("EDGEPROF_CACHE") or user_cache_dir("edgeprof", appauthor=False)
    return Path(base) / "machine.json"


def cache_key(threads: int, runtime: str = RUNTIME) -> tuple[str, str, str]:
    """Where an entry lives in the cache: (host fingerprint, ``<runtime> <version>``, threads)."""
    from edgeprof.measure.host import fingerprint, versions

    return fingerprint(), f"{runtime} {versions().get(runtime) or 'unknown'}", str(threads)


def _time_model(path: Path, shapes: dict, threads: int, seconds: float) -> tuple[float, float]:
    runner = ModelRunner(str(path), SessionSettings(threads=threads), shapes=shapes)
    runner.load()
    runner.first_run()
    runner.warmup(seconds=min(0.5, seconds / 3))
    samples: list[float] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(samples) < 5:
        samples.extend(runner.sample(count=1))
    samples.sort()
    return samples[0], samples[len(samples) // 2]


def measure_machine(threads: int = 1, seconds: float = 1.5, matmul_sizes: tuple[int, ...] = (768, 1024, 1536),
                    copy_mib: int = 64) -> dict:
    """Peak GFLOP/s (the best of a few MatMul sizes) and bandwidth GB/s at ``threads`` intra-op threads."""
    from edgeprof.measure.host import fingerprint, host_info, versions

    if not MATMUL_MODEL.exists() or not COPY_MODEL.exists():
        raise RuntimeFailure(f"edgeprof's machine models are missing from {DATA}")
    peak = median_peak = 0.0
    matmul_n = matmul_sizes[0]
    for n in matmul_sizes:
        best_mm, median_mm = _time_model(MATMUL_MODEL, {"N": (n,)}, threads, seconds)
        if 2.0 * n**3 / (best_mm * 1e6) > peak:
            peak, median_peak, matmul_n = 2.0 * n**3 / (best_mm * 1e6), 2.0 * n**3 / (median_mm * 1e6), n
    elements = copy_mib * 1024 * 1024 // 4
    moved = 2.0 * elements * 4
    best_cp, median_cp = _time_model(COPY_MODEL, {"E": (elements,)}, threads, seconds)
    info = host_info()
    return {
        "schema_version": MACHINE_SCHEMA_VERSION,
        "host_fingerprint": fingerprint(info),
        "cpu_model": info["cpu_model"],
        "onnxruntime": versions().get(RUNTIME),
        "runtime": RUNTIME,
        "runtime_version": versions().get(RUNTIME),
        "threads": threads,
        "peak_gflops": peak,
        "median_gflops": median_peak,
        "bandwidth_gbs": moved / (best_cp * 1e6),
        "median_bandwidth_gbs": moved / (median_cp * 1e6),
        "matmul_n": matmul_n,
        "copy_mib": copy_mib,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def load_cached(threads: int) -> dict | None:
    """The cached entry for this host, runtime version and thread count, or None."""
    host, runtime, thread_key = cache_key(threads)
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(host, {}).get(runtime, {}).get(thread_key) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or entry.get("schema_version") != MACHINE_SCHEMA_VERSION:
        return None
    return entry


def save(entry: dict) -> Path | None:
    """Add ``entry`` to the cache; None (and no error) where the cache cannot be written."""
    path = cache_path()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    host = data.setdefault(entry["host_fingerprint"], {})
    if not all(isinstance(v, dict) and "schema_version" not in v for v in host.values()):
        host.clear()  # entries of schema 1 (no runtime level): dropped
    runtime = f"{entry['runtime']} {entry['runtime_version'] or 'unknown'}"
    host.setdefault(runtime, {})[str(entry["threads"])] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError:
        return None
    return path


def machine_ceilings(threads: int = 1, refresh: bool = False) -> dict:
    """The cached ceilings for this host and thread count, measured (and cached) when missing."""
    entry = None if refresh else load_cached(threads)
    if entry is None:
        entry = measure_machine(threads)
        save(entry)
    return entry
