"""Result rows: built from a spec, its export and its measurement; written to CSV as they complete."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pandas as pd

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.results.schema import COLUMNS, SCHEMA, SCHEMA_VERSION, STR_COLUMNS

# columns of files written before the runtime seam: onnxruntime's settings and version
_ORT_SETTINGS = ("inter_threads", "opt_level", "spinning", "arena", "provider")


def upgrade_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A frame read from a file written before the runtime seam, in today's columns: ``ort_version`` becomes
    ``runtime_version``, ``ort_*_mb`` become ``runtime_*_mb``, onnxruntime's settings columns become
    ``runtime_settings``, and ``runtime`` is onnxruntime."""
    from edgeprof.runtime.base import encode_settings

    if "runtime" in df.columns or not any(c in df.columns for c in ("ort_version", *_ORT_SETTINGS)):
        return df
    df = df.rename(columns={"ort_version": "runtime_version", "ort_peak_in_use_mb": "runtime_peak_in_use_mb",
                            "ort_arena_held_mb": "runtime_arena_held_mb"})
    present = [c for c in _ORT_SETTINGS if c in df.columns]
    if present:
        df["runtime_settings"] = [encode_settings({c: r[c] for c in present if not pd.isna(r[c])})
                                  for r in df[present].to_dict("records")]
        df = df.drop(columns=present)
    df["runtime"] = "onnxruntime"
    return df


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a DataFrame with exactly the schema's columns, in order, with the schema's dtypes (rows with the
    columns of before the runtime seam, ``ort_version`` and onnxruntime's settings, are read as onnxruntime's)."""
    df = upgrade_columns(pd.DataFrame(rows))
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[list(COLUMNS)]
    for col in SCHEMA:
        if col.dtype == "boolean":
            df[col.name] = df[col.name].astype("boolean")
        elif col.dtype == "Int64":
            df[col.name] = pd.to_numeric(df[col.name], errors="coerce").astype("Int64")
        elif col.dtype == "string":
            df[col.name] = df[col.name].astype("string").fillna("")
        else:
            df[col.name] = pd.to_numeric(df[col.name], errors="coerce").astype(col.dtype)
    return df


TEXT_COLUMNS = (*STR_COLUMNS, "node", "op_type")
"""The text columns of edgeprof's CSVs (results and per-op): read as text, whatever they look like."""


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """An edgeprof CSV (results or per-op) as pandas reads it, but every text column read as text: a run id such as
    ``123456e78901`` or a fingerprint of digits stays what was written, not a float (pandas' guess)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(TEXT_COLUMNS, str),
                       **kwargs)


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a result CSV written by edgeprof, with its dtypes; InputError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results file not found: {path}")
    try:
        df = read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("act", "median_ms", "model") if c not in df.columns]
    if missing:
        raise InputError(f"{path} is not an edgeprof results CSV (missing columns: {', '.join(missing)})")
    return to_frame(df.to_dict("records"))


def check_writable(path: str | Path) -> Path:
    """Create the parent folder and check the file can be appended to, before any work starts."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.is_dir():
            raise InputError(f"cannot write results to {path}: it is a folder")
        with open(path, "a"):
            pass
        if path.stat().st_size == 0:
            path.unlink()
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"cannot write results to {path}: {exc.strerror or exc}") from None
    return path


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append rows to the CSV (header written when the file is new), each as whole lines or not at all."""
    if not rows:
        return
    try:
        append_lines(path, to_frame([_one_line(row) for row in rows]))
    except OSError as exc:
        raise RuntimeFailure(f"cannot write results to {path}: {exc.strerror or exc}") from None


def append_lines(path: str | Path, frame: pd.DataFrame) -> None:
    """Append ``frame`` as CSV lines (with its header when the file is new or empty) in one write, flushed and
    fsynced; if the write fails, the file is cut back to its old length, so it never ends in a partial line.
    OSError (e.g. ENOSPC) propagates."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        data = frame.to_csv(header=size == 0, index=False, lineterminator="\n").encode()
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes written")
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def _one_line(row: dict) -> dict:
    """The row with line breaks in its text (an error message) turned into spaces: one row, one line."""
    return {k: " ".join(v.splitlines()) if isinstance(v, str) else v for k, v in row.items()}


def write_metadata(csv_path: str | Path, metadata: dict) -> Path:
    """The run's metadata beside the CSV, as ``<name>.json``."""
    path = Path(csv_path).with_suffix(".json")
    payload = {"schema_version": SCHEMA_VERSION, "csv": Path(csv_path).name, **metadata}
    try:
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write metadata to {path}: {exc.strerror or exc}") from None
    return path


def measurement_row(
    measurement,
    settings: dict,
    rel_ci: float,
    build: dict | None = None,
    baseline=None,
    baseline_name: str = "",
    reference_nodes: list[dict] | None = None,
    run_id: str = "",
    static_memory: dict | None = None,
) -> dict:
    """One CSV row from a Measurement (edgeprof.measure), the runtime settings (``RuntimeSettings.as_dict()``),
    and what was built.

    ``build`` holds the spec fields, params, macs, exporter, opset, parity and the exported act ops.
    ``baseline`` is the Measurement of the baseline activation in the same interleaved group.
    ``ci_reached`` is about what the model's rounds stopped on (``Measurement.target``, the ``ci_target`` column): the
    ratio's CI when the row has a ratio and the rounds stopped on ratios, else the median's.
    ``reference_nodes`` are the executed nodes of the same block without an activation: the ops the
    activation ran as are the difference, and it was fused when that difference is empty.
    ``static_memory`` is the graph's static estimate (edgeprof.analysis).
    """
    from edgeprof.measure import paired_ratio_detail
    from edgeprof.measure.stats import relative_halfwidth
    from edgeprof.runtime.base import settings_columns
    from edgeprof.runtime.nodes import time_share

    build = build or {}
    stats = measurement.stats
    row = {
        **{k: build.get(k) for k in ("act", "block", "width", "depth", "imgsz", "batch", "kernel", "stride",
                                      "params", "macs", "exporter", "opset", "parity_max_abs_err")},
        **settings_columns(settings),
        "runtime_version": getattr(measurement, "runtime_version", ""),
        **{k: getattr(measurement, k, None) for k in ("converter", "converter_version", "runtime_parity_max_abs_err",
                                                      "threads_effective", "per_op_source")},
        **{k: stats.get(k) for k in ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "p99_ms", "iqr_ms",
                                      "n", "ci95_low_ms", "ci95_high_ms", "noisy")},
        "inner_loops": measurement.inner_loops,
        "sessions": getattr(measurement, "sessions", 0) or None,
        "levels": getattr(measurement, "levels", None),
        "between_session_share": getattr(measurement, "between_session_share", None),
        "ci_target": "absolute",
        "ci_reached": bool(stats.get("rel_ci", math.inf) <= rel_ci),
        "session_ms": measurement.session_ms,
        "first_run_ms": measurement.first_run_ms,
        "peak_rss_session_mb": measurement.peak_rss_session_mb,
        "peak_rss_run_mb": measurement.peak_rss_run_mb,
        "act_ops_exported": "+".join(build.get("act_ops") or []),
        "model": measurement.path,
        "status": measurement.status,
        "error": measurement.error,
        "run_id": run_id,
    }
    if measurement.status in ("failed", "unsupported") or not stats.get("n"):
        row["ci_reached"] = False
    nodes, act_nodes = split_act_nodes(measurement.nodes, reference_nodes, build.get("act"), build.get("act_ops"),
                                       beyond_reference=_beyond_reference(settings.get("runtime")))
    if nodes and reference_nodes is not None:
        row["fused"] = None if not build.get("act_ops") else not act_nodes
    if act_nodes is not None:
        row["act_ops"] = "+".join(n.op_type for n in act_nodes)
        row["act_share"] = time_share(act_nodes, nodes)
    row["runtime_peak_in_use_mb"] = measurement.runtime_peak_in_use_mb
    row["runtime_arena_held_mb"] = measurement.runtime_arena_held_mb
    row["per_op_runs"] = measurement.per_op_runs or None
    device_state = getattr(measurement, "device_state", None)  # edgeprof.measure.devstate: CPU MHz ... contended
    row.update(device_state.columns() if device_state is not None else {})
    row.update(static_memory or {})
    if baseline is not None and baseline_name:
        row["baseline"] = baseline_name
        if baseline.status in ("ok", "interrupted") and measurement.status in ("ok", "interrupted") \
                and stats.get("n") and baseline.stats.get("n"):
            ci = paired_ratio_detail(measurement, baseline)
            row.update(ratio_to_baseline=ci.value, ratio_ci95_low=ci.lo, ratio_ci95_high=ci.hi)
            if baseline is not measurement and not math.isnan(ci.between_share):
                row["between_session_share"] = ci.between_share
            if getattr(measurement, "target", "") == "ratio" and row["status"] in ("ok", "interrupted"):
                row["ci_target"] = "ratio"
                row["ci_reached"] = bool(relative_halfwidth(ci.value, ci.lo, ci.hi) <= rel_ci)
    return row


def _beyond_reference(runtime: str | None) -> bool:
    """Whether the runtime's activation nodes are those beyond the reference block's (``Runtime.
    act_nodes_beyond_reference``); False for onnxruntime and for a runtime that cannot be loaded here."""
    if not runtime or runtime == "onnxruntime":
        return False
    try:
        from edgeprof.runtime.registry import get_runtime

        return bool(getattr(get_runtime(runtime), "act_nodes_beyond_reference", False))
    except Exception:
        return False


def split_act_nodes(nodes: list[dict], reference_nodes: list[dict] | None, act: str | None = None,
                    exported_ops: list[str] | None = None, beyond_reference: bool = False):
    """(all nodes, the activation's own nodes): with a reference (a block edgeprof built), the nodes of the
    activation's op types (edgeprof.spec.acts: exported or fused forms), never the block's other ops, or, for a
    runtime whose op types are its own (``beyond_reference``), the nodes beyond the reference's by op type; an
    empty reference means every node is the activation's (block ``act``); without one, any activation op type. A
    node a runtime fused from several ops beyond the reference's (``Max+Exp+Add+Min``) is the activation's too."""
    from edgeprof.runtime.nodes import activation_nodes, extra_nodes, fused_chains_beyond, nodes_from_dicts
    from edgeprof.spec.acts import act_op_types

    all_nodes = nodes_from_dicts(nodes)
    if not all_nodes:
        return all_nodes, None
    if reference_nodes is not None:
        if not reference_nodes:
            return all_nodes, list(all_nodes)
        if beyond_reference:
            return all_nodes, extra_nodes(all_nodes, nodes_from_dicts(reference_nodes))
        own = {id(n) for n in activation_nodes(all_nodes, act_op_types(act or "", exported_ops or ()))}
        own |= {id(n) for n in fused_chains_beyond(all_nodes, nodes_from_dicts(reference_nodes))}
        return all_nodes, [n for n in all_nodes if id(n) in own]
    return all_nodes, activation_nodes(all_nodes)


PER_OP_KEYS = ("run_id", "precision", "act", "block", "width", "depth", "imgsz", "batch", "threads", "runtime",
               "runtime_settings", "per_op_runs", "model")


def per_op_rows(row: dict, nodes: list[dict], reference_nodes: list[dict] | None) -> list[dict]:
    """One row per node the runtime ran (mean time over ``per_op_runs`` profiled runs; for onnxruntime its
    profiler's kernel time), labelled with the config's row.

    ``share`` is the node's fraction of the summed kernel time; ``is_act`` marks the activation's nodes;
    ``output_bytes`` and ``mem_in_use_delta`` are onnxruntime's per-node memory figures from its profiler (the
    bytes the node writes, and how much the arena's bytes in use changed; the latter only with the arena on).
    """
    exported = [op for op in str(row.get("act_ops_exported") or "").split("+") if op]
    all_nodes, act_nodes = split_act_nodes(nodes, reference_nodes, row.get("act"), exported,
                                           beyond_reference=_beyond_reference(row.get("runtime")))
    act_ids = {id(n) for n in act_nodes or []}
    timed = all(n.mean_us is not None for n in all_nodes)  # a runtime without per-op times: no shares
    total = sum(n.mean_us for n in all_nodes) if timed else 0.0
    return [
        {**{k: row.get(k) for k in PER_OP_KEYS}, "node": n.name, "op_type": n.op_type, "mean_us": n.mean_us,
         "share": n.mean_us / total if total > 0 else None, "is_act": id(n) in act_ids,
         "output_bytes": n.output_bytes, "mem_in_use_delta": n.mem_in_use_delta}
        for n in all_nodes
    ]


def append_per_op(path: str | Path, rows: list[dict]) -> None:
    """Append per-op rows to the per-op CSV, whole lines or nothing, like ``append_rows``."""
    if not rows:
        return
    try:
        append_lines(path, pd.DataFrame([_one_line(row) for row in rows]))
    except OSError as exc:
        raise RuntimeFailure(f"cannot write per-op results to {path}: {exc.strerror or exc}") from None


def per_op_path(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.stem + "-ops.csv")


def stamp_rows(rows: list[dict], metadata: dict) -> list[dict]:
    """Put the host, the runtime version and the current load (on a row that has none from its timed rounds) on
    each row, so a CSV stands on its own."""
    from edgeprof.measure.host import load_average

    load = (load_average() or [None])[0]
    for row in rows:
        row["host_fingerprint"] = metadata.get("host_fingerprint")
        row["cpu_model"] = (metadata.get("host") or {}).get("cpu_model")
        if not row.get("runtime_version") and row.get("runtime", "onnxruntime") == "onnxruntime":
            row["runtime_version"] = (metadata.get("versions") or {}).get("onnxruntime")
        if row.get("load_1m") is None:
            row["load_1m"] = load
    return rows
