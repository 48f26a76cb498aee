"""OpenVINO behind the runtime seam: conversion (cached, telemetry off, no network), parity for every registered
activation, fusion read from the runtime model, threads read back, the CLI sweep, and the torch-free worker."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import conv_act_model
from test_torch_free import BLOCK_TORCH
from typer.testing import CliRunner

# not importorskip: a plain ``import openvino`` sends OpenVINO's telemetry; edgeprof imports it with that kept off
if importlib.util.find_spec("openvino") is None:
    pytest.skip("OpenVINO is not installed: pip install -c constraints.txt -e '.[openvino]'", allow_module_level=True)

from edgeprof.cli import app  # noqa: E402
from edgeprof.results.rows import split_act_nodes  # noqa: E402
from edgeprof.runtime.base import UnsupportedModel  # noqa: E402
from edgeprof.runtime.registry import get_runtime  # noqa: E402
from edgeprof.spec.acts import spec_names  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
# Parity tolerance, relative to max(1, max|reference|): both sides compute in fp32 (INFERENCE_PRECISION_HINT=f32,
# IR weights kept fp32); what differs is the order of the convolution's sums and the activation's kernel
# (polynomial/table approximations of exp, tanh, erf), seen here at <= 1e-6. 1e-4 leaves room for other ISAs'
# kernels (AVX2, ARM) while a wrong op (a missing activation, the wrong slope) errs by 1e-2 or more.
TOL = 1e-4


@pytest.fixture(scope="module")
def ov_rt():
    return get_runtime("openvino")


def _run(rt, artifact, feeds=None, executed=False):
    runner = rt.runner(str(artifact), rt.settings())
    runner.load()
    runner.first_run()
    out = runner.infer(feeds) if feeds is not None else None
    ops = runner.executed_ops(min_runs=3, min_seconds=0.0) if executed else None
    threads = runner.threads_effective()
    runner.close()
    return out, ops, threads


def _ort_reference(onnx_path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})


def _act_of(ops, act, exported):
    """(fused, the activation's nodes) as edgeprof's rows derive them, against a block without the activation."""
    reference = [{"name": n, "op_type": t, "calls": 1, "mean_us": 1.0}
                 for n, t in (("in", "Reorder"), ("/conv/Conv", "Conv+Add"), ("out", "Reorder"))]
    _, act_nodes = split_act_nodes(ops["nodes"], reference, act, exported)
    return not act_nodes, act_nodes


def test_convert_is_cached_by_content_and_a_bad_file_is_unsupported(ov_rt, tmp_path, monkeypatch):
    from edgeprof.runtime.openvino.convert import import_openvino

    ov = import_openvino()

    onnx_path = conv_act_model(tmp_path / "relu.onnx", "relu")
    first = ov_rt.convert(onnx_path, tmp_path / "ir")
    assert first.path.suffix == ".xml" and first.path.with_suffix(".bin").exists()
    assert first.converter == "openvino.convert_model" and first.converter_version == ov_rt.version()
    monkeypatch.setattr(ov, "convert_model", lambda *a, **k: pytest.fail("converted again despite the cache"))
    assert ov_rt.convert(onnx_path, tmp_path / "ir").path == first.path
    other = conv_act_model(tmp_path / "mish.onnx", "mish")
    monkeypatch.undo()
    assert ov_rt.convert(other, tmp_path / "ir").path != first.path  # other bytes, another artifact

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(UnsupportedModel) as info:
        ov_rt.convert(bad, tmp_path / "ir")
    assert "\n" not in str(info.value) and "bad.onnx" in str(info.value)


def test_fusion_relu_and_mish_run_inside_the_conv(ov_rt, tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    for act, exported in (("relu", ["Relu"]), ("mish", ["Softplus", "Tanh", "Mul"])):
        onnx_path = conv_act_model(tmp_path / f"{act}.onnx", act)
        (out,), ops, threads = _run(ov_rt, ov_rt.convert(onnx_path, tmp_path / "ir").path, {"images": x}, True)
        assert threads == 1  # INFERENCE_NUM_THREADS read back from the compiled model
        np.testing.assert_allclose(out, _ort_reference(onnx_path, x)[0], atol=TOL)
        fused, act_nodes = _act_of(ops, act, exported)
        assert fused and not act_nodes, ops["nodes"]
        conv = [n for n in ops["nodes"] if n["op_type"].startswith("Conv")]
        assert len(conv) == 1 and conv[0]["op_type"].endswith({"relu": "+Relu", "mish": "+Mish"}[act])
        assert ops["runs"] >= 3 and all(n["mean_us"] is not None and n["mean_us"] >= 0 for n in ops["nodes"])


@pytest.mark.slow
@pytest.mark.parametrize("act", spec_names())
def test_every_registered_activation_converts_and_matches(ov_rt, act, tmp_path):
    """Each activation on a small conv block (torch export): parity with onnxruntime (which matched torch at
    export) within TOL, or unsupported with a one-line reason; a separate node only where OpenVINO runs one."""
    from edgeprof.convert.onnx_export import export_block
    from edgeprof.spec import BlockSpec

    exported = export_block(BlockSpec(block="conv", act=act, width=8, imgsz=16), tmp_path / "models")
    try:
        artifact = ov_rt.convert(exported.path, tmp_path / "ir").path
    except UnsupportedModel as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    x = np.random.default_rng(1).standard_normal((1, 8, 16, 16)).astype(np.float32)
    (out,), ops, _ = _run(ov_rt, artifact, {"images": x}, executed=True)
    (ref,) = _ort_reference(exported.path, x)
    assert np.abs(out - ref).max() <= TOL * max(1.0, float(np.abs(ref).max()))
    conv = [n for n in ops["nodes"] if n["op_type"].startswith("Conv")]
    assert len(conv) == 1
    if act == "identity":
        return
    fused, act_nodes = _act_of(ops, act, exported.act_ops)
    if fused:  # nothing of the activation ran on its own: the conv node names it as a post-op
        assert "+" in conv[0]["op_type"], ops["nodes"]
    if act == "sin":  # the CPU plugin has no Sin post-op: a node of its own, so not fused
        assert not fused and [n.op_type for n in act_nodes] == ["Sin"]
    if act == "celu":  # the ONNX frontend decomposes Celu; the chain runs as one elementwise node after the conv
        assert not fused and act_nodes and "+" in act_nodes[0].op_type


def test_converting_and_running_sends_nothing_and_installs_nothing(tmp_path):
    """In a fresh process (``import openvino`` alone would send an event): no socket connects, no subprocess or
    os.system, OpenVINO's telemetry sender never called, and nothing written in the home folder (no client id)."""
    import os

    onnx_path = conv_act_model(tmp_path / "mish.onnx", "mish")
    code = f"""
import os, socket, subprocess, sys
calls = []
def refuse(what):
    def fail(*args, **kwargs):
        calls.append(what)
        raise OSError(what + " refused by the test")
    return fail
socket.socket.connect = refuse("socket.connect")
socket.socket.connect_ex = refuse("socket.connect_ex")
socket.create_connection = refuse("socket.create_connection")
subprocess.Popen = refuse("subprocess.Popen")
os.system = refuse("os.system")
import openvino_telemetry.utils.sender as sender
sender.TelemetrySender.send = refuse("openvino telemetry send")
import numpy as np
from edgeprof.runtime.registry import get_runtime
rt = get_runtime("openvino")
artifact = rt.convert({str(onnx_path)!r}, {str(tmp_path / "ir")!r}).path
runner = rt.runner(str(artifact), rt.settings())
runner.load(); runner.first_run(); runner.infer({{"images": np.zeros((1, 8, 16, 16), np.float32)}})
runner.executed_ops(min_runs=3, min_seconds=0.0)
print(calls)
"""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("CI", None)  # OpenVINO's telemetry keeps quiet in CI by itself; test the case where it would send
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    assert list(home.iterdir()) == []  # no ~/intel/openvino_ga_cid


def test_sweep_through_the_cli_gives_ok_rows_with_the_runtime_and_its_version(ov_rt, tmp_path):
    csv = tmp_path / "sweep.csv"
    result = CliRunner().invoke(app, ["sweep", "--runtime", "openvino", "--acts", "relu,mish", "--widths", "8",
                                      "--imgsz", "32", "--max-time", "0.5", "--min-samples", "6", "--no-roofline",
                                      "--sessions", "2", "--models-dir", str(tmp_path / "models"), "--csv", str(csv),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv)
    assert list(rows["act"]) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {"openvino"} and set(rows["runtime_version"]) == {ov_rt.version()}
    assert set(rows["threads"]) == {1}
    assert rows["fused"].astype(bool).all()  # OpenVINO's CPU plugin runs ReLU and Mish as conv post-ops
    assert (rows["median_ms"] > 0).all()


def test_the_worker_runs_openvino_without_torch(ov_rt, tmp_path):
    """The on-device side: an IR made here is loaded, run and profiled by a worker where torch cannot import."""
    artifact = ov_rt.convert(conv_act_model(tmp_path / "relu.onnx", "relu"), tmp_path / "ir").path
    requests = [{"method": "init", "kwargs": {"runtime": "openvino", "path": str(artifact),
                                              "settings": {"threads": 1}}},
                {"method": "load"}, {"method": "first_run"}, {"method": "sample", "kwargs": {"count": 3}},
                {"method": "executed_ops", "kwargs": {"min_runs": 3, "min_seconds": 0.0}}, {"method": "quit"}]
    code = BLOCK_TORCH + ("sys.modules['onnxruntime'] = None\n"
                          "from edgeprof.runtime.worker import main; main()\n"
                          "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["ok"] for r in replies), replies
    assert len(replies[3]["result"]) == 3 and all(x > 0 for x in replies[3]["result"])
    assert any(n["op_type"].startswith("Conv") and n["op_type"].endswith("+Relu")
               for n in replies[4]["result"]["nodes"])


@pytest.mark.slow
def test_a_bundle_of_openvino_ir_runs_on_a_device_without_torch_or_onnx(ov_rt, tmp_path):
    """``edgeprof bundle --runtime openvino`` carries the IR (.xml and .bin) beside each ONNX file; ``edgeprof profile
    DIR`` runs it where neither torch nor onnx can be imported (the on-device install: openvino, numpy, edgeprof)."""
    bundle, csv = tmp_path / "bundle", tmp_path / "device.csv"
    result = CliRunner().invoke(app, ["bundle", "--runtime", "openvino", "--acts", "relu,mish", "--widths", "8",
                                      "--imgsz", "32", "--no-act-alone", "-o", str(bundle), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [(rt["name"], rt["version"]) for rt in manifest["runtimes"]] == [("openvino", ov_rt.version())]
    files = [[bundle / f for f in m["artifacts"]["openvino"]["files"]] for g in manifest["groups"] for m in g["models"]]
    assert files and all([f.suffix for f in fs] == [".xml", ".bin"] and all(f.is_file() for f in fs) for fs in files)
    block_onnx = ("class _NoOnnx:\n"
                  "    def find_spec(self, name, path=None, target=None):\n"
                  "        if name == 'onnx' or name.startswith('onnx.'):\n"
                  "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)\n"
                  "sys.meta_path.insert(0, _NoOnnx())\n")
    code = BLOCK_TORCH + block_onnx + (
        "from edgeprof.cli import app\n"
        f"app(['profile', {str(bundle)!r}, '--max-time', '0.3', '--min-samples', '6', '--csv', {str(csv)!r},"
        " '--quiet'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(csv)
    assert set(rows["runtime"]) == {"openvino"} and set(rows["status"]) == {"ok"} and len(rows) == 2
