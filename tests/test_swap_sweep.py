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
                                      "--sessions", "2", "--csv", str(csv), "--quiet"])
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


def test_sweep_onnx_has_the_columns_and_options_of_a_sweep(tmp_path):
    """--onnx rows get per-op rows, the static memory estimate, MACs and the roofline; --resume works."""
    from edgeprof.analysis import graph_macs

    built = export_block(BlockSpec(block="conv", act="silu", width=8, imgsz=16), models_dir=tmp_path / "src")
    assert graph_macs(built.path) == built.macs  # the graph's count agrees with torch's
    csv = tmp_path / "swap.csv"
    args = ["sweep", "--onnx", str(built.path), "--acts", "relu,mish", "--max-time", "0.2", "--min-samples", "6",
            "--sessions", "2", "--models-dir", str(tmp_path / "m"), "--csv", str(csv), "--quiet", "--format", "csv"]
    result = CliRunner().invoke(app, [*args, "--per-op"])
    assert result.exit_code == 0, result.output
    assert "no per-op data" not in result.output and "Softplus" in result.output
    df = pd.read_csv(csv).set_index("act")
    assert (df["weights_mb"] > 0).all() and (df["act_peak_mb"] > 0).all()
    assert (df["macs"] == built.macs).all() and (df["achieved_gflops"] > 0).all()
    assert (df["frac_peak_gflops"] > 0).all()
    ops = pd.read_csv(csv.with_name("swap-ops.csv"))
    assert set(ops["act"]) == {"relu", "mish"} and ops.loc[ops["act"] == "mish", "is_act"].any()
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "2 of 2 configs already measured" in again.output and len(pd.read_csv(csv)) == 2


def test_sweep_onnx_refuses_options_about_built_blocks(tmp_path):
    from conftest import one_line_error

    built = export_block(BlockSpec(block="conv", act="silu", width=8, imgsz=16), models_dir=tmp_path / "src")
    for extra, needle in ((["--widths", "32"], "--widths does not apply to --onnx"),
                          (["--blocks", "c3", "--quantize", "int8"], "--blocks, --quantize do not apply to --onnx")):
        result = CliRunner().invoke(app, ["sweep", "--onnx", str(built.path), *extra, "--csv",
                                          str(tmp_path / "x.csv"), "--quiet"])
        assert needle in one_line_error(result)
    result = CliRunner().invoke(app, ["sweep", "--shape", "images=1x3x8x8", "--csv", str(tmp_path / "x.csv")])
    assert "--shape applies only with --onnx" in one_line_error(result)
