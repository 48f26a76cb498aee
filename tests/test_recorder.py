"""The run recorder: resume across hosts and runtime versions, nothing lost whatever happens to the files."""

import errno
import json
import os

import pandas as pd
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.results import rows as rows_module
from edgeprof.results.recorder import RESUME_KEYS, RunRecorder, new_run_id, runs_of
from edgeprof.results.rows import append_per_op, append_rows, per_op_path, read_results, to_frame
from edgeprof.results.schema import DTYPES, SCHEMA

runner = CliRunner()
FAST = ["--max-time", "0.2", "--min-samples", "6", "--no-isolate", "--quiet"]


def _profile(models, csv, *extra):
    return runner.invoke(app, ["profile", str(models["relu"]), str(models["mish"]), "--csv", str(csv), *FAST,
                               "--format", "csv", *extra])


@pytest.fixture
def measured(tiny_models, tmp_path):
    """A CSV with two rows (relu, mish) measured by `edgeprof profile`."""
    csv = tmp_path / "r.csv"
    result = _profile(tiny_models, csv)
    assert result.exit_code == 0, result.output
    return csv


def _edit_csv(csv, **values):
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for column, value in values.items():
        df.loc[0, column] = value
    df.to_csv(csv, index=False)


def test_resume_skips_what_this_host_and_runtime_measured(measured, tiny_models):
    result = _profile(tiny_models, measured, "--resume")
    assert result.exit_code == 0, result.output
    assert "2 of 2 configs already measured" in result.output
    assert len(pd.read_csv(measured)) == 2


@pytest.mark.parametrize("column, value", [("host_fingerprint", "0123456789"), ("runtime_version", "1.0.0")])
def test_resume_measures_again_what_another_host_or_runtime_measured(measured, tiny_models, column, value):
    assert column in RESUME_KEYS
    first = pd.read_csv(measured)
    _edit_csv(measured, **{column: value})  # the relu row now comes from another host / runtime version
    result = _profile(tiny_models, measured, "--resume")
    assert result.exit_code == 0, result.output
    note = next(line for line in result.output.splitlines() if "resuming" in line)
    assert "1 of 2 configs already measured; 1 measured again" in note and value in note
    df = pd.read_csv(measured, dtype={"runtime_version": str})
    assert len(df) == 3
    new = df.iloc[2]
    # the new row carries this run's id, host and runtime version, never the first run's
    assert new["run_id"] != first["run_id"].iloc[0]
    assert new["host_fingerprint"] == first["host_fingerprint"].iloc[0]
    assert new["runtime_version"] == first["runtime_version"].iloc[0]
    assert new["model"] == str(tiny_models["relu"])
    # the metadata keeps both runs, so the report finds each run_id
    runs = runs_of(json.loads(measured.with_suffix(".json").read_text()))
    assert [r["run_id"] for r in runs] == [first["run_id"].iloc[0], new["run_id"]]
    from edgeprof.report.summary import load_inputs

    assert set(load_inputs([measured]).metadata) == set(df["run_id"])


def test_resume_drops_a_partial_last_line(measured, tiny_models):
    text = measured.read_bytes()
    measured.write_bytes(text[: len(text) - 40])  # the mish row cut off mid-write
    result = _profile(tiny_models, measured, "--resume")
    assert result.exit_code == 0, result.output
    assert "dropped a partial last line" in result.output
    df = read_results(measured)
    assert sorted(df["model"]) == sorted(str(p) for p in (tiny_models["relu"], tiny_models["mish"]))
    assert (df["status"] == "ok").all()


@pytest.mark.parametrize("column, value, needle", [("width", "sixteen", "not a whole number"),
                                                   ("status", "done", "not one of ok, failed, unsupported"),
                                                   ("median_ms", "fast", "not a number"),
                                                   ("fused", "yes", "not True or False")])
def test_resume_refuses_impossible_rows(measured, tiny_models, column, value, needle):
    _edit_csv(measured, **{column: value})
    line = one_line_error(_profile(tiny_models, measured, "--resume"))
    assert f"line 2 has {column}='{value}', {needle}" in line


def test_an_existing_csv_needs_resume_or_append(measured, tiny_models):
    line = one_line_error(_profile(tiny_models, measured))
    assert "already holds results" in line and "--resume" in line and "--append" in line
    assert len(pd.read_csv(measured)) == 2
    result = _profile(tiny_models, measured, "--append")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(measured)
    assert len(df) == 4 and df["run_id"].nunique() == 2
    assert len(runs_of(json.loads(measured.with_suffix(".json").read_text()))) == 2


def test_a_second_run_on_the_same_csv_is_refused(tiny_models, tmp_path):
    csv = tmp_path / "busy.csv"
    with RunRecorder("profile", {}, csv):
        line = one_line_error(_profile(tiny_models, csv))
        assert "being written by another edgeprof run" in line and f"pid {os.getpid()}" in line
    assert not csv.with_name("busy.csv.lock").exists()  # released and removed at the end
    assert _profile(tiny_models, csv).exit_code == 0


def test_disk_full_prints_what_was_measured_and_leaves_no_orphans(tiny_models, tmp_path, monkeypatch):
    real_write = os.write

    def full(fd, data):  # the first CSV write fills the disk half-way through its bytes
        if os.fstat(fd).st_size == 0 and b"precision,act" in data:
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(rows_module.os, "write", full)
    csv = tmp_path / "full.csv"
    result = _profile(tiny_models, csv)
    assert result.exit_code == 3
    assert "Traceback" not in result.output + result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"edgeprof: error: cannot write results to {csv}")
    assert "No space left on device" in error[0] and "2 rows measured, 0 of them saved" in error[0]
    printed = pd.read_csv(pd.io.common.StringIO(result.stdout))  # what was measured is printed
    assert sorted(printed["model"]) == sorted(str(tiny_models[a]) for a in ("relu", "mish"))
    assert not csv.exists() or csv.stat().st_size == 0  # the half-written line was cut back
    assert not per_op_path(csv).exists()  # no per-op rows for rows that are not in the CSV


def test_appends_are_whole_rows_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    row = {"act": "relu", "block": "conv", "width": 16, "median_ms": 1.0, "status": "ok", "model": "m.onnx",
           "error": "line one\nline two"}
    append_rows(path, [row])
    before = path.read_bytes()
    assert before.count(b"\n") == 2  # header + one row: the error's line break does not split the row
    real_write = os.write
    monkeypatch.setattr(rows_module.os, "write", lambda fd, data: (real_write(fd, data[:10]), 10)[1])
    with pytest.raises(rows_module.RuntimeFailure, match="only 10 of"):
        append_rows(path, [row])
    assert path.read_bytes() == before


def test_run_ids_are_never_numbers_to_another_tool(tmp_path):
    """A run id of hex digits alone (``123456e78901``, ``000000000012``) is a number to pandas and to spreadsheets:
    a report lost such a run's per-op rows. New run ids always hold a letter other than e, and edgeprof's readers
    keep every text column as text, so files written before still read back."""
    ids = {new_run_id() for _ in range(20000)}
    assert len(ids) == 20000 and all(len(i) == 12 for i in ids)
    csv = tmp_path / "ids.csv"
    pd.DataFrame({"run_id": sorted(ids)}).to_csv(csv, index=False)
    assert set(pd.read_csv(csv)["run_id"]) == ids  # pandas guesses no number among them
    for i in ids:
        with pytest.raises(ValueError):
            float(i)

    from edgeprof.api import per_op_table

    path = tmp_path / "old.csv"
    looks_numeric = ["123456e78901", "000000000012"]
    base = {"act": "relu", "block": "conv", "width": 16, "imgsz": 32, "median_ms": 1.0, "status": "ok",
            "model": "m.onnx", "host_fingerprint": "0123456789"}
    append_rows(path, [{**base, "run_id": r} for r in looks_numeric])
    append_per_op(per_op_path(path), [{"run_id": r, "act": "relu", "block": "conv", "width": 16, "imgsz": 32,
                                       "model": "m.onnx", "node": "n", "op_type": "Conv", "mean_us": 5.0,
                                       "share": 1.0, "is_act": False} for r in looks_numeric])
    df = read_results(path)
    assert list(df["run_id"]) == looks_numeric and set(df["host_fingerprint"]) == {"0123456789"}
    for r in looks_numeric:
        summary = per_op_table(path, [r])
        assert summary is not None and len(summary) == 1


def test_schema_gives_every_column_a_dtype_and_meaning():
    assert [c.name for c in SCHEMA][:3] == ["precision", "act", "block"]
    df = to_frame([{"width": "16", "fused": True, "median_ms": "1.5", "act": None}])
    assert all(str(df[c].dtype) == DTYPES[c] for c in df.columns)
    assert df["width"].iloc[0] == 16 and df["act"].iloc[0] == ""
    width = next(c for c in SCHEMA if c.name == "width")
    assert width.problem("16") is None and width.problem("") is None and width.problem("sixteen")


def test_resume_and_append_exclude_each_other(tmp_path):
    with pytest.raises(InputError, match="exclude each other"):
        RunRecorder("sweep", {}, tmp_path / "r.csv", resume=True, append=True)


def test_swap_refuses_to_overwrite_its_input(tiny_models):
    src = tiny_models["mish"]
    before = src.read_bytes()
    line = one_line_error(runner.invoke(app, ["swap", str(src), "--to", "relu", "-o", str(src)]))
    assert "is the input model" in line and "--force" in line
    assert src.read_bytes() == before
    assert runner.invoke(app, ["swap", str(src), "--to", "relu", "-o", str(src), "--force"]).exit_code == 0


def test_bundle_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    line = one_line_error(runner.invoke(app, ["bundle", "--acts", "relu", "--widths", "8", "--imgsz", "16",
                                              "-o", str(precious), "-q"]))
    assert "not an edgeprof bundle" in line
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]


def test_interrupted_baseline_save_leaves_nothing_behind(tiny_models, tmp_path, monkeypatch):
    from edgeprof.gate import check as gate_check

    class Interrupted:
        def __init__(self, *args, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(gate_check, "Interleaver", Interrupted)
    out = tmp_path / "baseline"
    result = runner.invoke(app, ["baseline", "save", str(tiny_models["relu"]), "-o", str(out), "-q"])
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"tiny_{a}.onnx" for a in ("relu", "mish", "none"))


def test_a_bundle_resumes_and_a_rebuilt_bundle_keeps_no_stale_models(tmp_path):
    out = tmp_path / "bundle"
    small = ["--widths", "8", "--imgsz", "16", "--no-act-alone", "--no-roofline", "-o", str(out), "-q"]
    assert runner.invoke(app, ["bundle", "--acts", "relu,mish", *small]).exit_code == 0
    csv = tmp_path / "device.csv"
    profile = ["profile", str(out), "--csv", str(csv), *FAST]
    assert runner.invoke(app, profile).exit_code == 0
    again = runner.invoke(app, [*profile, "--resume"])
    assert again.exit_code == 0 and "2 of 2 configs already measured" in again.output
    assert len(pd.read_csv(csv)) == 2
    assert runner.invoke(app, ["bundle", "--acts", "relu", *small]).exit_code == 0  # replaces the bundle
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {m["file"] for g in manifest["groups"] for m in g["models"]}
    assert {f"models/{p.name}" for p in (out / "models").glob("*.onnx")} == listed
