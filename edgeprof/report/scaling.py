"""Scaling studies over result rows: latency fits against size, ratios to the baseline and a verdict per activation.

Everything here works on the tidy result frame (``edgeprof.results.rows.read_results``) with pandas,
numpy and scipy. Rows are first split by host: ``(host_fingerprint, runtime, runtime_version)`` is the host group,
and no fit, ratio or verdict ever combines rows of two host groups. A row that does not say its host or its
runtime version gets it from its run's metadata (keyed by ``run_id``) where there is some; where nothing says, it is
"unknown" and its run is kept apart from every other run, because nothing shows they ran on the same host.

Within a host group, a *series* is one block measured with the same session settings (threads,
optimisation level, exporter, ...); the sizes of a series are what grows. The size of a row is its MACs,
except for the activation alone (``block == "act"``, which has no MACs), whose size is the number of
elements of its activation tensor, ``batch * width * imgsz**2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
HOST_KEYS = ("host_fingerprint", "runtime", "runtime_version")
SETTINGS_KEYS = ("scaling", "precision", "kernel", "stride", "threads", "runtime_settings", "exporter", "opset",
                 "cache")
"""Settings a series holds fixed; a key missing from the rows (an older CSV) is left out."""
SIZE_KEYS = ("width", "depth", "imgsz", "batch")
GROWS = {"width": ("width",), "depth": ("depth",), "imgsz": ("imgsz",), "fixed-tensor": ("width", "imgsz"),
         "preset": ("width", "depth"), "single": ()}
"""The size columns each scaling mode grows. The others are held fixed and part of the series key."""
SERIES_KEYS = ("host_group", "block", *SETTINGS_KEYS, "fixed_sizes")
"""Rows that share these are one series: fitted together, their ratios judged together. ``fixed_sizes``
(``add_size``) names the size columns the series held fixed, so a width series at 160 px and one at 64 px,
or at depth 1 and depth 2, are never merged."""

GROW_THRESHOLD = 0.05
"""A ratio must change by more than this fraction over the measured range to be called growing or shrinking."""

@dataclass(frozen=True)
class LinearFit:
    """Ordinary least squares ``y = intercept + slope * x``, with the slope's 95% CI (t interval)."""

    slope: float
    intercept: float
    r2: float
    n: int
    slope_ci95_low: float
    slope_ci95_high: float

    def predict(self, x) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(x, dtype=float)


def linear_fit(x, y) -> LinearFit:
    """Least-squares line through (x, y). NaN figures when there are under 2 points or x never changes.

    R² is 1 - SS_res / SS_tot (1 when y is constant and fitted exactly). The slope's CI needs 3 points.
    """
    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    nan = math.nan
    if n < 2 or np.ptp(x) == 0:
        return LinearFit(nan, nan, nan, n, nan, nan)
    fit = stats.linregress(x, y)
    slope, intercept = float(fit.slope), float(fit.intercept)
    ss_res = float(((y - (intercept + slope * x)) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    scale = max(float(np.abs(y).max()), 1e-300)
    if ss_tot > (1e-12 * scale) ** 2:
        r2 = float(fit.rvalue) ** 2
    else:  # constant y: linregress's r is 0 there; a line through it fits exactly
        r2 = 1.0 if ss_res <= (1e-9 * scale) ** 2 else nan
    if n >= 3:
        stderr = float(fit.stderr) if math.isfinite(fit.stderr) else 0.0  # nan for a constant y, fitted exactly
        half = float(stats.t.ppf(0.975, n - 2)) * stderr
        low, high = slope - half, slope + half
    else:
        low = high = nan
    return LinearFit(slope, intercept, r2, n, low, high)


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("").str.strip()


def label_hosts(df: pd.DataFrame, metadata: Mapping[str, dict] | None = None) -> pd.DataFrame:
    """A copy of the rows with ``host_fingerprint``, ``runtime`` and ``runtime_version`` filled and a
    ``host_group`` label.

    ``metadata`` maps run_id to that run's metadata JSON (``host_fingerprint``, ``versions.onnxruntime``,
    ``settings.runtime``); it fills what the rows lack (CSVs written before those columns existed; a CSV with
    ``ort_version`` is onnxruntime's). What stays missing becomes "unknown", and a row with an unknown host or
    version gets a host group of its own run (its run_id, else
    its ``source`` file), so two runs of unknown origin are never merged.
    """
    out = df.copy()
    if "ort_version" in out.columns and "runtime_version" not in out.columns:  # a CSV from before the runtime seam
        out = out.rename(columns={"ort_version": "runtime_version"})
        out["runtime"] = "onnxruntime"
    for col in (*HOST_KEYS, "run_id", "cpu_model"):
        if col not in out.columns:
            out[col] = ""
        out[col] = _text(out[col])
    metadata = metadata or {}
    for run_id, meta in metadata.items():
        rows = out["run_id"] == run_id
        if not rows.any():
            continue
        fingerprint = str(meta.get("host_fingerprint") or "")
        runtime = str((meta.get("settings") or {}).get("runtime") or "onnxruntime")
        version = str((meta.get("versions") or {}).get("onnxruntime") or "") if runtime == "onnxruntime" else ""
        cpu = str((meta.get("host") or {}).get("cpu_model") or "")
        for col, value in (("host_fingerprint", fingerprint), ("runtime", runtime), ("runtime_version", version),
                           ("cpu_model", cpu)):
            if value:
                out.loc[rows & (out[col] == ""), col] = value
    for col in HOST_KEYS:
        out.loc[out[col] == "", col] = UNKNOWN
    source = _text(out["source"]) if "source" in out.columns else pd.Series("", index=out.index)
    run_marker = out["run_id"].where(out["run_id"] != "", source).where(lambda s: s != "", "no run id")
    label = out["host_fingerprint"] + " · " + out["runtime"] + " " + out["runtime_version"]
    unknown = (out["host_fingerprint"] == UNKNOWN) | (out["runtime_version"] == UNKNOWN)
    out["host_group"] = label.where(~unknown, label + " · run " + run_marker)
    return out


def add_size(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``size`` (MACs; for the activation alone, its tensor's elements) and ``size_kind``."""
    out = df.copy()
    alone = _text(out["block"]) == "act"
    elements = (pd.to_numeric(out["batch"], errors="coerce").astype("float64")
                * pd.to_numeric(out["width"], errors="coerce").astype("float64")
                * pd.to_numeric(out["imgsz"], errors="coerce").astype("float64") ** 2)
    macs = pd.to_numeric(out["macs"], errors="coerce").astype("float64")
    out["size"] = elements.where(alone, macs)
    out["size_kind"] = np.where(alone, "elements", "macs")
    out["fixed_sizes"] = fixed_sizes(out)
    return out


def fixed_sizes(df: pd.DataFrame) -> pd.Series:
    """Per row, the size columns its series holds fixed and their values, e.g. ``imgsz=160 depth=1 batch=1``.

    What grows comes from the row's ``scaling`` (``GROWS``). For ``grid``, an empty or an unknown mode, it is
    what varies within the row's run (same run_id, block and settings); everything else is held fixed.
    """
    sizes = [k for k in SIZE_KEYS if k in df.columns]
    if df.empty or not sizes:
        return pd.Series("", index=df.index, dtype="string")
    values = pd.DataFrame({k: df[k].astype("string").fillna("?") for k in sizes}, index=df.index)
    mode = _text(df["scaling"]) if "scaling" in df.columns else pd.Series("", index=df.index)
    grows = pd.Series([GROWS.get(m) for m in mode], index=df.index, dtype="object")
    unknown = grows.isna()
    if unknown.any():
        keys = [k for k in ("run_id", "source", "block", *SETTINGS_KEYS) if k in df.columns]
        sub = values[unknown]
        if keys:
            group = pd.DataFrame({k: df.loc[unknown, k].astype("string").fillna("<NA>") for k in keys})
            varies = sub.groupby([group[k] for k in keys], dropna=False).transform("nunique").gt(1)
        else:
            varies = pd.DataFrame({k: sub[k].nunique() > 1 for k in sizes}, index=sub.index)
        grows[unknown] = [tuple(k for k in sizes if row[k]) for row in varies.to_dict("records")]
    return pd.Series([" ".join(f"{k}={values.at[i, k]}" for k in sizes if k not in g)
                      for i, g in grows.items()], index=df.index, dtype="string")


SIZE_UNITS = {"macs": ("GMAC", 1e9), "elements": ("M elements", 1e6)}
"""How a size is shown: unit name and its divisor."""


def _ok(df: pd.DataFrame) -> pd.Series:
    status = _text(df["status"]) if "status" in df.columns else pd.Series("ok", index=df.index)
    median = pd.to_numeric(df["median_ms"], errors="coerce")
    return (status.isin(["ok", ""])) & median.gt(0) & (_text(df["act"]) != "")


def with_ratios(df: pd.DataFrame, baseline: str = "relu") -> pd.DataFrame:
    """A copy with ``ratio``, ``ratio_low``, ``ratio_high``, ``ratio_of`` (the baseline) and ``ratio_source``.

    ``ratio_to_baseline`` (paired rounds, with its CI) is used where the row has it. Otherwise the ratio is
    median_ms over the baseline's median_ms in the same run, series and size, with no CI; the baseline is
    the row's ``baseline`` column, else ``baseline``. Rows with neither get NaN.
    """
    out = df.copy()
    paired = pd.to_numeric(out.get("ratio_to_baseline"), errors="coerce").astype("float64")
    out["ratio"] = paired
    out["ratio_low"] = pd.to_numeric(out.get("ratio_ci95_low"), errors="coerce").astype("float64")
    out["ratio_high"] = pd.to_numeric(out.get("ratio_ci95_high"), errors="coerce").astype("float64")
    named = _text(out["baseline"]) if "baseline" in out.columns else pd.Series("", index=out.index)
    out["ratio_of"] = named.where(named != "", baseline)
    out["ratio_source"] = np.where(paired.notna(), "paired rounds", "")
    missing = paired.isna() & _ok(out)
    if missing.any():
        keys = ["run_id", *[k for k in SERIES_KEYS if k in out.columns], *SIZE_KEYS]
        match = pd.DataFrame({k: out[k].astype("string").fillna("<NA>") for k in keys}, index=out.index)
        ok = _ok(out)
        base = (match[ok].assign(ratio_of=_text(out.loc[ok, "act"]), base_ms=out.loc[ok, "median_ms"])
                .groupby([*keys, "ratio_of"], sort=False)["base_ms"].median().reset_index())
        found = match.assign(ratio_of=out["ratio_of"]).merge(base, on=[*keys, "ratio_of"], how="left")
        base_ms = pd.Series(found["base_ms"].to_numpy(float), index=out.index)
        fill = missing & base_ms.gt(0)
        out.loc[fill, "ratio"] = out.loc[fill, "median_ms"].astype(float) / base_ms[fill]
        out.loc[fill, "ratio_source"] = "medians"
    return out


def prepare(df: pd.DataFrame, metadata: Mapping[str, dict] | None = None, baseline: str = "relu") -> pd.DataFrame:
    """Host groups, sizes and ratios on every row: the frame the fits, verdicts and plots read."""
    return with_ratios(add_size(label_hosts(df, metadata)), baseline)


def _present(df: pd.DataFrame, keys) -> list[str]:
    return [k for k in keys if k in df.columns]


def _series(df: pd.DataFrame):
    keys = _present(df, SERIES_KEYS)
    for key, grp in df[_ok(df)].groupby(keys, sort=True, dropna=False):
        yield dict(zip(keys, key, strict=True)), grp


def scaling_fits(df: pd.DataFrame) -> pd.DataFrame:
    """Latency against size per host group, series and activation: least squares median_ms = a + b * size.

    ``slope_ms`` is ms per ``unit`` of size (GMAC, or million elements for the activation alone),
    ``intercept_ms`` the fitted latency at size 0, ``r2`` the coefficient of determination; ``n`` rows and
    ``sizes`` distinct sizes went into it. Expects ``prepare``'d rows.
    """
    out = []
    for key, grp in _series(df):
        for act, rows in grp.groupby(_text(grp["act"]), sort=False):
            kind = rows["size_kind"].iloc[0]
            unit, div = SIZE_UNITS[kind]
            x = rows["size"].to_numpy(float) / div
            fit = linear_fit(x, rows["median_ms"].to_numpy(float))
            out.append({**key, "act": act, "size_kind": kind, "unit": unit, "n": fit.n,
                        "sizes": int(pd.Series(x).nunique()), "size_min": float(np.nanmin(x)) if len(x) else math.nan,
                        "size_max": float(np.nanmax(x)) if len(x) else math.nan, "slope_ms": fit.slope,
                        "intercept_ms": fit.intercept, "r2": fit.r2})
    return pd.DataFrame(out, columns=[*_present(df, SERIES_KEYS), "act", "size_kind", "unit", "n", "sizes",
                                      "size_min", "size_max", "slope_ms", "intercept_ms", "r2"])


@dataclass(frozen=True)
class Trend:
    """How a ratio to the baseline moves with size: fitted against log2(size)."""

    verdict: str
    reason: str
    slope_per_doubling: float
    slope_ci95_low: float
    slope_ci95_high: float
    change: float
    fitted_first: float
    fitted_last: float
    sizes: int
    fit: LinearFit | None = None


def ratio_trend(size, ratio, low=None, high=None, threshold: float = GROW_THRESHOLD) -> Trend:
    """The verdict on one activation's ratios to the baseline over sizes: grows, shrinks, flat or too few sizes.

    The rule. Fit ``ratio = a + b * log2(size)`` by least squares over every measured (size, ratio) point;
    the fitted change over the range is ``(fit(largest) - fit(smallest)) / fit(smallest)``. The ratio
    **grows** when the fitted change is more than +``threshold`` (5%) and there is evidence of an increase:
    either (a) the two-sided 95% t-interval of ``b`` (n - 2 degrees of freedom) lies wholly above 0, or
    (b) the ratio's own 95% CIs (``low``/``high``, from paired rounds) at the smallest and at the largest size
    do not overlap, the largest size's above. **Shrinks** is the mirror image. Anything else is **flat**: the
    change is within ±5%, or neither (a) nor (b) shows it. Under 3 distinct sizes: **too few sizes**.

    (b) is there because (a) alone judges a curved trend by its scatter about a straight line: a ratio that
    falls steeply and then levels off (a cheap activation being diluted by a growing conv) would otherwise be
    "flat" with noise-free data. Rows without a ratio CI (ratios computed from medians) only have (a).
    When several rows share the smallest or the largest size, (b) needs every interval to clear every other.
    """
    size = np.asarray(size, dtype=float)
    ratio = np.asarray(ratio, dtype=float)
    low = np.full_like(ratio, np.nan) if low is None else np.asarray(low, dtype=float)
    high = np.full_like(ratio, np.nan) if high is None else np.asarray(high, dtype=float)
    keep = np.isfinite(size) & np.isfinite(ratio) & (size > 0) & (ratio > 0)
    size, ratio, low, high = size[keep], ratio[keep], low[keep], high[keep]
    distinct = int(len(np.unique(size)))
    nan = math.nan
    if distinct < 3:
        return Trend("too few sizes", f"{distinct} distinct size(s); the rule needs 3", nan, nan, nan, nan, nan, nan,
                     distinct)
    logx = np.log2(size)
    fit = linear_fit(logx, ratio)
    first, last = fit.predict([logx.min(), logx.max()])
    change = float((last - first) / first) if first > 0 else nan
    smallest, largest = size == size.min(), size == size.max()
    have_cis = all(np.isfinite(v[m]).all() for v in (low, high) for m in (smallest, largest))
    apart_up = have_cis and low[largest].min() > high[smallest].max()
    apart_down = have_cis and high[largest].max() < low[smallest].min()
    up = [why for ok, why in ((fit.slope_ci95_low > 0, "the slope's 95% CI is above 0"),
                              (apart_up, "the ratio's 95% CIs at the smallest and largest size do not overlap")) if ok]
    down = [why for ok, why in ((fit.slope_ci95_high < 0, "the slope's 95% CI is below 0"),
                                (apart_down, "the ratio's 95% CIs at the smallest and largest size do not overlap"))
            if ok]
    if change > threshold and up:
        verdict, reason = "grows", f"{change:+.0%} over the range; " + " and ".join(up)
    elif change < -threshold and down:
        verdict, reason = "shrinks", f"{change:+.0%} over the range; " + " and ".join(down)
    elif not abs(change) > threshold:
        verdict, reason = "flat", f"{change:+.1%} over the range, within ±{threshold:.0%}"
    else:
        verdict = "flat"
        reason = (f"{change:+.0%} over the range, but the slope's 95% CI includes 0"
                  + (" and the ratio's CIs at the ends overlap" if have_cis else " (and an end has no ratio CI)")
                  + ": too noisy to tell")
    return Trend(verdict, reason, fit.slope, fit.slope_ci95_low, fit.slope_ci95_high, change, float(first), float(last),
                 distinct, fit)


def verdicts(df: pd.DataFrame, threshold: float = GROW_THRESHOLD) -> pd.DataFrame:
    """One verdict per host group, series and activation (the baseline itself left out); see ``ratio_trend``.

    Besides the verdict: the measured ratio at the smallest and the largest size (median over runs),
    the fitted slope per doubling of size with its 95% CI, and the fitted change over the range.
    """
    out = []
    for key, grp in _series(df):
        for act, rows in grp.groupby(_text(grp["act"]), sort=False):
            rows = rows[rows["ratio"].notna()]
            baselines = sorted(set(rows["ratio_of"]))
            if rows.empty or baselines == [act]:
                continue
            trend = ratio_trend(rows["size"], rows["ratio"], rows["ratio_low"], rows["ratio_high"], threshold)
            by_size = rows.groupby("size")["ratio"].median().sort_index()
            kind = rows["size_kind"].iloc[0]
            unit, div = SIZE_UNITS[kind]
            out.append({**key, "act": act, "baseline": "/".join(baselines), "size_kind": kind, "unit": unit,
                        "sizes": trend.sizes, "size_min": by_size.index[0] / div, "size_max": by_size.index[-1] / div,
                        "ratio_at_min": by_size.iloc[0], "ratio_at_max": by_size.iloc[-1],
                        "slope_per_doubling": trend.slope_per_doubling, "slope_ci95_low": trend.slope_ci95_low,
                        "slope_ci95_high": trend.slope_ci95_high, "change": trend.change, "verdict": trend.verdict,
                        "reason": trend.reason})
    return pd.DataFrame(out, columns=[*_present(df, SERIES_KEYS), "act", "baseline", "size_kind", "unit", "sizes",
                                      "size_min", "size_max", "ratio_at_min", "ratio_at_max", "slope_per_doubling",
                                      "slope_ci95_low", "slope_ci95_high", "change", "verdict", "reason"])


def series_label(key: Mapping, varying: set[str] | None = None) -> str:
    """A short name for a series: its block, its scaling mode and precision (when the rows say), and the
    settings in ``varying`` (those that differ between the series shown together)."""
    varying = set(varying or ())
    block = str(key.get("block") or "")
    parts = ["activation alone" if block == "act" else block or "model"]
    if block == "conv" and "kernel" not in varying:
        k, s = key.get("kernel"), key.get("stride")
        if pd.notna(k) and pd.notna(s):
            parts[0] += f" k{int(k)}s{int(s)}"
    scaling, precision = (str(key.get(c) or "") for c in ("scaling", "precision"))
    if scaling and scaling != "<NA>":
        parts.append(f"{scaling} scaling")
    if precision not in ("", "fp32", "<NA>"):
        parts.append(precision)
    for col in sorted(varying - {"scaling", "precision", "fixed_sizes"}):
        if col in ("kernel", "stride") and block != "conv":
            continue
        parts.append(f"{col}={key.get(col)}")
    fixed = str(key.get("fixed_sizes") or "")
    if "fixed_sizes" in varying and fixed and fixed != "<NA>":
        parts.append(fixed)
    return " · ".join(parts)


def varying_settings(df: pd.DataFrame) -> set[str]:
    """The settings columns (and ``fixed_sizes``) that take more than one value in these rows (so a label must
    name them)."""
    return {c for c in (*SETTINGS_KEYS, "fixed_sizes")
            if c in df.columns and df[c].astype("string").nunique(dropna=False) > 1}
