"""INT8 variants: onnxruntime static QDQ quantization of relu and hardswish blocks, and int8 rows in a sweep."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeprof.convert.onnx_export import export_block
from edgeprof.measure import MeasureOptions, SessionSettings
from edgeprof.pipeline import SweepPlan, run_sweep
from edgeprof.quantize import quantize_model
from edgeprof.spec import BlockSpec


@pytest.mark.parametrize("act", ["relu", "hardswish"])
def test_quantized_block_is_valid_runs_and_stays_close(tmp_path, act):
    exp = export_block(BlockSpec(block="conv", act=act, width=16, imgsz=32), models_dir=tmp_path)
    q = quantize_model(exp)
    model = onnx.load(str(q.path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert 0 < q.quant_rel_err < 0.05  # a few percent of the output range at most
    assert np.isfinite(q.quant_max_abs_err)
    again = quantize_model(exp)  # cached by content
    assert again.path == q.path and again.quant_max_abs_err == q.quant_max_abs_err


def test_unknown_quantization_mode(tmp_path):
    from edgeprof.errors import InputError

    exp = export_block(BlockSpec(block="conv", act="relu", width=8, imgsz=16), models_dir=tmp_path)
    with pytest.raises(InputError, match="valid: int8"):
        quantize_model(exp, mode="int4")


def test_sweep_with_int8_rows(tmp_path: Path):
    plan = SweepPlan(acts=("relu", "hardswish"), widths=(16,), imgsz=(32,), roofline=False, act_alone=False,
                     quantize="int8")
    opts = MeasureOptions(max_time=0.3, min_samples=10, min_rounds=6, warmup_s=0.02, sessions=3)
    df, _ = run_sweep(plan, SessionSettings(), opts, csv_path=tmp_path / "q.csv", models_dir=tmp_path / "m")
    assert list(zip(df["precision"], df["act"], strict=True)) == [
        ("fp32", "relu"), ("fp32", "hardswish"), ("int8", "relu"), ("int8", "hardswish")]
    int8 = df[df["precision"] == "int8"].set_index("act")
    assert (int8["ratio_to_fp32"] > 0).all() and (int8["quant_rel_err"] < 0.05).all()
    assert int8.loc["relu", "ratio_to_baseline"] == 1.0  # int8 rows compare with the int8 baseline
    assert (df[df["precision"] == "int8"]["status"] == "ok").all()


def test_dynamic_and_user_calibration(tmp_path):
    exp = export_block(BlockSpec(block="conv", act="hardswish", width=8, imgsz=16), models_dir=tmp_path)
    dyn = quantize_model(exp, mode="int8-dynamic")
    ops = [n.op_type for n in onnx.load(str(dyn.path)).graph.node]
    assert "ConvInteger" in ops and "DynamicQuantizeLinear" in ops and "HardSwish" in ops
    assert dyn.quant_rel_err < 0.05
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(3).standard_normal((4, 1, 8, 16, 16)).astype(np.float32)[:, 0])
    user = quantize_model(exp, calib=calib)
    assert user.path != quantize_model(exp).path and "calib.npy" in user.quant_method
    bad = tmp_path / "bad.npz"
    np.savez(bad, wrong=np.zeros((2, 8, 16, 16), np.float32))
    from edgeprof.errors import InputError

    with pytest.raises(InputError, match="the model takes"):
        quantize_model(exp, calib=bad)
