"""Did the block study predict the whole network? Block-level and whole-network ratios side by side."""

from __future__ import annotations

import pandas as pd

from edgeprof.spec import MODEL_NAMES
from edgeprof.spec.blocks import uses_depth


def _label(row) -> str:
    if row["block"] in MODEL_NAMES:
        return f"{row['block']} {row['imgsz']}px"
    depth = f" n{row['depth']}" if uses_depth(row["block"]) else ""
    return f"{row['block']} w{row['width']}{depth} {row['imgsz']}px"


def block_vs_network(df: pd.DataFrame) -> pd.DataFrame:
    """One row per activation (and precision); a column of ratio_to_baseline for every block size, then for
    every whole network. Rows from different hosts or runtimes must be split before calling this."""
    ok = df[(df["status"] == "ok") & df["ratio_to_baseline"].notna()].copy()
    if ok.empty:
        return pd.DataFrame()
    ok["config"] = ok.apply(_label, axis=1)
    ok["is_network"] = ok["block"].isin(MODEL_NAMES)
    order = list(dict.fromkeys(ok.sort_values(["is_network", "macs"])["config"]))
    index = ["act"] if ok["precision"].nunique() <= 1 else ["precision", "act"]
    table = ok.pivot_table(index=index, columns="config", values="ratio_to_baseline", aggfunc="median", sort=False)
    return table[[c for c in order if c in table.columns]]


def block_vs_network_markdown(df: pd.DataFrame) -> str:
    table = block_vs_network(df)
    if table.empty:
        return ""
    head = [*table.index.names, *table.columns]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for idx, row in table.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        cells = [f"{v:.2f}×" if pd.notna(v) else "—" for v in row]
        lines.append("| " + " | ".join([*map(str, keys), *cells]) + " |")
    return "\n".join(lines)
