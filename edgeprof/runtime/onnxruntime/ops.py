"""onnxruntime's own profiler trace turned into per-node records: which ops ran, and for how long."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from edgeprof.runtime.nodes import NodeTime


def parse_trace(events: list[dict] | str | Path, skip_runs: int = 0) -> list[NodeTime]:
    """Per-node kernel times from an onnxruntime profile (the JSON list ``end_profiling`` writes).

    Nodes are returned in the order they first ran; ``calls`` counts the runs kept. ``skip_runs``
    leaves out each node's first occurrences (the first run carries onnxruntime's lazy set-up).
    """
    if not isinstance(events, list):
        events = json.loads(Path(events).read_text())
    order: list[str] = []
    op_of: dict[str, str] = {}
    total: dict[str, float] = {}
    calls: Counter = Counter()
    seen: Counter = Counter()
    out_bytes: dict[str, int | None] = {}
    mem_delta: dict[str, int | None] = {}
    for ev in events:
        if ev.get("cat") != "Node":
            continue
        name = ev.get("name", "")
        if not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        args = ev.get("args", {})
        if node not in op_of:
            order.append(node)
            op_of[node] = args.get("op_name", "?")
            total[node] = 0.0
            out_bytes[node] = _int_or_none(args.get("output_size"))
            mem_delta[node] = _int_or_none(args.get("mem_in_use_delta"))
        seen[node] += 1
        if seen[node] <= skip_runs:
            continue
        total[node] += float(ev.get("dur", 0))
        calls[node] += 1
    return [NodeTime(n, op_of[n], calls[n], total[n], out_bytes[n], mem_delta[n]) for n in order]


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def ort_memory_view(events: list[dict] | str | Path) -> dict[str, float | None]:
    """onnxruntime's own memory figures from its profiler, in MiB: the arena's peak bytes in use and the
    bytes the arena holds. onnxruntime records them only with the CPU memory arena on (else None)."""
    if not isinstance(events, list):
        events = json.loads(Path(events).read_text())
    peak = held = None
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") != "Node" or "mem_in_use_peak" not in args:
            continue
        peak = max(peak or 0, int(args["mem_in_use_peak"]))
        held = max(held or 0, int(args.get("mem_arena_held", 0)))
    mib = 1024.0 * 1024.0
    return {
        "peak_in_use_mb": None if peak is None else peak / mib,
        "arena_held_mb": None if held is None else held / mib,
    }
