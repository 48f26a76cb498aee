"""LiteRT (ai-edge-litert) behind the runtime seam: litert-torch conversion of every registered activation with
parity against the ONNX model, what fused (the interpreter's op list, XNNPACK partitions, fused_activation_function),
threads, a sweep through the CLI, and the worker on the device side with torch unimportable.

Skipped where ai-edge-litert is not installed (pip install 'edgeprof[litert]'); the conversion tests also need the
build side's converter (pip install 'edgeprof[litert-convert]')."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_torch_free import BLOCK_TORCH

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                reason="LiteRT not installed: pip install 'edgeprof[litert]'")
needs_converter = pytest.mark.skipif(
    importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("torch") is None,
    reason="the LiteRT converter is not installed: pip install 'edgeprof[litert-convert]'")

REPO_ROOT = Path(__file__).resolve().parent.parent
# max |LiteRT - onnxruntime| <= TOL * max(1, max|output|): both run fp32; XNNPACK's conv (NHWC, other summation
# order) and its exp/log/tanh approximations differ from onnxruntime's in the last bits: <= 1.2e-6 measured on every
# registered activation here, 3e-5 in the notes' 32-channel 80 px blocks (longer sums); TOL leaves room for wider
# blocks and stays far below what a wrong weight, layout or activation gives (>= 1e-2).
TOL = 1e-4


def _export(act: str, models_dir: Path, width: int = 8, imgsz: int = 16) -> Path:
    from edgeprof.convert.onnx_export import export_block
    from edgeprof.spec import BlockSpec

    return export_block(BlockSpec(block="conv", act=act, width=width, imgsz=imgsz), models_dir).path


def _litert():
    from edgeprof.runtime.registry import get_runtime

    return get_runtime("litert")


def _onnx_reference(onnx_path: Path, seed: int = 3) -> tuple[dict, list[np.ndarray]]:
    """A reference as ``<model>.ref.npz`` holds it: seeded NCHW inputs and the ONNX model's outputs in onnxruntime
    (which matches torch at export: edgeprof's export checks it)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
    return feeds, session.run(None, feeds)


def _converted(act: str, models_dir: Path):
    onnx_path = _export(act, models_dir)
    return onnx_path, _litert().convert(onnx_path, models_dir)


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory) -> Path:
    """One models folder for the module: each block is exported and converted once (conversion is cached)."""
    return tmp_path_factory.mktemp("litert-models")


def _nodes(path: Path, threads: int = 1) -> tuple[list[dict], object]:
    rt = _litert()
    runner = rt.runner(str(path), rt.settings(threads=threads))
    runner.load()
    runner.first_run()
    return runner.executed_ops()["nodes"], runner


# ---------------------------------------------------------------------------------------------- conversion
@needs_converter
@pytest.mark.slow
def test_every_registered_activation_converts_and_matches_onnx_or_is_unsupported(tmp_path):
    from edgeprof.results.rows import split_act_nodes
    from edgeprof.runtime.base import UnsupportedModel
    from edgeprof.spec.acts import spec_names

    outcome, fused = {}, {}
    reference = None
    for act in spec_names():
        onnx_path = _export(act, tmp_path)
        try:
            conversion = _litert().convert(onnx_path, tmp_path)
        except UnsupportedModel as exc:
            reason = str(exc)
            assert reason and "\n" not in reason and reason.startswith("litert"), reason
            outcome[act] = f"unsupported: {reason}"
            continue
        assert conversion.path.suffix == ".tflite" and conversion.converter == "litert-torch"
        feeds, ref = _onnx_reference(onnx_path)
        rt = _litert()
        got = rt.runner(str(conversion.path), rt.settings()).infer(feeds)
        assert [g.shape for g in got] == [r.shape for r in ref]
        err = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref, strict=True))
        assert err <= TOL * max(1.0, max(float(np.max(np.abs(r))) for r in ref)), (act, err)
        if act == "identity":
            reference, _ = _nodes(conversion.path)
        outcome[act] = f"ok {err:.2g}"
        if act != "identity":
            nodes, _ = _nodes(conversion.path)
            _, act_nodes = split_act_nodes(nodes, reference, act, None, beyond_reference=True)
            fused[act] = not act_nodes
    print(json.dumps(outcome, indent=1))
    assert all(outcome[a].startswith("ok") for a in ("relu", "leakyrelu", "silu", "hardswish", "mish")), outcome
    print(json.dumps(fused, indent=1))
    assert {a for a, f in fused.items() if f} == {"relu", "relu6"}  # only the ReLU family fuses into CONV_2D


@needs_converter
def test_conversion_is_cached_by_content_and_a_foreign_onnx_file_is_unsupported(shared_dir, tmp_path):
    from conftest import conv_act_model

    from edgeprof.runtime.base import UnsupportedModel

    onnx_path, first = _converted("relu", shared_dir)
    stamp = first.path.stat().st_mtime_ns
    again = _litert().convert(onnx_path, shared_dir)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp  # not converted again
    assert first.converter_version and first.path.name == onnx_path.stem + ".tflite"
    from edgeprof.runtime.litert.runner import io_layout

    layout = io_layout(str(first.path))  # carried in the model's own metadata, so a bundle keeps it
    assert layout["inputs"] == [{"name": "images", "perm": [0, 2, 3, 1]}] and layout["spec"]["act"] == "relu"
    foreign = conv_act_model(tmp_path / "mine.onnx", "relu")  # an ONNX file edgeprof did not build
    with pytest.raises(UnsupportedModel, match="onnx2tf") as info:
        _litert().convert(foreign, tmp_path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- fusion, threads
@needs_converter
def test_relu_fuses_into_the_conv_and_mish_runs_as_separate_ops_split_over_two_partitions(shared_dir):
    from edgeprof.results.rows import split_act_nodes

    reference, _ = _nodes(_converted("identity", shared_dir)[1].path)
    relu, _ = _nodes(_converted("relu", shared_dir)[1].path)
    mish, _ = _nodes(_converted("mish", shared_dir)[1].path)
    assert [n["op_type"] for n in reference] == [n["op_type"] for n in relu] == ["Conv"]
    assert relu[0]["name"].startswith("CONV_2D#0+RELU@xnnpack")  # fused_activation_function RELU on the CONV_2D
    assert all(n["mean_us"] is None for n in relu + mish)  # no per-op timer in LiteRT's Python API
    assert _litert().act_nodes_beyond_reference

    _, relu_act = split_act_nodes(relu, reference, "relu", ["Relu"], beyond_reference=True)
    assert relu_act == []  # edgeprof's rule: fused
    _, mish_act = split_act_nodes(mish, reference, "mish", ["Softplus", "Tanh", "Mul"], beyond_reference=True)
    assert "+".join(n.op_type for n in mish_act) == "Softplus+Tanh+Mul"
    softplus = next(n["name"] for n in mish if n["op_type"] == "Softplus")
    assert "GREATER" in softplus and "SELECT" in softplus and "@builtin" in softplus  # XNNPACK cannot run them
    partitions = {tag for n in mish for tag in re.findall(r"@(xnnpack\d+)", n["name"])}
    assert len(partitions) == 2  # the built-in GREATER/SELECT split the graph into two XNNPACK partitions


@needs_converter
def test_converting_starts_no_process_and_opens_no_network_connection(tmp_path, monkeypatch):
    """litert-torch pulls huggingface_hub and kagglehub: converting must use neither (nor pip, nor any installer)."""
    import os
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"converting tried to start a process or connect: {args[:2]}")

    onnx_path = _export("leakyrelu", tmp_path)  # exported first: the export itself is not under test here
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "system", refuse)
    monkeypatch.setattr(os, "posix_spawn", refuse)
    conversion = _litert().convert(onnx_path, tmp_path)
    assert conversion.path.exists()


@needs_converter
def test_threads_are_set_through_the_interpreter_and_read_back(shared_dir):
    _, conversion = _converted("relu", shared_dir)
    _, one = _nodes(conversion.path, threads=1)
    _, two = _nodes(conversion.path, threads=2)
    assert one.threads_effective() == 1  # no thread pool started: the calling thread computes alone
    assert two.threads_effective() == 2  # XNNPACK's pool: one worker beside the calling thread


def test_settings_and_errors_are_one_line():
    from edgeprof.errors import InputError

    rt = _litert()
    assert rt.settings().row() == {"threads": 1, "runtime": "litert", "runtime_settings": "delegate=xnnpack",
                                   "cache": "warm"}
    with pytest.raises(InputError, match="valid: xnnpack, none"):
        rt.settings(delegate="gpu")
    with pytest.raises(InputError, match="no setting opt_level"):
        rt.settings(opt_level="all")


def test_a_corrupt_tflite_is_a_one_line_input_error(tmp_path):
    from edgeprof.errors import InputError

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    rt = _litert()
    with pytest.raises(InputError, match="cannot load LiteRT model") as info:
        rt.validate(bad, rt.settings())
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------- end to end
@needs_converter
@pytest.mark.slow
def test_sweep_through_the_cli_gives_ok_rows_with_litert_and_its_version(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from edgeprof.cli import app

    csv = tmp_path / "litert.csv"
    result = CliRunner().invoke(app, ["sweep", "--runtime", "litert", "--acts", "relu,mish", "--widths", "8",
                                      "--imgsz", "32", "--max-time", "0.5", "--min-samples", "6", "--no-roofline",
                                      "--sessions", "2", "--models-dir", str(tmp_path / "models"), "--csv", str(csv),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv).set_index("act")
    assert list(rows.index) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {"litert"} and set(rows["runtime_version"]) == {_litert().version()}
    assert set(rows["threads"]) == {1} and set(rows["runtime_settings"]) == {"delegate=xnnpack"}
    assert bool(rows.loc["relu", "fused"]) and not bool(rows.loc["mish", "fused"])
    assert rows.loc["mish", "act_ops"] == "Softplus+Tanh+Mul"
    assert rows["act_share"].isna().all() and rows["per_op_runs"].isna().all()  # no per-op times: none invented
    assert rows.loc["mish", "ratio_to_baseline"] > 1.0  # conv+mish does more work than conv+relu
    ops = pd.read_csv(tmp_path / "litert-ops.csv")
    assert ops["mean_us"].isna().all() and ops["share"].isna().all()  # the nodes, without times
    mish_ops = ops[ops["act"] == "mish"]
    assert list(mish_ops["op_type"]) == ["Conv", "Softplus", "Tanh", "Mul"]
    assert list(mish_ops["is_act"]) == [False, True, True, True]


# ---------------------------------------------------------------------------------------------- device side


@needs_converter
def test_the_worker_runs_a_tflite_with_torch_onnx_and_the_converter_unimportable(shared_dir):
    """The on-device side installs nothing: the worker serves LiteRT with torch, onnx, onnxruntime and
    litert-torch unimportable, as on a device with only 'edgeprof[litert]'."""
    _, conversion = _converted("mish", shared_dir)
    requests = [{"method": "init", "kwargs": {"runtime": "litert", "path": str(conversion.path),
                                              "settings": {"threads": 1}}},
                {"method": "load"}, {"method": "first_run"}, {"method": "warmup", "kwargs": {"seconds": 0.05}},
                {"method": "calibrate"}, {"method": "sample", "kwargs": {"count": 3}},
                {"method": "executed_ops"}, {"method": "quit"}]
    code = BLOCK_TORCH + "from edgeprof.runtime.worker import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == len(requests) and all(r["ok"] for r in replies), (replies, proc.stderr[-2000:])
    assert replies[1]["result"]["inputs"] == {"serving_default_args_0": [1, 16, 16, 8]}  # NHWC
    assert len(replies[5]["result"]) == 3 and all(x > 0 for x in replies[5]["result"])
    ops = replies[6]["result"]
    assert [n["op_type"] for n in ops["nodes"]] == ["Conv", "Softplus", "Tanh", "Mul"]
    assert ops["runs"] == 0 and ops["threads_effective"] == 1


@needs_converter
@pytest.mark.slow
def test_a_litert_bundle_profiles_end_to_end_with_torch_onnx_and_the_converter_unimportable(tmp_path):
    """bundle on the build side; ``edgeprof profile DIR`` as on a device with only 'edgeprof[litert]'."""
    from typer.testing import CliRunner

    from edgeprof.cli import app

    bundle, csv = tmp_path / "bundle", tmp_path / "device.csv"
    made = CliRunner().invoke(app, ["bundle", "--runtime", "litert", "--acts", "relu,mish", "--widths", "8",
                                    "--imgsz", "32", "--no-act-alone", "-o", str(bundle), "--quiet"])
    assert made.exit_code == 0, made.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [rt["name"] for rt in manifest["runtimes"]] == ["litert"]
    models = [m for g in manifest["groups"] for m in g["models"]]
    assert models and all(m["artifacts"]["litert"]["files"][0].endswith(".tflite") for m in models)
    code = BLOCK_TORCH + (
        "from edgeprof.cli import app\n"
        f"app(['profile', {str(bundle)!r}, '--max-time', '0.3', '--min-samples', '6', '--no-roofline',"
        f" '--csv', {str(csv)!r}, '--format', 'json', '--quiet'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["act"]: r for r in json.loads(proc.stdout)}
    assert {r["status"] for r in rows.values()} == {"ok"} and {r["runtime"] for r in rows.values()} == {"litert"}
    assert rows["relu"]["fused"] is True and rows["mish"]["fused"] is False
    assert rows["mish"]["act_ops"] == "Softplus+Tanh+Mul"
