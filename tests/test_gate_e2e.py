"""One real save + check on tiny ONNX models, in a process where torch cannot be imported: the gate times
fresh onnxruntime workers, passes a model against itself and fails one that got much slower."""

import json
import shutil
import subprocess
import sys

from conftest import conv_act_model

# Quicker than the defaults (4 sessions of 4 rounds of 5 ms blocks, 4 sessions to save), same code path.
SCRIPT = """
import sys
sys.modules["torch"] = None
import edgeprof.cli.gate as gate
from edgeprof.cli import app
from edgeprof.gate.measure import GateOptions
gate.DEFAULT_OPTIONS = GateOptions(block_ms=5, rounds=4, first_sessions=4, max_sessions=4, save_sessions=4,
                                   warmup_s=0.02)
app(sys.argv[1:], standalone_mode=True)
"""


def _edgeprof(*args, env=None):
    return subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env)


def test_save_and_check_for_real_without_torch(tmp_path):
    src, cur = tmp_path / "src", tmp_path / "cur"
    src.mkdir()
    cur.mkdir()
    relu = conv_act_model(src / "block.onnx", "relu", channels=16, size=32)
    conv_act_model(tmp_path / "mish.onnx", "mish", channels=16, size=32)
    slower = shutil.copyfile(tmp_path / "mish.onnx", cur / "block.onnx")  # same name, Softplus+Tanh+Mul added
    baseline = tmp_path / "baseline"

    saved = _edgeprof("baseline", "save", relu, "-o", baseline, "-q")
    assert saved.returncode == 0, saved.stderr
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["gate"]["clock_used"] in ("cpu", "wall")
    block = manifest["models"][0]["blocks"]["a"][0]
    assert block["samples_ms"] and block["value"] > 0

    same = _edgeprof("check", "--baseline", baseline, relu, "--json", "-q")
    assert same.returncode == 0, same.stderr
    (row,) = json.loads(same.stdout)["results"]
    assert row["verdict"] != "regressed" and row["identical"] is True
    assert abs(row["change_pct"]) < 10

    worse = _edgeprof("check", "--baseline", baseline, slower, "--json", "-q")
    (row,) = json.loads(worse.stdout)["results"]
    assert worse.returncode == 1, row
    assert row["verdict"] == "regressed" and row["change_pct"] > 30
    assert "regressed by more than 10%: block" in worse.stderr
