"""The report folder: merged results, scaling fits and verdicts, plots, and a Markdown or single-file HTML summary.

``write_report(csv_paths, out_dir)`` reads result CSVs (with the ``-ops.csv`` and ``.json`` beside each
when present) and writes into ``out_dir``:

- ``results.csv``: every input row, with ``source`` (its file), ``host_group``, ``size``/``size_kind`` and the
  ratio used (``ratio``, ``ratio_of``, ``ratio_source``) added to the schema's columns;
- ``ops.csv``: the per-op rows of every input (when there are any), with ``source`` and ``host_group``;
- ``scaling_fits.csv`` and ``verdicts.csv`` (``edgeprof.report.scaling``);
- the PNG figures (``edgeprof.report.plots``), one set per host group;
- ``report.md``, or ``report.html`` with the same content and the figures embedded (``fmt="html"``).

Host groups (host fingerprint x runtime x runtime version) are reported apart: no table, fit or figure mixes two.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.report import scaling
from edgeprof.report.compare import block_vs_network
from edgeprof.report.table import _fmt_ops, display_frame, fusion_footnote, recommendations
from edgeprof.results.recorder import runs_of
from edgeprof.results.rows import per_op_path, read_csv, read_results
from edgeprof.results.schema import COLUMNS
from edgeprof.spec import MODEL_NAMES

FORMATS = ("md", "html")
RUN_VERSIONS = ("onnxruntime", "torch", "onnx", "numpy", "python", "edgeprof")
TIDY_EXTRA = ("source", "host_group", "size", "size_kind", "fixed_sizes", "ratio", "ratio_low", "ratio_high",
              "ratio_of", "ratio_source")


@dataclass
class Inputs:
    """What was read: result rows, per-op rows, metadata per run_id, and one record per input file."""

    results: pd.DataFrame
    ops: pd.DataFrame
    metadata: dict[str, dict]
    files: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_inputs(csv_paths: list[str | Path]) -> Inputs:
    """Read each result CSV, and its ``-ops.csv`` and ``.json`` when present. InputError on a bad CSV."""
    if not csv_paths:
        raise InputError("no result CSVs given")
    paths = [Path(p) for p in csv_paths]
    # `results/*.csv` also matches the per-op files; each is read beside its results CSV, so skip it here
    per_op = [p for p in paths if p.name.endswith("-ops.csv") and p.is_file() and not _is_results_csv(p)]
    paths = [p for p in paths if p not in per_op]
    if not paths:
        raise InputError(f"{per_op[0]} is a per-op file; give its results CSV "
                         f"({per_op[0].name.removesuffix('-ops.csv')}.csv), which brings it along")
    frames, ops_frames, files, notes = [], [], [], []
    metadata: dict[str, dict] = {}
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if path.is_dir():
            raise InputError(f"{path} is a folder; give result CSV files (e.g. {path}/*.csv)")
        df = read_results(path)
        df["source"] = str(path)
        frames.append(df)
        record = {"file": str(path), "rows": len(df), "metadata": None, "ops": None}
        meta_path = path.with_suffix(".json")
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, OSError) as exc:
                notes.append(f"metadata {meta_path} not read: {str(exc).splitlines()[0]}")
            else:
                runs = runs_of(meta)  # every run that wrote to this CSV (--resume, --append)
                record["metadata"] = runs[0] if runs else meta
                for run in runs:
                    if run.get("run_id"):
                        metadata[str(run["run_id"])] = run
        ops_file = per_op_path(path)
        if ops_file.is_file():
            try:
                ops = read_csv(ops_file)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                notes.append(f"per-op file {ops_file} not read: {str(exc).splitlines()[0]}")
            else:
                needed = {"run_id", "act", "block", "op_type", "mean_us", "is_act"}
                if needed <= set(ops.columns):
                    ops["source"] = str(path)
                    ops_frames.append(ops)
                    record["ops"] = str(ops_file)
                else:
                    notes.append(f"per-op file {ops_file} lacks columns {', '.join(sorted(needed - set(ops.columns)))}")
        files.append(record)
    results = pd.concat(frames, ignore_index=True)
    ops = pd.concat(ops_frames, ignore_index=True) if ops_frames else pd.DataFrame()
    return Inputs(results, ops, metadata, files, notes)


def _is_results_csv(path: Path) -> bool:
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError):
        return False
    return "median_ms" in header


# --- a small document model, rendered to Markdown or HTML -------------------------------------------------


@dataclass(frozen=True)
class Element:
    """One element of the report document (a heading, paragraph, table, figure or list), not a YOLO block."""

    kind: str  # h1, h2, h3, h4, p, table, img, ul, details (content: (summary, [elements]), folded away)
    content: object


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _to_md(doc: list[Element], out_dir: Path) -> str:
    lines: list[str] = []
    for element in doc:
        if element.kind in ("h1", "h2", "h3", "h4"):
            lines += ["#" * int(element.kind[1]) + " " + str(element.content), ""]
        elif element.kind == "p":
            lines += [str(element.content), ""]
        elif element.kind == "ul":
            lines += [f"- {item}" for item in element.content] + [""]
        elif element.kind == "table":
            frame: pd.DataFrame = element.content
            lines.append("| " + " | ".join(_md_cell(c) for c in frame.columns) + " |")
            lines.append("| " + " | ".join("---" for _ in frame.columns) + " |")
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            lines.append("")
        elif element.kind == "img":
            figure = element.content
            lines += [f"![{figure.title}]({figure.path.relative_to(out_dir).as_posix()})", "",
                      f"*{figure.caption}*", ""]
        elif element.kind == "details":  # GitHub renders Markdown inside <details> when blank lines surround it
            summary, inner = element.content
            lines += [f"<details><summary>{html.escape(str(summary))}</summary>", "", _to_md(inner, out_dir),
                      "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1240px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em;
max-width:100%}th,td{border:1px solid #ccc;padding:.2em .45em;text-align:left;vertical-align:top;
overflow-wrap:break-word}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1em 0 2em}figcaption{font-size:.9em;color:#555}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}details{margin:.4em 0 1em}
summary{cursor:pointer;color:#345}td.num{text-align:right;white-space:nowrap}"""


def _html_elements(doc: list[Element]) -> list[str]:
    esc = html.escape
    parts = []
    for element in doc:
        if element.kind in ("h1", "h2", "h3", "h4"):
            parts.append(f"<{element.kind}>{esc(str(element.content))}</{element.kind}>")
        elif element.kind == "p":
            parts.append(f"<p>{esc(str(element.content))}</p>")
        elif element.kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in element.content) + "</ul>")
        elif element.kind == "table":
            frame: pd.DataFrame = element.content
            head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
            body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                           for row in frame.itertuples(index=False))
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif element.kind == "img":
            figure = element.content
            data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{esc(figure.title)}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{esc(figure.caption)}</figcaption></figure>")
        elif element.kind == "details":
            summary, inner = element.content
            parts += [f"<details><summary>{esc(str(summary))}</summary>", *_html_elements(inner), "</details>"]
    return parts


def _to_html(doc: list[Element], title: str) -> str:
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             f"<title>{esc(title)}</title>", f"<style>{_CSS}</style>\n</head>\n<body>", *_html_elements(doc),
             "</body>\n</html>\n"]
    return "\n".join(parts)


# --- formatting -------------------------------------------------------------------------------------------


def _num(x, digits: int = 3) -> str:
    if x is None or pd.isna(x):
        return "—"
    return f"{x:.{digits}g}"


def _pct(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x * 100:+.1f}%"


def _ratio(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.2f}×"


def host_title(rows: pd.DataFrame) -> str:
    """``host <fingerprint> (<CPU>) · onnxruntime <version>`` for one host group's rows."""
    group = str(rows["host_group"].iloc[0])
    cpus = sorted({c for c in rows.get("cpu_model", pd.Series(dtype=str)).astype("string").fillna("") if c})
    fingerprint, _, rest = group.partition(" · ")
    return f"host {fingerprint}" + (f" ({', '.join(cpus)})" if cpus else "") + (f" · {rest}" if rest else "")


def _runs_table(inputs: Inputs, results: pd.DataFrame) -> pd.DataFrame:
    out = []
    for record in inputs.files:
        rows = results[results["source"] == record["file"]]
        run_ids = sorted({r for r in rows["run_id"] if r}) or ["—"]
        meta = record["metadata"] or {}
        host = meta.get("host") or {}
        versions = meta.get("versions") or {}
        settings = meta.get("settings") or {}
        load = (meta.get("load_average_start") or [None])[0], (meta.get("load_average_end") or [None])[0]
        out.append({
            "file": Path(record["file"]).name,
            "run": ", ".join(run_ids),
            "rows": record["rows"],
            "started (UTC)": meta.get("timestamp", "—"),
            "host group": ", ".join(sorted(set(rows["host_group"]))),
            "CPU": host.get("cpu_model") or ", ".join(sorted({c for c in rows["cpu_model"] if c})) or "—",
            "cores": f"{host.get('usable_cores', '—')}/{host.get('cores', '—')}" if host else "—",
            "OS": host.get("os", "—"),
            "versions": ", ".join(f"{k} {versions[k]}" for k in RUN_VERSIONS if versions.get(k)) or "—",
            "runtime": settings.get("runtime", "onnxruntime") if settings else "—",
            "threads": settings.get("threads", "—"),
            "load 1m start→end": f"{_num(load[0])}→{_num(load[1])}" if meta else "—",
            "command": meta.get("command", "—"),
        })
    return pd.DataFrame(out)


def _run_elements(inputs: Inputs, results: pd.DataFrame) -> list[Element]:
    """Each run file's metadata as a two-column table (field, value): narrow however long its command."""
    out: list[Element] = []
    for record in _runs_table(inputs, results).to_dict("records"):
        name = record.pop("file")
        out += [Element("h4", name), Element("table", pd.DataFrame({"field": list(record),
                                                                    "value": [str(v) for v in record.values()]}))]
    return out


TIMING_COLUMNS = ("block", "size", "threads", "act", "median ms", "p90 ms", "CI95", "fused", "by timing",
                  "act ran as", "notes")
"""The comparison table's first part (with the ratio column); the rest go into a folded second table."""


def _comparison_tables(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The comparison table in two parts that each fit the page: timing and fusion (with the ratio), then
    sizes, memory and roofline (with block, size and act again); an empty second part when it has nothing."""
    disp = display_frame(rows)
    ratio = [c for c in disp.columns if c.startswith("× ") and c != "× fp32"]
    first = [c for c in disp.columns if c in TIMING_COLUMNS or c in ratio]
    keys = [c for c in ("block", "size", "threads", "act") if c in disp.columns]
    rest = [c for c in disp.columns if c not in first]
    return disp[first], (disp[keys + rest] if rest else pd.DataFrame())


def _lines_under(lines: list[str]) -> list[Element]:
    """What the terminal prints under its table (the cost per size, the fused/by-timing footnote): a heading
    paragraph and a list; nothing when there is nothing to say."""
    return [Element("p", lines[0]), Element("ul", [line.strip() for line in lines[1:]])] if lines else []


def _ran_as(rows: pd.DataFrame) -> str:
    """What the activation ran as over these rows: fused, its ops, or both when sizes differ."""
    kinds = []
    for _, row in rows.iterrows():
        fused = row.get("fused")
        ops = row.get("act_ops")
        kinds.append("fused into the conv" if fused is True else (_fmt_ops(ops) if isinstance(ops, str) and ops
                                                                  else "—"))
    counts = pd.Series(kinds).value_counts()
    return "; ".join(counts.index) if len(counts) <= 2 else f"{counts.index[0]} (and {len(counts) - 1} other forms)"


def _cost_table(rows: pd.DataFrame, verds: pd.DataFrame, varying: set[str]) -> pd.DataFrame:
    """The answer in a few columns: per series and activation, its ratio to the baseline over the sizes
    measured, what it ran as and the size verdict."""
    ok = rows[rows["status"].isin(["ok", ""]) & rows["ratio"].notna() & (rows["act"] != "")]
    ok = ok[ok["act"] != ok["ratio_of"]]
    if ok.empty:
        return pd.DataFrame()
    keys = [k for k in scaling.SERIES_KEYS if k in ok.columns]
    verdict_of = {(scaling.series_label(v, varying), v["act"]): v["verdict"] for v in verds.to_dict("records")}
    acts = list(dict.fromkeys(ok["act"]))
    out = []
    for key, grp in ok.groupby(keys, sort=True, dropna=False):
        label = scaling.series_label(dict(zip(keys, key, strict=True)), varying)
        for act in acts:
            sub = grp[grp["act"] == act]
            if sub.empty:
                continue
            per_size = sub.groupby("size")["ratio"].median().sort_index()
            lo = per_size.min()
            out.append({
                "series": label,
                "act": act,
                f"× {'/'.join(sorted(set(sub['ratio_of'])))}": _ratio(per_size.median()),
                "smallest → largest size": _ratio(lo) if len(per_size) == 1 else
                f"{_ratio(per_size.iloc[0])} → {_ratio(per_size.iloc[-1])}",
                "sizes": len(per_size),
                "ran as": _ran_as(sub),
                "verdict": verdict_of.get((label, act), "—"),
            })
    table = pd.DataFrame(out)
    ratio_cols = [c for c in table.columns if c.startswith("× ")]
    if len(ratio_cols) > 1:  # rows against different baselines: one column saying which
        table["× baseline"] = table[ratio_cols].bfill(axis=1).iloc[:, 0]
        table = table.drop(columns=ratio_cols)
    return table


def _fits_table(fits: pd.DataFrame, varying: set[str]) -> pd.DataFrame:
    out = []
    for row in fits.to_dict("records"):
        out.append({
            "series": scaling.series_label(row, varying),
            "act": row["act"],
            "latency against": "tensor elements" if row["size_kind"] == "elements" else "MACs",
            "sizes": row["sizes"],
            "range": f"{_num(row['size_min'])}–{_num(row['size_max'])} {row['unit']}",
            "slope": f"{_num(row['slope_ms'], 4)} ms per {row['unit']}",
            "intercept": f"{_num(row['intercept_ms'])} ms",
            "R²": "—" if pd.isna(row["r2"]) else f"{row['r2']:.4f}",
        })
    return pd.DataFrame(out)


def _verdict_table(verds: pd.DataFrame, varying: set[str]) -> pd.DataFrame:
    out = []
    for row in verds.to_dict("records"):
        ci = (f"{row['slope_per_doubling']:+.3f} [{row['slope_ci95_low']:+.3f}, {row['slope_ci95_high']:+.3f}]"
              if pd.notna(row["slope_ci95_low"]) else "—")
        out.append({
            "series": scaling.series_label(row, varying),
            "act": row["act"],
            "× baseline": f"× {row['baseline']}",
            "smallest → largest": f"{_ratio(row['ratio_at_min'])} → {_ratio(row['ratio_at_max'])}",
            "range": f"{_num(row['size_min'])}–{_num(row['size_max'])} {row['unit']}",
            "slope per doubling [95% CI]": ci,
            "fitted change": _pct(row["change"]),
            "verdict": row["verdict"],
            "why": row["reason"],
        })
    return pd.DataFrame(out)


VERDICT_RULE = (
    "Verdict rule: for each activation, its ratio to the baseline is fitted by least squares against log2 of the "
    "size (MACs; tensor elements for the activation alone), ratio = a + b·log2(size), over every measured size. "
    f"The ratio grows (shrinks) when the fitted ratio rises (falls) by more than {scaling.GROW_THRESHOLD:.0%} from "
    "the smallest to the largest size and either the two-sided 95% t-interval of b lies wholly above (below) 0 or "
    "the ratio's own 95% CIs (paired rounds) at the smallest and the largest size do not overlap; otherwise it is "
    "flat. Fewer than 3 distinct sizes: too few sizes. The 'why' column says which evidence decided."
)


def _figure_captions() -> dict[str, tuple[str, str]]:
    return {
        "summary": ("What each activation costs", "Each activation's latency divided by the baseline's: the "
                    "bar spans the ratios over the sizes measured, a dot per size, the range written beside it. "
                    "The axis is linear near 1× and logarithmic beyond, so a few percent and a several-fold cost "
                    "both read."),
        "latency": ("Latency against size", "Median latency against size per activation, log-log; the band is "
                    "the 95% CI of the median (often thinner than the line)."),
        "ratio": ("Ratio to the baseline against size", "Each activation's latency divided by the baseline's "
                  "at each size, with the ratio's 95% CI; the dashed line is the fit the verdict uses."),
        "ops": ("Where the time goes", "onnxruntime profiler kernel time per op type, one bar per activation's "
                "block, one panel per block and size; hatched segments are the activation's own nodes."),
        "memory": ("Memory: measured against estimated", "Peak resident memory of the worker during inference "
                   "(over its RSS before the session was created) against the static estimate (peak live activations + "
                   "weights); the measured figure includes onnxruntime's own allocations."),
    }


def write_report(csv_paths: list[str | Path], out_dir: str | Path, fmt: str = "md", baseline: str = "relu") -> Path:
    """Write the report folder for these result CSVs; returns the path of ``report.md`` or ``report.html``.

    ``baseline`` is the activation ratios are taken against for rows that carry no ratio of their own.
    Raises InputError for a missing or malformed CSV, an unknown format or a missing matplotlib.
    """
    from edgeprof.report import plots

    if fmt not in FORMATS:
        raise InputError(f"unknown report format {fmt!r}; valid: {', '.join(FORMATS)}")
    plots.require_matplotlib()
    inputs = load_inputs(list(csv_paths))
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create report folder {out_dir}: {exc.strerror or exc}") from None
    if not out_dir.is_dir():
        raise InputError(f"cannot write the report into {out_dir}: not a folder")

    results = scaling.prepare(inputs.results, inputs.metadata, baseline)
    fits = scaling.scaling_fits(results)
    verds = scaling.verdicts(results)
    notes = list(inputs.notes)
    ops = inputs.ops
    if not ops.empty:
        hosts = results.drop_duplicates("run_id").set_index("run_id")["host_group"]
        ops = ops.assign(run_id=ops["run_id"].astype("string").fillna(""))
        ops["host_group"] = ops["run_id"].map(hosts).fillna("unknown · run " + ops["run_id"])
        # the per-op rows do not say their precision; their model does (an int8 variant is another file)
        precision = results.drop_duplicates(["run_id", "model"]).set_index(["run_id", "model"])["precision"]
        keys = pd.MultiIndex.from_arrays([ops["run_id"], ops["model"].astype("string").fillna("")])
        ops["precision"] = pd.Series(precision.reindex(keys).to_numpy(), index=ops.index).fillna("")

    try:
        _write_csv(results[[*COLUMNS, *TIDY_EXTRA]], out_dir / "results.csv")
        if not ops.empty:
            _write_csv(ops, out_dir / "ops.csv")
        _write_csv(fits, out_dir / "scaling_fits.csv")
        _write_csv(verds, out_dir / "verdicts.csv")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None

    acts_order = list(dict.fromkeys(a for a in results["act"] if a))
    styles = plots.act_styles(acts_order)
    captions = _figure_captions()
    groups = list(results.groupby("host_group", sort=True))
    titles = {group: host_title(rows) for group, rows in groups}
    doc: list[Element] = [Element("h1", "edgeprof report")]
    doc.append(Element("p", f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} from "
                            f"{len(inputs.files)} result file(s), {len(results)} row(s), {len(groups)} host "
                            "group(s). A host group is one host fingerprint (CPU model, ISA flags, cores, quota) "
                            "with one runtime and version; rows of different host groups are never combined. "
                            "First the answer (what each activation costs against the baseline), then the "
                            "verdicts, then the details; the runs' metadata is folded away at the end."))

    # 0. several runtimes on one host: their ratios side by side (each ratio is within its own runtime)
    for fingerprint, rows in results.groupby("host_fingerprint", sort=True):
        if rows["runtime"].nunique() < 2:
            continue
        chart = plots.plot_runtimes(rows, out_dir / f"runtimes-{plots.slug(str(fingerprint))}.png",
                                    f"Ratio to the baseline per runtime\n{fingerprint}", acts_order)
        if chart is not None:
            doc.append(Element("h2", f"Across runtimes — {fingerprint}"))
            doc.append(Element("img", plots.Figure(
                chart, f"Ratio to the baseline per runtime — {fingerprint}", "Each bar is one runtime's paired "
                "ratio of the activation's block to the baseline's, measured within that runtime (95% CI as the "
                "error bar); hatched where the runtime's own graph shows the activation fused into the conv. "
                "Absolute times of different runtimes are not compared here.", str(fingerprint))))

    # 1. the answer: per host and runtime, a chart of the cost, then a compact table
    for group, rows in groups:
        doc.append(Element("h2", f"What each activation costs — {titles[group]}"))
        chart = plots.plot_summary(rows, out_dir / f"summary-{plots.slug(group)}.png",
                                   f"What each activation costs against the baseline\n{titles[group]}", styles,
                                   acts_order)
        if chart is not None:
            doc.append(Element("img", plots.Figure(chart, f"Cost against the baseline — {titles[group]}",
                                                   captions["summary"][1], group)))
        table = _cost_table(rows, verds[verds["host_group"] == group], scaling.varying_settings(rows))
        if table.empty:
            doc.append(Element("p", "No ratios to a baseline in these rows (edgeprof profile rows of files that "
                                    "are not one activation's variants have none)."))
        else:
            doc.append(Element("table", table))
            doc += _lines_under(recommendations(rows))

    # 2. the verdicts
    doc.append(Element("h2", "Does the cost grow with the block's size? Verdicts"))
    doc.append(Element("details", ("How a verdict is decided", [Element("p", VERDICT_RULE)])))
    if verds.empty:
        doc.append(Element("p", "No verdicts: no activation has ratios to a baseline at any size."))
    for group, rows in groups:
        sub = verds[verds["host_group"] == group]
        if not sub.empty:
            doc += [Element("h3", titles[group]), Element("table", _verdict_table(sub, scaling.varying_settings(rows)))]

    # 3. the details
    doc.append(Element("h2", "Details"))
    for index, (group, rows) in enumerate(groups, start=1):
        title = titles[group]
        varying = scaling.varying_settings(rows)
        doc.append(Element("h3", f"Host group {index}: {title}"))
        ok = rows[rows["status"].isin(["ok", ""])]
        doc.append(Element("p", f"{len(rows)} row(s) ({len(rows) - len(ok)} not ok) from "
                                f"{', '.join(sorted({Path(s).name for s in rows['source']}))}."))
        timing, other = _comparison_tables(rows)
        doc += [Element("h4", "Comparison table"), Element("table", timing), *_lines_under(fusion_footnote(rows))]
        if not other.empty:
            doc.append(Element("details", ("Size, memory and roofline of each row", [Element("table", other)])))
        if rows["block"].isin(MODEL_NAMES).any() and (~rows["block"].isin(MODEL_NAMES)).any():
            versus = block_vs_network(rows)
            if not versus.empty:
                cells = versus.map(lambda v: "—" if pd.isna(v) else f"{v:.2f}×").reset_index()
                doc += [Element("h4", "Did the block study predict the whole network?"),
                        Element("p", "Ratio to the baseline of each activation in every block size measured, "
                                     "then in the whole networks (the last columns)."),
                        Element("table", cells)]
        sub_fits = fits[fits["host_group"] == group]
        if not sub_fits.empty:
            doc.append(Element("details", ("Latency against size: least-squares fits", [
                Element("p", "median_ms = intercept + slope × size, per activation and series."),
                Element("table", _fits_table(sub_fits, varying))])))
        figures = _host_figures(plots, rows, ops[ops["host_group"] == group] if not ops.empty else ops,
                                out_dir, group, title, styles, acts_order, captions, notes)
        if figures:
            doc.append(Element("h4", "Figures"))
            doc += [Element("img", f) for f in figures]

    path, act_notes = plots.plot_activations(acts_order, out_dir / "activations.png", styles)
    notes += act_notes
    if path is not None:
        doc += [Element("h3", "The activations"),
                Element("img", plots.Figure(path, "The activations: f(x) and f'(x)",
                                            "Each activation of the report (registry defaults or the parameters "
                                            "in its spec) and its derivative by torch autograd, on x in [-5, 5]."
                                            ))]
    if notes:
        doc += [Element("h3", "Notes"), Element("ul", notes)]
    doc.append(Element("h2", "Runs"))
    doc.append(Element("details", (f"Metadata of the {len(inputs.files)} run file(s): machine, versions, "
                                   "command, load", _run_elements(inputs, results))))
    written = sorted(p.name for p in out_dir.iterdir() if p.suffix in (".csv", ".png"))
    doc.append(Element("details", (f"Files written beside this report ({len(written)})", [Element("ul", written)])))

    target = out_dir / f"report.{fmt}"
    text = _to_md(doc, out_dir) if fmt == "md" else _to_html(doc, "edgeprof report")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RuntimeFailure(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _host_figures(plots, rows: pd.DataFrame, ops: pd.DataFrame, out_dir: Path, group: str, title: str, styles: dict,
                  acts_order: list[str], captions: dict, notes: list[str]) -> list:
    group_slug = plots.slug(group)
    figures = []
    drawn = {
        "latency": lambda p: plots.plot_latency(rows, p, f"Latency against size\n{title}", styles),
        "ratio": lambda p: plots.plot_ratio(rows, p, f"Ratio to the baseline\n{title}", styles),
        "ops": lambda p: plots.plot_ops(ops, p, f"Where the time goes (kernel time)\n{title}", acts_order),
        "memory": lambda p: plots.plot_memory(rows, p, f"Memory\n{title}", styles),
    }
    why_not = {
        "latency": "no ok rows with an activation and a size (rows of edgeprof profile have neither)",
        "ratio": "no ok rows with a ratio to a baseline",
        "ops": "no per-op data (<csv>-ops.csv) for these runs' activations",
        "memory": "no ok rows with both peak_rss_run_mb (needs --isolate) and the static estimate",
    }
    for kind, draw in drawn.items():
        path = draw(out_dir / f"{kind}-{group_slug}.png")
        if path is None:
            notes.append(f"{captions[kind][0]} not drawn for {title}: {why_not[kind]}")
            continue
        figures.append(plots.Figure(path, f"{captions[kind][0]} — {title}", captions[kind][1], group))
    return figures
