"""PNG figures for a report: latency and ratio against size, where the time goes, memory, and the activations.

matplotlib (the ``plots`` extra) is imported lazily, with the Agg backend, so the rest of edgeprof runs
without it. Every figure is drawn for one host group at a time (``edgeprof.report.scaling.label_hosts``):
rows of different hosts, runtimes or runtime versions never share an axes. The functions expect rows that went
through ``edgeprof.report.scaling.prepare``; each returns the PNG's path, or None with nothing to draw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from edgeprof.errors import InputError
from edgeprof.report.scaling import SETTINGS_KEYS, series_label, varying_settings
from edgeprof.spec.blocks import uses_depth

INSTALL_HINT = "pip install 'edgeprof[plots]'"
DPI = 110
_MARKERS = "osD^vP*Xh<>"


@dataclass(frozen=True)
class Figure:
    """A PNG written for the report, with what it shows."""

    path: Path
    title: str
    caption: str
    host_group: str | None = None


def require_matplotlib() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend; InputError naming the extra to install when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "x"


def act_styles(acts: Iterable[str]) -> dict[str, dict]:
    """One colour and marker per activation, the same in every figure of a report: an activation's own colour
    from the activation table (edgeprof.spec.acts) where it has one, else the palette's free colours in order."""
    from edgeprof.spec.acts import act_colour

    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    acts = list(dict.fromkeys(acts))
    own = {a: act_colour(a) for a in acts}
    taken = {palette.index(c) for c in own.values() if c in palette}
    free = iter([i for i in range(len(palette)) if i not in taken] + list(range(len(palette))) * len(acts))
    styles = {}
    for act in acts:
        colour = own[act]
        index = palette.index(colour) if colour in palette else next(free)
        styles[act] = {"color": colour or palette[index % len(palette)], "marker": _MARKERS[index % len(_MARKERS)]}
    return styles


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("")


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    status = _text(df["status"])
    keep = status.isin(["ok", ""]) & pd.to_numeric(df["median_ms"], errors="coerce").gt(0) & (_text(df["act"]) != "")
    return df[keep & df["size"].gt(0)]


def _series_groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per series of one host group, labels naming only the settings that differ."""
    keys = ["block", *[k for k in (*SETTINGS_KEYS, "fixed_sizes") if k in df.columns]]
    varying = varying_settings(df)
    out = []
    for key, grp in df.groupby(keys, sort=True, dropna=False):
        out.append((series_label(dict(zip(keys, key, strict=True)), varying), grp))
    return out


PAGE_INCHES = 11.2
"""Figures are at most this wide: at ``DPI`` that is the report page's width, so text is shown at its size."""


def _grid(plt, n: int, width: float = 5.6, height: float = 4.2, max_cols: int = 2):
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(min(max(width * cols, 7.0), PAGE_INCHES), height * rows),
                             squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def eng(value: float) -> str:
    """A count written short: 14.7M, 1.64G, 950k."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.3g}{unit}"
    return f"{value:.3g}"


def _size_ticks(ax, sizes, base: float = 10) -> None:
    """Ticks on the x axis at the measured sizes (up to 8 of them), labelled as short counts."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    sizes = sorted({float(s) for s in sizes if s > 0})
    if sizes:  # no two ticks closer than a ninth of the axis (log), so labels never overlap
        gap = math.log10(sizes[-1] / sizes[0]) / 9
        kept = [sizes[0]]
        for size in sizes[1:]:
            if math.log10(size / kept[-1]) >= gap:
                kept.append(size)
        if len(kept) > 1 and math.log10(sizes[-1] / kept[-1]) < gap:
            kept[-1] = sizes[-1]  # the largest size is always labelled
        sizes = kept
    ax.set_xscale("log", base=base)
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: eng(v)))
    if len(sizes) > 5:
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")


def _plain_log_y(ax, low: float, high: float, suffix: str = "", axis: str = "y") -> None:
    """A log axis labelled with plain numbers (1, 2, 5, 10 ...; finer when the range is short)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    span = high / low if low > 0 else math.inf
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if span < 8 else (1.0, 2.0, 5.0) if span < 3000 else (1.0,)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    target.set_minor_formatter(NullFormatter())

RATIO_LINEAR = 0.05
"""The ratio axis is linear within about ±5% of 1 and logarithmic beyond (an asinh scale of ratio - 1), so
1.0-1.3x stays readable beside a 5-14x Mish instead of being squashed into the bottom tenth of a log axis."""
RATIO_TICKS = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100)


def _ratio_forward(r):
    return np.arcsinh((np.asarray(r, dtype=float) - 1.0) / RATIO_LINEAR)


def _ratio_inverse(y):
    return 1.0 + RATIO_LINEAR * np.sinh(np.asarray(y, dtype=float))


def _ratio_axis(ax, low: float, high: float, axis: str = "y") -> None:
    """A ratio axis from ``low`` to ``high`` (the asinh scale of ``RATIO_LINEAR``), ticks labelled 1.1×, 2×
    ..., thinned so that no two labels are closer than a tenth of the axis."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low, high = min(low, 1.0), max(high, 1.0)
    lo_y, hi_y = float(_ratio_forward(low)), float(_ratio_forward(high))
    pad = 0.06 * max(hi_y - lo_y, 1.0)
    lo_y, hi_y = lo_y - pad, hi_y + pad
    getattr(ax, f"set_{axis}scale")("function", functions=(_ratio_forward, _ratio_inverse))
    getattr(ax, f"set_{axis}lim")(float(_ratio_inverse(lo_y)), float(_ratio_inverse(hi_y)))
    ticks: list[float] = []
    for tick in sorted(RATIO_TICKS, key=lambda t: (t != 1.0, t)):  # 1.0 first: it is always shown
        y = float(_ratio_forward(tick))
        if lo_y <= y <= hi_y and all(abs(y - float(_ratio_forward(t))) >= (hi_y - lo_y) / 10 for t in ticks):
            ticks.append(tick)
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(FixedLocator(sorted(ticks)))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))


def _suptitle(fig, title: str) -> None:
    """The figure's title, each line wrapped to the figure's width so nothing is cut off."""
    import textwrap

    chars = max(30, int(fig.get_figwidth() * 72 / 6.6))  # ~6.6 pt per character at 11 pt
    lines = [wrapped for line in title.splitlines() for wrapped in textwrap.wrap(line, chars) or [""]]
    fig.suptitle("\n".join(lines), fontsize=11)


def _size_label(kind: str) -> str:
    return "activation tensor elements" if kind == "elements" else "MACs per forward pass"


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _per_size(rows: pd.DataFrame, cols: Sequence[str], how: dict[str, str]) -> pd.DataFrame:
    """One point per size: several runs at one size (same host group) become their median / envelope."""
    return rows.groupby("size", sort=True)[list(cols)].agg(how).reset_index()


def plot_latency(df: pd.DataFrame, path: Path, title: str, styles: dict[str, dict]) -> Path | None:
    """Median latency against size per activation on log-log axes, the 95% CI of the median as a band."""
    plt = require_matplotlib()
    df = _ok_rows(df)
    groups = _series_groups(df)
    if not groups:
        return None
    fig, axes = _grid(plt, len(groups))
    for ax, (label, grp) in zip(axes, groups, strict=True):
        for act, rows in grp.groupby(_text(grp["act"]), sort=False):
            pts = _per_size(rows, ["median_ms", "ci95_low_ms", "ci95_high_ms"],
                            {"median_ms": "median", "ci95_low_ms": "min", "ci95_high_ms": "max"})
            style = styles[act]
            ax.plot(pts["size"], pts["median_ms"], label=act, color=style["color"], marker=style["marker"],
                    markersize=5, linewidth=1.5)
            band = pts.dropna(subset=["ci95_low_ms", "ci95_high_ms"])
            if len(band):
                ax.fill_between(band["size"], band["ci95_low_ms"], band["ci95_high_ms"], color=style["color"],
                                alpha=0.25, linewidth=0)
        _size_ticks(ax, grp["size"])
        _plain_log_y(ax, grp["ci95_low_ms"].combine(grp["median_ms"], min).min(),
                     grp["ci95_high_ms"].combine(grp["median_ms"], max).max())
        ax.set_xlabel(_size_label(grp["size_kind"].iloc[0]) + " (log scale)")
        ax.set_ylabel("median latency, ms (log scale)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8, title="activation", title_fontsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)


def plot_ratio(df: pd.DataFrame, path: Path, title: str, styles: dict[str, dict]) -> Path | None:
    """Ratio to the baseline against size per activation: measured points with their 95% CI, the fitted
    trend (ratio = a + b·log2 size, the verdict's fit) dashed, the verdict in the legend."""
    from edgeprof.report.scaling import ratio_trend

    plt = require_matplotlib()
    df = _ok_rows(df)
    df = df[df["ratio"].notna()]
    groups = _series_groups(df)
    if not groups:
        return None
    fig, axes = _grid(plt, len(groups))
    for ax, (label, grp) in zip(axes, groups, strict=True):
        baselines = sorted(set(grp["ratio_of"]))
        ax.axhline(1.0, color="0.4", linewidth=1, linestyle=":")
        for act, rows in grp.groupby(_text(grp["act"]), sort=False):
            style = styles[act]
            if set(rows["ratio_of"]) == {act}:
                continue  # the baseline: the dotted line at 1
            pts = _per_size(rows, ["ratio", "ratio_low", "ratio_high"],
                            {"ratio": "median", "ratio_low": "min", "ratio_high": "max"})
            low = (pts["ratio"] - pts["ratio_low"]).clip(lower=0).fillna(0)
            high = (pts["ratio_high"] - pts["ratio"]).clip(lower=0).fillna(0)
            # the same rows and rule as edgeprof.report.scaling.verdicts, so the legend matches the report
            trend = ratio_trend(rows["size"], rows["ratio"], rows["ratio_low"], rows["ratio_high"])
            verdict = trend.verdict
            ax.errorbar(pts["size"], pts["ratio"], yerr=[low, high], fmt=style["marker"], color=style["color"],
                        markersize=5, capsize=3, linewidth=1, label=f"{act}: {verdict}" if verdict else act)
            if trend.fit is not None:
                xs = np.geomspace(rows["size"].min(), rows["size"].max(), 50)
                ax.plot(xs, trend.fit.predict(np.log2(xs)), color=style["color"], linestyle="--", linewidth=1.2)
        _size_ticks(ax, grp["size"], base=2)
        low = pd.concat([grp["ratio"], grp["ratio_low"]]).min(skipna=True)
        high = pd.concat([grp["ratio"], grp["ratio_high"]]).max(skipna=True)
        _ratio_axis(ax, low, high)
        ax.set_xlabel(_size_label(grp["size_kind"].iloc[0]) + " (log scale)")
        ax.set_ylabel(f"latency ÷ {'/'.join(baselines)} latency\n(linear near 1×, logarithmic beyond)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8, title=f"vs {'/'.join(baselines)}: verdict", title_fontsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)


def plot_summary(df: pd.DataFrame, path: Path, title: str, styles: dict[str, dict],
                 acts_order: Sequence[str] = ()) -> Path | None:
    """What each activation costs against the baseline, one panel per series: a bar over the range of its
    ratios across the measured sizes, a dot per size, the range written beside it. The answer at a glance."""
    plt = require_matplotlib()
    df = _ok_rows(df)
    df = df[df["ratio"].notna()]
    groups = []
    for label, grp in _series_groups(df):
        grp = grp[_text(grp["act"]) != _text(grp["ratio_of"])]  # the baseline is the line at 1×
        if not grp.empty:
            groups.append((label, grp))
    if not groups:
        return None
    known = list(dict.fromkeys([*acts_order, *sorted(set(_text(df["act"])))]))
    most = max(_text(grp["act"]).nunique() for _, grp in groups)
    cols = min(len(groups), 2)
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_INCHES if cols > 1 else 7.5, (0.42 * most + 1.3) * rows),
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[len(groups):]:
        ax.set_visible(False)
    low = min(1.0, float(df["ratio"].min()))
    high = max(1.0, float(df["ratio"].max()))
    for ax, (label, grp) in zip(flat, groups, strict=False):
        acts = [a for a in known if a in set(_text(grp["act"]))]
        baselines = "/".join(sorted(set(grp["ratio_of"])))
        for y, act in enumerate(reversed(acts)):
            per_size = grp[_text(grp["act"]) == act].groupby("size")["ratio"].median()
            style = styles.get(act, {"color": "0.3", "marker": "o"})
            lo, hi = float(per_size.min()), float(per_size.max())
            ax.plot([lo, hi], [y, y], color=style["color"], linewidth=7, alpha=0.35, solid_capstyle="round")
            ax.scatter(per_size.to_numpy(), np.full(len(per_size), y), color=style["color"],
                       marker=style["marker"], s=26, zorder=3)
            text = f"{lo:.2f}×" if math.isclose(lo, hi, rel_tol=0.005) else f"{lo:.2f}–{hi:.2f}×"
            ax.annotate(f"{text}  ({len(per_size)} size{'s' if len(per_size) > 1 else ''})", (hi, y),
                        xytext=(8, 0), textcoords="offset points", va="center", fontsize=8.5)
        ax.axvline(1.0, color="0.35", linewidth=1, linestyle=":")
        _ratio_axis(ax, low, high * 1.6, axis="x")  # room on the right for the written range
        ax.set_yticks(range(len(acts)), list(reversed(acts)), fontsize=9)
        ax.set_ylim(-0.7, len(acts) - 0.3)
        ax.set_xlabel(f"latency ÷ {baselines} latency (linear near 1×, logarithmic beyond)", fontsize=9)
        ax.set_title(label, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)


def _size_name(row: Mapping) -> str:
    name = f"w{int(row['width'])} {int(row['imgsz'])}px" if pd.notna(row.get("width")) else "?"
    if pd.notna(row.get("depth")) and uses_depth(str(row.get("block"))):
        name += f" n{int(row['depth'])}"
    if pd.notna(row.get("batch")) and int(row["batch"]) != 1:
        name += f" b{int(row['batch'])}"
    return name


OP_COLOURS = {
    "Conv": "#1f77b4", "FusedConv": "#1f77b4", "QLinearConv": "#1f77b4", "ConvInteger": "#1f77b4",
    "ReorderInput": "#aec7e8", "ReorderOutput": "#c5d7ea", "Add": "#7f7f7f", "Concat": "#bcbd22",
    "Split": "#dbdb8d", "MaxPool": "#8c564b", "Resize": "#c49c94", "Relu": "#2ca02c", "Clip": "#98df8a",
    "LeakyRelu": "#ff7f0e", "Sigmoid": "#e377c2", "QuickGelu": "#9467bd", "HardSigmoid": "#17becf",
    "HardSwish": "#9edae5", "Mul": "#ffbb78", "Softplus": "#d62728", "Tanh": "#ff9896", "Mish": "#d62728",
    "Elu": "#f7b6d2", "Selu": "#c5b0d5", "Gelu": "#8c6d31", "Erf": "#bd9e39", "Div": "#e7cb94",
    "QuantizeLinear": "#636363", "DequantizeLinear": "#969696", "QLinearSigmoid": "#e377c2",
    "QLinearMul": "#ffbb78", "QLinearAdd": "#7f7f7f",
}
"""One colour per op type in every report, so two reports' op plots can be compared at a glance."""


def _op_colors(op_types: Sequence[str]) -> dict[str, tuple | str]:
    """The colour of each op type: ``OP_COLOURS``, else one picked from tab20 by a stable hash of its name
    (the same in every report and every Python process)."""
    import zlib

    import matplotlib

    spare = matplotlib.colormaps["tab20b"].colors
    return {op: OP_COLOURS.get(op) or spare[zlib.crc32(op.encode()) % len(spare)] for op in op_types}


def plot_ops(ops: pd.DataFrame, path: Path, title: str, acts_order: Sequence[str]) -> Path | None:
    """Stacked bars of kernel time per op type, one bar per activation's block; one row of panels per block
    (one panel per size).

    Heights are the onnxruntime profiler's mean kernel time per node, summed by op type (= each op type's
    share of the block's kernel time x that kernel time); the activation's own nodes are hatched and each
    bar's total is written above it. Several runs of one config (same host group) are averaged per op type.
    """
    plt = require_matplotlib()
    if ops.empty:
        return None
    ops = ops.copy()
    ops["act"] = _text(ops["act"])
    ops = ops[ops["act"] != ""]
    if ops.empty:
        return None
    if "precision" in ops.columns:  # an int8 variant is a bar of its own
        precision = _text(ops["precision"])
        ops["act"] = ops["act"].where(precision.isin(["", "fp32"]), ops["act"] + " (" + precision + ")")
    ops["is_act"] = ops["is_act"].astype("string").str.lower().isin(["true", "1"])
    ops["mean_us"] = pd.to_numeric(ops["mean_us"], errors="coerce").fillna(0.0)
    varying = [k for k in ("threads", "runtime", "runtime_settings", "opt_level")
               if k in ops.columns and ops[k].astype("string").nunique(dropna=False) > 1]
    row_keys = ["block", *varying]
    panel_keys = ["width", "depth", "imgsz", "batch"]
    ops["_order"] = pd.to_numeric(ops["width"], errors="coerce") * pd.to_numeric(ops["imgsz"], errors="coerce") ** 2
    rows_of_panels = []
    for row_key, grp in ops.groupby(row_keys, sort=True, dropna=False):
        panels = list(grp.sort_values("_order").groupby(panel_keys, sort=False, dropna=False))
        row = dict(zip(row_keys, row_key if isinstance(row_key, tuple) else (row_key,), strict=True))
        rows_of_panels.append((row, panels))
    max_cols = 3
    layout = []  # (figure row, column, row key, panel key, rows)
    fig_row = 0
    for row, panels in rows_of_panels:
        for i, (panel_key, grp) in enumerate(panels):
            layout.append((fig_row + i // max_cols, i % max_cols, row, panel_key, grp))
        fig_row += math.ceil(len(panels) / max_cols)
    cols = max(c for _, c, *_ in layout) + 1
    fig, axes = plt.subplots(fig_row, cols, figsize=(min(3.4 * cols + 1.8, PAGE_INCHES), 3.5 * fig_row),
                             squeeze=False,
                             layout="constrained")
    used = {(r, c) for r, c, *_ in layout}
    for (r, c), ax in np.ndenumerate(axes):
        if (r, c) not in used:
            ax.set_visible(False)
    op_types = list(ops.groupby("op_type")["mean_us"].sum().sort_values(ascending=False).index)
    colors = _op_colors(op_types)
    largest = ops.groupby(["run_id", "model"], dropna=False)["mean_us"].sum().max()
    unit, div = ("ms", 1000.0) if largest > 5000 else ("µs", 1.0)
    for r, c, row, panel_key, grp in layout:
        ax = axes[r][c]
        per_run = grp.groupby(["act", "run_id", "op_type", "is_act"], sort=False)["mean_us"].sum().reset_index()
        stack = per_run.groupby(["act", "op_type", "is_act"], sort=False)["mean_us"].mean().reset_index()
        acts = [a for a in acts_order if a in set(stack["act"])]
        acts += sorted(set(stack["act"]) - set(acts))
        bottoms = np.zeros(len(acts))
        for op in op_types:
            for is_act in (False, True):
                part = stack[(stack["op_type"] == op) & (stack["is_act"] == is_act)].set_index("act")["mean_us"]
                heights = np.array([float(part.get(a, 0.0)) for a in acts]) / div
                if not heights.any():
                    continue
                ax.bar(range(len(acts)), heights, bottom=bottoms, color=colors[op], width=0.7,
                       edgecolor="0.15" if is_act else "white", linewidth=0.4, hatch="////" if is_act else None)
                bottoms += heights
        for i, total in enumerate(bottoms):
            ax.annotate(_short_us(total * div), (i, total), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7)
        ax.set_ylim(0, bottoms.max() * 1.15 if bottoms.max() > 0 else 1)
        rotate = len(acts) > 4 or max((len(a) for a in acts), default=0) > 9
        ax.set_xticks(range(len(acts)), acts, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                      fontsize=8)
        panel = dict(zip(panel_keys, panel_key, strict=True)) | row
        name = ("activation alone" if row["block"] == "act" else str(row["block"])) + " " + _size_name(panel)
        name += "".join(f" · {k}={row[k]}" for k in varying)
        ax.set_title(name, fontsize=9)
        if c == 0:
            ax.set_ylabel(f"kernel time, {unit}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colors[op], label=op) for op in op_types]
    handles.append(Patch(facecolor="white", edgecolor="0.15", hatch="////", label="activation's nodes"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="op type", title_fontsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)


def _short_us(us: float) -> str:
    return f"{us / 1000:.3g} ms" if us >= 1000 else f"{us:.3g} µs"


def plot_memory(df: pd.DataFrame, path: Path, title: str, styles: dict[str, dict]) -> Path | None:
    """Measured peak RSS during inference against the static estimate (activation peak + weights), per
    activation, with the line measured = estimated. RSS includes onnxruntime's own code and buffers."""
    plt = require_matplotlib()
    df = _ok_rows(df)
    measured = pd.to_numeric(df["peak_rss_run_mb"], errors="coerce")
    estimated = (pd.to_numeric(df["act_peak_mb"], errors="coerce")
                 + pd.to_numeric(df["weights_mb"], errors="coerce"))
    df = df.assign(measured_mb=measured, estimated_mb=estimated)
    df = df[df["measured_mb"].gt(0) & df["estimated_mb"].gt(0)]
    groups = _series_groups(df)
    if not groups:
        return None
    fig, axes = _grid(plt, len(groups), width=5.2, height=4.4)
    for ax, (label, grp) in zip(axes, groups, strict=True):
        for act, rows in grp.groupby(_text(grp["act"]), sort=False):
            style = styles[act]
            ax.scatter(rows["estimated_mb"], rows["measured_mb"], color=style["color"], marker=style["marker"],
                       s=30, label=act, alpha=0.85)
        lo = min(grp["estimated_mb"].min(), grp["measured_mb"].min()) * 0.8
        hi = max(grp["estimated_mb"].max(), grp["measured_mb"].max()) * 1.6
        ax.plot([lo, hi], [lo, hi], color="0.5", linestyle=":", linewidth=1, label="measured = estimated")
        offset = (grp["measured_mb"] - grp["estimated_mb"]).median()
        _plain_log_y(ax, lo, hi)
        _plain_log_y(ax, lo, hi, axis="x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("estimated: activation peak + weights, MiB (log)")
        ax.set_ylabel("measured peak RSS during inference, MiB (log)")
        ax.set_title(label, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8, title=f"measured − estimated:\nmedian {offset:+.1f} MiB",
                  title_fontsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)


def plot_activations(acts: Sequence[str], path: Path, styles: dict[str, dict]) -> tuple[Path | None, list[str]]:
    """f(x) and f'(x) of each activation on x in [-5, 5], by torch autograd through the registry.

    Returns the PNG (None when nothing could be drawn) and notes on what was skipped: every activation
    when torch is not importable, or one whose spec no longer builds (a user module not on the path).
    """
    plt = require_matplotlib()
    try:
        import torch

        from edgeprof.blocks.activations import create_act
    except ImportError as exc:
        return None, [f"activation curves skipped: torch is not importable ({exc.name or exc})"]
    from edgeprof.errors import EdgeprofError

    notes = []
    curves = []
    x = torch.linspace(-5.0, 5.0, 1001, requires_grad=True)
    for act in acts:
        try:
            module = create_act(act).eval()
            y = module(x)
            (grad,) = torch.autograd.grad(y.sum(), x)
        except (EdgeprofError, RuntimeError, TypeError, ValueError) as exc:
            notes.append(f"activation curve of {act} skipped: {str(exc).splitlines()[0] if str(exc) else exc}")
            continue
        curves.append((act, y.detach().numpy(), grad.detach().numpy()))
    if not curves:
        return None, notes
    xs = x.detach().numpy()
    step = float(xs[1] - xs[0])
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(PAGE_INCHES, 4.4), layout="constrained")
    dashes = ["-", "--", "-.", (0, (5, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 1.2))]
    for index, (act, y, grad) in enumerate(curves):
        # relu shares x > 0 with leakyrelu and most of its curve with others: each act gets its own dash
        # pattern, and relu is drawn on top, thicker, so it is never hidden
        style = styles.get(act, {"color": None})
        line = {"color": style["color"], "label": act, "linestyle": dashes[index % len(dashes)],
                "linewidth": 2.4 if act == "relu" else 1.6, "zorder": 5 if act == "relu" else 3}
        ax_f.plot(*_break_jumps(xs, y, step), **line)
        ax_d.plot(*_break_jumps(xs, grad, step), **line)
    for ax, what in ((ax_f, "f(x)"), (ax_d, "f′(x)  (torch autograd)")):
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.axvline(0, color="0.6", linewidth=0.8)
        ax.set_xlabel("x (pre-activation value, unitless)")
        ax.set_ylabel(what)
        ax.set_title(what, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    _suptitle(fig, "The activations of this report: value and derivative")
    return _save(fig, plt, path), notes


def _break_jumps(x: np.ndarray, y: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The curve with a gap at each discontinuity (relu' at 0, hardswish' at ±3), not a vertical line."""
    jumps = np.flatnonzero(np.abs(np.diff(y)) > max(0.25, 25 * step))
    return np.insert(x, jumps + 1, np.nan), np.insert(y.astype(float), jumps + 1, np.nan)


def plot_runtimes(df: pd.DataFrame, path: Path, title: str, acts_order: Sequence[str] = (),
                  max_panels: int = 6) -> Path | None:
    """The ratio to the baseline per runtime, side by side: one panel per block and size (at most ``max_panels``),
    a group of bars per activation with one bar per runtime (its 95% CI as an error bar; hatched when the
    runtime's own graph shows the activation fused into the conv). Rows of one host, several runtimes."""
    plt = require_matplotlib()
    ok = df[_text(df["status"]).isin(["ok", ""]) & pd.to_numeric(df["ratio_to_baseline"], errors="coerce").gt(0)
            & (_text(df["act"]) != "")]
    runtimes = list(dict.fromkeys(_text(ok["runtime"])))
    if len(runtimes) < 2:
        return None
    keys = ["block", "width", "depth", "imgsz"]
    panels = list(ok.groupby(keys, sort=True, dropna=False))[:max_panels]
    fig, axes = _grid(plt, len(panels), width=5.6, height=3.8)
    colors = plt.get_cmap("tab10")
    for ax, (key, grp) in zip(axes, panels, strict=False):
        block, width, depth, imgsz = key
        acts = [a for a in dict.fromkeys([*acts_order, *_text(grp["act"])]) if a in set(_text(grp["act"]))]
        step = 0.8 / len(runtimes)
        for r, rt in enumerate(runtimes):
            sub = grp[_text(grp["runtime"]) == rt].drop_duplicates("act", keep="last").set_index("act")
            xs, ys, errs, hatches = [], [], [[], []], []
            for i, act in enumerate(acts):
                if act not in sub.index:
                    continue
                row = sub.loc[act]
                ratio = float(row["ratio_to_baseline"])
                lo = float(row["ratio_ci95_low"]) if pd.notna(row["ratio_ci95_low"]) else ratio
                hi = float(row["ratio_ci95_high"]) if pd.notna(row["ratio_ci95_high"]) else ratio
                xs.append(i - 0.4 + step * (r + 0.5))
                ys.append(ratio)
                errs[0].append(max(0.0, ratio - lo))
                errs[1].append(max(0.0, hi - ratio))
                fused = row.get("fused")
                hatches.append("//" if fused is not None and pd.notna(fused) and bool(fused) else "")
            bars = ax.bar(xs, ys, width=step * 0.9, color=colors(r % 10), label=rt.rsplit(":", 1)[-1],
                          yerr=errs, capsize=2, error_kw={"linewidth": 0.8})
            for bar, hatch in zip(bars, hatches, strict=True):
                bar.set_hatch(hatch)
                bar.set_edgecolor("white" if hatch else bar.get_facecolor())
        ax.axhline(1.0, color="0.35", linewidth=1, linestyle=":")
        ax.set_xticks(range(len(acts)), acts, fontsize=9)
        ax.set_ylabel("latency ÷ baseline's, same runtime", fontsize=9)
        ax.set_title(f"{block} w{width} {imgsz}px" + (f" n{depth}" if uses_depth(str(block)) else ""), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, title="runtime (hatched: fused)", title_fontsize=8)
    _suptitle(fig, title)
    return _save(fig, plt, path)
