"""Several runtimes in one sweep (issue 10): the same exported blocks converted to each runtime's format (cached by
content, from a ModelSource), measured runtime by runtime, unsupported models as rows, parity against torch's
reference, the cross-runtime table, resume; with onnxruntime and the fake runtimes of tests/_fake_runtime.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_ok, one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE = "tests._fake_runtime:FakeRuntime"
FAKE2 = "tests._fake_runtime:ConvertingFakeRuntime"
QUICK = ["--max-time", "0.3", "--min-samples", "6", "--sessions", "2", "--quiet", "--no-roofline"]
runner = CliRunner()
_ok = cli_ok




def _sweep(tmp_path: Path, runtimes: str, *extra: str, acts: str = "relu,mish", csv: Path | None = None):
    csv = csv or tmp_path / "multi.csv"
    result = runner.invoke(app, ["sweep", "--runtimes", runtimes, "--acts", acts, "--widths", "8", "--imgsz", "16",
                                 "--models-dir", str(tmp_path / "models"), "--csv", str(csv), *QUICK, *extra])
    return result, csv


def test_one_sweep_over_three_runtimes(at_repo_root, tmp_path):
    result, csv = _sweep(tmp_path, f"onnxruntime,{FAKE},{FAKE2}")
    _ok(result)
    rows = pd.read_csv(csv, keep_default_na=False)
    assert list(dict.fromkeys(rows["runtime"])) == ["onnxruntime", FAKE, FAKE2]  # runtime by runtime, in order
    by = rows.set_index(["runtime", "act"])
    # the converter refuses mish: an unsupported row with its one-line reason; everything else ran
    mish2 = by.loc[(FAKE2, "mish")]
    assert mish2["status"] == "unsupported" and mish2["error"] == "fake-converter: op Softplus is not supported"
    assert mish2["median_ms"] == "" and mish2["ratio_to_baseline"] == ""
    assert (rows.drop(index=rows.index[(rows["runtime"] == FAKE2) & (rows["act"] == "mish")])["status"] == "ok").all()
    # converter columns: onnxruntime reads ONNX as is; the converting fake names its converter
    assert by.loc[(FAKE2, "relu"), "converter"] == "fake-converter"
    assert str(by.loc[(FAKE2, "relu"), "converter_version"]) == "9.9"
    assert by.loc[("onnxruntime", "relu"), "converter"] == ""
    # parity against torch's reference (<model>.ref.npz, written at export) through each runtime's own infer
    assert float(by.loc[("onnxruntime", "relu"), "runtime_parity_max_abs_err"]) < 1e-4
    assert float(by.loc[(FAKE2, "relu"), "runtime_parity_max_abs_err"]) < 1e-4
    assert by.loc[(FAKE, "relu"), "runtime_parity_max_abs_err"] == ""  # a runtime without infer: no figure
    # threads read back from each runtime; per-op source said
    assert int(by.loc[("onnxruntime", "relu"), "threads_effective"]) == 1
    assert int(by.loc[(FAKE2, "relu"), "threads_effective"]) == 1
    assert by.loc[("onnxruntime", "mish"), "per_op_source"] == "onnxruntime profiler"
    assert by.loc[(FAKE, "mish"), "per_op_source"] == "fake per-op times"
    # fusion from the runtime's graph and by timing, for every runtime that ran the block
    for rt in ("onnxruntime", FAKE, FAKE2):
        assert by.loc[(rt, "relu"), "fused"] in ("True", "False")
        assert by.loc[(rt, "relu"), "fused_by_timing"] in ("True", "False")
    assert by.loc[("onnxruntime", "relu"), "fused"] == "True" and by.loc[("onnxruntime", "mish"), "fused"] == "False"
    # the cross-runtime view: one row per size and activation, one column per runtime
    out = result.stdout
    assert "ConvertingFakeRuntime" in out and "unsupported" in out  # a column per runtime (its short name)
    relu_line = next(line for line in out.splitlines() if " relu " in line)
    assert "1.00× [1.00–1.00] F" in relu_line  # onnxruntime fuses relu into the conv (its graph says so)
    assert max(len(line) for line in out.splitlines()) <= 120
    # the converting runtime got the block's spec and seed, and its two-file artifact sits beside the ONNX file
    weights = list((tmp_path / "models").glob("*.fake2w"))
    assert weights and all(json.loads(w.read_text())["spec"]["width"] == 8 for w in weights)
    refs = list((tmp_path / "models").glob("*.ref.npz"))
    assert refs and {k.split(":")[0] for k in np.load(refs[0]).files} == {"input", "output"}
    # detail of one runtime with --runtime-style filtering is the CSV; the report draws the ratio per runtime
    pytest.importorskip("matplotlib")
    _ok(runner.invoke(app, ["report", str(csv), "-o", str(tmp_path / "report")]))
    assert list((tmp_path / "report").glob("runtimes-*.png"))
    assert "Across runtimes" in (tmp_path / "report" / "report.md").read_text()


def test_conversions_are_cached_by_content(at_repo_root, tmp_path):
    _ok(_sweep(tmp_path, FAKE2, acts="relu")[0])
    first = sorted(p.name for p in (tmp_path / "models").glob("*.fake2"))
    _ok(_sweep(tmp_path, FAKE2, acts="relu", csv=tmp_path / "again.csv")[0])
    assert sorted(p.name for p in (tmp_path / "models").glob("*.fake2")) == first and first


def test_parity_over_tolerance_is_a_failed_row_with_the_figure(at_repo_root, tmp_path):
    from edgeprof.measure import MeasureOptions
    from edgeprof.pipeline import run_sweep
    from edgeprof.runtime.registry import get_runtime
    from edgeprof.spec.plan import SweepPlan

    settings = get_runtime(FAKE2).settings(perturb=0.5)
    plan = SweepPlan(acts=("relu",), widths=(8,), imgsz=(16,), roofline=False, act_alone=False)
    df, _ = run_sweep(plan, [settings], MeasureOptions(max_time=0.3, min_samples=6, sessions=3),
                      models_dir=tmp_path / "m", csv_path=tmp_path / "p.csv")
    row = df.iloc[0]
    assert row["status"] == "failed" and "parity against torch failed" in row["error"]
    assert row["runtime_parity_max_abs_err"] == pytest.approx(0.5, rel=1e-3)


def test_resume_treats_unsupported_as_done(at_repo_root, tmp_path):
    _ok(_sweep(tmp_path, FAKE2)[0])
    result, csv = _sweep(tmp_path, FAKE2, "--resume")
    _ok(result)
    assert "2 of 2 configs already measured" in result.output
    assert len(pd.read_csv(csv)) == 2


def test_runtimes_all_says_which_are_not_installed(at_repo_root, tmp_path, monkeypatch):
    from edgeprof.api import resolve_runtimes
    from edgeprof.runtime import registry

    monkeypatch.setitem(registry.BUILTIN, "nothere", ("tests._fake_runtime:MissingRuntime", "nothere_pkg"))
    names, note = resolve_runtimes("all")
    missing = registry.missing_runtimes()
    assert "nothere" in missing and names == [n for n in registry.BUILTIN if n not in missing]
    assert names[0] == "onnxruntime"  # a core dependency: always installed
    assert note.startswith("not installed here, so left out: ") and "nothere (pip install 'edgeprof[nothere]')" in note
    error = one_line_error(runner.invoke(app, ["sweep", "--runtimes", "onnxruntime,nothere", "--quiet"]))
    assert "pip install 'edgeprof[nothere]'" in error


def test_runtime_and_runtimes_together_is_a_usage_error(at_repo_root):
    error = one_line_error(runner.invoke(app, ["sweep", "--runtime", "onnxruntime", "--runtimes", FAKE, "--quiet"]))
    assert "not both" in error


def test_bundle_carries_each_runtimes_artifacts_and_profile_runs_the_installed_ones(at_repo_root, tmp_path):
    bundle, csv = tmp_path / "bundle", tmp_path / "device.csv"
    _ok(runner.invoke(app, ["bundle", "--runtimes", f"onnxruntime,{FAKE2}", "--acts", "relu,mish", "--widths", "8",
                            "--imgsz", "16", "--no-act-alone", "-o", str(bundle), "--quiet"]))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [r["name"] for r in manifest["runtimes"]] == ["onnxruntime", FAKE2]
    models = [m for g in manifest["groups"] for m in g["models"]]
    relu = next(m for m in models if m["act"] == "relu")
    mish = next(m for m in models if m["act"] == "mish")
    # a two-file artifact: both files in the bundle, each with its SHA-256; torch's reference travels too
    files = relu["artifacts"][FAKE2]["files"]
    assert [Path(f).suffix for f in files] == [".fake2", ".fake2w"] and all((bundle / f).is_file() for f in files)
    assert len(relu["artifacts"][FAKE2]["sha256"]) == 2 and relu["artifacts"][FAKE2]["converter"] == "fake-converter"
    assert relu["artifacts"]["onnxruntime"]["files"] == [relu["file"]] and (bundle / relu["ref"]).is_file()
    assert mish["artifacts"][FAKE2] == {"unsupported": "fake-converter: op Softplus is not supported"}

    # on the "device": every runtime of the bundle installed here
    _ok(runner.invoke(app, ["profile", str(bundle), "--csv", str(csv), *QUICK[:-1]]))
    rows = pd.read_csv(csv, keep_default_na=False).set_index(["runtime", "act"])
    assert rows.loc[(FAKE2, "mish"), "status"] == "unsupported"
    assert rows.loc[(FAKE2, "relu"), "status"] == "ok" and rows.loc[(FAKE2, "relu"), "converter"] == "fake-converter"
    assert float(rows.loc[(FAKE2, "relu"), "runtime_parity_max_abs_err"]) < 1e-4  # the bundle's reference
    assert rows.loc[("onnxruntime", "mish"), "status"] == "ok"

    # a runtime not installed on the device is skipped with one line naming its extra
    manifest["runtimes"].append({"name": "tests._fake_runtime:MissingRuntime", "version": "1", "extra": "nothere"})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["profile", str(bundle), "--runtime", "onnxruntime", "--csv",
                                 str(tmp_path / "one.csv"), *QUICK[:-1]])
    _ok(result)
    assert set(pd.read_csv(tmp_path / "one.csv")["runtime"]) == {"onnxruntime"}
    from edgeprof.bundle import installed_bundle_runtimes

    names, note = installed_bundle_runtimes(bundle)
    assert names == ["onnxruntime", FAKE2]
    assert note == ("skipped the bundle's models for tests._fake_runtime:MissingRuntime (not installed here: "
                    "pip install 'edgeprof[nothere]')")


def test_check_runs_on_the_converting_fake_runtime(at_repo_root, tmp_path, monkeypatch):
    from conftest import conv_act_model

    import edgeprof.cli.gate as gate
    from edgeprof.gate.measure import GateOptions

    monkeypatch.setattr(gate, "DEFAULT_OPTIONS", GateOptions(block_ms=5, rounds=4, first_sessions=3, max_sessions=3,
                                                             save_sessions=3, warmup_s=0.02))
    model = conv_act_model(tmp_path / "m.onnx", "relu", channels=8, size=16)
    base = tmp_path / "baseline"
    _ok(runner.invoke(app, ["baseline", "save", str(model), "--runtime", FAKE2, "-o", str(base), "-q"]))
    checked = runner.invoke(app, ["check", "--baseline", str(base), str(model), "--json", "-q"])
    report = json.loads(checked.stdout)
    assert report["settings"]["runtime"] == FAKE2 and len(report["results"]) == 1
    assert checked.exit_code in (0, 4), checked.output  # the same model: a pass, or undecided under load


def test_cross_runtime_table_fits_120_columns_with_six_runtimes():
    from edgeprof.report.table import cross_runtime_frame

    rows = []
    for rt in ("onnxruntime", "openvino", "ncnn", "mnn", "litert", "executorch"):
        for act, ratio, fused in (("relu", 1.0, True), ("hardswish", 1.0537, False), ("mish", 3.0412, rt == "ncnn")):
            rows.append({"runtime": rt, "block": "conv", "width": 64, "depth": 1, "imgsz": 80, "act": act,
                         "status": "unsupported" if (rt, act) == ("mnn", "mish") else "ok",
                         "ratio_to_baseline": ratio, "ratio_ci95_low": ratio * 0.99, "ratio_ci95_high": ratio * 1.01,
                         "fused": fused, "baseline": "relu"})
    frame = cross_runtime_frame(pd.DataFrame(rows))
    assert list(frame.columns) == ["size", "act", "onnxruntime", "openvino", "ncnn", "mnn", "litert", "executorch"]
    widths = [max([len(c)] + [len(str(v)) for v in frame[c]]) for c in frame.columns]
    assert sum(widths) + 3 * len(widths) + 1 <= 120  # the compact form: the CI's half-width
    cells = frame.set_index("act")
    assert cells.loc["mish", "ncnn"] == "3.04×±0.03 F" and cells.loc["mish", "mnn"] == "unsupported"
    assert cells.loc["relu", "onnxruntime"] == "1.00×±0.01 F" and cells.loc["hardswish", "openvino"] == "1.05×±0.01"
    two = cross_runtime_frame(pd.DataFrame([r for r in rows if r["runtime"] in ("onnxruntime", "ncnn")]))
    assert two.set_index("act").loc["mish", "ncnn"] == "3.04× [3.01–3.07] F"  # the full form when it fits


def test_runtime_hooks_default_to_one_file_and_say_where_per_op_times_come_from(tmp_path):
    from edgeprof.runtime.base import Runtime, parity_error

    rt = Runtime("x")
    rt.name = "x"
    assert rt.artifact_files(tmp_path / "m.onnx") == [tmp_path / "m.onnx"]
    assert rt.per_op_label([]) == "none (x offers no per-op times)"
    assert rt.per_op_label([{"mean_us": 3.0}]) == "x per-op times"
    err, tol = parity_error([np.array([0.0, 1.0005])], [np.array([0.0, 1.0])])
    assert err == pytest.approx(5e-4) and tol == pytest.approx(1e-3)
    assert parity_error([np.zeros(3)], [np.zeros(4)])[0] == float("inf")


def test_unsupported_is_a_status_the_csv_accepts():
    from edgeprof.results.schema import DTYPES, SCHEMA, STATUSES

    assert "unsupported" in STATUSES
    status = next(c for c in SCHEMA if c.name == "status")
    assert status.problem("unsupported") is None and status.problem("weird") is not None
    assert DTYPES["threads_effective"] == "Int64" and DTYPES["converter"] == "string"
