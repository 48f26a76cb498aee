"""ExecuTorch (XNNPACK) behind the runtime seam: every registered activation converts (torch.export + the XNNPACK
partitioner) and matches onnxruntime on the exported ONNX, or is unsupported with a reason; fusion read from ETDump
(ReLU clamped into the convolution, Mish split between XNNPACK and portable kernels); threads through its thread
pool; an end-to-end sweep; and what the worker imports (torch, unavoidably: the pip wheel's runtime takes torch
tensors; never edgeprof's torch side nor executorch's exporter at start).

Skipped where executorch is not installed (``pip install -c constraints.txt 'edgeprof[executorch]'``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import conv_act_model

from edgeprof.runtime.base import ModelSource, UnsupportedModel
from edgeprof.runtime.executorch.ops import op_type_of
from edgeprof.runtime.executorch.runtime import ExecuTorchRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not ExecuTorchRuntime.available(),
                                reason="executorch is not installed: pip install 'edgeprof[executorch]'")
# XNNPACK computes in fp32 with its own summation order (IGEMM) and polynomial approximations of exp, tanh and
# sigmoid, and BatchNorm is folded into the convolution: errors of ~1e-6..1e-5 on outputs of order 1. The tolerance
# is edgeprof's own ONNX export check (1e-3 of max(1, max|ref|)): far above that rounding, far below a wrong op.
PARITY_TOL = 1e-3


def test_op_types_are_named_in_the_activation_tables_vocabulary():
    assert op_type_of("Convolution (NHWC, F32) IGEMM #1") == "Conv"
    assert op_type_of("TanH (NC) #1") == "Tanh"
    assert op_type_of("Multiply (ND) #2") == "Mul"
    assert op_type_of("native_call_log1p.out") == "Log1p"
    assert op_type_of("native_call_gt.Scalar_out") == "Greater"
    assert op_type_of("Something New (NC) #1") == "Something New"  # unknown XNNPACK operators keep their name


def test_an_onnx_file_edgeprof_did_not_build_is_unsupported_with_the_reason(tmp_path):
    onnx = conv_act_model(tmp_path / "user.onnx", "relu")
    with pytest.raises(UnsupportedModel) as info:
        ExecuTorchRuntime().convert(onnx, tmp_path)
    assert "torch module" in str(info.value) and "\n" not in str(info.value)


def test_validate_refuses_a_file_that_is_not_a_program(tmp_path):
    from edgeprof.errors import InputError

    bad = tmp_path / "x.pte"
    bad.write_bytes(b"not a flatbuffer at all")
    rt = ExecuTorchRuntime()
    with pytest.raises(InputError, match="not an ExecuTorch program"):
        rt.validate(bad, rt.settings())


# ------------------------------------------------------------------------------------------------ conversions
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Export (ONNX, with edgeprof's checks) and convert one small conv block per activation, lazily, once."""
    from edgeprof.convert.onnx_export import export_block
    from edgeprof.spec import BlockSpec

    models = tmp_path_factory.mktemp("et-models")
    cache: dict[str, tuple] = {}

    def get(act: str):
        if act not in cache:
            export = export_block(BlockSpec("conv", act, 8, imgsz=16), models, seed=0)
            try:
                conv = ExecuTorchRuntime().convert(export.path, models, ModelSource(export.spec.as_dict(), 0))
            except UnsupportedModel as exc:
                conv = exc
            cache[act] = (export, conv)
        return cache[act]

    return get


def _runner(path, threads: int = 1):
    rt = ExecuTorchRuntime()
    runner = rt.runner(str(path), rt.settings(threads=threads))
    runner.load()
    runner.first_run()
    return runner


def _onnx_reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the exported ONNX file, which matched torch at export (edgeprof's parity check)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _all_acts() -> list[str]:
    from edgeprof.spec.acts import spec_names

    return spec_names()


@pytest.mark.slow
@pytest.mark.parametrize("act", _all_acts())
def test_every_activation_converts_and_matches_or_is_unsupported_with_a_reason(converted, act):
    export, conv = converted(act)
    if isinstance(conv, UnsupportedModel):
        reason = str(conv)
        assert reason and "\n" not in reason
        pytest.skip(f"{act} is unsupported by executorch: {reason}")
    assert conv.path.suffix == ".pte" and conv.converter and conv.converter_version == ExecuTorchRuntime.version()
    runner = _runner(conv.path)
    (name,) = runner.feeds
    x = np.random.default_rng(1).standard_normal(runner.feeds[name].shape).astype(np.float32)
    (out,) = runner.infer({name: x})
    ref = _onnx_reference(export.path, x)
    err = float(np.abs(out - ref).max())
    assert err <= PARITY_TOL * max(1.0, float(np.abs(ref).max())), f"{act}: max abs error {err}"
    # the timed inputs are bound again after infer: a run gives the seeded input's outputs
    runner.run()
    (again,) = runner.infer(runner.feeds)
    ref = _onnx_reference(export.path, runner.feeds[name])
    assert float(np.abs(again - ref).max()) <= PARITY_TOL * max(1.0, float(np.abs(ref).max()))


def test_conversion_is_cached_by_content(converted, tmp_path):
    export, conv = converted("relu")
    stamp = conv.path.stat().st_mtime_ns
    again = ExecuTorchRuntime().convert(export.path, conv.path.parent, ModelSource(export.spec.as_dict(), 0))
    assert again.path == conv.path and again.path.stat().st_mtime_ns == stamp
    other = ExecuTorchRuntime().convert(export.path, conv.path.parent, ModelSource(export.spec.as_dict(), 1))
    assert other.path != conv.path  # another seed is another module: another artifact
    record = json.loads(Path(str(conv.path) + ".json").read_text())
    assert record["inputs"] == ["images"] and record["delegated_subgraphs"] == 1


def test_fusion_relu_is_clamped_into_the_conv_and_mish_is_split(converted):
    """From the runtime's own executed graph (ETDump), read by edgeprof's generic activation logic."""
    from edgeprof.results.rows import split_act_nodes

    def nodes(act):
        return _runner(converted(act)[1].path).executed_ops(min_runs=3, min_seconds=0.0)["nodes"]

    reference = nodes("identity")
    relu, mish = nodes("relu"), nodes("mish")
    assert all(n["mean_us"] is not None and n["mean_us"] >= 0 and n["calls"] >= 3 for n in relu + mish)
    assert [n["op_type"] for n in relu if n["op_type"] != "Transpose"] == ["Conv"]  # no separate activation op
    _, relu_act = split_act_nodes(relu, reference, "relu", ["Relu"])
    assert relu_act == []  # fused
    _, mish_act = split_act_nodes(mish, reference, "mish", ["Softplus", "Tanh", "Mul"])
    ops = [n.op_type for n in mish_act]
    assert {"Tanh", "Mul"} <= set(ops)  # XNNPACK ran these ...
    assert {"Greater", "Log1p", "Where"} <= set(ops)  # ... and softplus's pieces ran as portable kernels
    assert all(n.name.startswith("portable/act/") for n in mish_act if n.op_type in ("Greater", "Log1p", "Where"))


def test_threads_are_set_through_the_runtimes_thread_pool_and_read_back(converted):
    """In fresh processes (the pool is process-wide): 1 by default, 2 when asked, as executorch reports it."""
    pte = converted("relu")[1].path
    code = ("import sys\nfrom edgeprof.runtime.executorch.runtime import ExecuTorchRuntime\n"
            "rt = ExecuTorchRuntime(); threads = int(sys.argv[2])\n"
            "r = rt.runner(sys.argv[1], rt.settings(threads=threads)); r.load(); r.first_run()\n"
            "print('threads', r.threads_effective())\n")
    for threads in (1, 2):
        proc = subprocess.run([sys.executable, "-c", code, str(pte), str(threads)], capture_output=True, text=True,
                              timeout=120, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"threads {threads}" in proc.stdout.splitlines()


# ------------------------------------------------------------------------------------------------ the worker
_BLOCK = (
    "import sys\n"
    "class _Block:\n"
    "    def __init__(self, prefixes): self.prefixes = prefixes\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if any(name == p or name.startswith(p + '.') for p in self.prefixes):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)\n"
)


def _worker(code_prefix: str, requests: list[dict]) -> list[dict]:
    code = _BLOCK + code_prefix + "from edgeprof.runtime.worker import main; main()\n"
    proc = subprocess.run([sys.executable, "-c", code], input="".join(json.dumps(r) + "\n" for r in requests),
                          capture_output=True, text=True, timeout=180, cwd=REPO_ROOT)
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_worker_never_imports_edgeprofs_torch_side_nor_executorchs_exporter_to_measure(converted):
    """The leanest path the pip wheel allows: executorch's runtime extension and torch (whose tensors it takes),
    never edgeprof.blocks / edgeprof.convert / onnx / onnxruntime, nor executorch.exir, to load, run and time."""
    pte = str(converted("mish")[1].path)
    blocked = "sys.meta_path.insert(0, _Block(['edgeprof.blocks', 'edgeprof.convert', 'onnx', 'onnxruntime', " \
              "'executorch.exir', 'executorch.devtools.backend_debug']))\n"
    replies = _worker(blocked, [
        {"method": "init", "kwargs": {"runtime": "executorch", "path": pte, "settings": {"threads": 1}}},
        {"method": "load"}, {"method": "first_run"}, {"method": "warmup", "kwargs": {"seconds": 0.01}},
        {"method": "sample", "kwargs": {"count": 3}}, {"method": "peak_run_mb"}, {"method": "quit"}])
    assert all(r["ok"] for r in replies), replies
    assert replies[2]["result"]["outputs"] == [[1, 8, 16, 16]]
    assert len(replies[4]["result"]) == 3 and all(x > 0 for x in replies[4]["result"])


def test_without_torch_the_worker_starts_and_says_in_one_line_why_it_cannot_run(converted):
    """Installs nothing: torch made unimportable, as on a device without it. The runtime's module, registry entry,
    settings and start message need no torch; loading says the pip wheel's runtime needs torch (not a traceback)."""
    pte = str(converted("relu")[1].path)
    replies = _worker("sys.meta_path.insert(0, _Block(['torch']))\n", [
        {"method": "init", "kwargs": {"runtime": "executorch", "path": pte, "settings": {"threads": 1}}},
        {"method": "load"}, {"method": "quit"}])
    assert replies[0]["ok"], replies  # the runtime, its settings and the runner are torch-free
    assert not replies[1]["ok"] and replies[1]["kind"] == "RuntimeFailure"
    assert "needs torch" in replies[1]["error"] and "\n" not in replies[1]["error"]


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_sweep_through_the_cli_gives_ok_executorch_rows(tmp_path):
    import pandas as pd
    from typer.testing import CliRunner

    from edgeprof.cli import app

    csv = tmp_path / "et.csv"
    result = CliRunner().invoke(app, ["sweep", "--runtime", "executorch", "--acts", "relu,mish", "--widths", "8",
                                      "--imgsz", "32", "--max-time", "0.5", "--no-roofline", "--no-act-alone",
                                      "--models-dir", str(tmp_path / "models"), "--csv", str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(csv).set_index("act")
    assert list(rows.index) == ["relu", "mish"] and set(rows["status"]) == {"ok"}
    assert set(rows["runtime"]) == {"executorch"}
    assert set(rows["runtime_version"]) == {ExecuTorchRuntime.version()}
    assert bool(rows.loc["relu", "fused"]) and not bool(rows.loc["mish", "fused"])
    assert "Log1p" in rows.loc["mish", "act_ops"] and rows.loc["mish", "act_share"] > 0
    assert (rows["per_op_runs"] >= 20).all()
