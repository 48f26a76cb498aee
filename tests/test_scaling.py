"""Scaling fits, ratio verdicts and host groups on synthetic results with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from edgeprof.report import scaling
from edgeprof.results.rows import append_rows, read_results, to_frame

WIDTHS = (16, 32, 64, 128)
IMGSZ = 80


def conv_macs(width: int, imgsz: int = IMGSZ) -> int:
    return width * width * 9 * imgsz * imgsz


def synthetic_rows(
    slopes: dict[str, tuple[float, float]],
    host: str | None = "hostA",
    ort: str | None = "1.32.0",
    run_id: str = "run1",
    block: str = "conv",
    widths=WIDTHS,
    with_ratio: bool = True,
    imgsz: int = IMGSZ,
    scaling_mode: str | None = None,
) -> list[dict]:
    """Rows whose latency is exactly intercept + slope * size (ms per GMAC; per M elements for block act)."""
    rows = []
    for width in widths:
        size = width * imgsz * imgsz / 1e6 if block == "act" else conv_macs(width, imgsz) / 1e9
        base = slopes["relu"][0] + slopes["relu"][1] * size
        for act, (intercept, slope) in slopes.items():
            median = intercept + slope * size
            row = {
                "act": act, "block": block, "width": width, "depth": 1, "imgsz": imgsz, "batch": 1, "kernel": 3,
                "stride": 1, "macs": 0 if block == "act" else conv_macs(width, imgsz), "threads": 1, "inter_threads": 1,
                "opt_level": "all", "spinning": False, "arena": True, "provider": "CPUExecutionProvider",
                "exporter": "torchscript", "opset": 17, "median_ms": median, "ci95_low_ms": median * 0.98,
                "ci95_high_ms": median * 1.02, "n": 50, "status": "ok", "run_id": run_id, "baseline": "relu",
                "model": f"models/{block}_{act}_w{width}.onnx", "host_fingerprint": host, "ort_version": ort,
                "cpu_model": f"CPU of {host}" if host else None, "peak_rss_run_mb": 30 + size, "act_peak_mb": size,
                "weights_mb": 0.01 * width, "scaling": scaling_mode,
            }
            if with_ratio:
                row.update(ratio_to_baseline=median / base, ratio_ci95_low=median / base * 0.99,
                           ratio_ci95_high=median / base * 1.01)
            rows.append(row)
    return rows


SLOPES = {"relu": (0.05, 20.0), "silu": (0.10, 21.0), "mish": (1.5, 30.0)}


def test_linear_fit_recovers_a_known_line_exactly():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fit = scaling.linear_fit(x, 3.0 + 2.5 * x)
    assert fit.slope == pytest.approx(2.5, rel=1e-12)
    assert fit.intercept == pytest.approx(3.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.slope_ci95_low == pytest.approx(2.5) and fit.slope_ci95_high == pytest.approx(2.5)


def test_linear_fit_r2_and_degenerate_inputs():
    x = np.arange(10, dtype=float)
    noise = np.array([0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.3, -0.2, 0.0])
    fit = scaling.linear_fit(x, 1.0 + 0.5 * x + noise)
    residual = 1.0 + 0.5 * x + noise - fit.predict(x)
    total = ((1.0 + 0.5 * x + noise) - (1.0 + 0.5 * x + noise).mean()) ** 2
    assert fit.r2 == pytest.approx(1 - (residual**2).sum() / total.sum())
    assert fit.slope_ci95_low < 0.5 < fit.slope_ci95_high
    assert math.isnan(scaling.linear_fit([1.0], [2.0]).slope)
    assert math.isnan(scaling.linear_fit([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]).slope)
    flat = scaling.linear_fit([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
    assert flat.slope == 0 and flat.r2 == 1.0


def test_slope_ci_is_the_textbook_t_interval():
    fit = scaling.linear_fit([0.0, 1.0, 2.0], [0.0, 1.0, 3.0])  # slope 1.5, SE sqrt(1/12), df 1
    half = 12.7062 * math.sqrt(1 / 12)  # t(0.975, 1) from the table
    assert fit.slope == pytest.approx(1.5)
    assert fit.slope_ci95_low == pytest.approx(1.5 - half, abs=1e-3)
    assert fit.slope_ci95_high == pytest.approx(1.5 + half, abs=1e-3)


def test_fits_recover_known_slopes_per_activation_and_block():
    rows = synthetic_rows(SLOPES) + synthetic_rows(
        {"relu": (0.01, 0.2), "mish": (0.02, 12.0)}, block="act", widths=(16, 32, 64, 128, 256))
    fits = scaling.scaling_fits(scaling.prepare(to_frame(rows))).set_index(["block", "act"])
    for act, (intercept, slope) in SLOPES.items():
        assert fits.loc[("conv", act), "slope_ms"] == pytest.approx(slope, rel=1e-9)
        assert fits.loc[("conv", act), "intercept_ms"] == pytest.approx(intercept, rel=1e-9, abs=1e-12)
        assert fits.loc[("conv", act), "r2"] == pytest.approx(1.0)
        assert fits.loc[("conv", act), "unit"] == "GMAC" and fits.loc[("conv", act), "sizes"] == 4
    # the activation alone is fitted against its tensor's elements: batch * width * imgsz^2
    assert fits.loc[("act", "mish"), "size_kind"] == "elements"
    assert fits.loc[("act", "mish"), "slope_ms"] == pytest.approx(12.0, rel=1e-9)
    assert fits.loc[("act", "relu"), "intercept_ms"] == pytest.approx(0.01, rel=1e-9)
    assert fits.loc[("act", "mish"), "size_max"] == pytest.approx(256 * IMGSZ * IMGSZ / 1e6)


def _trend_rows(ratios: list[float], sizes=(1e7, 4e7, 1.6e8, 6.4e8)) -> tuple[np.ndarray, np.ndarray]:
    return np.array(sizes, dtype=float), np.array(ratios, dtype=float)


def test_verdict_grows_shrinks_flat():
    sizes, _ = _trend_rows([0] * 4)
    steps = np.log2(sizes / sizes[0])
    noise = np.array([0.004, -0.003, 0.002, -0.004])
    grows = scaling.ratio_trend(sizes, 1.2 + 0.05 * steps + noise)
    assert grows.verdict == "grows" and grows.change > 0.05 and grows.slope_ci95_low > 0
    shrinks = scaling.ratio_trend(sizes, 4.0 - 0.4 * steps + noise)
    assert shrinks.verdict == "shrinks" and shrinks.slope_ci95_high < 0
    flat = scaling.ratio_trend(sizes, 1.5 + noise)
    assert flat.verdict == "flat" and "within" in flat.reason
    # significant but small: under 5% over the range is flat
    small = scaling.ratio_trend(sizes, 1.5 + 0.005 * steps)
    assert small.slope_ci95_low > 0 and abs(small.change) < 0.05
    assert small.verdict == "flat" and "within" in small.reason
    # a large change that the scatter cannot support is flat, with the reason saying so
    noisy = scaling.ratio_trend(sizes, np.array([1.0, 3.0, 1.2, 2.0]))
    assert noisy.change > 0.05 and noisy.verdict == "flat" and "too noisy" in noisy.reason
    two = scaling.ratio_trend(sizes[:2], [1.0, 2.0])
    assert two.verdict == "too few sizes"


def test_verdict_threshold_is_on_the_fitted_change():
    sizes = np.array([1.0, 2.0, 4.0, 8.0])  # 3 doublings
    just_over = scaling.ratio_trend(sizes, 1.0 + 0.0171 * np.log2(sizes))
    just_under = scaling.ratio_trend(sizes, 1.0 + 0.0165 * np.log2(sizes))
    assert just_over.verdict == "grows" and just_under.verdict == "flat"


def test_a_curved_trend_is_judged_by_the_ratio_cis_at_the_ends():
    # a conv diluting a costly activation: the ratio falls steeply, then levels off; noise-free
    sizes = np.array([conv_macs(w) for w in WIDTHS], dtype=float) / 1e9
    ratio = (1.5 + 30 * sizes) / (0.05 + 20 * sizes)
    without_cis = scaling.ratio_trend(sizes, ratio)
    assert without_cis.slope_ci95_high > 0  # the straight line's scatter hides it ...
    assert without_cis.verdict == "flat" and "no ratio CI" in without_cis.reason
    with_cis = scaling.ratio_trend(sizes, ratio, ratio * 0.99, ratio * 1.01)
    assert with_cis.verdict == "shrinks" and "do not overlap" in with_cis.reason  # ... the measured CIs do not
    overlapping = scaling.ratio_trend(sizes, ratio, ratio * 0.3, ratio * 3)
    assert overlapping.verdict == "flat" and "too noisy" in overlapping.reason
    # with several rows at an end, every interval must clear every other
    two_runs = scaling.ratio_trend(np.r_[sizes, sizes[-1]], np.r_[ratio, 5.0], np.r_[ratio * 0.99, 4.0],
                                   np.r_[ratio * 1.01, 6.0])
    assert two_runs.verdict != "shrinks"


def test_verdicts_table_leaves_the_baseline_out():
    verds = scaling.verdicts(scaling.prepare(to_frame(synthetic_rows(SLOPES)))).set_index("act")
    assert set(verds.index) == {"silu", "mish"}
    # mish: 1.5 + 30 s over 0.05 + 20 s falls from ~2.2 towards 1.5 as the block grows
    assert verds.loc["mish", "verdict"] == "shrinks"
    assert verds.loc["mish", "ratio_at_min"] > verds.loc["mish", "ratio_at_max"]


def test_ratio_from_medians_of_the_same_run_and_size():
    rows = synthetic_rows(SLOPES, with_ratio=False, run_id="r1")
    # another run of the baseline only, much slower: must not be used for r1's ratios
    rows += [{**r, "run_id": "r2", "median_ms": r["median_ms"] * 10} for r in rows if r["act"] == "relu"]
    df = scaling.prepare(to_frame(rows))
    mish = df[(df["act"] == "mish") & (df["run_id"] == "r1")].sort_values("width")
    expected = [(1.5 + 30 * conv_macs(w) / 1e9) / (0.05 + 20 * conv_macs(w) / 1e9) for w in WIDTHS]
    assert mish["ratio"].tolist() == pytest.approx(expected)
    assert set(mish["ratio_source"]) == {"medians"}
    assert mish["ratio_low"].isna().all()


def test_two_hosts_are_never_mixed(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    append_rows(a, synthetic_rows(SLOPES, host="hostA", run_id="ra"))
    append_rows(b, synthetic_rows({"relu": (0.5, 80.0), "silu": (0.6, 90.0), "mish": (3.0, 200.0)},
                                  host="hostB", run_id="rb"))
    merged = pd.concat([read_results(a), read_results(b)], ignore_index=True)
    df = scaling.prepare(merged)
    assert df.groupby("host_group")["host_fingerprint"].nunique().max() == 1
    fits = scaling.scaling_fits(df)
    assert len(fits) == 6  # 3 activations x 2 host groups, no pooled fit
    fits = fits.set_index(["host_group", "act"])
    group_a = df.loc[df["host_fingerprint"] == "hostA", "host_group"].iloc[0]
    group_b = df.loc[df["host_fingerprint"] == "hostB", "host_group"].iloc[0]
    assert fits.loc[(group_a, "mish"), "slope_ms"] == pytest.approx(30.0)
    assert fits.loc[(group_b, "mish"), "slope_ms"] == pytest.approx(200.0)
    assert fits.loc[(group_a, "relu"), "r2"] == pytest.approx(1.0)  # a pooled fit would not be exact
    verds = scaling.verdicts(df)
    assert sorted(verds["host_group"].unique()) == sorted([group_a, group_b])


def test_onnxruntime_versions_split_a_host():
    rows = synthetic_rows(SLOPES, ort="1.31.0", run_id="r1") + synthetic_rows(SLOPES, ort="1.32.0", run_id="r2")
    df = scaling.prepare(to_frame(rows))
    assert df["host_group"].nunique() == 2
    assert len(scaling.scaling_fits(df)) == 6


def test_missing_host_columns_come_from_metadata_or_stay_apart():
    old = synthetic_rows(SLOPES, host=None, ort=None, run_id="old1")
    older = synthetic_rows(SLOPES, host=None, ort=None, run_id="old2")
    known = synthetic_rows(SLOPES, host=None, ort=None, run_id="old3")
    metadata = {"old3": json.loads(json.dumps({"host_fingerprint": "hostC", "versions": {"onnxruntime": "1.30.0"},
                                               "host": {"cpu_model": "Some CPU"}}))}
    df = scaling.label_hosts(to_frame(old + older + known), metadata)
    groups = df.groupby("run_id")["host_group"].first()
    assert groups["old3"] == "hostC · onnxruntime 1.30.0"
    assert (df.loc[df["run_id"] == "old3", "cpu_model"] == "Some CPU").all()
    assert groups["old1"] != groups["old2"]  # nothing says they share a host: kept apart
    assert groups["old1"].startswith(scaling.UNKNOWN)
    assert (df.loc[df["run_id"] == "old1", "runtime_version"] == scaling.UNKNOWN).all()


def _two_input_sizes(tmp_path, mode: str | None) -> pd.DataFrame:
    """Two runs written to two CSVs: the same widths, one at 160 px and one at 64 px."""
    big, small = tmp_path / "w160.csv", tmp_path / "w64.csv"
    append_rows(big, synthetic_rows(SLOPES, run_id="r160", imgsz=160, widths=(16, 32, 64), scaling_mode=mode))
    append_rows(small, synthetic_rows(SLOPES, run_id="r64", imgsz=64, widths=(16, 32, 64), scaling_mode=mode))
    return scaling.prepare(pd.concat([read_results(big), read_results(small)], ignore_index=True))


@pytest.mark.parametrize("mode", ["width", "grid", None])
def test_width_series_at_two_input_sizes_are_never_merged(tmp_path, mode):
    # the bug: one "width scaling" series over both runs, whose mish ratio fell from the 64 px run's smallest
    # block to the 160 px run's largest and got a verdict across them (mish 5.81x -> 2.97x shrinks)
    df = _two_input_sizes(tmp_path, mode)
    assert set(df["fixed_sizes"]) == {"depth=1 imgsz=160 batch=1", "depth=1 imgsz=64 batch=1"}
    fits = scaling.scaling_fits(df)
    assert len(fits) == 6 and set(fits["sizes"]) == {3}  # 3 activations x 2 input sizes, 3 widths each
    assert (fits["r2"] > 0.999999).all()  # each fit is one input size's exact line, not a pooled one
    verds = scaling.verdicts(df).set_index(["fixed_sizes", "act"])
    for imgsz in (160, 64):
        mish = verds.loc[(f"depth=1 imgsz={imgsz} batch=1", "mish")]
        expected = [(1.5 + 30 * conv_macs(w, imgsz) / 1e9) / (0.05 + 20 * conv_macs(w, imgsz) / 1e9) for w in (16, 64)]
        assert [mish["ratio_at_min"], mish["ratio_at_max"]] == pytest.approx(expected)
    labels = {scaling.series_label(r, scaling.varying_settings(df)) for r in verds.reset_index().to_dict("records")}
    assert len(labels) == 2 and any("imgsz=160" in x for x in labels) and any("imgsz=64" in x for x in labels)


def test_each_held_size_dimension_splits_a_series():
    base = synthetic_rows(SLOPES, run_id="r1", scaling_mode="width")
    for col, other in (("depth", 2), ("batch", 4), ("kernel", 5), ("stride", 2)):
        rows = base + [{**r, col: other, "run_id": "r2"} for r in base]
        df = scaling.prepare(to_frame(rows))
        assert len(scaling.scaling_fits(df)) == 6, col
        assert len(scaling.verdicts(df)) == 4, col  # silu and mish, in each of the two series


def test_what_grows_follows_the_scaling_mode():
    rows = synthetic_rows(SLOPES, run_id="r1", scaling_mode="imgsz")
    for r in rows:  # an imgsz series at width 32: the input side grows with the "width" the helper was given
        r["imgsz"], r["width"] = r["width"], 32
    df = scaling.prepare(to_frame(rows))
    assert set(df["fixed_sizes"]) == {"width=32 depth=1 batch=1"}
    # preset: width and depth grow together, the input size is held
    preset = [{**r, "depth": i} for i, r in enumerate(synthetic_rows(SLOPES, run_id="p", scaling_mode="preset"))]
    assert set(scaling.prepare(to_frame(preset))["fixed_sizes"]) == {f"imgsz={IMGSZ} batch=1"}
    # depth: the chain grows at one width and input size
    depth = [{**r, "depth": r["width"] // 16, "width": 32, "block": "c3"}
             for r in synthetic_rows(SLOPES, run_id="d", scaling_mode="depth")]
    assert set(scaling.prepare(to_frame(depth))["fixed_sizes"]) == {f"width=32 imgsz={IMGSZ} batch=1"}


def test_a_runtime_or_cache_column_splits_a_series_when_present():
    rows = synthetic_rows(SLOPES, run_id="r1", scaling_mode="width")
    rows = [{**r, "cache": "warm"} for r in rows] + [{**r, "cache": "cold", "run_id": "r2"} for r in rows]
    df = scaling.prepare(pd.DataFrame(rows))
    assert len(scaling.scaling_fits(df)) == 6
    assert "cache" in scaling.varying_settings(df)
