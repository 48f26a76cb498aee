"""`edgeprof predict`: kernels from the runtime's graph, the dataset, the refusal on another host, predictions that
add up, and a prediction of a tiny model measured here. One small collection (about half a minute) serves all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_ok, conv_act_model
from conftest import one_line_error as _one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.cli.predict import parse_budget
from edgeprof.errors import InputError

pytest.importorskip("sklearn")
runner = CliRunner()


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A small collection: relu only, a budget of 25 s, and its predictor."""
    from edgeprof.predict.collect import CollectOptions, collect, predictor_default

    folder = tmp_path_factory.mktemp("predict")
    dataset = folder / "kernels.csv"
    options = CollectOptions(budget_s=25, acts=("relu",), batch=4, max_width=64, max_imgsz=48, explore_share=0.6)
    result = collect(dataset, options=options)
    return {"dataset": dataset, "predictor": predictor_default(dataset), "result": result, "options": options}


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory) -> Path:
    """A tiny network of edgeprof's blocks (conv, C2f, conv) with relu, exported as edgeprof exports."""
    import torch

    from edgeprof.blocks.yolo import C2f, Conv, _randomize_batchnorm
    from edgeprof.convert.onnx_export import export_module

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(Conv(16, 32, 3, 2, act="relu"), C2f(32, 32, 1, True, act="relu"),
                                    Conv(32, 32, 3, 1, act="relu"))
        _randomize_batchnorm(model)
    path = tmp_path_factory.mktemp("net") / "tiny.onnx"
    export_module(model.eval(), (1, 16, 40, 40), path)
    return path


def test_kernels_come_from_the_runtimes_graph(tmp_path):
    from edgeprof.predict.kernels import split_kernels

    relu = split_kernels(conv_act_model(tmp_path / "relu.onnx", "relu", channels=8, size=16))
    mish = split_kernels(conv_act_model(tmp_path / "mish.onnx", "mish", channels=8, size=16))
    assert relu.convs == 1 and relu.activations_fused == 1  # onnxruntime fuses Relu into its Conv
    conv = next(k for k in relu.kernels if k.op_type == "Conv")
    assert conv.kind == "Conv+Relu" and conv.fused == "Relu"
    assert (conv.cin, conv.cout, conv.kernel, conv.stride, conv.hw_out) == (8, 8, 3, 1, 256)
    assert conv.macs == 8 * 8 * 9 * 256
    assert mish.activations_fused == 0 and {"Softplus", "Tanh", "Mul"} <= {k.op_type for k in mish.kernels}
    assert all(k.shapes_known for k in relu.kernels + mish.kernels)


def test_dataset_schema(collected):
    from edgeprof.measure.host import fingerprint
    from edgeprof.predict.collect import DATASET_COLUMNS

    df = pd.read_csv(collected["dataset"])
    assert tuple(df.columns) == DATASET_COLUMNS
    assert collected["result"].samples >= 4 and df["sample"].nunique() == collected["result"].samples
    assert (df["host_fingerprint"] == fingerprint()).all() and (df["runtime"] == "onnxruntime").all()
    assert df["runtime_version"].nunique() == 1 and df["runtime_version"].iloc[0]
    assert (df["kernel_ms"] > 0).all() and (df["node_us"] > 0).all()
    assert "Conv+Relu" in set(df["kind"])
    # the kernels of one sample share its measured median (less the run overhead) in proportion to the profiler
    for _, sample in df.groupby("sample"):
        overhead = sample["overhead_ms"].iloc[0]
        assert sample["kernel_ms"].sum() == pytest.approx(sample["model_median_ms"].iloc[0] - overhead, rel=1e-6)
    meta = json.loads(collected["dataset"].with_suffix(".json").read_text())
    # the budget is a limit: collecting stopped when another batch and the final fit would no longer fit in it
    assert meta["host_fingerprint"] == fingerprint()
    assert 25 - meta["batch_s"] - meta["fit_s"] - 2 <= meta["spent_s"] <= 25


def test_collect_resumes_without_measuring_again(collected):
    from edgeprof.predict.collect import collect

    before = pd.read_csv(collected["dataset"])
    again = collect(collected["dataset"], options=collected["options"], fit=False)  # the budget is spent
    assert again.measured == 0 and again.samples == collected["result"].samples
    assert len(pd.read_csv(collected["dataset"])) == len(before)


def test_dataset_of_another_host_is_refused(collected, tmp_path):
    from edgeprof.predict.collect import collect

    other = tmp_path / "other.csv"
    df = pd.read_csv(collected["dataset"])
    df["host_fingerprint"] = "abcdef0123"
    df.to_csv(other, index=False)
    with pytest.raises(InputError, match="another host abcdef0123"):
        collect(other, options=collected["options"])


def test_ids_of_hex_digits_alone_read_back_as_written(collected, tmp_path):
    """A fingerprint or sample id such as ``0123456789`` or ``123456e78901`` is a number to pandas' guess: read
    that way, the dataset would look like another host's and every sample would be measured again."""
    from edgeprof.predict.collect import read_dataset

    other = tmp_path / "digits.csv"
    df = pd.read_csv(collected["dataset"], dtype=str)
    ids = {s: f"{i:06d}e{i:05d}" for i, s in enumerate(dict.fromkeys(df["sample"]))}
    df["sample"] = df["sample"].map(ids)
    df["host_fingerprint"] = "0123456789"
    df.to_csv(other, index=False)
    back = read_dataset(other)
    assert set(back["sample"]) == set(ids.values()) and set(back["host_fingerprint"]) == {"0123456789"}


def test_breakdown_sums_to_the_prediction(collected, tiny_net):
    from edgeprof.predict.model import predict_model

    p = predict_model(tiny_net, collected["predictor"])
    assert p.predicted_ms == pytest.approx(p.overhead_ms + sum(k.ms for k in p.kernels), rel=1e-12)
    assert p.low_ms == pytest.approx(p.overhead_ms + sum(k.low_ms for k in p.kernels), rel=1e-12)
    assert sum(g["ms"] for g in p.by_kind()) == pytest.approx(sum(k.ms for k in p.kernels), rel=1e-12)
    assert p.low_ms <= p.predicted_ms <= p.high_ms
    assert p.convs == 6 and p.activations_fused == 6  # two convs, and C2f's cv1, cv2 and its bottleneck's two
    assert all(k.ms > 0 for k in p.kernels)


def test_prediction_of_a_tiny_model_measured_here(collected, tiny_net):
    from edgeprof.measure.interleave import MeasureOptions
    from edgeprof.predict.model import predict_acts

    [p] = predict_acts(tiny_net, predictor=collected["predictor"], measure=True,
                       measure_options=MeasureOptions(ci_target="absolute", rel_ci=0.05, sessions=1, max_time=0.5))
    assert p.measured_ms is not None and p.measured_ms > 0
    # from half a minute of kernels of other sizes: right within a factor of 3, whatever the load
    assert 1 / 3 < p.predicted_ms / p.measured_ms < 3, (p.predicted_ms, p.measured_ms)
    assert p.error_pct == pytest.approx((p.predicted_ms / p.measured_ms - 1) * 100)


def test_predictor_of_another_host_is_refused(collected, tmp_path, tiny_net):
    from edgeprof.predict.fit import load_predictor, meta_path
    from edgeprof.predict.store import identity_of
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    path = tmp_path / "other.predictor.pkl"
    shutil.copy(collected["predictor"], path)
    meta = json.loads(meta_path(collected["predictor"]).read_text())
    meta_path(path).write_text(json.dumps({**meta, "host_fingerprint": "0123456789"}))
    here = identity_of(SessionSettings())
    with pytest.raises(InputError, match="another host 0123456789"):
        load_predictor(path, here)
    _, diffs = load_predictor(path, here, force=True)
    assert diffs and "0123456789" in diffs[0]
    line = _one_line_error(runner.invoke(app, ["predict", str(tiny_net), "--predictor", str(path)]))
    assert "another host" in line and "--force" in line
    forced = runner.invoke(app, ["predict", str(tiny_net), "--predictor", str(path), "--force", "--format", "json"])
    cli_ok(forced)


def test_other_runtime_version_is_refused(collected, tmp_path):
    from edgeprof.predict.fit import load_predictor, meta_path
    from edgeprof.predict.store import identity_of
    from edgeprof.runtime.onnxruntime.session import SessionSettings

    path = tmp_path / "old.predictor.pkl"
    shutil.copy(collected["predictor"], path)
    meta = json.loads(meta_path(collected["predictor"]).read_text())
    meta_path(path).write_text(json.dumps({**meta, "runtime_version": "0.0.1"}))
    with pytest.raises(InputError, match="runtime version 0.0.1"):
        load_predictor(path, identity_of(SessionSettings()))


def test_cli_json_and_table(collected, tiny_net):
    result = runner.invoke(app, ["predict", str(tiny_net), "--predictor", str(collected["predictor"]),
                                 "--format", "json"])
    cli_ok(result)
    data = json.loads(result.stdout)  # warnings (kinds never collected) go to stderr
    assert data["predicted_ms"] > 0 and len(data["interval_ms"]) == 2
    assert data["interval_ms"][0] <= data["predicted_ms"] <= data["interval_ms"][1]
    assert {"kind", "count", "ms", "share", "fused"} <= set(data["by_kind"][0]) and data["kernels"]
    table = runner.invoke(app, ["predict", str(tiny_net), "--predictor", str(collected["predictor"]),
                                "--acts", "relu,hardswish"])
    cli_ok(table)
    assert "Conv+Relu" in table.output and "hardswish" in table.output and "where the time goes" in table.output


def test_cli_errors(tmp_path, collected):
    assert "--budget" in _one_line_error(runner.invoke(app, ["predict", "collect", "--budget", "soon"]))
    assert "onnxruntime" in _one_line_error(runner.invoke(app, ["predict", "collect", "--runtime", "ncnn"]))
    missing = _one_line_error(runner.invoke(app, ["predict", str(tmp_path / "nope.onnx"), "--predictor",
                                                  str(collected["predictor"])]))
    assert "nope.onnx" in missing
    nothing = _one_line_error(runner.invoke(app, ["predict", str(tmp_path / "m.onnx"), "--predictor",
                                                  str(tmp_path / "none.pkl")]))
    assert "edgeprof predict collect" in nothing
    assert "mish" in _one_line_error(runner.invoke(app, ["predict", "collect", "--acts", "mishh"]))
    dynamic = conv_act_model(tmp_path / "dynamic.onnx", "relu", dynamic_batch=True)
    line = _one_line_error(runner.invoke(app, ["predict", str(dynamic), "--predictor", str(collected["predictor"])]))
    assert "fixed input size" in line and "N x 8 x 16 x 16" in line
    assert runner.invoke(app, ["predict", "--help"]).exit_code == 0
    assert "collect" in runner.invoke(app, ["predict", "--help"]).output


def test_parse_budget():
    assert parse_budget("30m") == 1800 and parse_budget("90s") == 90 and parse_budget("1.5h") == 5400
    assert parse_budget("45") == 45
    for bad in ("0m", "-1", "soon", ""):
        with pytest.raises(InputError):
            parse_budget(bad)


def test_predicting_needs_no_torch(collected, tiny_net):
    from test_torch_free import BLOCK_TORCH

    code = (f"from edgeprof.predict import predict_model\n"
            f"p = predict_model({str(tiny_net)!r}, {str(collected['predictor'])!r})\n"
            "import sys\nassert 'torch' not in sys.modules\nprint(p.predicted_ms > 0)\n")
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def _synthetic_convs(rng, kind: str, count: int, factor: float) -> list[dict]:
    """``count`` conv kernels of ``kind`` whose time is a power law in their MACs, times ``factor``, with 3% noise."""
    from edgeprof.predict.kernels import FEATURES

    rows = []
    for i in range(count):
        cin, cout = (int(rng.choice([16, 32, 64, 128])) for _ in range(2))
        hw = int(rng.choice([10, 20, 40]))
        macs = cin * cout * 9 * hw * hw
        ms = factor * 2e-8 * macs ** 0.95 * float(np.exp(rng.normal(0, 0.03)))
        feats = dict.fromkeys(FEATURES, 0)
        feats.update(macs=macs, in_elements=cin * hw * hw, out_elements=cout * hw * hw, inputs=1, cin=cin, cout=cout,
                     hw_out=hw * hw, kernel=3, stride=1, groups=1)
        rows.append({**feats, "kind": kind, "sample": f"{kind}{i}", "overhead_ms": 0.01, "in_network": 1,
                     "kernel_ms": ms})
    return rows


def test_every_conv_kind_shares_one_model(tmp_path):
    """A fused kind with only a few rows is predicted by the pooled conv model with its own indicator, not by
    another kind's model: here Conv+HardSwish (6 rows, 1.3x a plain conv's time) lands nearer 1.3x than 1x, and a
    fused op never collected is predicted as a plain conv and says so."""
    from edgeprof.predict.fit import CONV, fit_predictor
    from edgeprof.predict.kernels import Kernel

    rng = np.random.default_rng(0)
    rows = _synthetic_convs(rng, "Conv", 150, 1.0) + _synthetic_convs(rng, "Conv+Relu", 150, 1.02) + \
        _synthetic_convs(rng, "Conv+HardSwish", 6, 1.3)
    pred = fit_predictor(pd.DataFrame(rows), {})
    assert CONV in pred.models and "Conv+HardSwish" not in pred.models
    assert pred.conv_fused == ["HardSwish", "Relu"]
    cin, cout, hw = 64, 64, 20
    common = {"macs": cin * cout * 9 * hw * hw, "in_elements": cin * hw * hw, "out_elements": cout * hw * hw,
              "inputs": 1, "cin": cin, "cout": cout, "hw_out": hw * hw, "kernel": 3, "stride": 1, "groups": 1}
    kernels = [Kernel("a", "FusedConv", "com.microsoft", kind, **common) for kind in
               ("Conv", "Conv+HardSwish", "Conv+Mish")]
    (plain, _, _, by_plain), (hswish, _, _, by_hswish), (unseen, _, _, by_unseen) = pred.predict(kernels)
    assert by_plain == "Conv" and by_hswish == "Conv+HardSwish" and by_unseen == "Conv"
    assert hswish / plain > 1.15
    assert unseen == pytest.approx(plain)


def test_kernels_are_ordered_producers_first():
    """The optimised graph's nodes, saved in any order, come back level by level (saved order within a level), and a
    node whose input nobody makes comes last."""
    from onnx import helper

    from edgeprof.predict.kernels import _topological

    a = helper.make_node("Relu", ["x"], ["a"], name="a")
    b = helper.make_node("Relu", ["a"], ["b"], name="b")
    c = helper.make_node("Add", ["a", "b"], ["c"], name="c")
    d = helper.make_node("Relu", ["x"], ["d"], name="d")
    orphan = helper.make_node("Relu", ["nobody"], ["e"], name="orphan")
    after = helper.make_node("Relu", ["e"], ["f"], name="after_orphan")
    order = [n.name for n in _topological([c, orphan, b, d, after, a], {"x"})]
    assert order == ["d", "a", "b", "c", "orphan", "after_orphan"]
