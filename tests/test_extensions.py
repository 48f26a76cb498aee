"""An activation and a block kind each defined in one file in tests/ run end to end, with no other file changed:
``tests/_user_acts.py:TANHEXP`` through sweep, swap and report; ``tests/_user_blocks.py:DWSEP`` through sweep,
baseline save / check and report."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from conftest import one_line_error
from test_gate_cli import FakeInterleaver
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.convert.onnx_export import export_block
from edgeprof.gate import check as gate_check
from edgeprof.spec import BlockSpec
from edgeprof.swap import find_activations

REPO_ROOT = Path(__file__).resolve().parent.parent
USER_ACT = "tests._user_acts:TANHEXP"
USER_BLOCK = "tests._user_blocks:DWSEP"
QUICK = ["--max-time", "0.2", "--min-samples", "6", "--sessions", "2", "--no-roofline", "--quiet"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def _sweep(tmp_path: Path, *args: str) -> pd.DataFrame:
    csv = tmp_path / "sweep.csv"
    result = runner.invoke(app, ["sweep", *args, "--widths", "8", "--imgsz", "16", "--csv", str(csv),
                                 "--models-dir", str(tmp_path / "models"), *QUICK])
    assert result.exit_code == 0, result.output
    return pd.read_csv(csv)


def _report(tmp_path: Path, csv: Path) -> str:
    result = runner.invoke(app, ["report", str(csv), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    return (tmp_path / "report" / "report.md").read_text()


def test_user_activation_runs_through_sweep_and_report(tmp_path):
    df = _sweep(tmp_path, "--acts", f"relu,{USER_ACT}", "--blocks", "conv").set_index("act")
    assert list(df.index) == ["relu", USER_ACT]
    row = df.loc[USER_ACT]
    assert row["status"] == "ok"
    assert row["act_ops_exported"] == "Exp+Tanh+Mul"
    assert not row["fused"] and "Exp" in row["act_ops"]
    assert row["act_alone_ms"] > 0
    assert USER_ACT in _report(tmp_path, tmp_path / "sweep.csv")


def test_user_activation_is_swapped_in_detected_and_equals_the_built_block(tmp_path):
    src = export_block(BlockSpec("c2f", "silu", width=8, imgsz=16), tmp_path / "src").path
    out = tmp_path / "swapped.onnx"
    result = runner.invoke(app, ["swap", str(src), "--to", USER_ACT, "-o", str(out)])
    assert result.exit_code == 0, result.output
    found = find_activations(out)
    assert len(found) == 4 and {f.act for f in found} == {USER_ACT}  # found by the entry's own form
    assert {f.pattern for f in found} == {"x*Tanh(Exp(x))"}

    built = export_block(BlockSpec("c2f", USER_ACT, width=8, imgsz=16), tmp_path / "built").path
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16), dtype=np.float32)
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
               for p in (out, built)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)


def test_user_activation_through_sweep_onnx(tmp_path):
    src = export_block(BlockSpec("conv", "silu", width=8, imgsz=16), tmp_path / "src").path
    csv = tmp_path / "swap.csv"
    result = runner.invoke(app, ["sweep", "--onnx", str(src), "--acts", USER_ACT, "--csv", str(csv),
                                 "--models-dir", str(tmp_path / "m"), "--max-time", "0.2", "--min-samples", "6",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(csv).set_index("act")
    assert df.loc[USER_ACT, "status"] == "ok" and "Exp" in df.loc[USER_ACT, "act_ops"]


def test_user_block_kind_runs_through_sweep_and_report(tmp_path):
    df = _sweep(tmp_path, "--acts", "relu,mish", "--blocks", f"conv,{USER_BLOCK}", "--depths", "2")
    mine = df[df["block"] == USER_BLOCK].set_index("act")
    assert list(mine.index) == ["relu", "mish"]
    assert (mine["status"] == "ok").all() and (mine["depth"] == 2).all()
    assert (df.loc[df["block"] == "conv", "depth"] == 1).all()  # depth applies to the user kind only
    assert mine.loc["mish", "act_ops"].count("Softplus") == 4  # 2 units x (depthwise + pointwise)
    assert mine.loc["relu", "fused"]
    assert "w8 16px n2" in _report(tmp_path, tmp_path / "sweep.csv")


def test_user_block_kind_through_baseline_save_and_check(tmp_path, monkeypatch):
    monkeypatch.setattr(gate_check, "Interleaver", FakeInterleaver)
    FakeInterleaver.SPEED_MS, FakeInterleaver.NOISE = {}, {}
    options = ["--acts", "relu", "--blocks", USER_BLOCK, "--widths", "8", "--imgsz", "16",
               "--models-dir", str(tmp_path / "models")]
    saved = runner.invoke(app, ["baseline", "save", *options, "-o", str(tmp_path / "baseline"), "-q"])
    assert saved.exit_code == 0, saved.output
    manifest = json.loads((tmp_path / "baseline" / "manifest.json").read_text())
    assert [m["spec"]["block"] for m in manifest["models"]] == [USER_BLOCK]
    checked = runner.invoke(app, ["check", "--baseline", str(tmp_path / "baseline"), *options, "--json", "-q"])
    assert checked.exit_code == 0, checked.output
    (row,) = json.loads(checked.stdout)["results"]
    assert row["identical"] is True


def test_a_block_path_that_is_no_block_kind_is_one_line(tmp_path):
    result = runner.invoke(app, ["sweep", "--blocks", "tests._user_acts:TANHEXP", *QUICK,
                                 "--csv", str(tmp_path / "x.csv")])
    assert "not an edgeprof BlockKind" in one_line_error(result)


def test_user_activation_is_found_in_the_working_directory_without_pythonpath(tmp_path):
    (tmp_path / "myacts").mkdir()
    (tmp_path / "myacts" / "__init__.py").write_text("")
    (tmp_path / "myacts" / "mine.py").write_text(textwrap.dedent("""
        from torch import nn

        class Twice(nn.Module):
            def forward(self, x):
                return 2 * x
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO_ROOT)  # edgeprof itself, not the working directory
    code = ("import sys; sys.path = [p for p in sys.path if p not in ('', '.')]\n"
            "from edgeprof.blocks.activations import canonical_act\n"
            "print(canonical_act('myacts.mine:Twice'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "myacts.mine:Twice"
