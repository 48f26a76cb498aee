"""`edgeprof lab` with no --address and no RAY_ADDRESS: an embedded Ray instance whose one device is this machine.
Run as a user runs it (a child process): it lists this machine, and Ctrl-C mid-sweep cancels the remote task, keeps
the finished rows and exits 130. Skipped where Ray is not installed (the ``lab`` extra)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("ray", reason="the lab tests need Ray: pip install 'edgeprof[lab]'")


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "EDGEPROF_LAB_DIR": str(tmp_path / "lab-devices"), "COLUMNS": "200"}


def test_embedded_lab_lists_this_machine(tmp_path):
    from edgeprof.lab.cluster import local_device_name

    proc = subprocess.run([sys.executable, "-m", "edgeprof.cli", "lab", "devices", "--format", "json"],
                          capture_output=True, text=True, timeout=240, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (device,) = json.loads(proc.stdout)
    assert device["device"] == local_device_name() and "onnxruntime" in device["runtimes"]


def test_ctrl_c_cancels_the_remote_task_and_keeps_finished_rows(tmp_path):
    pytest.importorskip("torch")
    from edgeprof.api import make_plan
    from edgeprof.bundle import make_bundle
    from edgeprof.lab.cluster import local_device_name
    from edgeprof.results.rows import read_results

    plan = make_plan(acts="relu,hardswish", widths="8", imgsz="16,24,32,40,48,56", act_alone=False, roofline=False)
    bundle = make_bundle(plan, tmp_path / "bundle").parent
    out = tmp_path / "out"
    csv = out / f"{local_device_name()}.csv"
    # SIG_DFL in the child: a background job of a non-interactive shell ignores SIGINT, and its children inherit it
    proc = subprocess.Popen([sys.executable, "-m", "edgeprof.cli", "lab", "sweep", "--bundle", str(bundle), "--out",
                             str(out), "--quiet", "--sessions", "1", "--max-time", "0.3", "--min-samples", "6",
                             "--rel-ci", "0.5", "--no-roofline"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not (csv.exists() and csv.stat().st_size):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted; the remote tasks were cancelled" in err and "--resume" in err
    rows = read_results(csv)
    assert 2 <= len(rows) < 12 and set(rows["status"]) == {"ok"}  # finished groups kept, not the whole sweep


def test_embedded_sweep_builds_here_and_measures_on_this_machine(tmp_path):
    pytest.importorskip("torch")
    from edgeprof.lab.cluster import local_device_name
    from edgeprof.results.rows import read_results

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edgeprof.cli", "lab", "sweep", "--acts", "relu,hardswish",
                           "--widths", "8", "--imgsz", "16", "--no-act-alone", "--no-roofline", "--sessions", "1",
                           "--max-time", "0.2", "--min-samples", "6", "--out", str(out), "--quiet", "--format", "md"],
                          capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    name = local_device_name()
    assert f"| block | size | act | {name} |" in proc.stdout
    assert (out / "bundle" / "manifest.json").exists()  # built and exported here, into the run's folder
    assert sorted(read_results(out / f"{name}.csv")["act"]) == ["hardswish", "relu"]
