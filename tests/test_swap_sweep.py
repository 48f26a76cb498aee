"""`edgeprof sweep --onnx`: your own model profiled with each activation swapped in."""

import pandas as pd
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.convert.onnx_export import export_block
from edgeprof.spec import BlockSpec


def test_sweep_onnx_swaps_and_profiles(tmp_path):
    src = export_block(BlockSpec(block="c2f", act="silu", width=16, imgsz=32), models_dir=tmp_path / "src").path
    csv = tmp_path / "swap.csv"
    result = CliRunner().invoke(app, ["sweep", "--onnx", str(src), "--acts", "relu,hardswish,mish", "--max-time",
                                      "0.3", "--min-samples", "10", "--models-dir", str(tmp_path / "m"),
                                      "--csv", str(csv), "--quiet"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(csv).set_index("act")
    assert list(df.index) == ["relu", "hardswish", "mish"]
    assert df.loc["relu", "fused"] and not df.loc["mish", "fused"]
    assert df.loc["mish", "act_ops"].count("Softplus") == 4  # c2f n=1: cv1, cv2 and the bottleneck's two convs
    assert df.loc["mish", "ratio_to_baseline"] > 1
    assert (df["status"] == "ok").all() and df["block"].str.startswith("onnx:").all()


def test_sweep_onnx_bad_target(tmp_path):
    src = export_block(BlockSpec(block="conv", act="silu", width=8, imgsz=16), models_dir=tmp_path).path
    result = CliRunner().invoke(app, ["sweep", "--onnx", str(src), "--acts", "relu,mihs", "--quiet",
                                      "--models-dir", str(tmp_path / "m"), "--csv", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "did you mean 'mish'" in result.output
