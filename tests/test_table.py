"""The terminal table a person reads: columns that fit 120 and 80 columns without wrapping a cell, --columns and
--wide, the cost per size under it, the fused/by-timing footnote, the per-op and INT8 views, rows as each size
finishes, --threads 1,2 in one sweep, and warnings that stay whole lines in CI logs."""

from __future__ import annotations

import io
import logging

import pandas as pd
import pytest
from conftest import cli_ok, one_line_error
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from edgeprof import api
from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.report.table import (
    FUSION_WHY,
    PER_OP_KEEP,
    PER_OP_LIST,
    fusion_footnote,
    parse_columns,
    recommendations,
    render_frame,
    render_rich,
    to_markdown,
)
from edgeprof.results.rows import to_frame

runner = CliRunner()
FAKE = "tests._fake_runtime:FakeRuntime"
QUICK = ["--max-time", "0.3", "--min-samples", "6", "--sessions", "2", "--no-roofline", "--no-act-alone"]
TITLE = "edgeprof sweep: onnxruntime, 1 thread(s), opt level all"

# act: (ratio, CI low, CI high, fused, fused by timing, act_ops, act alone ms); synthetic figures, not measured ones
ACTS = {
    "relu": (1.0, 1.0, 1.0, True, True, "", 0.116),
    "leakyrelu": (1.02, 0.97, 1.05, True, False, "", 0.04),
    "silu": (1.11, 1.06, 1.16, False, False, "QuickGelu", 0.135),
    "hardswish": (1.24, 1.22, 1.27, False, False, "HardSigmoid+Mul", 0.285),
    "mish": (4.78, 4.69, 4.91, False, False, "Softplus+Tanh+Mul", 4.98),
}


def _rows(widths=(16, 32), precision: str = "fp32", threads=(1,), notes: bool = True) -> pd.DataFrame:
    rows = []
    for width in widths:
        conv = 1.25 * width / 16
        for t in threads:
            for act, (ratio, lo, hi, fused, timing, ops, alone) in ACTS.items():
                median = conv * ratio
                row = {
                    "block": "conv", "width": width, "depth": 1, "imgsz": 160, "batch": 1, "threads": t,
                    "runtime": "onnxruntime", "precision": precision, "act": act, "baseline": "relu", "status": "ok",
                    "median_ms": median, "p90_ms": median * 1.2, "ci95_low_ms": median * 0.99,
                    "ci95_high_ms": median * 1.01, "ratio_to_baseline": ratio, "ratio_ci95_low": lo,
                    "ratio_ci95_high": hi, "fused": fused, "act_ops": ops, "params": 2340 * width,
                    "macs": 5.9e7 * width,
                    "conv_alone_ms": conv, "act_alone_ms": alone, "fused_by_timing": timing, "noisy": False,
                    "ci_reached": not (notes and act == "mish"), "peak_rss_run_mb": 57.8, "weights_mb": 0.01,
                    "act_peak_mb": 3.1, "frac_peak_gflops": 0.65,
                }
                if precision == "int8":
                    row.update(ratio_to_fp32=0.8, quant_rel_err=0.012)
                rows.append(row)
    return to_frame(rows)


def _render(df: pd.DataFrame, width: int, **kwargs) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    render_rich(df, console, title=TITLE, width=width, **kwargs)
    return out.getvalue().splitlines()


def _header(lines: list[str]) -> list[str]:
    """The table's header cells (the line after the top border)."""
    line = next(line for line in lines if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


@pytest.mark.parametrize("width", [120, 80])
def test_the_default_table_fits_the_width_without_wrapping_a_cell(width):
    lines = _render(_rows(), width)
    assert max(cell_len(line) for line in lines) <= width
    header = _header(lines)
    assert {"block", "size", "act", "× relu"} <= set(header)  # never left out
    body = "\n".join(lines)
    for act in ACTS:
        assert act in body  # each name whole: no cell wrapped mid-word
    assert "4.78× [4.69–4.91]" in body and "1.02× [0.97–1.05]" in body  # the ratio with its CI, on one line
    if width == 120:  # the default columns, what the activation ran as in full
        assert header == ["block", "size", "act", "median ms", "× relu", "fused", "act ran as", "notes"]
        assert "Softplus+Tanh+Mul" in body and "left out" not in body
    else:  # lower-priority columns left out, and said so
        assert "act ran as" not in header and "median ms" in header
        assert any(line.startswith("left out at 80 columns:") and "act ran as" in line for line in lines)


def test_notes_only_when_a_row_has_something_to_say():
    assert "notes" in _header(_render(_rows(), 120))
    assert "notes" not in _header(_render(_rows(notes=False), 120))


def test_act_ran_as_is_shortened_before_it_is_left_out():
    lines = _render(_rows(), 115)  # the full form needs 117 columns, the short one 114
    assert max(cell_len(line) for line in lines) <= 115
    assert "act ran as" in _header(lines)
    body = "\n".join(lines)
    assert "SoftP+Tanh+Mul" in body and "Softplus+Tanh+Mul" not in body
    assert any(line.startswith("short op names:") and "SoftP = Softplus" in line for line in lines)


def test_columns_pick_and_order_and_wide_shows_all():
    picked = _render(_rows(), 120, columns=parse_columns("act, ratio,median_ms,by-timing"))
    assert _header(picked) == ["act", "× relu", "median ms", "by timing"]
    wide = _render(_rows(), 80, wide=True)
    header = _header(wide)
    for column in ("p90 ms", "CI95", "by timing", "params", "MACs", "act alone ms", "% peak", "peak MiB", "est MiB",
                   "act ran as"):
        assert column in header
    assert "Softplus+Tanh+Mul" in "\n".join(wide) and not any(line.startswith("left out") for line in wide)


def test_an_unknown_column_is_one_line_naming_the_valid_ones(tmp_path):
    with pytest.raises(InputError, match=r"did you mean 'median'\?.*valid: block, size, threads, act"):
        parse_columns("act,medain")
    with pytest.raises(InputError, match="no columns given"):
        parse_columns(" , ")
    csv = tmp_path / "r.csv"
    line = one_line_error(runner.invoke(app, ["sweep", "--acts", "relu", "--widths", "8", "--imgsz", "16",
                                              "--columns", "act,nosuch", "--csv", str(csv), *QUICK, "--quiet"]))
    assert "--columns: unknown column 'nosuch'" in line and "valid: block, size" in line
    assert not csv.exists()  # refused before anything was measured
    line = one_line_error(runner.invoke(app, ["sweep", "--columns", "act", "--wide", "--csv", str(csv), "--quiet"]))
    assert "--wide" in line and "--columns" in line


def test_recommendation_per_size_from_the_ratio_cis():
    lines = recommendations(_rows(widths=(16,)))
    assert lines[0].startswith("cost against relu, cheapest first") and "≈" in lines[0]
    assert lines[1] == ("  w16 160px: leakyrelu ≈ relu (−3.0 to +5.0%), silu +6.0–16%, hardswish +22–27%, "
                        "mish 4.7–4.9×")
    assert len(recommendations(_rows())) == 3  # the heading and one line per size

    faster = to_frame([
        {"act": "relu", "baseline": "relu", "width": 8, "imgsz": 32, "block": "conv", "ratio_to_baseline": 1.0,
         "status": "ok"},
        {"act": "relu6", "baseline": "relu", "width": 8, "imgsz": 32, "block": "conv", "ratio_to_baseline": 0.97,
         "ratio_ci95_low": 0.96, "ratio_ci95_high": 0.98, "status": "ok"},
        {"act": "elu", "baseline": "relu", "width": 8, "imgsz": 32, "block": "conv", "ratio_to_baseline": 1.3,
         "status": "ok"},
        {"act": "mish", "baseline": "relu", "width": 8, "imgsz": 32, "block": "conv", "status": "failed"},
    ])
    assert recommendations(faster)[1] == "  w8 32px: relu6 2.0–4.0% faster, elu +30% (no CI), mish failed"
    assert recommendations(to_frame([{"model": "a.onnx", "median_ms": 1.0, "status": "ok"}])) == []


def test_recommendations_per_thread_count_and_precision():
    lines = recommendations(_rows(widths=(16,), threads=(1, 2)))
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["w16 160px 1 thread(s)", "w16 160px 2 thread(s)"]
    assert recommendations(_rows(widths=(16,), precision="int8"))[1].startswith("  w16 160px int8: ")


def test_fused_and_by_timing_disagreeing_get_a_footnote():
    df = _rows()
    df.loc[(df["act"] == "silu") & (df["width"] == 32), "fused_by_timing"] = True
    lines = fusion_footnote(df)
    assert lines[0] == "fused and by timing disagree:"
    leaky = next(line for line in lines if line.strip().startswith("leakyrelu:"))
    # the saving and what the rule asks, from the rows' own conv_alone_ms, act_alone_ms and median_ms
    conv16, conv32 = 1.25, 2.5
    saved = [conv16 + 0.04 - conv16 * 1.02, conv32 + 0.04 - conv32 * 1.02]
    assert "fused into the conv in the runtime's graph, not by timing, on every row" in leaky
    assert f"saved {min(saved):.3f} to {max(saved):.3f} ms" in leaky and "more than 0.020 ms" in leaky
    silu = next(line for line in lines if line.strip().startswith("silu:"))
    assert "fused by timing, but its own node" in silu and "QuickGelu" in silu and "at w32 160px" in silu
    assert lines[-1].strip() == FUSION_WHY

    agreeing = df.copy()
    agreeing["fused_by_timing"] = agreeing["fused"]
    assert fusion_footnote(agreeing) == []
    assert fusion_footnote(df.assign(fused_by_timing=pd.NA)) == []


@pytest.mark.parametrize("width", [120, 80])
def test_the_lines_under_the_table_fit_too(width):
    lines = _render(_rows(), width)
    text = " ".join(" ".join(lines).split())  # wrapped at words: compare the words
    assert "cost against relu" in text and "fused and by timing disagree" in text and "trust fused" in text
    assert max(cell_len(line) for line in lines) <= width


@pytest.mark.parametrize("width", [120, 80])
def test_the_int8_view_fits(width):
    df = pd.concat([_rows(widths=(16,)), _rows(widths=(16,), precision="int8")], ignore_index=True)
    lines = _render(df, width)
    assert max(cell_len(line) for line in lines) <= width
    header = _header(lines)
    assert "× fp32" in header and "relu (int8)" in "\n".join(lines)
    left_out = " ".join(line for line in lines if line.startswith("left out at"))
    assert "int8 err" in header or "int8 err" in left_out  # shown, or named as left out: never wrapped


def test_markdown_has_the_default_columns_and_the_lines_under_them():
    text = to_markdown(_rows())
    assert text.splitlines()[0] == "| block | size | act | median ms | × relu | fused | act ran as | notes |"
    assert "\n- w16 160px: leakyrelu ≈ relu" in text and "\n- leakyrelu: fused into the conv" in text
    assert "| p90 ms |" in to_markdown(_rows(), wide=True)


@pytest.mark.parametrize("width", [120, 80])
def test_the_per_op_summary_fits(width):
    summary = pd.DataFrame([{
        "block": "yolo-n", "size": "w3 640px", "act": act, "act share": "41%", "kernel us": "12345",
        "time by op type": ", ".join(f"{op} {share}%" for op, share in (
            ("Conv", 40), ("Softplus", 20), ("Tanh", 10), ("Mul", 8), ("Concat", 6), ("MaxPool", 5))),
    } for act in ("relu", "mish")])
    out = io.StringIO()
    render_frame(summary, Console(file=out, width=width, color_system=None), title="where the time goes",
                 keep=PER_OP_KEEP, trim=PER_OP_LIST, width=width)
    lines = out.getvalue().splitlines()
    assert max(cell_len(line) for line in lines) <= width
    header = _header(lines)
    assert {"size", "act", "time by op type"} <= set(header)
    body = "\n".join(lines)
    assert "Conv 40%, Softplus 20%" in body and ("…" in body) == (width == 80)


def test_threads_parse_into_a_list_of_counts():
    assert api.parse_threads("1,2,2, 4") == [1, 2, 4]
    assert api.parse_threads(3) == [3] and api.parse_threads([1, 2]) == [1, 2]
    for bad, needle in (("0", "at least 1"), ("two", "not a whole number"), (",", "no thread count")):
        with pytest.raises(InputError, match=needle):
            api.parse_threads(bad)
    assert "at least 1" in one_line_error(runner.invoke(app, ["sweep", "--threads", "1,0"]))


def test_threads_each_a_configuration_and_resume_keys_them(at_repo_root, tmp_path):
    csv = tmp_path / "threads.csv"
    args = ["sweep", "--runtime", FAKE, "--acts", "relu,mish", "--widths", "8", "--imgsz", "32", "--models-dir",
            str(tmp_path / "models"), "--csv", str(csv), *QUICK, "--quiet"]
    result = runner.invoke(app, [*args, "--threads", "1,2"], env={"COLUMNS": "120"})
    cli_ok(result)
    rows = pd.read_csv(csv)
    assert sorted(zip(rows["act"], rows["threads"], strict=True)) == [("mish", 1), ("mish", 2), ("relu", 1),
                                                                       ("relu", 2)]
    assert (rows.loc[rows["act"] == "relu", "ratio_to_baseline"] == 1.0).all()  # a baseline per thread count
    assert "threads" in _header(result.stdout.splitlines()) and "1/2 thread(s)" in result.stdout
    assert "w8 32px 2 thread(s): mish" in result.stdout  # compared per thread count

    cli_ok(runner.invoke(app, [*args, "--threads", "1,2", "--resume"]))
    assert len(pd.read_csv(csv)) == 4  # nothing measured twice
    cli_ok(runner.invoke(app, [*args, "--threads", "2,3", "--resume"]))
    rows = pd.read_csv(csv)
    assert sorted(rows["threads"]) == [1, 1, 2, 2, 3, 3]  # only the new thread count measured

    line = one_line_error(runner.invoke(app, ["profile", str(csv), "--threads", "1,2"]))
    assert "one thread count" in line


def test_rows_appear_as_each_size_finishes(at_repo_root, tmp_path):
    csv = tmp_path / "live.csv"
    result = runner.invoke(app, ["sweep", "--runtime", FAKE, "--acts", "relu,mish", "--widths", "8,16", "--imgsz",
                                 "32", "--models-dir", str(tmp_path / "models"), "--csv", str(csv), *QUICK],
                           env={"COLUMNS": "120"})
    cli_ok(result)
    # each size's rows on stderr as it finished (above the progress bar), then the final table on stdout
    assert "w8 32px" in result.stderr and "w16 32px" in result.stderr
    assert result.stderr.index("w8 32px") < result.stderr.index("w16 32px")
    assert result.stdout.count("w8 32px") == 2  # once in the table, once in the cost line under it
    quiet = runner.invoke(app, ["sweep", "--runtime", FAKE, "--acts", "relu,mish", "--widths", "8", "--imgsz", "32",
                                "--models-dir", str(tmp_path / "models"), "--csv", str(tmp_path / "q.csv"), *QUICK,
                                "--quiet"])
    cli_ok(quiet)
    assert "w8 32px" not in quiet.stderr


def test_warnings_stay_whole_lines_when_not_a_terminal(capsys, monkeypatch):
    from edgeprof.cli.common import note, warn

    long = "a warning that is much longer than eighty columns " * 4
    monkeypatch.setenv("COLUMNS", "80")
    for env in ({}, {"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}):  # CI runners that claim a terminal too
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        warn(long)
        note(long)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 2 and all(len(line) > 80 for line in lines), lines
        for key in env:
            monkeypatch.delenv(key)


def test_quantizer_warnings_are_collected_and_said_once(capsys):
    from edgeprof.cli.common import quantizer_note
    from edgeprof.quantize import _collect_quantizer_messages, quantizer_messages

    quantizer_messages()  # start empty
    root = logging.getLogger()
    level, disabled = root.level, root.manager.disable
    root.setLevel(logging.WARNING)  # an earlier test may have raised the root level or disabled logging
    logging.disable(logging.NOTSET)
    request_restore = lambda: (root.setLevel(level), logging.disable(disabled))  # noqa: E731
    advice = "Please consider to run pre-processing before quantization. Refer to example: https://example.org"
    for _ in range(16):  # as onnxruntime's quantizer does, once per model
        with _collect_quantizer_messages():
            logging.warning(advice)
    assert capsys.readouterr().err == ""
    quantizer_note(quiet=True)
    assert capsys.readouterr().err == "" and quantizer_messages() == {}  # -q: nothing, and nothing kept
    for _ in range(16):
        with _collect_quantizer_messages():
            logging.warning(advice)
    quantizer_note(quiet=False)
    lines = capsys.readouterr().err.splitlines()
    request_restore()
    assert len(lines) == 1 and "warned 16 time(s), 1 distinct" in lines[0]
    assert "Please consider to run pre-processing before quantization" in lines[0] and "https" not in lines[0]


def test_int8_sweep_under_quiet_prints_no_quantizer_warnings(at_repo_root, tmp_path):
    base = ["sweep", "--runtime", FAKE, "--acts", "relu,hardswish", "--widths", "8", "--imgsz", "16", "--quantize",
            "int8", *QUICK]
    quiet = runner.invoke(app, [*base, "--quiet", "--csv", str(tmp_path / "q.csv"), "--models-dir",
                                str(tmp_path / "m1")])
    cli_ok(quiet)
    said = [line for line in quiet.stderr.splitlines() if not line.startswith("results:")]  # (its path aside)
    assert not any("quantiz" in line.lower() or "pre-processing" in line for line in said), said
    loud = runner.invoke(app, [*base, "--csv", str(tmp_path / "l.csv"), "--models-dir", str(tmp_path / "m2")])
    cli_ok(loud)
    said = [line for line in loud.stderr.splitlines() if "quantizer" in line]
    assert len(said) <= 1 and "pre-processing before quantization. Refer" not in loud.stderr


def test_the_width_is_the_terminals_else_columns_else_120(monkeypatch):
    from edgeprof.report.table import table_width

    pipe = Console(file=io.StringIO(), width=200)
    monkeypatch.delenv("COLUMNS", raising=False)
    assert table_width(pipe) == 120
    monkeypatch.setenv("COLUMNS", "80")
    assert table_width(pipe) == 80
    assert table_width(Console(file=io.StringIO(), width=100, force_terminal=True)) == 100
