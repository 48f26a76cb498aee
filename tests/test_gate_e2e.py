"""Real saves and checks on tiny ONNX models, in a process where torch cannot be imported: the gate times fresh
onnxruntime workers. The assertions are ones that hold on a busy machine too (another process on a core):
an identical model is never `regressed`, a 5x slowdown always is, a killed worker is a failed model and
Ctrl-C exits 130 with what was decided. How often the gate decides right is the benchmark's business."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import conv_act_model
from test_torch_free import BLOCK_TORCH

# Quicker than the defaults (4 sessions of 4 rounds of 5 ms blocks, 4 sessions to save), same code path.
SCRIPT = BLOCK_TORCH + """
import edgeprof.cli.gate as gate
from edgeprof.cli import app
from edgeprof.gate.measure import GateOptions
gate.DEFAULT_OPTIONS = GateOptions(block_ms=5, rounds=4, first_sessions=4, max_sessions=4, max_sessions_noisy=8,
                                   save_sessions=4, warmup_s=0.02)
app(sys.argv[1:], standalone_mode=True)
"""


def _edgeprof(*args, env=None):
    return subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env)


@pytest.fixture
def saved(tmp_path):
    """A baseline of a 16-channel Conv+Relu ("block"), and a current "block" that is Conv+Mish (~5x slower)."""
    src, cur = tmp_path / "src", tmp_path / "cur"
    src.mkdir()
    cur.mkdir()
    relu = conv_act_model(src / "block.onnx", "relu", channels=16, size=32)
    conv_act_model(tmp_path / "mish.onnx", "mish", channels=16, size=32)
    slower = shutil.copyfile(tmp_path / "mish.onnx", cur / "block.onnx")  # same name, Softplus+Tanh+Mul added
    baseline = tmp_path / "baseline"
    saved = _edgeprof("baseline", "save", relu, "-o", baseline, "-q")
    assert saved.returncode == 0, saved.stderr
    return baseline, relu, slower


def test_save_and_check_for_real_without_torch(saved):
    baseline, relu, slower = saved
    manifest = json.loads((baseline / "manifest.json").read_text())
    assert manifest["gate"]["clock_used"] in ("cpu", "wall")
    block = manifest["models"][0]["blocks"]["a"][0]
    assert block["samples_ms"] and block["value"] > 0

    same = _edgeprof("check", "--baseline", baseline, relu, "--json", "-q")
    report = json.loads(same.stdout)
    (row,) = report["results"]
    # identical files: never regressed; on a busy machine the interval may still straddle +10% (exit 4, not 0)
    assert row["verdict"] != "regressed" and row["identical"] is True, row
    assert same.returncode == {"inconclusive": 4}.get(row["verdict"], 0), same.stderr
    assert row["ci_low_pct"] < 10, row  # the interval never lies wholly above the threshold
    assert "load" in report and "other_cpu_cores" in report["load"], report.get("load")

    worse = _edgeprof("check", "--baseline", baseline, slower, "--json", "-q")
    (row,) = json.loads(worse.stdout)["results"]
    assert worse.returncode == 1, row
    assert row["verdict"] == "regressed" and row["ci_low_pct"] > 10, row
    assert "regressed by more than 10%: block" in worse.stderr, worse.stderr


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                out += [int(x) for x in handle.read().split()]
    except OSError:
        pass
    return out


def _start_check(*args) -> subprocess.Popen:
    # SIG_DFL in the child: a background job of a non-interactive shell ignores SIGINT, and its children inherit it
    return subprocess.Popen([sys.executable, "-c", SCRIPT, "check", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _is_worker(pid: int) -> bool:
    """A measuring worker process (``python -m edgeprof.runtime.worker``), not some other child (a tool the
    host probe runs): killing anything else would test nothing."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"edgeprof.runtime.worker" in handle.read()
    except OSError:
        return False


def _wait_for_workers(proc: subprocess.Popen, deadline_s: float = 60) -> list[int]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        kids = [pid for pid in _children(proc.pid) if _is_worker(pid)]
        if kids:
            return kids
        time.sleep(0.01)
    return []


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc")
def test_a_worker_killed_mid_check_is_a_failed_model_and_the_other_is_judged(saved, tmp_path):
    baseline, relu, _ = saved
    # a second baseline model, so that one survives the kill
    other = conv_act_model(tmp_path / "src" / "other.onnx", "relu", channels=8, size=32)
    two = tmp_path / "two"
    assert _edgeprof("baseline", "save", relu, other, "-o", two, "-q").returncode == 0
    proc = _start_check("--baseline", two, relu, other, "--json", "-q")
    kids = _wait_for_workers(proc)
    assert kids, "the check started no worker processes"
    os.kill(kids[0], signal.SIGKILL)  # a worker process this test's own check started
    out, err = proc.communicate(timeout=180)
    report = json.loads(out)
    verdicts = {r["name"]: r["verdict"] for r in report["results"]}
    failed = [name for name, v in verdicts.items() if v == "failed"]
    assert len(failed) == 1, verdicts
    assert [v for v in verdicts.values() if v != "failed"][0] in ("same", "inconclusive", "faster",
                                                                  "slower-within-threshold")
    reason = next(r["decision"]["reason"] for r in report["results"] if r["verdict"] == "failed")
    assert "died" in reason or "SIGKILL" in reason or "signal" in reason, reason
    assert proc.returncode == 3 and "failed while being measured" in err


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc")
def test_ctrl_c_mid_check_exits_130_with_what_was_decided(saved):
    baseline, relu, _ = saved
    proc = _start_check("--baseline", baseline, relu, "--json", "-q")
    assert _wait_for_workers(proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    if out.strip():  # interrupted while judging: the report of what was decided so far
        report = json.loads(out)
        assert report["interrupted"] and report["exit_code"] == 130
        assert "interrupted after" in err
    else:  # interrupted before any session was judged
        assert "interrupted" in err
