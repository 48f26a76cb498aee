"""Blocks build as Ultralytics defines them, count what they should, and export through a trustworthy cache."""

import errno
import importlib.util
import json
import os
from dataclasses import fields, replace
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from edgeprof.blocks import (
    C3,
    SPPF,
    Bottleneck,
    C2f,
    Conv,
    act_info,
    build_block,
    count_macs,
    count_params,
)
from edgeprof.blocks.yolo import autopad
from edgeprof.convert import onnx_export as export_mod
from edgeprof.convert.onnx_export import ExportResult, export_block, export_module
from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.spec import BLOCK_NAMES, BlockSpec

SMALL = BlockSpec("conv", "relu", width=8, imgsz=16)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- blocks ---------------------------------------------------------------------------------------


def test_autopad() -> None:
    assert autopad(3) == 1
    assert autopad(1) == 0
    assert autopad(5) == 2
    assert autopad(3, d=2) == 2
    assert autopad((1, 3)) == [0, 1]
    assert autopad(3, p=0) == 0


@pytest.mark.parametrize("block", BLOCK_NAMES)
@pytest.mark.parametrize("act", ["relu", "hardswish"])
def test_each_block_builds_and_exports(block: str, act: str, tmp_path: Path) -> None:
    spec = BlockSpec(block, act, width=16, depth=2, imgsz=16)
    model = build_block(spec)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(spec.input_shape)).shape == spec.input_shape

    result = export_block(spec, tmp_path)
    assert result.path.exists()
    assert result.act_ops == act_info(act).onnx_op_list
    assert result.params == count_params(model)
    assert result.macs == count_macs(model, spec.input_shape)
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["output"]
    assert "BatchNormalization" not in {n.op_type for n in graph.node}  # folded into the Conv


def test_conv_stride_and_kernel_come_from_the_spec() -> None:
    spec = BlockSpec("conv", "relu", width=8, imgsz=16, kernel=1, stride=2)
    model = build_block(spec)
    assert model.conv.kernel_size == (1, 1)
    assert model.conv.stride == (2, 2)
    with torch.no_grad():
        assert model(torch.zeros(spec.input_shape)).shape == (1, 8, 8, 8)


def test_macs_of_a_conv_block_match_the_hand_formula() -> None:
    # out elements * (in / groups) * kh * kw
    assert count_macs(Conv(8, 16, k=3, s=2), (1, 8, 32, 32)) == (1 * 16 * 16 * 16) * 8 * 3 * 3
    assert count_macs(Conv(8, 8, k=3, g=4), (2, 8, 10, 10)) == (2 * 8 * 10 * 10) * 2 * 3 * 3
    spec = BlockSpec("conv", "silu", width=12, imgsz=20, batch=2, kernel=3, stride=1)
    assert count_macs(build_block(spec), spec.input_shape) == (2 * 12 * 20 * 20) * 12 * 3 * 3
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (2, 3, 2, 2)) == 2 * 5 * 12


def test_macs_count_every_call_and_keep_the_training_flag() -> None:
    model = Bottleneck(8, 8, k=(1, 1), e=0.5).train()
    # cv1: 8 -> 4 (1x1), cv2: 4 -> 8 (1x1), on 6x6
    assert count_macs(model, (1, 8, 6, 6)) == 36 * 4 * 8 + 36 * 8 * 4
    assert model.training
    assert torch.equal(model.cv1.bn.running_mean, torch.zeros(4))  # no BN statistics were updated


def test_params_are_the_sum_of_parameter_sizes() -> None:
    conv = Conv(8, 16, k=3)
    assert count_params(conv) == 16 * 8 * 3 * 3 + 2 * 16  # conv weight + BN weight and bias
    for block in BLOCK_NAMES:
        model = build_block(BlockSpec(block, "prelu", width=8, depth=2, imgsz=16))
        assert count_params(model) == sum(p.numel() for p in model.parameters())


def test_residual_only_with_shortcut_and_equal_channels() -> None:
    assert Bottleneck(8, 8, shortcut=True).add
    assert not Bottleneck(8, 8, shortcut=False).add
    assert not Bottleneck(8, 16, shortcut=True).add
    model = Bottleneck(8, 8).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x + model.cv2(model.cv1(x)))
    assert all(b.add for b in C3(8, 8, n=2).m)
    assert not any(b.add for b in C2f(8, 8, n=2).m)  # C2f's default is shortcut=False
    assert all(b.add for b in build_block(BlockSpec("c2f", "relu", width=8, depth=2, imgsz=16)).m)


def test_block_structure_matches_ultralytics() -> None:
    c2f = C2f(16, 16, n=3)
    assert c2f.cv1.conv.out_channels == 16 and c2f.cv2.conv.in_channels == (2 + 3) * 8
    c3 = C3(16, 32, n=2)
    assert len(c3.m) == 2 and c3.cv3.conv.in_channels == 32
    sppf = SPPF(16, 16, k=5)
    assert sppf.m.kernel_size == 5 and sppf.m.padding == 2 and sppf.cv2.conv.in_channels == 4 * 8


def test_every_conv_owns_its_activation_and_nothing_is_global() -> None:
    model = C2f(8, 8, n=2, act="prelu")
    acts = [m.act for m in model.modules() if isinstance(m, Conv)]
    assert len(acts) == 2 + 2 * 2
    assert len({id(a) for a in acts}) == len(acts)
    assert len({id(a.weight) for a in acts}) == len(acts)
    assert isinstance(Conv(4, 4).act, nn.SiLU)  # building a prelu model changed no default


def test_build_block_is_deterministic_with_nontrivial_batchnorm() -> None:
    spec = BlockSpec("c3", "silu", width=8, imgsz=16)
    rng_before = torch.get_rng_state()
    first, second = build_block(spec), build_block(spec)
    assert torch.equal(rng_before, torch.get_rng_state())  # the caller's RNG is untouched
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other = build_block(spec, seed=1)
    assert not torch.equal(first.cv1.conv.weight, other.cv1.conv.weight)
    bn = first.cv1.bn
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.running_var.min() >= 0.5 and bn.running_var.max() <= 1.5
    assert bn.weight.min() >= 0.5 and bn.weight.max() <= 1.5
    assert bn.running_mean.abs().max() < 1.0 and bn.bias.abs().max() <= 0.1


def test_sppf_needs_two_channels() -> None:
    with pytest.raises(InputError, match="sppf needs width >= 2"):
        build_block(BlockSpec("sppf", "relu", width=1, imgsz=16))


# --- export and cache -----------------------------------------------------------------------------


def test_second_export_is_cached_and_does_not_rewrite(tmp_path: Path) -> None:
    first = export_block(SMALL, tmp_path)
    assert not first.cached
    onnx_mtime = first.path.stat().st_mtime_ns
    sidecar = first.path.with_suffix(".json")
    sidecar_mtime = sidecar.stat().st_mtime_ns

    second = export_block(SMALL, tmp_path)
    assert second.cached
    assert second.path == first.path
    assert first.path.stat().st_mtime_ns == onnx_mtime
    assert sidecar.stat().st_mtime_ns == sidecar_mtime
    assert replace(second, cached=False) == first  # the original export time is reported, too
    # the model, its sidecar and torch's reference for the runtimes' parity check (<model>.ref.npz)
    assert _files(tmp_path) == sorted([first.path.name, sidecar.name, first.path.with_suffix('.ref.npz').name])


def test_sidecar_holds_every_result_field(tmp_path: Path) -> None:
    result = export_block(SMALL, tmp_path)
    data = json.loads(result.path.with_suffix(".json").read_text())
    assert {f.name for f in fields(ExportResult)} <= set(data)
    assert data["path"] == result.path.name
    assert data["spec"] == SMALL.as_dict()
    assert data["opset"] == result.opset
    assert result.path.name.startswith(SMALL.slug() + "-")


def test_changing_any_input_changes_the_file_name(tmp_path: Path) -> None:
    base = BlockSpec("conv", "relu", width=8, depth=1, imgsz=16, batch=1, kernel=3, stride=1)
    variants = [
        replace(base, block="sppf"),
        replace(base, act="relu6"),
        replace(base, width=10),
        replace(base, depth=2),
        replace(base, imgsz=20),
        replace(base, batch=2),
        replace(base, kernel=1),
        replace(base, stride=2),
    ]
    names = [export_block(spec, tmp_path).path.name for spec in [base, *variants]]
    names.append(export_block(base, tmp_path, opset=16).path.name)
    names.append(export_block(base, tmp_path, seed=1).path.name)
    assert len(set(names)) == len(names)


def test_alias_and_canonical_name_share_one_file(tmp_path: Path) -> None:
    canonical = export_block(replace(SMALL, act="silu"), tmp_path)
    aliased = export_block(replace(SMALL, act="Swish"), tmp_path)
    assert aliased.cached and aliased.path == canonical.path
    assert aliased.spec.act == "silu"


@pytest.mark.parametrize("opset", [13, 16])
def test_opset_is_read_from_the_file(opset: int, tmp_path: Path) -> None:
    result = export_block(SMALL, tmp_path, opset=opset)
    written = {e.domain: e.version for e in onnx.load(str(result.path)).opset_import}
    assert result.opset == written[""] == opset


def test_opset_comes_from_the_file_not_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_export = export_mod._export

    def export_at_opset_15(model, input_shape, path, opset, exporter):
        real_export(model, input_shape, path, 15, exporter)

    monkeypatch.setattr(export_mod, "_export", export_at_opset_15)
    assert export_block(SMALL, tmp_path, opset=17).opset == 15


def test_corrupted_sidecar_triggers_reexport(tmp_path: Path) -> None:
    first = export_block(SMALL, tmp_path)
    sidecar = first.path.with_suffix(".json")
    sidecar.write_text("{not json")
    again = export_block(SMALL, tmp_path)
    assert not again.cached
    assert json.loads(sidecar.read_text())["onnx_sha256"] == again.onnx_sha256
    assert export_block(SMALL, tmp_path).cached


def test_corrupted_model_triggers_reexport(tmp_path: Path) -> None:
    first = export_block(SMALL, tmp_path)
    with first.path.open("ab") as handle:
        handle.write(b"garbage")
    again = export_block(SMALL, tmp_path)
    assert not again.cached
    assert again.onnx_sha256 == first.onnx_sha256  # deterministic export
    onnx.checker.check_model(onnx.load(str(again.path)), full_check=True)


def test_missing_model_triggers_reexport(tmp_path: Path) -> None:
    first = export_block(SMALL, tmp_path)
    first.path.unlink()
    assert not export_block(SMALL, tmp_path).cached


def test_parity_failure_raises_and_caches_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure) as err:
        export_block(SMALL, tmp_path, tol=-1.0)
    message = str(err.value)
    assert "parity check failed for conv-k3s1_relu_w8_i16_b1-" in message
    assert "max abs error" in message and "tolerance" in message
    assert _files(tmp_path) == []


def test_wrong_onnx_output_fails_parity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = export_mod._run_onnx
    monkeypatch.setattr(export_mod, "_run_onnx", lambda path, x: real_run(path, x) + 0.5)
    with pytest.raises(RuntimeFailure, match="parity check failed"):
        export_block(SMALL, tmp_path)
    assert _files(tmp_path) == []


def test_a_cached_model_is_held_to_the_new_tolerance(tmp_path: Path) -> None:
    export_block(SMALL, tmp_path)
    with pytest.raises(RuntimeFailure, match="parity check failed"):
        export_block(SMALL, tmp_path, tol=-1.0)


def test_unwritable_models_dir_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"cannot write to models dir {blocker / 'models'}"):
        export_block(SMALL, blocker / "models")


def test_disk_full_is_a_runtime_failure_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export_mod.os, "replace", no_space)
    with pytest.raises(RuntimeFailure) as err:
        export_block(SMALL, tmp_path)
    assert str(tmp_path) in str(err.value)
    assert os.strerror(errno.ENOSPC) in str(err.value)
    monkeypatch.undo()
    assert _files(tmp_path) == []  # the temporary file was removed


def test_exporter_choice_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown exporter 'onnxmltools'"):
        export_block(SMALL, tmp_path, exporter="onnxmltools")
    with pytest.raises(InputError, match="opset 99 is outside"):
        export_block(SMALL, tmp_path, opset=99)


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is not None, reason="onnxscript is installed")
def test_dynamo_exporter_needs_onnxscript(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pip install onnxscript"):
        export_block(SMALL, tmp_path, exporter="dynamo")


def test_export_module_writes_named_io(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    export_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (1, 3, 8, 8), path, opset=17)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["output"]


def test_yolo_n_detector_matches_yolov8n_size(tmp_path):
    """The built-in whole network: YOLOv8n's parameter count and 4.4 GMACs at 640 (1.09 G at 320)."""
    from edgeprof.convert.onnx_export import export_block as _export
    from edgeprof.spec import BlockSpec as _Spec

    result = _export(_Spec(block="yolo-n", act="silu", width=3, imgsz=320), models_dir=tmp_path)
    assert 3_100_000 < result.params < 3_200_000
    assert 1.0e9 < result.macs < 1.2e9
    assert result.act_ops == ["Sigmoid", "Mul"]


def test_whole_models_validate_their_input():
    import pytest as _pytest

    from edgeprof.errors import InputError as _InputError
    from edgeprof.spec import BlockSpec as _Spec

    with _pytest.raises(_InputError, match="multiple of 32"):
        _Spec(block="yolo-n", act="relu", width=3, imgsz=100)
    with _pytest.raises(_InputError, match="3 input channels"):
        _Spec(block="yolo-n", act="relu", width=16, imgsz=320)
