"""MNN behind the runtime seam: every registered activation converts (in-process, never MNN's phoning-home
wrapper) and matches onnxruntime within the tolerance below, fusion read from the converted graph, threads read
back, a sweep end to end, the worker without torch. Skipped where MNN is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

pytest.importorskip("MNN", reason="MNN is not installed: pip install 'edgeprof[mnn]'")
pytest.importorskip("_tools", reason="MNN's converter extension (_tools) is not installed with MNN")

from edgeprof.cli import app  # noqa: E402
from edgeprof.errors import InputError  # noqa: E402
from edgeprof.results.rows import split_act_nodes  # noqa: E402
from edgeprof.runtime.base import UnsupportedModel  # noqa: E402
from edgeprof.runtime.registry import get_runtime  # noqa: E402
from edgeprof.spec.acts import spec_names  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# Parity tolerance: max|MNN - reference| <= TOL * max(1, max|reference|), the export's rule with MNN's own factor
# (MnnRuntime.parity_tolerance). With MNN's default Winograd 3x3 convolution (its transforms reorder and amplify
# fp32 rounding) the error measured on conv blocks with seeded BN grows with the image and the channels: ~1e-5 at
# 8 channels x 32 px, 1.9e-3 at 16 x 160 px, 3.6e-3 at 32 x 80 px, 6.2e-3 at 128 x 80 px (max|output| 4.8, so
# 1.3e-3 relative): over the export's 1e-3, so MNN's tolerance is 1e-2 (8x the worst seen). With Winograd off the
# same blocks are within 6e-6 (test_winograd_is_the_rounding_difference holds it to 1e-4). gelu is 4.7e-4 at any
# size: MNN's GELU op is the tanh approximation of the erf GELU (they differ by up to ~4.7e-4).
TOL = 1e-2


def _within(err: float, ref: np.ndarray) -> bool:
    return err <= TOL * max(1.0, float(np.abs(ref).max()))


@pytest.fixture(scope="module")
def mnn():
    return get_runtime("mnn")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Every registered activation on a small conv block (8 channels, 32 px), exported once for the module."""
    from edgeprof.convert.onnx_export import export_block
    from edgeprof.spec import BlockSpec

    out = tmp_path_factory.mktemp("mnn-models")
    return {act: export_block(BlockSpec("conv", act, width=8, imgsz=32), out) for act in spec_names()}


def _reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output (unoptimised): it matches torch at export (edgeprof checks that when it exports)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]


def _runner(mnn, artifact, **settings):
    r = mnn.runner(str(artifact), mnn.settings(**settings))
    r.load()
    r.first_run()
    return r


def _nodes(mnn, artifact) -> list[dict]:
    r = _runner(mnn, artifact)
    try:
        return r.executed_ops(min_runs=3, min_seconds=0.0)["nodes"]
    finally:
        r.close()


# -- conversion and parity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", spec_names())
def test_every_activation_converts_and_matches(mnn, models, tmp_path, act):
    built = models[act]
    conversion = mnn.convert(built.path, tmp_path)
    assert conversion.path.suffix == ".mnn" and conversion.converter == "MNNConvert"
    assert conversion.converter_version == mnn.version()
    x = np.random.default_rng(3).standard_normal(built.spec.input_shape).astype(np.float32)
    ref = _reference(built.path, x)
    r = _runner(mnn, conversion.path)
    (out,) = r.infer({"images": x})
    err = float(np.abs(out.astype(np.float64) - ref).max())
    assert out.shape == ref.shape and _within(err, ref), f"{act}: max abs error {err:.3g}"
    r.run()  # the bound input is back after infer: the timed call still works
    r.close()


def test_conversion_is_cached_by_content(mnn, models, tmp_path, monkeypatch):
    from edgeprof.runtime.mnn import convert

    first = mnn.convert(models["relu"].path, tmp_path)
    monkeypatch.setattr(convert, "run_converter", lambda argv: pytest.fail("converted again"))
    assert mnn.convert(models["relu"].path, tmp_path) == first


def test_an_op_mnn_lacks_is_unsupported_with_the_converters_reason(mnn, tmp_path):
    """An opset-20 Mish op (the dynamo exporter writes it): MNN's converter refuses it."""
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Mish", ["x"], ["y"], name="/act/Mish")], "g", io[:1], io[1:])
    path = tmp_path / "mish20.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    with pytest.raises(UnsupportedModel) as info:
        mnn.convert(path, tmp_path / "out")
    assert "ONNX::Mish" in str(info.value) and "\n" not in str(info.value)
    assert not list((tmp_path / "out").glob("*.mnn"))  # nothing half-written is cached


def test_a_file_that_is_not_onnx_is_unsupported_in_one_line(mnn, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 20)
    with pytest.raises(UnsupportedModel) as info:
        mnn.convert(bad, tmp_path / "out")
    assert "\n" not in str(info.value) and "bad.onnx" in str(info.value)
    with pytest.raises(InputError):
        mnn.convert(tmp_path / "missing.onnx", tmp_path / "out")


def test_converting_starts_no_process_and_opens_no_connection(models, tmp_path):
    """MNN's converter wrapper pip-installs a package (os.system) and posts to a cloud log; edgeprof calls the
    converter's entry point in-process. Here the converting process has sockets, process starts and os.system
    patched to raise; it converts, reads the converted graph back, and never imports MNN.tools or aliyun."""
    code = textwrap.dedent(f"""
        import os, socket, subprocess, sys
        def refuse(*a, **k):
            raise AssertionError("tried to start a process or open a connection")
        socket.socket.connect = socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        subprocess.Popen = refuse
        os.system = os.popen = os.execv = os.execvp = os.posix_spawn = os.fork = refuse
        from edgeprof.runtime.registry import get_runtime
        from edgeprof.runtime.mnn.convert import mnn_graph
        c = get_runtime("mnn").convert({str(models["mish"].path)!r}, {str(tmp_path)!r})
        assert c.path.is_file()
        assert [op["type"] for op in mnn_graph(c.path)]
        bad = [m for m in sys.modules if m.startswith(("MNN.tools", "aliyun"))]
        assert not bad, bad
        print("converted", c.path.name)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("converted") and "device supports" not in proc.stdout


def test_winograd_is_the_rounding_difference(mnn, tmp_path):
    """MNN's error against onnxruntime comes from its Winograd 3x3 convolution: with Winograd off (the hint
    WINOGRAD_MEMORY_LEVEL=0) it is within 1e-4 and over 100x smaller; with it, within the tolerance."""
    from edgeprof.convert.onnx_export import export_block
    from edgeprof.runtime.mnn.runtime import MnnRuntime
    from edgeprof.spec import BlockSpec

    built = export_block(BlockSpec("conv", "identity", width=32, imgsz=80), tmp_path)
    artifact = mnn.convert(built.path, tmp_path).path
    x = np.random.default_rng(5).standard_normal(built.spec.input_shape).astype(np.float32)
    ref = _reference(built.path, x)
    errs = {}
    for winograd in (True, False):
        r = _runner(mnn, artifact, winograd=winograd)
        errs[winograd] = float(np.abs(r.infer({"images": x})[0] - ref).max())
        r.close()
    scale = max(1.0, float(np.abs(ref).max()))
    assert errs[True] <= MnnRuntime.parity_tolerance(mnn.settings()) * scale
    assert errs[False] <= MnnRuntime.parity_tolerance(mnn.settings(winograd=False)) * scale
    assert errs[False] <= 1e-4 * scale and errs[False] < errs[True] / 100, errs


# -- threads, fusion, per-op times ---------------------------------------------------------------------------
def test_threads_are_set_through_mnn_and_read_back(mnn, models, tmp_path):
    artifact = mnn.convert(models["relu"].path, tmp_path).path
    assert mnn.settings().threads == 1
    for threads in (1, 2):
        r = _runner(mnn, artifact, threads=threads)
        assert r.threads_effective() == threads
        r.close()


def test_relu_fuses_into_the_convolution_and_mish_does_not(mnn, models, tmp_path):
    reference = _nodes(mnn, mnn.convert(models["identity"].path, tmp_path).path)
    assert "Conv" in [n["op_type"] for n in reference]
    relu = _nodes(mnn, mnn.convert(models["relu"].path, tmp_path).path)
    _, act_nodes = split_act_nodes(relu, reference, "relu", models["relu"].act_ops)
    assert act_nodes == [] and "Conv+Relu" in [n["op_type"] for n in relu]  # relu=true on MNN's Convolution
    mish = _nodes(mnn, mnn.convert(models["mish"].path, tmp_path).path)
    _, act_nodes = split_act_nodes(mish, reference, "mish", models["mish"].act_ops)
    assert [n.op_type for n in act_nodes] == ["Exp", "Add", "Log", "Tanh", "Mul"]  # Softplus split by MNN
    assert all(n.calls == 3 and n.mean_us > 0 for n in act_nodes)
    assert any("[UnaryOp EXP]" in n.name and n.name.startswith("/act/Softplus:") for n in act_nodes)


def test_missing_runtime_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from edgeprof.runtime.mnn.runtime import MnnRuntime

    monkeypatch.setattr(MnnRuntime, "available", classmethod(lambda cls: False))
    line = one_line_error(runner.invoke(app, ["profile", str(tmp_path / "x.onnx"), "--runtime", "mnn"]))
    assert "edgeprof[mnn]" in line


# -- end to end ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_through_the_cli_with_mnn(tmp_path):
    csv = tmp_path / "mnn.csv"
    result = runner.invoke(app, ["sweep", "--runtime", "mnn", "--acts", "relu,mish", "--widths", "8", "--imgsz",
                                 "32", "--max-time", "0.5", "--no-roofline", "--models-dir", str(tmp_path / "m"),
                                 "--sessions", "2", "--csv", str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv).set_index("act")
    assert list(rows.index) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {"mnn"} and set(rows["runtime_version"]) == {get_runtime("mnn").version()}
    assert set(rows["runtime_settings"]) == {"precision=normal;winograd=true"} and set(rows["threads"]) == {1}
    assert bool(rows.loc["relu", "fused"]) and not bool(rows.loc["mish", "fused"])
    assert rows.loc["mish", "act_ops"] == "Exp+Add+Log+Tanh+Mul" and rows.loc["mish", "act_share"] > 0
    assert (rows["per_op_runs"] >= 20).all() and (rows["median_ms"] > 0).all()
    assert rows.loc["mish", "ratio_to_baseline"] > 1  # five elementwise ops over the tensor cost more than none


def test_the_worker_runs_mnn_without_torch_onnx_or_onnxruntime(mnn, models, tmp_path):
    """The on-device side: the worker loads, runs, times and profiles a .mnn with torch, onnx and onnxruntime
    unimportable (MNN and numpy only)."""
    artifact = mnn.convert(models["mish"].path, tmp_path).path
    requests = [{"method": "init", "kwargs": {"runtime": "mnn", "path": str(artifact), "settings": {"threads": 1}}},
                {"method": "load"}, {"method": "first_run"}, {"method": "sample", "kwargs": {"count": 3}},
                {"method": "executed_ops", "kwargs": {"min_runs": 3, "min_seconds": 0.0}}, {"method": "quit"}]
    code = ("import sys\n"
            "class _Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'onnx', 'onnxruntime'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)\n"
            "sys.meta_path.insert(0, _Block())\n"
            "from edgeprof.runtime.worker import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(replies) == len(requests) and all(r["ok"] for r in replies), (replies, proc.stderr[-1500:])
    assert replies[2]["result"]["outputs"] == [[1, 8, 32, 32]]
    assert len(replies[3]["result"]) == 3 and all(x > 0 for x in replies[3]["result"])
    assert "Log" in [n["op_type"] for n in replies[4]["result"]["nodes"]]


@pytest.mark.slow
def test_profile_takes_converted_mnn_files_as_they_are(mnn, models, tmp_path):
    """A .mnn (as a bundle carries it) is loaded as is, not converted; the static ONNX figures are left empty."""
    relu, mish = (mnn.convert(models[a].path, tmp_path).path for a in ("relu", "mish"))
    csv = tmp_path / "profile.csv"
    result = runner.invoke(app, ["profile", str(relu), str(mish), "--runtime", "mnn", "--max-time", "0.3",
                                 "--csv", str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv)
    assert list(rows["status"]) == ["ok", "ok"] and set(rows["runtime"]) == {"mnn"}
    assert rows["weights_mb"].isna().all() and rows["macs"].isna().all()
    assert list(rows["model"]) == [str(relu), str(mish)]


def test_a_shape_given_for_a_dynamic_batch_resizes_the_session(mnn, tmp_path):
    from conftest import conv_act_model

    artifact = mnn.convert(conv_act_model(tmp_path / "dyn.onnx", "mish", dynamic_batch=True), tmp_path).path
    r = mnn.runner(str(artifact), mnn.settings(), {"images": (2, 8, 16, 16)})
    assert r.load()["inputs"] == {"images": [2, 8, 16, 16]}
    assert r.first_run()["outputs"] == [[2, 8, 16, 16]]
    r.close()
