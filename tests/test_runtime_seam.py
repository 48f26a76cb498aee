"""The runtime seam: a runtime written as one file (tests/_fake_runtime.py) runs end to end through sweep,
profile, bundle / profile DIR, baseline save / check and report, with no change anywhere else; and the
registry's one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import cli_ok, conv_act_model, one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.results.recorder import runs_of

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE = "tests._fake_runtime:FakeRuntime"
QUICK = ["--max-time", "0.3", "--min-samples", "6", "--sessions", "2", "--quiet"]
runner = CliRunner()
_ok = cli_ok




def _small_and_big(tmp_path: Path) -> tuple[Path, Path]:
    """Two models whose files differ 16x in weight bytes: the fake runtime takes longer on the bigger one."""
    return (conv_act_model(tmp_path / "small.onnx", "relu", channels=8, size=16),
            conv_act_model(tmp_path / "big.onnx", "mish", channels=32, size=16))


def test_sweep_profile_and_report_with_a_runtime_from_one_file(at_repo_root, tmp_path):
    sweep_csv, profile_csv = tmp_path / "sweep.csv", tmp_path / "profile.csv"
    _ok(runner.invoke(app, ["sweep", "--runtime", FAKE, "--acts", "relu,mish", "--widths", "8", "--imgsz", "32",
                            "--no-roofline", "--models-dir", str(tmp_path / "models"), "--csv", str(sweep_csv),
                            *QUICK]))
    rows = pd.read_csv(sweep_csv)
    assert list(rows["act"]) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {FAKE} and set(rows["runtime_version"]) == {"0.0.1-fake"}
    assert set(rows["runtime_settings"]) == {"work=4.0"} and set(rows["threads"]) == {1}
    assert rows["runtime_peak_in_use_mb"].isna().all()  # the fake runtime has no arena
    assert (rows["per_op_runs"] >= 20).all()
    mish = rows.set_index("act").loc["mish"]
    assert mish["act_ops"] == "Softplus+Tanh+Mul" and not mish["fused"]  # the ops named in its file, beyond Conv
    ops = pd.read_csv(tmp_path / "sweep-ops.csv")
    assert set(ops["runtime"]) == {FAKE} and (ops["per_op_runs"] >= 20).all()
    meta = json.loads(sweep_csv.with_suffix(".json").read_text())
    assert [run["settings"]["runtime"] for run in runs_of(meta)] == [FAKE]

    small, big = _small_and_big(tmp_path)
    _ok(runner.invoke(app, ["profile", str(small), str(big), "--runtime", FAKE, "--csv", str(profile_csv), *QUICK]))
    prof = pd.read_csv(profile_csv)
    assert set(prof["runtime"]) == {FAKE} and list(prof["status"]) == ["ok", "ok"]
    assert prof["ratio_to_baseline"].iloc[1] > 2  # 16x the bytes: far more than twice the work

    out = tmp_path / "report"
    _ok(runner.invoke(app, ["report", str(sweep_csv), str(profile_csv), "-o", str(out)]))
    merged = pd.read_csv(out / "results.csv")
    assert set(merged["runtime"]) == {FAKE}
    assert all("0.0.1-fake" in group for group in merged["host_group"])


def test_bundle_and_profile_dir_with_the_fake_runtime(at_repo_root, tmp_path):
    bundle, csv = tmp_path / "bundle", tmp_path / "device.csv"
    _ok(runner.invoke(app, ["bundle", "--runtime", FAKE, "--acts", "relu,mish", "--widths", "8", "--imgsz", "32",
                            "--no-act-alone", "-o", str(bundle), "--quiet"]))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["runtimes"] == [{"name": FAKE, "version": "0.0.1-fake", "extra": ""}]
    assert all(m["artifacts"][FAKE]["files"] and m["artifacts"][FAKE]["sha256"]
               for g in manifest["groups"] for m in g["models"])
    # the bundle's runtime is used without --runtime; another runtime is refused in one line
    _ok(runner.invoke(app, ["profile", str(bundle), "--csv", str(csv), *QUICK]))
    rows = pd.read_csv(csv)
    assert set(rows["runtime"]) == {FAKE} and set(rows["status"]) == {"ok"} and len(rows) == 2
    line = one_line_error(runner.invoke(app, ["profile", str(bundle), "--runtime", "onnxruntime", *QUICK]))
    assert FAKE in line and "onnxruntime" in line


def test_baseline_save_and_check_with_the_fake_runtime(at_repo_root, tmp_path, monkeypatch):
    import edgeprof.cli.gate as gate
    from edgeprof.gate.measure import GateOptions

    monkeypatch.setattr(gate, "DEFAULT_OPTIONS", GateOptions(block_ms=5, rounds=4, first_sessions=4, max_sessions=4,
                                                             save_sessions=3, warmup_s=0.02))
    small, big = _small_and_big(tmp_path)
    (tmp_path / "cur").mkdir()
    current = (tmp_path / "cur" / "small.onnx")
    current.write_bytes(big.read_bytes())  # the same name, 16x the work
    base = tmp_path / "baseline"
    _ok(runner.invoke(app, ["baseline", "save", str(small), "--runtime", FAKE, "-o", str(base), "-q"]))
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["settings"]["runtime"] == FAKE and manifest["runtime"]["version"] == "0.0.1-fake"

    checked = runner.invoke(app, ["check", "--baseline", str(base), str(current), "--json", "-q"])
    report = json.loads(checked.stdout)
    assert report["settings"]["runtime"] == FAKE  # the baseline's runtime, without --runtime
    (row,) = report["results"]
    assert row["current_ms"] > 2 * row["baseline_ms"] and row["decision"]["ratio"] > 2  # 16x the bytes
    # a gate never passes such a slowdown: it is regressed (exit 1) or, if a loaded machine left it undecided,
    # inconclusive (exit 4) -- never a clean pass
    assert row["verdict"] in ("regressed", "inconclusive")
    assert checked.exit_code == {"regressed": 1, "inconclusive": 4}[row["verdict"]]
    line = one_line_error(runner.invoke(app, ["check", "--baseline", str(base), str(small), "--runtime",
                                              "onnxruntime", "-q"]))
    assert FAKE in line


def test_unknown_runtime_is_one_line_listing_the_valid_ones(tmp_path):
    line = one_line_error(runner.invoke(app, ["profile", str(tmp_path / "x.onnx"), "--runtime", "tensorrt"]))
    assert "unknown runtime 'tensorrt'" in line and "onnxruntime" in line and "pkg.module:Class" in line
    line = one_line_error(runner.invoke(app, ["profile", str(tmp_path / "x.onnx"), "--runtime", "nosuch.mod:X"]))
    assert "cannot import nosuch.mod" in line


def test_a_builtin_runtime_that_is_not_installed_names_its_extra(at_repo_root, monkeypatch, tmp_path):
    from edgeprof.runtime import registry
    from tests._fake_runtime import FakeRuntime

    monkeypatch.setitem(registry.BUILTIN, "openvino", (FAKE, "openvino"))
    monkeypatch.setattr(FakeRuntime, "extra", "openvino")
    monkeypatch.setattr(FakeRuntime, "available", classmethod(lambda cls: False))
    line = one_line_error(runner.invoke(app, ["profile", str(tmp_path / "x.onnx"), "--runtime", "openvino"]))
    assert "runtime openvino is not installed" in line and "pip install 'edgeprof[openvino]'" in line


def test_another_runtimes_option_is_a_usage_error(at_repo_root, tmp_path):
    small, _ = _small_and_big(tmp_path)
    line = one_line_error(runner.invoke(app, ["profile", str(small), "--runtime", FAKE, "--opt-level", "basic"]))
    assert "--opt-level" in line and "work" in line


def test_the_worker_imports_only_the_runtime_its_start_message_names(at_repo_root, tmp_path):
    """The worker serves the fake runtime with torch and onnxruntime unimportable."""
    small, _ = _small_and_big(tmp_path)
    requests = [{"method": "init", "kwargs": {"runtime": FAKE, "path": str(small), "settings": {"threads": 1}}},
                {"method": "load"}, {"method": "first_run"}, {"method": "sample", "kwargs": {"count": 3}},
                {"method": "quit"}]
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnxruntime'] = None\n"
            "from edgeprof.runtime.worker import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["ok"] for r in replies), replies
    assert len(replies[3]["result"]) == 3 and all(x > 0 for x in replies[3]["result"])
