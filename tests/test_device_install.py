"""On the device: `pip install edgeprof` without the build extra (no torch, no onnx) runs a bundle end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from edgeprof.bundle import load_bundle, make_bundle
from edgeprof.errors import InputError
from edgeprof.pipeline import SweepPlan

REPO = Path(__file__).resolve().parent.parent


def _bundle(tmp_path) -> Path:
    plan = SweepPlan(acts=("relu", "hardswish"), widths=(8,), imgsz=(24,), roofline=False)
    return make_bundle(plan, tmp_path / "bundle").parent


def test_bundle_manifest_is_checked(tmp_path):
    bundle = _bundle(tmp_path)
    plan, groups = load_bundle(bundle)
    assert plan.acts == ("relu", "hardswish") and len(groups) == 1
    roles = {key[0] for key in groups[0][2]}
    assert roles == {"block", "reference", "alone"}
    victim = next((bundle / "models").glob("*.onnx"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(InputError, match="does not match its manifest"):
        load_bundle(bundle)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_bundle(bundle)
    with pytest.raises(InputError, match="not an edgeprof bundle"):
        load_bundle(tmp_path)


PIP_NETWORK_ERRORS = ("NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "Read timed out",
                      "Temporary failure in name resolution", "Network is unreachable", "Connection refused")
"""What pip prints when the package index cannot be reached (the test then skips instead of failing)."""


def _device_venv(tmp_path, requirement: str) -> Path:
    """A fresh venv with ``requirement`` installed (pinned by constraints.txt), as on a device: no torch, no onnx.
    Skips when the package index cannot be reached."""
    venv = tmp_path / "device-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # pip's own socket timeout and retries bound every request; the subprocess timeout bounds the whole install
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--timeout", "20", "--retries", "2"]
    try:
        proc = subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), requirement],
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("pip install into a fresh venv took over 600 s")
    if proc.returncode != 0 and any(e in proc.stderr for e in PIP_NETWORK_ERRORS):
        pytest.skip(f"the package index is unreachable: {proc.stderr.strip().splitlines()[-1][:200]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    py = str(venv / "bin" / "python")
    for missing in ("torch", "onnx"):
        check = subprocess.run([py, "-c", f"import {missing}"], capture_output=True, text=True)
        assert check.returncode != 0, f"{missing} should not be installed on the device"
    return venv


def _profile_on_device(venv: Path, bundle: Path, tmp_path) -> tuple[pd.DataFrame, dict]:
    """``edgeprof profile BUNDLE`` in the device venv; the rows it wrote and the environment it ran with."""
    csv = tmp_path / "device.csv"
    env = {**os.environ, "EDGEPROF_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([str(venv / "bin" / "edgeprof"), "profile", str(bundle), "--max-time", "0.3",
                          "--min-samples", "10", "--csv", str(csv), "--quiet", "--format", "csv"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    return pd.read_csv(csv), env


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(not os.access(sys.executable, os.X_OK), reason="needs a python to make a venv with")
def test_fresh_venv_without_torch_runs_a_bundle(tmp_path):
    bundle = _bundle(tmp_path)
    venv = _device_venv(tmp_path, str(REPO))
    df, env = _profile_on_device(venv, bundle, tmp_path)
    assert list(df["act"]) == ["relu", "hardswish"] and (df["status"] == "ok").all()
    assert df.set_index("act").loc["relu", "fused"] and not df.set_index("act").loc["hardswish", "fused"]
    assert df["weights_mb"].isna().all()  # the static estimate needs onnx, which the device does not have
    sweep_cmd = subprocess.run([str(venv / "bin" / "edgeprof"), "sweep", "--acts", "relu", "--quiet"],
                               capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert sweep_cmd.returncode != 0 and "Traceback" not in sweep_cmd.stderr
    assert "edgeprof[build]" in sweep_cmd.stderr


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.skipif(not os.access(sys.executable, os.X_OK), reason="needs a python to make a venv with")
def test_fresh_venv_with_only_mnn_runs_an_mnn_bundle(tmp_path):
    """A device runtime other than onnxruntime: `pip install 'edgeprof[mnn]'` (MNN's wheel and numpy; no torch, no
    onnx) runs a bundle of .mnn models end to end. MNN is the leanest device runtime here (one 18 MB wheel)."""
    pytest.importorskip("MNN", reason="the bundle is converted on this side: pip install 'edgeprof[mnn]'")
    plan = SweepPlan(acts=("relu", "mish"), widths=(8,), imgsz=(24,), roofline=False, act_alone=False)
    bundle = make_bundle(plan, tmp_path / "bundle", runtime="mnn").parent
    venv = _device_venv(tmp_path, f"{REPO}[mnn]")
    df, _ = _profile_on_device(venv, bundle, tmp_path)
    assert list(df["act"]) == ["relu", "mish"] and (df["status"] == "ok").all(), df[["act", "status", "error"]]
    assert set(df["runtime"]) == {"mnn"}
    assert df.set_index("act").loc["relu", "fused"] and not df.set_index("act").loc["mish", "fused"]
