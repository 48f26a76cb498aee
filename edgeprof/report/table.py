"""The comparison table a person reads: one row per activation and size, in the terminal or Markdown."""

from __future__ import annotations

import pandas as pd

from edgeprof.report.notes import row_notes
from edgeprof.spec.blocks import uses_depth


def _fmt_ms(x) -> str:
    if x is None or pd.isna(x):
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _fmt_count(x) -> str:
    if x is None or pd.isna(x):
        return "—"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _fmt_ratio(row) -> str:
    r = row.get("ratio_to_baseline")
    if r is None or pd.isna(r):
        return "—"
    lo, hi = row.get("ratio_ci95_low"), row.get("ratio_ci95_high")
    if lo is None or pd.isna(lo) or hi is None or pd.isna(hi):
        return f"{r:.2f}×"
    return f"{r:.2f}× [{lo:.2f}–{hi:.2f}]"


def _fmt_fused(row) -> str:
    fused = row.get("fused")
    if fused is None or pd.isna(fused):
        return "n/a" if not row.get("act_ops") else "—"
    return "yes" if bool(fused) else "no"


def _sum_or_none(*values):
    if any(v is None or pd.isna(v) for v in values):
        return None
    return float(sum(values))


def _fmt_ops(ops: str) -> str:
    """``Softplus+Tanh+Mul`` as is; a long repetitive list as counts (``Softplus×8, Tanh×8, Mul×8``)."""
    parts = [p for p in (ops or "").split("+") if p]
    if len(parts) <= 4:
        return "+".join(parts)
    counts: dict[str, int] = {}
    for p in parts:
        counts[p] = counts.get(p, 0) + 1
    return ", ".join(f"{op}×{n}" if n > 1 else op for op, n in counts.items())


def _fmt_ci(row) -> str:
    med, lo, hi = row.get("median_ms"), row.get("ci95_low_ms"), row.get("ci95_high_ms")
    if any(v is None or pd.isna(v) for v in (med, lo, hi)) or med <= 0:
        return "—"
    return f"±{max(med - lo, hi - med) / med * 100:.1f}%"


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The results reduced to the columns a person compares, formatted as text."""
    baselines = sorted({b for b in df.get("baseline", pd.Series(dtype=str)).dropna() if b})
    ratio_header = f"× {baselines[0]}" if len(baselines) == 1 else "× baseline"
    out = []
    for _, row in df.iterrows():
        row = row.to_dict()
        notes = row_notes(row)
        size = f"w{row.get('width')} {row.get('imgsz')}px" if not pd.isna(row.get("width")) else ""
        if not pd.isna(row.get("depth")) and uses_depth(str(row.get("block"))):
            size += f" n{row.get('depth')}"
        if row.get("scale"):
            size = f"{row['scale']}: {size}"
        out.append({
            "block": row.get("block") or "",
            "size": size,
            "act": (row.get("act") or str(row.get("model", "")).rsplit("/", 1)[-1])
            + (f" ({row['precision']})" if row.get("precision") not in (None, "", "fp32") else ""),
            "median ms": _fmt_ms(row.get("median_ms")),
            "p90 ms": _fmt_ms(row.get("p90_ms")),
            "CI95": _fmt_ci(row),
            ratio_header: _fmt_ratio(row),
            "× fp32": "—" if pd.isna(row.get("ratio_to_fp32")) else f"{row['ratio_to_fp32']:.2f}×",
            "int8 err": "—" if pd.isna(row.get("quant_rel_err")) else f"{row['quant_rel_err'] * 100:.1f}%",
            "fused": _fmt_fused(row),
            "by timing": "—" if pd.isna(row.get("fused_by_timing")) else ("yes" if row["fused_by_timing"] else "no"),
            "act ran as": _fmt_ops(row.get("act_ops")) or ("—" if row.get("fused") is True else ""),
            "params": _fmt_count(row.get("params")),
            "MACs": _fmt_count(row.get("macs")),
            "act alone ms": _fmt_ms(row.get("act_alone_ms")),
            "% peak": "—" if pd.isna(row.get("frac_peak_gflops")) else f"{row['frac_peak_gflops'] * 100:.0f}%",
            "peak MiB": _fmt_ms(row.get("peak_rss_run_mb")),
            "est MiB": _fmt_ms(_sum_or_none(row.get("act_peak_mb"), row.get("weights_mb"))),
            "notes": "; ".join(notes),
        })
    disp = pd.DataFrame(out)
    for col in list(disp.columns):
        if col not in ("act", "median ms") and (disp[col].isin(["—", "", "n/a"])).all():
            disp = disp.drop(columns=col)
    return disp


def render_rich(df: pd.DataFrame, console, title: str | None = None) -> None:
    from rich.table import Table

    disp = display_frame(df)
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in disp.columns:
        justify = "right" if col in ("median ms", "p90 ms", "CI95", "params", "MACs", "peak MiB", "act alone ms",
                                     "% peak", "est MiB") else "left"
        table.add_column(col, justify=justify, overflow="fold")
    previous = None
    for _, row in disp.iterrows():
        key = (row.get("block", ""), row.get("size", ""))
        cells = [str(v) for v in row.tolist()]
        if key == previous:  # block and size once per group
            for col in ("block", "size"):
                if col in disp.columns:
                    cells[list(disp.columns).index(col)] = ""
        elif previous is not None:
            table.add_section()
        previous = key
        table.add_row(*cells)
    console.print(table)


def to_markdown(df: pd.DataFrame) -> str:
    disp = display_frame(df)
    head = "| " + " | ".join(disp.columns) + " |"
    sep = "| " + " | ".join("---" for _ in disp.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in disp.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def per_op_summary(ops: pd.DataFrame) -> pd.DataFrame:
    """Where the time goes, one row per config: each op type's share of the kernel time, largest first,
    and the share spent in the activation's nodes."""
    out = []
    keys = ["block", "width", "imgsz", "act", "model"]
    for key, grp in ops.groupby(keys, sort=False, dropna=False):
        by_type = grp.groupby("op_type", sort=False)["share"].sum().sort_values(ascending=False)
        act_share = grp.loc[grp["is_act"].astype(bool), "share"].sum()
        row = dict(zip(keys, key, strict=True))
        label = row["act"] if isinstance(row["act"], str) and row["act"] else str(row["model"]).rsplit("/", 1)[-1]
        size = "" if pd.isna(row["width"]) else f"w{int(row['width'])} {int(row['imgsz'])}px"
        out.append({
            "block": row["block"] if isinstance(row["block"], str) else "",
            "size": size,
            "act": label,
            "act share": f"{act_share * 100:.0f}%",
            "kernel us": f"{grp['mean_us'].sum():.0f}",
            "time by op type": ", ".join(f"{op} {share * 100:.0f}%" for op, share in by_type.items() if share >= 0.005),
        })
    return pd.DataFrame(out)


def render_frame(disp: pd.DataFrame, console, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for col in disp.columns:
        table.add_column(col, overflow="fold")
    for row in disp.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)


def runtimes_in(df: pd.DataFrame) -> list[str]:
    """The runtimes of a results frame, in the order they first appear."""
    if "runtime" not in df.columns:
        return []
    return list(dict.fromkeys(str(r) for r in df["runtime"].dropna() if str(r)))


def _cross_cell(row: dict, compact: bool) -> str:
    status = row.get("status") or "ok"
    if status in ("unsupported", "failed"):
        return "unsupported" if status == "unsupported" else "failed"
    r, lo, hi = row.get("ratio_to_baseline"), row.get("ratio_ci95_low"), row.get("ratio_ci95_high")
    fused = row.get("fused")
    mark = " F" if fused is not None and pd.notna(fused) and bool(fused) else ""
    if r is None or pd.isna(r):
        return "—" + mark
    if lo is None or pd.isna(lo) or hi is None or pd.isna(hi):
        return f"{r:.2f}×{mark}"
    if compact:
        return f"{r:.2f}×±{max(r - lo, hi - r):.2f}{mark}"
    return f"{r:.2f}× [{lo:.2f}–{hi:.2f}]{mark}"


CROSS_WIDTH = 120  # the cross-runtime view fits this many columns (3 per column for the table's separators)


def cross_runtime_frame(df: pd.DataFrame, width: int = CROSS_WIDTH) -> pd.DataFrame:
    """Several runtimes side by side: one row per block size and activation, one column per runtime, each cell
    the ratio to the baseline within that runtime with its 95% CI and ``F`` when the runtime's own graph shows the
    activation fused into the conv (``unsupported`` / ``failed`` for rows without figures). Cells are
    ``1.05× [1.03–1.07] F``, or ``1.05×±0.02 F`` (the CI's half-width) when that would not fit ``width``."""
    runtimes = runtimes_in(df)
    disp = display_frame(df)  # the same block, size and act labels as the detailed table
    keys = [c for c in ("block", "size", "act") if c in disp.columns]
    if "block" in keys and disp["block"].nunique() <= 1:
        keys.remove("block")

    def build(compact: bool) -> pd.DataFrame:
        table: dict[tuple, dict] = {}
        for (_, row), (_, shown) in zip(df.iterrows(), disp.iterrows(), strict=True):
            key = tuple(shown[k] for k in keys)
            table.setdefault(key, dict(zip(keys, key, strict=True)))[str(row.get("runtime"))] = \
                _cross_cell(row.to_dict(), compact)
        out = pd.DataFrame(list(table.values()))
        for rt in runtimes:
            if rt not in out.columns:
                out[rt] = "—"
        return out[keys + runtimes].fillna("—")

    def fits(frame: pd.DataFrame) -> bool:
        widths = [max([len(str(c))] + [len(str(v)) for v in frame[c]]) for c in frame.columns]
        return sum(widths) + 3 * len(widths) + 1 <= width

    short = {rt: rt.rsplit(":", 1)[-1] for rt in runtimes}  # pkg.mod:Class -> Class, when that stays unique
    if len(set(short.values())) < len(short):
        short = {rt: rt for rt in runtimes}
    full = build(compact=False).rename(columns=short)
    return full if fits(full) else build(compact=True).rename(columns=short)
