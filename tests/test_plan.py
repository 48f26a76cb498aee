"""The size planner (edgeprof.spec.plan), the block-kind registry's rules and the memory check before building."""

import math

import pytest
from conftest import conv_act_model, one_line_error
from typer.testing import CliRunner

from edgeprof.cli import app
from edgeprof.errors import InputError
from edgeprof.spec import BlockSpec
from edgeprof.spec.blocks import BLOCK_KINDS, block_kind, blocks_help
from edgeprof.spec.memory import available_bytes, block_need_bytes, check_block_fits
from edgeprof.spec.plan import SweepPlan, labelled_groups, plan_sizes, scale_size

runner = CliRunner()


def _labels(**plan) -> set[str]:
    return {size["scaling"] for size in plan_sizes(SweepPlan(**plan))}


@pytest.mark.parametrize(("plan", "label"), [
    ({"widths": (16, 32, 64)}, "width"),
    ({"blocks": ("c3",), "widths": (16,), "depths": (1, 2)}, "depth"),
    ({"widths": (16,), "imgsz": (64, 128)}, "imgsz"),
    ({"widths": (16,)}, "single"),
    ({"widths": (16, 32), "imgsz": (64, 128)}, "grid"),
    ({"blocks": ("c2f",), "widths": (16, 32), "depths": (1, 2)}, "grid"),
    ({"blocks": ("conv",), "widths": (16,), "depths": (1, 2)}, "single"),  # depth does not apply to conv
])
def test_auto_labels_what_varies(plan, label):
    assert _labels(**plan) == {label}


def test_explicit_modes_refuse_a_second_varying_size():
    with pytest.raises(InputError, match="--scaling depth .* single --widths"):
        plan_sizes(SweepPlan(blocks=("c3",), widths=(16, 32), depths=(1, 2), scaling="depth"))
    with pytest.raises(InputError, match="--scaling width .* single --imgsz"):
        plan_sizes(SweepPlan(widths=(16, 32), imgsz=(32, 64), scaling="width"))
    with pytest.raises(InputError, match="valid: auto, grid, width, depth, imgsz, fixed-tensor"):
        plan_sizes(SweepPlan(scaling="linear"))


def test_fixed_tensor_keeps_width_times_area_nearly_constant():
    sizes = plan_sizes(SweepPlan(widths=(16, 64, 256), imgsz=(128,), scaling="fixed-tensor"))
    assert [s["width"] for s in sizes] == [16, 64, 256]
    assert [s["imgsz"] for s in sizes] == [128, 64, 32]
    assert {s["scaling"] for s in sizes} == {"fixed-tensor"}
    volumes = [s["width"] * s["imgsz"] ** 2 for s in sizes]
    assert max(volumes) / min(volumes) < 1.05
    uneven = plan_sizes(SweepPlan(widths=(16, 24), imgsz=(100,), scaling="fixed-tensor"))
    assert abs(uneven[1]["width"] * uneven[1]["imgsz"] ** 2 / (16 * 100**2) - 1) < 0.05
    with pytest.raises(InputError, match="one --imgsz"):
        plan_sizes(SweepPlan(widths=(16, 32), imgsz=(64, 128), scaling="fixed-tensor"))


def test_scale_presets_follow_yolov8_multipliers():
    assert [scale_size(s) for s in "nsmlx"] == [(64, 2), (128, 2), (192, 4), (256, 6), (320, 6)]
    sizes = plan_sizes(SweepPlan(blocks=("c2f",), scales=("n", "s"), imgsz=(64,)))
    assert [(s["width"], s["depth"], s["scale"], s["scaling"]) for s in sizes] == [(64, 2, "n", "preset"),
                                                                                   (128, 2, "s", "preset")]
    with pytest.raises(InputError, match="unknown scale 'q'; valid: n, s, m, l, x"):
        scale_size("q")


def test_groups_apply_only_the_sizes_a_kind_takes():
    plan = SweepPlan(acts=("relu", "mish"), blocks=("conv", "c3", "sppf"), widths=(8,), depths=(1, 2), imgsz=(16,),
                     kernel=5, stride=2)
    groups = labelled_groups(plan)
    by_block: dict[str, list] = {}
    for specs, labels in groups:
        assert [s.act for s in specs] == ["relu", "mish"]
        assert labels["scaling"] == "depth"
        by_block.setdefault(specs[0].block, []).append(specs[0])
    assert [(s.kernel, s.stride, s.depth) for s in by_block["conv"]] == [(5, 2, 1)]  # one group: depth not its
    assert [s.depth for s in by_block["c3"]] == [1, 2]
    assert [(s.kernel, s.stride, s.depth) for s in by_block["sppf"]] == [(3, 1, 1)]


def test_scaling_cli_labels_a_depth_sweep(tmp_path):
    csv = tmp_path / "d.csv"
    result = runner.invoke(app, ["sweep", "--acts", "relu", "--blocks", "c3", "--widths", "8", "--depths", "1,2",
                                 "--imgsz", "16", "--max-time", "0.2", "--min-samples", "6", "--no-roofline",
                                 "--sessions", "2", "--no-act-alone", "--csv", str(csv), "--models-dir",
                                 str(tmp_path / "m"), "--quiet"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    df = pd.read_csv(csv)
    assert set(df["scaling"]) == {"depth"} and sorted(set(df["depth"])) == [1, 2]


# ---------------------------------------------------------------------------------------------- the registry
def test_even_kernels_are_refused_where_the_kernel_applies():
    with pytest.raises(InputError, match="kernel 4 is even.*use an odd kernel"):
        BlockSpec("conv", "relu", width=8, imgsz=16, kernel=4)
    assert BlockSpec("conv", "relu", width=8, imgsz=16, kernel=5).output_shape() == (1, 8, 16, 16)
    assert BlockSpec("conv", "relu", width=8, imgsz=16, kernel=3, stride=2).output_shape() == (1, 8, 8, 8)


def test_even_kernel_on_the_cli_is_one_line(tmp_path):
    result = runner.invoke(app, ["sweep", "--kernel", "4", "--widths", "8", "--imgsz", "16", "--quiet",
                                 "--csv", str(tmp_path / "k.csv")])
    assert "kernel 4 is even" in one_line_error(result)


def test_min_width_and_slug_come_from_the_kind():
    with pytest.raises(InputError, match="block c2f needs width >= 2, got 1"):
        BlockSpec("c2f", "relu", width=1, imgsz=16)
    assert BlockSpec("act", "relu", width=1, imgsz=16).slug() == "act_relu_w1_i16_b1"
    assert BlockSpec("c3", "relu", width=8, depth=2, imgsz=16).slug() == "c3-n2_relu_w8_i16_b1"
    assert BlockSpec("conv", "relu", width=8, imgsz=16, kernel=5, stride=2).slug() == "conv-k5s2_relu_w8_i16_b1"


def test_unknown_block_lists_the_valid_kinds():
    with pytest.raises(InputError, match="unknown block 'c4'; valid blocks: conv, bottleneck, c3, c2f, sppf, act"):
        BlockSpec("c4", "relu", width=8)


def test_help_names_every_block_kind():
    text = blocks_help()
    assert all(kind.name in text for kind in BLOCK_KINDS if not kind.whole_model)


# ---------------------------------------------------------------------------------------------- memory
def test_memory_estimate_grows_with_the_config():
    small = block_need_bytes(BlockSpec("conv", "relu", width=16, imgsz=32))
    wide = block_need_bytes(BlockSpec("conv", "relu", width=64, imgsz=32))
    large = block_need_bytes(BlockSpec("conv", "relu", width=16, imgsz=128))
    assert small < wide and small < large
    assert block_need_bytes(BlockSpec("conv", "relu", width=16, imgsz=32)) >= 4 * 16 * 32 * 32  # at least the input


def test_a_config_larger_than_the_machine_is_refused_before_building():
    spec = BlockSpec("conv", "relu", width=100000, imgsz=160)
    with pytest.raises(InputError, match=r"block conv-k3s1_relu_w100000_i160_b1 needs about .* GiB of memory, "
                                         r"more than the 1.0 GiB this machine has available"):
        check_block_fits(spec, available=2**30)
    check_block_fits(BlockSpec("conv", "relu", width=16, imgsz=32), available=2**30)


def test_huge_widths_on_the_cli_are_one_line(tmp_path):
    if available_bytes() is None:
        pytest.skip("no /proc/meminfo here")
    result = runner.invoke(app, ["sweep", "--widths", "100000", "--acts", "relu", "--quiet",
                                 "--csv", str(tmp_path / "w.csv"), "--models-dir", str(tmp_path / "m")])
    line = one_line_error(result)
    assert "needs about" in line and "available" in line
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())  # nothing was built


def test_huge_profile_shape_is_one_line(tmp_path):
    if available_bytes() is None:
        pytest.skip("no /proc/meminfo here")
    model = conv_act_model(tmp_path / "dyn.onnx", "relu", dynamic_batch=True)
    result = runner.invoke(app, ["profile", str(model), "--shape", "images=100000000x8x16x16", "--quiet",
                                 "--csv", str(tmp_path / "p.csv")])
    line = one_line_error(result)
    assert "input images of shape 100000000x8x16x16 needs about" in line


def test_block_kind_lookup_is_the_registry():
    assert block_kind("c3").uses("depth") and not block_kind("conv").uses("depth")
    assert block_kind("conv").uses("kernel") and math.prod(block_kind("act").output_shape(
        BlockSpec("act", "relu", width=3, imgsz=5))) == 75
