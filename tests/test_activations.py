"""The activation registry: every entry builds, exports and runs, and its recorded ONNX lowering is true."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeprof.blocks import (
    ActInfo,
    Conv,
    act_info,
    act_names,
    canonical_act,
    create_act,
    get_act,
    list_acts,
)
from edgeprof.blocks.activations import Sine
from edgeprof.convert.onnx_export import export_block
from edgeprof.errors import InputError, RuntimeFailure
from edgeprof.spec import BlockSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
USER = "tests._user_acts"

REQUIRED = [
    "identity",
    "relu",
    "relu6",
    "leakyrelu",
    "prelu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "gelu_tanh",
    "sigmoid",
    "tanh",
    "silu",
    "hardswish",
    "hardsigmoid",
    "mish",
    "softplus",
    "sin",
]


@pytest.fixture
def user_acts(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``tests._user_acts`` importable whatever pytest's import mode put on sys.path."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return USER


def test_table_has_the_required_activations() -> None:
    assert set(REQUIRED) <= set(act_names())


@pytest.mark.parametrize("info", list_acts(), ids=lambda info: info.name)
def test_every_entry_builds_its_torch_module_by_name(info: ActInfo) -> None:
    assert isinstance(create_act(info.name), nn.Module)


@pytest.mark.parametrize("name", act_names())
def test_every_activation_exports_and_matches_its_registered_onnx_ops(name: str, tmp_path: Path) -> None:
    spec = BlockSpec("conv", name, width=8, imgsz=16)
    result = export_block(spec, tmp_path)

    info = act_info(name)
    assert info is not None
    assert result.act_ops == info.onnx_op_list, f"registry says {info.onnx_ops!r} for {name}"
    assert result.opset == 17
    assert result.spec.act == name
    assert not result.cached
    assert result.parity_max_abs_err <= 1e-3

    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    # And it runs with onnxruntime's default optimisations, not only the parity session's.
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal(spec.input_shape, dtype=np.float32)
    (out,) = session.run(None, {"images": x})
    assert out.shape == spec.input_shape
    assert np.isfinite(out).all()


def test_conv_gets_its_activation_as_attribute_act() -> None:
    assert isinstance(Conv(4, 4, act="mish").act, nn.Mish)
    assert isinstance(Conv(4, 4).act, nn.SiLU)
    assert isinstance(Conv(4, 4, act="identity").act, nn.Identity)


@pytest.mark.parametrize(
    ("alias", "canonical", "cls"),
    [
        ("swish", "silu", nn.SiLU),
        ("Swish", "silu", nn.SiLU),
        ("hswish", "hardswish", nn.Hardswish),
        ("HSIGMOID", "hardsigmoid", nn.Hardsigmoid),
        ("leaky_relu", "leakyrelu", nn.LeakyReLU),
        ("gelu-tanh", "gelu_tanh", nn.GELU),
        ("sine", "sin", Sine),
        ("none", "identity", nn.Identity),
    ],
)
def test_aliases_map_to_the_canonical_entry(alias: str, canonical: str, cls: type) -> None:
    assert canonical_act(alias) == canonical
    assert isinstance(create_act(alias), cls)
    assert act_info(alias) is act_info(canonical)


def test_every_name_and_alias_is_its_own_canonical_form() -> None:
    for info in list_acts():
        assert canonical_act(info.name) == info.name
        assert canonical_act(info.name.upper()) == info.name
        for alias in info.aliases:
            assert canonical_act(alias) == info.name


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("LeakyReLU:0.20", "leakyrelu:0.2"),
        ("  relu  ", "relu"),
        ("leakyrelu:0.1", "leakyrelu"),  # the default is dropped: one function, one label
        ("elu:1", "elu"),
        ("elu:2", "elu:2.0"),
        ("elu: 0.5", "elu:0.5"),
        ("celu:5e-1", "celu:0.5"),
        ("leakyrelu:-0.05", "leakyrelu:-0.05"),
        ("sin:30", "sin:30.0"),
        ("gelu_tanh", "gelu_tanh"),
    ],
)
def test_canonical_act_normalises(spec: str, expected: str) -> None:
    assert canonical_act(spec) == expected


def test_params_reach_the_module() -> None:
    assert create_act("leakyrelu:0.2").negative_slope == 0.2
    assert create_act("leakyrelu").negative_slope == 0.1  # YOLO's default, not torch's 0.01
    assert create_act("elu:0.5").alpha == 0.5
    assert create_act("celu:0.5").alpha == 0.5
    prelu = create_act("prelu:0.3")
    assert prelu.weight.numel() == 1
    assert prelu.weight.item() == pytest.approx(0.3)
    sine = create_act("sin:30")
    x = torch.linspace(-1, 1, 11)
    torch.testing.assert_close(sine(x), torch.sin(30.0 * x))
    torch.testing.assert_close(create_act("sin")(x), torch.sin(x))


def test_sin_with_w0_exports_as_mul_and_sin(tmp_path: Path) -> None:
    result = export_block(BlockSpec("conv", "sin:30", width=8, imgsz=16), tmp_path)
    assert result.act_ops == ["Mul", "Sin"]
    assert result.spec.act == "sin:30.0"


def test_leakyrelu_slope_is_exported(tmp_path: Path) -> None:
    result = export_block(BlockSpec("conv", "leakyrelu:0.2", width=8, imgsz=16), tmp_path)
    (node,) = [n for n in onnx.load(str(result.path)).graph.node if n.op_type == "LeakyRelu"]
    (alpha,) = [a.f for a in node.attribute if a.name == "alpha"]
    assert alpha == pytest.approx(0.2)


def test_create_act_makes_a_fresh_module_each_call() -> None:
    first, second = create_act("prelu"), create_act("prelu")
    assert first is not second
    assert first.weight is not second.weight


def test_get_act_accepts_a_class_and_an_instance() -> None:
    assert isinstance(get_act(nn.ReLU)(), nn.ReLU)
    template = nn.LeakyReLU(0.3)
    factory = get_act(template)
    first, second = factory(), factory()
    assert first is not template and second is not first
    assert first.negative_slope == 0.3
    assert isinstance(create_act(nn.Hardswish()), nn.Hardswish)


def test_get_act_rejects_other_things() -> None:
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        get_act(int)
    with pytest.raises(InputError, match="must be a name"):
        get_act(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="non-empty"):
        get_act("  ")


def test_unknown_name_lists_valid_names_and_suggests_the_closest() -> None:
    with pytest.raises(InputError) as err:
        canonical_act("mihs")
    message = str(err.value)
    assert "unknown activation 'mihs'" in message
    assert "did you mean 'mish'?" in message
    assert "valid: " + ", ".join(act_names()) in message
    assert "\n" not in message


def test_unknown_name_without_a_close_match_still_lists_valid_names() -> None:
    with pytest.raises(InputError) as err:
        create_act("qqqqqqqq")
    assert "did you mean" not in str(err.value)
    assert "valid: identity, relu" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("relu:1", "relu takes no parameters, got 1"),
        ("leakyrelu:0.1:0.2", "leakyrelu takes 1 parameter(s) (negative_slope), got 2"),
        ("elu:0.5,2", "elu takes 1 parameter(s) (alpha), got 2"),
        ("leakyrelu:abc", "parameter negative_slope must be a finite number, got 'abc'"),
        ("elu:", "parameter alpha must be a finite number, got ''"),
        ("sin:nan", "parameter w0 must be a finite number"),
        ("celu:0", "alpha must not be 0"),
    ],
)
def test_bad_params_say_which_activation_takes_which_params(spec: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        canonical_act(spec)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_user_activation_by_import_path(user_acts: str, tmp_path: Path) -> None:
    spec = f"{user_acts}:ScaledSiLU"
    assert canonical_act(spec) == spec
    assert act_info(spec) is None
    module = create_act(spec)
    assert type(module).__name__ == "ScaledSiLU"
    assert create_act(spec) is not module
    assert type(create_act(f"{user_acts}:make_scaled_silu")).__name__ == "ScaledSiLU"

    result = export_block(BlockSpec("conv", spec, width=8, imgsz=16), tmp_path)
    assert result.act_ops == ["Mul", "Sigmoid"]
    assert result.spec.act == spec
    assert export_block(BlockSpec("conv", spec, width=8, imgsz=16), tmp_path).cached


@pytest.mark.parametrize(
    ("attr", "fragment"),
    [
        ("NotAModule", "NotAModule is a class but not a torch.nn.Module"),
        ("returns_a_number", "returns_a_number() returned float, not a torch.nn.Module"),
        ("NOT_CALLABLE", "expected an nn.Module subclass, a zero-argument callable"),
        ("Missing", "has no attribute 'Missing'"),
    ],
)
def test_bad_user_attribute_errors(user_acts: str, attr: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        canonical_act(f"{user_acts}:{attr}")
    assert fragment in str(err.value)


def test_bad_import_path_errors(user_acts: str) -> None:
    with pytest.raises(InputError, match="cannot import module 'tests._no_such_module'"):
        canonical_act("tests._no_such_module:Act")
    with pytest.raises(InputError, match="neither a registered name nor an import path"):
        canonical_act(user_acts)  # a dotted name without ':attr'


def test_unexportable_user_activation_is_a_one_line_runtime_failure(
    user_acts: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = BlockSpec("conv", f"{user_acts}:Erfcx", width=8, imgsz=16)
    with pytest.raises(RuntimeFailure) as err:
        export_block(spec, tmp_path)
    message = str(err.value)
    assert f"activation '{user_acts}:Erfcx'" in message
    assert "aten::special_erfcx" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no half-written model, no temp file
    out, errout = capfd.readouterr()
    assert "Torch IR graph" not in out + errout  # the exporter's C++ dump is silenced
