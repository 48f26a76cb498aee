"""`edgeprof report` and write_report: every figure written, Markdown and HTML reports, one-line errors."""

from __future__ import annotations

import re
import sys

import pandas as pd
import pytest
from conftest import one_line_error as _one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.results.rows import append_per_op, append_rows, per_op_path, write_metadata

pytest.importorskip("matplotlib")

runner = CliRunner()
WIDTHS = (16, 32, 64)
IMGSZ = 40
ACTS = {"relu": (0.05, 20.0), "hardswish": (0.08, 21.0), "mish": (1.0, 30.0)}


def _rows(host: str, run_id: str, scale: float) -> list[dict]:
    rows = []
    for width in WIDTHS:
        macs = width * width * 9 * IMGSZ * IMGSZ
        base = scale * (ACTS["relu"][0] + ACTS["relu"][1] * macs / 1e9)
        for act, (intercept, slope) in ACTS.items():
            median = scale * (intercept + slope * macs / 1e9)
            ratio = median / base
            rows.append({
                "act": act, "block": "conv", "width": width, "depth": 1, "imgsz": IMGSZ, "batch": 1, "kernel": 3,
                "stride": 1, "params": width * width * 9, "macs": macs, "threads": 1, "inter_threads": 1,
                "opt_level": "all", "spinning": False, "arena": True, "provider": "CPUExecutionProvider",
                "exporter": "torchscript", "opset": 17, "median_ms": median, "p90_ms": median * 1.05,
                "ci95_low_ms": median * 0.97, "ci95_high_ms": median * 1.03, "n": 40, "ci_reached": True,
                "noisy": False, "baseline": "relu", "ratio_to_baseline": ratio, "ratio_ci95_low": ratio * 0.99,
                "ratio_ci95_high": ratio * 1.01, "fused": act == "relu", "peak_rss_run_mb": 30 + width / 8,
                "act_peak_mb": width / 16, "weights_mb": width * width * 9 * 4 / 2**20, "status": "ok",
                "model": f"models/conv_{act}_w{width}.onnx", "run_id": run_id, "host_fingerprint": host,
                "cpu_model": f"CPU {host}", "ort_version": "1.32.0",
            })
    return rows


def _ops(rows: list[dict]) -> list[dict]:
    lowered = {"relu": [], "hardswish": [("HardSigmoid", 0.02), ("Mul", 0.05)],
               "mish": [("Softplus", 0.5), ("Tanh", 0.05), ("Mul", 0.05)]}
    out = []
    for row in rows:
        conv_us = row["median_ms"] * 1000 * 0.5
        nodes = [("Conv", conv_us, False)] + [(op, conv_us * f, True) for op, f in lowered[row["act"]]]
        total = sum(us for _, us, _ in nodes)
        keys = ("run_id", "act", "block", "width", "depth", "imgsz", "batch", "threads", "opt_level", "model")
        out += [{**{k: row[k] for k in keys}, "node": f"/{op}", "op_type": op, "mean_us": us, "share": us / total,
                 "is_act": is_act} for op, us, is_act in nodes]
    return out


@pytest.fixture(scope="module")
def result_csvs(tmp_path_factory) -> list:
    """Two hosts: A with per-op data and metadata, B (4x slower) with neither."""
    folder = tmp_path_factory.mktemp("results")
    a, b = folder / "hostA.csv", folder / "hostB.csv"
    rows_a = _rows("aaaaaaaaaa", "runA", 1.0)
    append_rows(a, rows_a)
    append_per_op(per_op_path(a), _ops(rows_a))
    write_metadata(a, {"run_id": "runA", "host_fingerprint": "aaaaaaaaaa", "timestamp": "2026-01-01T00:00:00+00:00",
                       "command": "edgeprof sweep --acts relu,hardswish,mish", "host": {"cpu_model": "CPU aaaaaaaaaa"},
                       "versions": {"onnxruntime": "1.32.0", "torch": "2.13.0"}})
    append_rows(b, _rows("bbbbbbbbbb", "runB", 4.0))
    return [a, b]


@pytest.fixture(scope="module")
def md_report(result_csvs, tmp_path_factory):
    from edgeprof.report.summary import write_report

    out = tmp_path_factory.mktemp("report")
    return write_report(result_csvs, out, fmt="md")


def test_every_plot_is_written_and_not_empty(md_report):
    folder = md_report.parent
    for kind in ("latency", "ratio", "ops", "memory"):
        png = folder / f"{kind}-aaaaaaaaaa-onnxruntime-1.32.0.png"
        assert png.is_file() and png.stat().st_size > 5000, kind
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for kind in ("latency", "ratio", "memory"):
        assert (folder / f"{kind}-bbbbbbbbbb-onnxruntime-1.32.0.png").stat().st_size > 5000
    assert not (folder / "ops-bbbbbbbbbb-onnxruntime-1.32.0.png").exists()  # host B has no per-op data
    assert (folder / "activations.png").stat().st_size > 5000


def test_markdown_report_content(md_report):
    text = md_report.read_text()
    assert md_report.name == "report.md"
    assert "Verdict rule" in text and "| shrinks |" in text
    assert "host aaaaaaaaaa (CPU aaaaaaaaaa) · onnxruntime 1.32.0" in text and "host bbbbbbbbbb" in text
    assert "edgeprof sweep --acts relu,hardswish,mish" in text  # the run's metadata
    assert "Where the time goes not drawn for host bbbbbbbbbb" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (md_report.parent / link).is_file(), link
    merged = pd.read_csv(md_report.parent / "results.csv")
    assert len(merged) == 2 * len(WIDTHS) * len(ACTS)
    assert merged.groupby("host_group")["host_fingerprint"].nunique().max() == 1
    verdicts = pd.read_csv(md_report.parent / "verdicts.csv")
    assert len(verdicts) == 4 and verdicts["host_group"].nunique() == 2  # 2 non-baseline acts x 2 hosts
    assert len(pd.read_csv(md_report.parent / "scaling_fits.csv")) == 6  # 3 acts x 2 hosts, none pooled


def test_slopes_are_per_host(md_report):
    fits = pd.read_csv(md_report.parent / "scaling_fits.csv")
    mish = fits[fits["act"] == "mish"].set_index("host_group")["slope_ms"]
    assert mish["aaaaaaaaaa · onnxruntime 1.32.0"] == pytest.approx(30.0)
    assert mish["bbbbbbbbbb · onnxruntime 1.32.0"] == pytest.approx(120.0)


def test_cli_writes_a_self_contained_html_report(result_csvs, tmp_path):
    out = tmp_path / "html"
    result = runner.invoke(app, ["report", *map(str, result_csvs), "-o", str(out), "--format", "html"])
    assert result.exit_code == 0, result.output
    page = out / "report.html"
    assert result.output.strip().endswith(str(page))
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Verdict rule" in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) >= 8 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in html and "host aaaaaaaaaa" in html




def test_missing_csv_is_one_line(tmp_path):
    line = _one_line_error(runner.invoke(app, ["report", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "r")]))
    assert "not found" in line and "nope.csv" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("content", "expected"), [
    (b"\xff\xfe\x00garbage\x00\xff", "not a readable CSV"),
    (b"a,b\n1,2\n", "not an edgeprof results CSV"),
    (b"", "not a readable CSV"),
])
def test_malformed_csv_is_one_line(tmp_path, content, expected):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    assert expected in _one_line_error(runner.invoke(app, ["report", str(bad), "-o", str(tmp_path / "r")]))


def test_per_op_files_matched_by_a_glob_are_skipped(result_csvs, tmp_path):
    from edgeprof.report.summary import load_inputs

    ops = per_op_path(result_csvs[0])
    inputs = load_inputs([result_csvs[0], ops])  # as `edgeprof report results/*.csv` passes them
    assert len(inputs.files) == 1 and len(inputs.ops) > 0
    line = _one_line_error(runner.invoke(app, ["report", str(ops), "-o", str(tmp_path / "r")]))
    assert "is a per-op file" in line and "hostA.csv" in line


def test_folder_or_unwritable_output_is_one_line(result_csvs, tmp_path):
    assert "is a folder" in _one_line_error(runner.invoke(app, ["report", str(tmp_path)]))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = _one_line_error(runner.invoke(app, ["report", str(result_csvs[0]), "-o", str(blocker)]))
    assert "cannot create report folder" in line


def test_missing_matplotlib_names_the_extra(result_csvs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    line = _one_line_error(runner.invoke(app, ["report", str(result_csvs[0]), "-o", str(tmp_path / "r")]))
    assert "pip install 'edgeprof[plots]'" in line


def test_usage_errors_and_help():
    assert runner.invoke(app, ["report"]).exit_code == 2
    assert runner.invoke(app, ["report", "x.csv", "--format", "pdf"]).exit_code == 2
    result = runner.invoke(app, ["report", "--help"])
    assert result.exit_code == 0 and "edgeprof report results/*.csv" in result.output


def test_activation_curves_skipped_without_torch(tmp_path, monkeypatch):
    from edgeprof.report import plots

    monkeypatch.setitem(sys.modules, "torch", None)
    path, notes = plots.plot_activations(["relu", "mish"], tmp_path / "a.png", plots.act_styles(["relu", "mish"]))
    assert path is None and not (tmp_path / "a.png").exists()
    assert len(notes) == 1 and "torch is not importable" in notes[0]


def test_unbuildable_activation_is_a_note_not_a_failure(tmp_path):
    from edgeprof.report import plots

    acts = ["relu", "nosuchpkg.acts:Gone"]
    path, notes = plots.plot_activations(acts, tmp_path / "a.png", plots.act_styles(acts))
    assert path is not None and path.stat().st_size > 0
    assert len(notes) == 1 and "nosuchpkg.acts:Gone" in notes[0]
