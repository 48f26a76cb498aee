"""ncnn behind the runtime seam: pnnx converts every registered activation (or says in one line why not), ncnn's
outputs match onnxruntime's (which match torch at export), fusion is read from the .param, threads=1 takes effect,
a sweep runs end to end, and the worker runs an ncnn model with torch, onnx and pnnx unimportable.

Skipped where ncnn (the runtime) or pnnx (its converter) is not installed: pip install 'edgeprof[ncnn-convert]'.
No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import conv_act_model
from test_torch_free import BLOCK_TORCH

from edgeprof.errors import InputError
from edgeprof.runtime.base import UnsupportedModel
from edgeprof.runtime.ncnn.param import input_shapes, parse_param, render_param, with_input_shapes
from edgeprof.spec import BlockSpec
from edgeprof.spec.acts import spec_names

HAVE_NCNN = importlib.util.find_spec("ncnn") is not None
HAVE_PNNX = importlib.util.find_spec("pnnx") is not None
needs_ncnn = pytest.mark.skipif(not HAVE_NCNN, reason="ncnn is not installed: pip install 'edgeprof[ncnn]'")
needs_pnnx = pytest.mark.skipif(not (HAVE_NCNN and HAVE_PNNX),
                                reason="ncnn and its converter pnnx are not installed: "
                                       "pip install 'edgeprof[ncnn-convert]'")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Parity: fp32 throughout (pnnx fp16=0, ncnn fp16 off); what differs from onnxruntime is the order of the
# convolution's sums (im2col/winograd kernels) and ncnn's own SIMD exp/tanh approximations: ~1e-6 on outputs of
# magnitude ~5 here. 1e-4 of the output's range (at least 1) leaves two orders of magnitude of margin and still
# catches what matters: fp16 weights or arithmetic (~1e-3) and a wrong or missing activation (~1e-1).
PARITY_TOL = 1e-4
# The activations every run checks (fused and not); the rest are marked slow.
QUICK_ACTS = ("relu", "mish", "silu", "hardswish")


def _runtime():
    from edgeprof.runtime.registry import get_runtime

    return get_runtime("ncnn")


def _export(models: Path, act: str, width: int = 8, imgsz: int = 16, block: str = "conv"):
    from edgeprof.convert.onnx_export import export_block

    return export_block(BlockSpec(block, act, width, imgsz=imgsz), models)


def _reference(onnx_path: Path, x: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's outputs, which matched torch's within export's tolerance when the file was written."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _runner(artifact: Path, threads: int = 1):
    rt = _runtime()
    runner = rt.runner(str(artifact), rt.settings(threads=threads))
    runner.load()
    return runner


# -- the .param reader (no ncnn needed) ---------------------------------------------------------------------------
PARAM = """7767517
6 7
Input                    in0                      0 1 in0
Convolution              convrelu_0               1 1 in0 1 0=8 1=3 6=576 9=1
Convolution              conv_1                   1 1 1 2 0=8 1=3 6=576 -23310=1,0.1 9=1
Split                    splitncnn_0              1 2 2 3 4
BinaryOp                 mul_0                    2 1 3 4 5 0=2
UnaryOp                  sin_0                    1 1 5 out0 0=9
"""


def test_param_layers_are_named_as_the_ops_they_run():
    layers = parse_param(PARAM)
    assert [layer.op_type for layer in layers] == ["Input", "Convolution+Relu", "Convolution+LeakyRelu", "Split",
                                                   "Mul", "Sin"]
    assert render_param(parse_param(render_param(layers))) == render_param(layers)


def test_input_shapes_are_stored_in_the_input_layer_and_read_back():
    layers = with_input_shapes(parse_param(PARAM), [(1, 8, 16, 24)])
    assert layers[0].params == {"0": "24", "1": "16", "2": "8"}  # ncnn's Input: 0 = w, 1 = h, 2 = c
    assert input_shapes(parse_param(render_param(layers))) == {"in0": (1, 8, 16, 24)}
    assert input_shapes(parse_param(PARAM)) == {"in0": None}


@pytest.mark.parametrize("text", ["", "7767518\n1 1\n", "7767517\n2 1\nInput in0 0 1 in0\n",
                                  "7767517\n1 1\nInput in0 0 1\n"])
def test_a_file_that_is_not_an_ncnn_param_is_refused(text):
    from edgeprof.runtime.ncnn.param import ParamError

    with pytest.raises(ParamError):
        parse_param(text)


def test_untimed_nodes_give_fusion_but_no_made_up_shares():
    """A runtime without per-op times (mean_us None): act_ops and fused still come from the nodes; act_share and
    the per-op shares stay empty rather than 0."""
    import math

    from edgeprof.results.rows import per_op_rows, split_act_nodes
    from edgeprof.runtime.nodes import time_share

    nodes = [{"name": "conv_0", "op_type": "Convolution", "calls": 0, "mean_us": None},
             {"name": "silu_1", "op_type": "Swish", "calls": 0, "mean_us": None}]
    reference = [{"name": "conv_0", "op_type": "Convolution", "calls": 0, "mean_us": None}]
    everything, act_nodes = split_act_nodes(nodes, reference, "silu", ["Sigmoid", "Mul"])
    assert [n.op_type for n in act_nodes] == ["Swish"] and all(n.mean_us is None for n in everything)
    assert math.isnan(time_share(act_nodes, everything))
    rows = per_op_rows({"act": "silu", "act_ops_exported": "Sigmoid+Mul"}, nodes, reference)
    assert [(r["op_type"], r["mean_us"], r["share"], r["is_act"]) for r in rows] == [
        ("Convolution", None, None, False), ("Swish", None, None, True)]


# -- conversion and parity ------------------------------------------------------------------------------------------
@needs_pnnx
@pytest.mark.parametrize("act", [a if a in QUICK_ACTS else pytest.param(a, marks=pytest.mark.slow)
                                 for a in spec_names()])
def test_every_activation_converts_and_matches_or_is_unsupported_with_a_reason(tmp_path, act):
    built = _export(tmp_path, act)
    x = np.random.default_rng(1).standard_normal(built.spec.input_shape).astype(np.float32)
    try:
        conversion = _runtime().convert(built.path, tmp_path)
    except UnsupportedModel as exc:  # allowed, with pnnx's one-line reason
        assert str(exc).strip() and "\n" not in str(exc)
        return
    assert conversion.path.name.endswith(".ncnn.param") and conversion.path.with_suffix(".bin").is_file()
    assert conversion.converter == "pnnx" and conversion.converter_version
    (ref,) = _reference(built.path, x)
    (out,) = _runner(conversion.path).infer({"images": x})
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= PARITY_TOL * max(1.0, float(np.abs(ref).max()))


@needs_pnnx
def test_conversion_is_cached_by_content(tmp_path, monkeypatch):
    import edgeprof.runtime.ncnn.convert as convert

    relu, mish = _export(tmp_path, "relu"), _export(tmp_path, "mish")
    first = _runtime().convert(relu.path, tmp_path)
    assert first.path.parent == tmp_path / "ncnn"
    monkeypatch.setattr(convert.subprocess, "run", lambda *a, **k: pytest.fail("pnnx ran for a cached model"))
    assert _runtime().convert(relu.path, tmp_path) == first
    with pytest.raises(pytest.fail.Exception):
        _runtime().convert(mish.path, tmp_path)  # other bytes, another key: pnnx would run


@needs_pnnx
def test_what_ncnn_cannot_run_is_unsupported_with_the_converters_reason(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Hardmax", ["images"], ["output"], axis=1)], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "hardmax.onnx"))
    with pytest.raises(UnsupportedModel, match="Hardmax.*ncnn has no such layer"):
        _runtime().convert(tmp_path / "hardmax.onnx", tmp_path)
    # pnnx would silently drop a batch of 2 (ncnn runs one sample) and needs fixed shapes
    with pytest.raises(UnsupportedModel, match="dynamic|fixed"):
        _runtime().convert(conv_act_model(tmp_path / "dyn.onnx", "relu", dynamic_batch=True), tmp_path)
    assert not list((tmp_path / "ncnn").glob("*.ncnn.*"))  # nothing half-written is left behind


@needs_pnnx
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_pnnx_opens_no_socket_and_starts_no_other_program(tmp_path, monkeypatch):
    """The converter run under strace: no socket, no connect, no program started but pnnx itself."""
    import edgeprof.runtime.ncnn.convert as convert

    log = tmp_path / "pnnx.strace"
    real_run = subprocess.run

    def traced(argv, **kwargs):
        return real_run(["strace", "-f", "-e", "trace=socket,connect,execve", "-o", str(log), *argv], **kwargs)

    monkeypatch.setattr(convert.subprocess, "run", traced)
    _runtime().convert(_export(tmp_path, "mish").path, tmp_path)
    calls = [line for line in log.read_text().splitlines() if "(" in line]
    assert not [c for c in calls if " socket(" in c or " connect(" in c], calls
    assert [c for c in calls if " execve(" in c] and all("/pnnx\"" in c for c in calls if " execve(" in c), calls


def test_a_missing_converter_names_its_extra(tmp_path, monkeypatch):
    import edgeprof.runtime.ncnn.convert as convert

    monkeypatch.setattr(convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'edgeprof\[ncnn-convert\]'"):
        convert.pnnx_executable()


@needs_pnnx
def test_validate_refuses_a_missing_weights_file_in_one_line(tmp_path):
    built = _export(tmp_path, "relu")
    conversion = _runtime().convert(built.path, tmp_path)
    settings = _runtime().settings()
    _runtime().validate(built.path, settings)  # an ONNX file: converting it is what tells (profile model.onnx)
    _runtime().validate(conversion.path, settings)
    conversion.path.with_suffix(".bin").unlink()
    with pytest.raises(InputError, match="weights not found") as info:
        _runtime().validate(conversion.path, settings)
    assert "\n" not in str(info.value)


# -- fusion and threads ---------------------------------------------------------------------------------------------
def _act_nodes(tmp_path: Path, act: str) -> tuple[list[str], list[str]]:
    """(op types of the activation's own nodes, all op types), by edgeprof's generic rule (results.rows)."""
    from edgeprof.results.rows import split_act_nodes

    built, reference = _export(tmp_path, act), _export(tmp_path, "identity")
    nodes = _runner(_runtime().convert(built.path, tmp_path).path).executed_ops()
    ref_nodes = _runner(_runtime().convert(reference.path, tmp_path).path).executed_ops()
    assert nodes["runs"] == 0 and all(n["mean_us"] is None for n in nodes["nodes"])  # no per-layer timer
    everything, act_nodes = split_act_nodes(nodes["nodes"], ref_nodes["nodes"], built.spec.act, built.act_ops)
    return [n.op_type for n in act_nodes], [n.op_type for n in everything]


@needs_pnnx
@pytest.mark.parametrize(("act", "fused_into"), [("relu", "Convolution+Relu"), ("mish", "Convolution+Mish")])
def test_relu_and_mish_are_fused_into_the_convolution(tmp_path, act, fused_into):
    act_ops, all_ops = _act_nodes(tmp_path, act)
    assert act_ops == [] and all_ops == [fused_into]


@needs_pnnx
@pytest.mark.parametrize(("act", "runs_as"), [("silu", "Swish"), ("hardswish", "HardSwish")])
def test_silu_and_hardswish_run_as_their_own_layer(tmp_path, act, runs_as):
    act_ops, all_ops = _act_nodes(tmp_path, act)
    assert act_ops == [runs_as] and all_ops == ["Convolution", runs_as]


@needs_pnnx
def test_one_thread_takes_effect(tmp_path):
    """threads=1 is read back from the net's options, and running spawns no thread (ncnn's OpenMP regions would
    start threads - 1 workers); in a fresh process, so no other test's threads are counted."""
    artifact = _runtime().convert(_export(tmp_path, "relu").path, tmp_path).path
    code = ("import os\n"
            "from edgeprof.runtime.registry import get_runtime\n"
            "rt = get_runtime('ncnn')\n"
            f"r = rt.runner({str(artifact)!r}, rt.settings(threads=1)); r.load()\n"
            "before = len(os.listdir('/proc/self/task'))\n"
            "r.first_run(); [r.run() for _ in range(20)]\n"
            "print(r.threads_effective(), len(os.listdir('/proc/self/task')) - before)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "0"]
    assert _runner(artifact, threads=2).threads_effective() == 2


# -- end to end -----------------------------------------------------------------------------------------------------
@needs_pnnx
@pytest.mark.slow
def test_sweep_with_ncnn_through_the_cli(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from edgeprof.cli import app

    csv = tmp_path / "ncnn.csv"
    result = CliRunner().invoke(app, ["sweep", "--runtime", "ncnn", "--acts", "relu,mish", "--widths", "8",
                                      "--imgsz", "32", "--max-time", "0.5", "--no-roofline", "--quiet",
                                      "--sessions", "2", "--models-dir", str(tmp_path / "models"), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv).set_index("act")
    assert list(rows.index) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {"ncnn"} and set(rows["runtime_version"]) == {_runtime().version()}
    assert set(rows["threads"]) == {1} and set(rows["runtime_settings"]) == {"fp16=false"}
    assert rows["fused"].all()  # both fused into the convolution, from the .param
    assert rows["per_op_runs"].isna().all() and rows["act_share"].isna().all()  # no per-layer timer: not made up
    assert (rows["median_ms"] > 0).all()


@needs_pnnx
def test_the_worker_runs_an_ncnn_model_without_torch_onnx_or_pnnx(tmp_path):
    """The on-device side: the worker serves ncnn with torch, onnx and pnnx unimportable (nothing is installed)."""
    artifact = _runtime().convert(_export(tmp_path, "mish").path, tmp_path).path
    requests = [{"method": "init", "kwargs": {"runtime": "ncnn", "path": str(artifact), "settings": {"threads": 1}}},
                {"method": "load"}, {"method": "first_run"}, {"method": "sample", "kwargs": {"count": 3}},
                {"method": "executed_ops"}, {"method": "quit"}]
    blocker = BLOCK_TORCH.replace("name == 'torch' or name.startswith('torch.')",
                                  "name.split('.')[0] in ('torch', 'onnx', 'pnnx')")
    assert blocker != BLOCK_TORCH
    code = blocker + "from edgeprof.runtime.worker import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["ok"] for r in replies), replies
    assert replies[1]["result"]["inputs"] == {"in0": [1, 8, 16, 16]}
    assert len(replies[3]["result"]) == 3 and all(x > 0 for x in replies[3]["result"])
    assert [n["op_type"] for n in replies[4]["result"]["nodes"]] == ["Convolution+Mish"]
