"""The comparison table a person reads: one row per activation and size, in the terminal or Markdown.

The terminal table shows the default columns (``TABLE_COLUMNS``), the ones ``--columns`` names or every one
(``--wide``), fitted to the width (the terminal's, ``COLUMNS``, else 120) by leaving out columns of lower priority
rather than wrapping a cell; under it, the cost of each activation per size and, where the runtime's graph and the
timing rule disagree about fusion, why.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def display_frame(df: pd.DataFrame, drop_empty: bool = True) -> pd.DataFrame:
    """The results reduced to the columns a person compares, formatted as text. ``drop_empty``: leave out the
    columns no row has a figure in, and ``threads`` when every row has the same thread count."""
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
            "threads": "" if pd.isna(row.get("threads")) else str(int(row["threads"])),
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
    if not drop_empty:
        return disp
    for col in list(disp.columns):
        if col not in ("act", "median ms") and (disp[col].isin(["—", "", "n/a"])).all():
            disp = disp.drop(columns=col)
    if "threads" in disp.columns and disp["threads"].nunique() <= 1:  # one thread count: the title says it
        disp = disp.drop(columns="threads")
    return disp


# --- which columns, fitted to the width --------------------------------------------------------------------------


@dataclass(frozen=True)
class TableColumn:
    """A column of the results table: ``name`` as ``--columns`` takes it, the ``header`` display_frame gives it
    (``ratio`` is whichever ``× <baseline>`` header the rows have), whether the default table shows it, and
    ``keep``: when the width runs out, columns are kept in this order (0: always kept, never left out)."""

    name: str
    header: str
    default: bool = False
    keep: int = 9
    aliases: tuple[str, ...] = ()


RATIO = "ratio"
TABLE_COLUMNS = (
    TableColumn("block", "block", True, 3),  # always kept where the rows have several blocks (fit_columns)
    TableColumn("size", "size", True, 0),
    TableColumn("threads", "threads", True, 0),
    TableColumn("act", "act", True, 0, ("activation",)),
    TableColumn("median", "median ms", True, 1, ("median-ms",)),
    TableColumn("p90", "p90 ms", False, 7, ("p90-ms",)),
    TableColumn("ci", "CI95", False, 6, ("ci95",)),
    TableColumn(RATIO, RATIO, True, 0, ("ratio-to-baseline", "x-baseline")),
    TableColumn("fp32", "× fp32", True, 2, ("ratio-to-fp32", "x-fp32")),
    TableColumn("int8-err", "int8 err", True, 5, ("quant-rel-err",)),
    TableColumn("fused", "fused", True, 3),
    TableColumn("by-timing", "by timing", False, 6, ("fused-by-timing",)),
    TableColumn("ran-as", "act ran as", True, 4, ("act-ran-as", "act-ops")),
    TableColumn("params", "params", False, 8),
    TableColumn("macs", "MACs", False, 8),
    TableColumn("act-alone", "act alone ms", False, 8, ("act-alone-ms",)),
    TableColumn("peak", "% peak", False, 8, ("frac-peak-gflops",)),
    TableColumn("peak-mib", "peak MiB", False, 8, ("peak-rss-run-mb",)),
    TableColumn("est-mib", "est MiB", False, 8),
    TableColumn("notes", "notes", True, 2),
)
TABLE_WIDTH = 120  # the width tables fit where it is not known (files, pipes, CI logs) and COLUMNS is not set
_RIGHT = ("median ms", "p90 ms", "CI95", "params", "MACs", "peak MiB", "act alone ms", "% peak", "est MiB")
# the "act ran as" column's short op names, used only when its full form does not fit
OP_SHORT = {"Softplus": "SoftP", "HardSigmoid": "HSig", "HardSwish": "HSwish", "Sigmoid": "Sig",
            "QuickGelu": "QGelu", "LeakyRelu": "LRelu", "QLinearSigmoid": "QSig", "QLinearMul": "QMul",
            "QLinearLeakyRelu": "QLRelu", "QuantizeLinear": "Q", "DequantizeLinear": "DQ", "Softsign": "SoftS"}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def parse_columns(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"block,act,ratio"`` -> the columns' names (``--columns``; CSV-style names such as ``median_ms`` too), in
    the order given; an unknown name is an InputError listing the valid ones."""
    import difflib

    from edgeprof.errors import InputError

    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    valid = ", ".join(c.name for c in TABLE_COLUMNS)
    if not items:
        raise InputError(f"--columns: no columns given; valid: {valid}")
    names = {key: c.name for c in TABLE_COLUMNS for key in (c.name, _norm(c.header), *c.aliases)}
    out = []
    for item in items:
        if _norm(item) not in names:
            close = difflib.get_close_matches(_norm(item), [c.name for c in TABLE_COLUMNS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise InputError(f"--columns: unknown column {item!r}{hint} valid: {valid}")
        out.append(names[_norm(item)])
    return tuple(dict.fromkeys(out))


def _column(header: str) -> TableColumn | None:
    """The TableColumn of a display header (every ``× <baseline>`` header but ``× fp32`` is the ratio)."""
    if header.startswith("× ") and header != "× fp32":
        header = RATIO
    return next((c for c in TABLE_COLUMNS if c.header == header), None)


def _keep(header: str) -> int:
    column = _column(header)
    return column.keep if column is not None else 9


def pick_columns(disp: pd.DataFrame, columns: Sequence[str] | None = None, wide: bool = False) -> list[str]:
    """The display headers to show, in order: every one (``wide``), the named ones (``columns``, as
    ``parse_columns`` gives them) in the order given, or the default ones."""
    if wide:
        return list(disp.columns)
    header_of = {column.name: header for header in disp.columns if (column := _column(header)) is not None}
    if columns is not None:
        return [header_of[name] for name in columns if name in header_of]
    return [header for header in disp.columns if (column := _column(header)) is not None and column.default]


def _cells_width(frame: pd.DataFrame, header: str) -> int:
    from rich.cells import cell_len

    return max([cell_len(header), *(cell_len(str(v)) for v in frame[header])])


def _table_width(widths: Sequence[int]) -> int:
    """A rich table's width with its default box: a border and one space either side of every cell."""
    return sum(widths) + 3 * len(widths) + 1


def short_ops(text: str) -> str:
    """``Softplus+Tanh+Mul`` -> ``SoftP+Tanh+Mul`` (``OP_SHORT``); other op names stay as they are."""
    return re.sub(r"[A-Za-z]+", lambda m: OP_SHORT.get(m.group(0), m.group(0)), str(text))


def table_width(console) -> int:
    """The width a table is fitted to: the terminal's (where rich honours COLUMNS); elsewhere COLUMNS, else
    ``TABLE_WIDTH`` (files, pipes, CI logs); never wider than the console."""
    import os

    if console.is_terminal:
        return console.width
    columns = os.environ.get("COLUMNS", "").strip()
    wanted = int(columns) if columns.isdigit() and int(columns) > 0 else TABLE_WIDTH
    return min(wanted, console.width)


@dataclass
class Fitted:
    """The columns that fit: ``frame`` (shown, in order), ``left_out`` (headers that did not fit) and
    ``shortened`` (short op name -> full name, where ``act ran as`` uses short names)."""

    frame: pd.DataFrame
    left_out: list[str] = field(default_factory=list)
    shortened: dict[str, str] = field(default_factory=dict)


def fit_columns(disp: pd.DataFrame, headers: Sequence[str], width: int) -> Fitted:
    """The columns of ``headers`` that fit ``width`` together: the always-kept ones (``keep`` 0), then each other
    one, in order of ``keep`` (ties: as given), that still fits; ``act ran as`` with short op names when only
    those fit. ``block`` is always kept where the rows have several. A cell is never wrapped: what does not fit is
    left out (and named in ``left_out``)."""
    frame = disp[list(headers)].copy()
    varies = "block" in frame.columns and frame["block"].nunique() > 1

    def keep(header: str) -> int:
        return 0 if header == "block" and varies else _keep(header)

    order = sorted(range(len(headers)), key=lambda i: (keep(headers[i]), i))
    chosen: set[str] = set()
    used = 1
    shortened: dict[str, str] = {}
    for i in order:
        header = headers[i]
        width_of = _cells_width(frame, header)
        if header == "act ran as" and used + width_of + 3 > width:
            short = frame[header].map(short_ops)
            short_width = _cells_width(short.to_frame(header), header)
            if used + short_width + 3 <= width:
                shortened = {OP_SHORT[op]: op for cell in frame[header] for op in re.findall(r"[A-Za-z]+", str(cell))
                             if op in OP_SHORT}
                frame[header], width_of = short, short_width
        if keep(header) == 0 or used + width_of + 3 <= width:
            chosen.add(header)
            used += width_of + 3
    shown = [header for header in headers if header in chosen]
    return Fitted(frame[shown], [header for header in headers if header not in chosen], shortened)


def render_rich(df: pd.DataFrame, console, title: str | None = None, columns: Sequence[str] | None = None,
                wide: bool = False, width: int | None = None, explain: bool = True) -> None:
    """The results table on a rich ``console``: the default columns, the named ``columns`` (``parse_columns``) or
    every one (``wide``, lines as long as they need), fitted to ``width`` (default ``table_width(console)``) by
    leaving out the columns of lower priority rather than wrapping a cell. Under it: the cost per size
    (``recommendations``) and, with ``explain``, what was left out, the short op names used and why fused and
    by timing disagree where they do (``fusion_footnote``)."""
    from rich.table import Table
    from rich.text import Text

    disp = display_frame(df, drop_empty=columns is None)
    headers = pick_columns(disp, columns, wide)
    width = width or table_width(console)
    fitted = Fitted(disp[headers]) if wide else fit_columns(disp, headers, width)
    shown = fitted.frame
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in shown.columns:
        table.add_column(col, justify="right" if col in _RIGHT else "left", overflow="ellipsis")
    group_by = [c for c in ("block", "size", "threads") if c in disp.columns]
    previous = None
    for i, (_, row) in enumerate(shown.iterrows()):
        key = tuple(disp.iloc[i][c] for c in group_by)
        cells = [Text(str(v)) for v in row.tolist()]
        if key == previous:  # block, size and thread count once per group
            for col in ("block", "size", "threads"):
                if col in shown.columns:
                    cells[list(shown.columns).index(col)] = Text("")
        elif previous is not None:
            table.add_section()
        previous = key
        table.add_row(*cells)
    if wide:  # every column: as wide as the cells need, whatever the console's width
        width = max(width, _table_width([_cells_width(shown, c) for c in shown.columns]))
        saved = console.width
        console.width = max(saved, width)
        try:
            console.print(table, width=width)
        finally:
            console.width = saved
    else:
        console.print(table, width=width)
    lines = []
    if explain and fitted.left_out:
        lines.append(f"left out at {width} columns: {', '.join(fitted.left_out)} (--wide shows every column, "
                     "--columns picks them)")
    if explain and fitted.shortened:
        lines.append("short op names: " + ", ".join(f"{short} = {full}" for short, full in fitted.shortened.items()))
    lines += recommendations(df)
    if explain:
        lines += fusion_footnote(df)
    for line in lines:
        console.print(Text(line), width=min(width, console.width))


def to_markdown(df: pd.DataFrame, columns: Sequence[str] | None = None, wide: bool = False) -> str:
    """The results as a Markdown table with the terminal's columns (never narrowed: Markdown has no width), then
    the cost per size as a list and why fused and by timing disagree where they do."""
    disp = display_frame(df, drop_empty=columns is None)
    disp = disp[pick_columns(disp, columns, wide)]
    head = "| " + " | ".join(disp.columns) + " |"
    sep = "| " + " | ".join("---" for _ in disp.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in disp.itertuples(index=False)]
    lines = [head, sep, *body]
    for block in (recommendations(df), fusion_footnote(df)):
        if block:
            lines += ["", block[0], "", *(f"- {line.strip()}" for line in block[1:])]
    return "\n".join(lines)


# --- under the table: the cost per size, and fused against by timing ----------------------------------------------


def _text(value) -> str:
    """A cell as text: empty for None and missing values."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _missing(*values) -> bool:
    return any(v is None or pd.isna(v) for v in values)


def _cost(r: float, lo, hi, baseline: str) -> str:
    """A ratio to the baseline with its 95% CI in words: ``+11–16%``, ``3.3–3.4×``, ``2.0–4.1% faster``, or
    ``≈ relu (−3.0 to +5.0%)`` where the CI includes 1 (no difference resolved)."""
    def pct(x: float) -> str:
        value = abs(x - 1) * 100
        return f"{value:.0f}" if value >= 9.5 else f"{value:.1f}"

    def span(a: str, b: str, unit: str) -> str:
        return f"{a}{unit}" if a == b else f"{a}–{b}{unit}"

    if _missing(lo, hi):
        return (f"{r:.1f}×" if r >= 1.5 else f"{'+' if r >= 1 else '−'}{pct(r)}%") + " (no CI)"
    if lo <= 1 <= hi:
        return f"≈ {baseline} (−{pct(lo)} to +{pct(hi)}%)"
    if lo >= 1.5:
        return span(f"{lo:.1f}", f"{hi:.1f}", "×")
    if lo > 1:
        return "+" + span(pct(lo), pct(hi), "%")
    return span(pct(hi), pct(lo), "%") + " faster"


def _several(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and df[column].nunique(dropna=True) > 1


def recommendations(df: pd.DataFrame) -> list[str]:
    """What each activation costs against the baseline, one line per size (and thread count, runtime and precision
    where those vary), cheapest first, from the paired ratio's 95% CI: ``w32 80px: silu +6.0%, hardswish
    +11–16%, mish 3.3–3.4×``; ``≈ relu (...)`` where the CI includes 1. A heading line first; empty when no row
    has a ratio."""
    if df.empty or "ratio_to_baseline" not in df.columns:
        return []
    disp = display_frame(df, drop_empty=False)
    groups: dict[str, list[tuple[float, str]]] = {}
    baselines: set[str] = set()
    for (_, row), (_, shown) in zip(df.iterrows(), disp.iterrows(), strict=True):
        row = row.to_dict()
        act, base = _text(row.get("act")), _text(row.get("baseline"))
        if not act or not base or act == base:
            continue
        precision = _text(row.get("precision"))
        label = " ".join(part for part in (
            _text(row.get("block")) if _several(df, "block") or not shown["size"] else "",
            shown["size"],
            f"{shown['threads']} thread(s)" if _several(df, "threads") and shown["threads"] else "",
            _text(row.get("runtime")).rsplit(":", 1)[-1] if _several(df, "runtime") else "",
            precision if precision not in ("", "fp32") else "",
        ) if part) or "all rows"
        status = _text(row.get("status")) or "ok"
        r = row.get("ratio_to_baseline")
        if status != "ok":
            groups.setdefault(label, []).append((float("inf"), f"{act} {status}"))
        elif not _missing(r):
            groups.setdefault(label, []).append(
                (float(r), f"{act} {_cost(float(r), row.get('ratio_ci95_low'), row.get('ratio_ci95_high'), base)}"))
            baselines.add(base)
    if not baselines:
        return []
    heading = (f"cost against {', '.join(sorted(baselines))}, cheapest first (from the paired ratio's 95% CI; "
               "≈: the CI includes 1, no difference resolved):")
    return [heading] + [f"  {label}: {', '.join(part for _, part in sorted(parts, key=lambda p: p[0]))}"
                        for label, parts in groups.items()]


FUSION_WHY = (
    "fused reads the runtime's executed graph: what ran. by timing is nn-Meter's rule on medians measured apart, "
    "T(conv) + T(act) − T(conv+act) > ½·min(T(conv), T(act)): an activation fused into the conv still costs some "
    "time there, so the block can save less than half its time alone, a small saving within the block's noise; "
    "and an activation that ran as its own node can pass the rule when it runs faster inside the block than "
    "alone. For what ran, trust fused.")


def _span_ms(values: list[float]) -> str:
    lo, hi = _fmt_ms(min(values)), _fmt_ms(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def fusion_footnote(df: pd.DataFrame) -> list[str]:
    """Where the runtime's graph (``fused``) and nn-Meter's timing rule (``fused_by_timing``) disagree: a heading,
    one line per activation and direction with the sizes and what the block saved against what the rule asks
    (from the row's conv_alone_ms, act_alone_ms and median_ms), and one line on why. Empty where they agree."""
    if df.empty or not {"fused", "fused_by_timing"} <= set(df.columns):
        return []
    disp = display_frame(df, drop_empty=False)
    found: dict[tuple[str, bool], dict] = {}
    judged: dict[str, int] = {}
    for (_, row), (_, shown) in zip(df.iterrows(), disp.iterrows(), strict=True):
        row = row.to_dict()
        fused, timing = row.get("fused"), row.get("fused_by_timing")
        if _missing(fused, timing) or (_text(row.get("status")) or "ok") != "ok":
            continue
        act = shown["act"]
        judged[act] = judged.get(act, 0) + 1
        if bool(fused) == bool(timing):
            continue
        entry = found.setdefault((act, bool(fused)), {"sizes": [], "saved": [], "asked": [], "ops": []})
        entry["sizes"].append(shown["size"] + (f" {shown['threads']} thread(s)"
                                               if _several(df, "threads") and shown["threads"] else ""))
        conv, alone, both = row.get("conv_alone_ms"), row.get("act_alone_ms"), row.get("median_ms")
        if not _missing(conv, alone, both):
            entry["saved"].append(float(conv) + float(alone) - float(both))
            entry["asked"].append(0.5 * min(float(conv), float(alone)))
        if _text(row.get("act_ops")):
            entry["ops"].append(_fmt_ops(_text(row.get("act_ops"))))
    if not found:
        return []
    lines = ["fused and by timing disagree:"]
    for (act, fused), entry in found.items():
        sizes = list(dict.fromkeys(s for s in entry["sizes"] if s))
        where = "on every row" if len(entry["sizes"]) == judged[act] and judged[act] > 1 else \
            ("at " + ", ".join(sizes) if sizes else "")
        figures = (f" (the block saved {_span_ms(entry['saved'])} ms; the rule asks more than "
                   f"{_span_ms(entry['asked'])} ms)") if entry["saved"] else ""
        if fused:
            lines.append(f"  {act}: fused into the conv in the runtime's graph, not by timing, {where}{figures}")
        else:
            ran = f", ran as {', '.join(dict.fromkeys(entry['ops']))}" if entry["ops"] else ""
            lines.append(f"  {act}: fused by timing, but its own node in the runtime's graph{ran}, {where}{figures}")
    lines.append(f"  {FUSION_WHY}")
    return lines


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


PER_OP_KEEP = {"act share": 1, "block": 2, "kernel us": 3}
"""The per-op summary's columns that give way when the width runs out (the others are always shown)."""
PER_OP_LIST = "time by op type"  # its cell keeps its first (largest) op types when the whole list does not fit
_LIST_MIN = 40  # the cells of that list get at least this many columns before other columns are kept


def _trim_list(text: str, budget: int) -> str:
    """``a 60%, b 20%, c 10%`` cut to its first items that fit ``budget`` cells, ``…`` for the rest."""
    from rich.cells import cell_len

    if cell_len(text) <= budget:
        return text
    items = text.split(", ")
    out = items[0]
    for item in items[1:]:
        if cell_len(f"{out}, {item}, …") > budget:
            break
        out = f"{out}, {item}"
    return f"{out}, …"


def render_frame(disp: pd.DataFrame, console, title: str | None = None, keep: dict[str, int] | None = None,
                 trim: str | None = None, width: int | None = None) -> None:
    """A frame as it is, as a rich table. With ``keep`` (header -> priority; absent: always shown) or ``trim`` (a
    column of comma-separated items), it is fitted to ``width`` (default ``table_width(console)``) as the results
    table is: the columns that give way are left out, and ``trim``'s cells keep their first items, rather than a
    cell being wrapped."""
    from rich.table import Table
    from rich.text import Text

    fit = keep is not None or trim is not None
    if fit:
        width = width or table_width(console)
        keep = keep or {}
        frame = disp.astype(str)
        headers = list(frame.columns)

        def width_of(header: str) -> int:
            full = _cells_width(frame, header)
            return min(full, max(_LIST_MIN, len(header))) if header == trim else full

        chosen, used = set(), 1
        for i in sorted(range(len(headers)), key=lambda i: (keep.get(headers[i], 0), i)):
            if keep.get(headers[i], 0) == 0 or used + width_of(headers[i]) + 3 <= width:
                chosen.add(headers[i])
                used += width_of(headers[i]) + 3
        frame = frame[[h for h in headers if h in chosen]].copy()
        if trim in frame.columns:
            others = sum(_cells_width(frame, c) + 3 for c in frame.columns if c != trim) + 1
            frame[trim] = frame[trim].map(lambda v: _trim_list(v, max(len(trim), width - others - 3)))
        disp = frame
    table = Table(title=title, header_style="bold")
    for col in disp.columns:
        table.add_column(col, overflow="ellipsis" if fit else "fold")
    for row in disp.itertuples(index=False):
        table.add_row(*(Text(str(v)) for v in row))
    if fit:
        console.print(table, width=width)
    else:
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
    keys = [c for c in ("block", "size", "threads", "act") if c in disp.columns]
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
