"""The commands as a user runs them: exit codes, one-line errors, the table and the CSV."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import one_line_error as _one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.results.schema import COLUMNS

runner = CliRunner()
FAST = ["--max-time", "0.4", "--min-samples", "10", "--sessions", "2", "--quiet"]
SWEEP_FAST = [*FAST, "--no-roofline"]




def test_help_has_examples():
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0 and "edgeprof sweep --acts relu,mish,hardswish" in result.output


def test_acts_lists_the_registry():
    result = runner.invoke(app, ["acts", "--format", "csv"])
    assert result.exit_code == 0
    df = pd.read_csv(pd.io.common.StringIO(result.output))
    assert {"relu", "mish", "hardswish", "silu", "sin", "identity"} <= set(df["name"])
    assert df.loc[df["name"] == "leakyrelu", "params"].item() == "negative_slope=0.1"
    assert "swish" in df.loc[df["name"] == "silu", "aliases"].item()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--acts", "relu,mihs"], "did you mean 'mish'"),
        (["--widths", "0"], "--widths"),
        (["--widths", "16,-4"], "--widths"),
        (["--widths", "abc"], "not a whole number"),
        (["--kernel", "64", "--imgsz", "32"], "kernel 64 is larger than the input size 32"),
        (["--blocks", "resnet"], "valid blocks"),
        (["--rel-ci", "0"], "--rel-ci"),
        (["--acts", "nosuchpkg.mod:Act"], "nosuchpkg"),
    ],
)
def test_sweep_bad_input(args, needle, tmp_path):
    result = runner.invoke(app, ["sweep", *args, "--csv", str(tmp_path / "r.csv"), *FAST])
    assert needle in _one_line_error(result)
    assert not (tmp_path / "r.csv").exists()  # nothing half-written


def test_unwritable_csv(tmp_path):
    result = runner.invoke(app, ["sweep", "--acts", "relu", "--widths", "8", "--imgsz", "16",
                                 "--csv", "/proc/nope/r.csv", *FAST])
    assert "cannot write results to /proc/nope/r.csv" in _one_line_error(result)


def test_profile_missing_and_corrupt_files(tmp_path):
    assert "not found" in _one_line_error(runner.invoke(app, ["profile", str(tmp_path / "x.onnx"), *FAST]))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert "cannot load ONNX model" in _one_line_error(runner.invoke(app, ["profile", str(bad), *FAST]))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(runner.invoke(app, ["profile", str(empty), *FAST]))


def test_sweep_end_to_end(tmp_path):
    csv = tmp_path / "sweep.csv"
    result = runner.invoke(app, ["sweep", "--acts", "relu,mish,hardswish", "--widths", "16", "--imgsz", "48",
                                 "--csv", str(csv), "--models-dir", str(tmp_path / "models"), *SWEEP_FAST],
                           env={"COLUMNS": "200"})  # room for every default column, act ran as in full
    assert result.exit_code == 0, result.output
    assert "× relu" in result.output and "Softplus+Tanh+Mul" in result.output
    df = pd.read_csv(csv)
    assert list(df.columns) == list(COLUMNS)
    assert list(df["act"]) == ["relu", "mish", "hardswish"]
    by = df.set_index("act")
    assert by.loc["relu", "fused"] and not by.loc["mish", "fused"]
    assert by.loc["mish", "act_ops"] == "Softplus+Tanh+Mul" and by.loc["hardswish", "act_ops"] == "HardSigmoid+Mul"
    assert by.loc["mish", "ratio_to_baseline"] > 1.0 and by.loc["relu", "ratio_to_baseline"] == 1.0
    assert (df["exporter"] == "torchscript").all() and (df["opset"] == 17).all()
    assert (df["status"] == "ok").all() and (df["n"] >= 10).all()
    assert (df["params"] > 0).all() and (df["macs"] > 0).all()
    assert csv.with_suffix(".json").exists()


def test_ctrl_c_keeps_finished_rows(tmp_path):
    """Interrupt a two-size sweep once the first size is in the CSV: exit 130, rows kept, no traceback."""
    csv = tmp_path / "int.csv"
    cmd = [sys.executable, "-m", "edgeprof.cli", "sweep", "--acts", "relu,silu", "--widths", "8,16,24",
           "--imgsz", "32", "--max-time", "2", "--rel-ci", "0.0001", "--sessions", "1", "--no-act-alone",
           "--csv", str(csv), "--models-dir", str(tmp_path / "models"), "--quiet", "--no-roofline"]
    # SIG_DFL in the child: a background job of a non-interactive shell ignores SIGINT, and its children inherit it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not (csv.exists() and len(csv.read_text().splitlines()) >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and str(csv) in err
    df = pd.read_csv(csv)
    assert len(df) >= 2 and set(df["status"]) <= {"ok", "interrupted"}
    assert df[df["width"] == 8]["status"].eq("ok").all()
    assert os.path.exists(csv.with_suffix(".json"))
    resume_hint = err.strip().splitlines()[-1].split("to continue: ", 1)[1]
    assert "--resume" in resume_hint and str(csv) in resume_hint

    # continue it: nothing missing, nothing measured twice, the interrupted rows replaced
    done = subprocess.run([*cmd[:-2], "--max-time", "0.3", "--rel-ci", "0.05", "--resume", "--no-roofline"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(csv)
    keys = list(zip(df["act"], df["width"], strict=True))
    assert sorted(keys) == sorted((a, w) for a in ("relu", "silu") for w in (8, 16, 24))
    assert (df["status"] == "ok").all()
    ops = pd.read_csv(csv.with_name(csv.stem + "-ops.csv"))
    assert set(ops["width"]) <= {8, 16, 24}


def test_resume_needs_csv():
    result = runner.invoke(app, ["sweep", "--resume", *SWEEP_FAST])
    assert "--resume needs --csv" in _one_line_error(result)


def test_hard_kill_then_resume(tmp_path):
    """SIGKILL (no chance to clean up) once the first size is in the CSV; --resume completes it exactly once."""
    csv = tmp_path / "killed.csv"
    cmd = [sys.executable, "-m", "edgeprof.cli", "sweep", "--acts", "relu,mish", "--widths", "8,16,24",
           "--imgsz", "32", "--max-time", "2", "--rel-ci", "0.0001", "--sessions", "2", "--csv", str(csv),
           "--models-dir", str(tmp_path / "models"), "--quiet", "--no-roofline", "--no-act-alone"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (csv.exists() and len(csv.read_text().splitlines()) >= 3):
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    kept = pd.read_csv(csv)
    assert len(kept) >= 2 and (kept["status"] == "ok").all()
    fast = [*cmd[:cmd.index("--max-time")], "--max-time", "0.3", "--sessions", "2", "--csv", str(csv),
            "--models-dir", str(tmp_path / "models"), "--quiet", "--no-roofline", "--no-act-alone", "--resume"]
    done = subprocess.run(fast, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    df = pd.read_csv(csv)
    keys = sorted(zip(df["act"], df["width"], strict=True))
    assert keys == sorted((a, w) for a in ("relu", "mish") for w in (8, 16, 24))
