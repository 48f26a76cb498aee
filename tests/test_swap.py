"""Swapping the activation inside an ONNX model: detection of every pattern, the rules, the rewrite and the command."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import one_line_error as _one_line_error
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgeprof.blocks.activations import act_names, canonical_act
from edgeprof.cli import app
from edgeprof.convert.onnx_export import export_block
from edgeprof.errors import InputError
from edgeprof.spec import BlockSpec
from edgeprof.swap import find_activations, parse_act, swap_model
from edgeprof.swap.detect import NOT_AFTER_CONV, NOT_AN_ACTIVATION, NOT_CLEAN, STANDALONE_GATE

runner = CliRunner()
C = 4  # channels of the hand-built graphs


# ---------------------------------------------------------------------------------------------- helpers
def _const(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"/act/{name}", value=helper.make_tensor(
        name, TensorProto.FLOAT, [], [value]))


def _init(name: str, value, shape=()) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, value, dtype=np.float32), name)


def conv_graph(act_nodes, inits=(), opset: int = 17, before: str = "conv", out_shape=(1, C, 8, 8),
               extra_outputs=()) -> onnx.ModelProto:
    """images -> Conv (-> BatchNormalization / Add when ``before`` says so) -> ``act_nodes`` (reading x) -> y."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((C, C, 3, 3)).astype(np.float32) * 0.3, "w")
    b = numpy_helper.from_array(rng.standard_normal(C).astype(np.float32) * 0.1, "b")
    conv_out = "x" if before == "conv" else "c"
    nodes = [helper.make_node("Conv", ["images", "w", "b"], [conv_out], pads=[1, 1, 1, 1], name="/conv/Conv")]
    extra = []
    if before == "bn":
        extra = [_init(n, v, (C,)) for n, v in (("s", 1.2), ("o", 0.1), ("mean", 0.05), ("var", 0.9))]
        nodes.append(helper.make_node("BatchNormalization", ["c", "s", "o", "mean", "var"], ["x"], name="/bn/BN"))
    elif before == "add":
        extra = [_init("bias", 0.1, (1, C, 1, 1))]
        nodes.append(helper.make_node("Add", ["c", "bias"], ["x"], name="/conv/Add"))
    elif before == "reshape":  # a non-conv producer
        extra = [numpy_helper.from_array(np.array([1, C, 8, 8], np.int64), "shape")]
        nodes.append(helper.make_node("Reshape", ["c", "shape"], ["x"], name="/head/Reshape"))
    graph = helper.make_graph(
        nodes + list(act_nodes),
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, C, 8, 8])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
         for name, shape in (("y", out_shape), *((e, (1, C, 8, 8)) for e in extra_outputs))],
        initializer=[w, b, *extra, *inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, x: np.ndarray, name: str = "images") -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: x})


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node if n.op_type != "Constant")


def x_input(shape) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape, dtype=np.float32)


def N(op, inputs, output, **attrs):  # noqa: N802  (reads like the op it makes)
    return helper.make_node(op, inputs, [output], name=f"/act/{output}", **attrs)


# ---------------------------------------------------------------------------------------------- specs
@pytest.mark.parametrize("spec", ["Swish", "LeakyReLU:0.20", "leakyrelu:0.1", "elu:0.5", "hswish", "sin:2", "celu:1"])
def test_parse_act_is_canonical_like_the_registry(spec):
    assert parse_act(spec).canonical == canonical_act(spec)


@pytest.mark.parametrize("spec, message", [
    ("hardswsh", "did you mean 'hardswish'"),
    ("leakyrelu:0.1:2", "takes 1 parameter"),
    ("relu:1", "takes no parameters"),
    ("elu:abc", "must be a finite number"),
    ("celu:0", "must not be 0"),
    ("mypkg.acts:MyAct", "import path"),
])
def test_parse_act_errors(spec, message):
    with pytest.raises(InputError, match=message):
        parse_act(spec)


# ---------------------------------------------------------------------------------------------- detection
GELU_TANH_K = math.sqrt(2 / math.pi)

PATTERNS = {
    # name: (act nodes reading "x" and writing "y", initializers, opset, expected pattern, expected act)
    "relu": ([N("Relu", ["x"], "y")], [], 17, "Relu", "relu"),
    "leakyrelu": ([N("LeakyRelu", ["x"], "y", alpha=0.2)], [], 17, "LeakyRelu", "leakyrelu:0.2"),
    "leakyrelu-onnx-default": ([N("LeakyRelu", ["x"], "y")], [], 17, "LeakyRelu", "leakyrelu:0.01"),
    "prelu": ([N("PRelu", ["x", "slope"], "y")], [_init("slope", 0.25, (1,))], 17, "PRelu", "prelu"),
    "prelu-per-channel": ([N("PRelu", ["x", "slope"], "y")],
                          [numpy_helper.from_array(np.arange(C, dtype=np.float32).reshape(C, 1, 1) / 10, "slope")],
                          17, "PRelu (learned slopes)", "prelu"),
    "relu6-constants": ([_const("lo", 0.0), _const("hi", 6.0), N("Clip", ["x", "lo", "hi"], "y")], [], 17,
                        "Clip", "relu6"),
    "relu6-initializers": ([N("Clip", ["x", "lo", "hi"], "y")], [_init("lo", 0.0), _init("hi", 6.0)], 17,
                           "Clip", "relu6"),
    "relu6-attributes-opset10": ([N("Clip", ["x"], "y", min=0.0, max=6.0)], [], 10, "Clip", "relu6"),
    "relu-as-clip": ([N("Clip", ["x", "lo"], "y")], [_init("lo", 0.0)], 17, "Clip", "relu"),
    "relu6-dynamo": ([N("Relu", ["x"], "r"), N("Min", ["r", "six"], "y")], [_init("six", 6.0)], 18,
                     "Min(Relu(x),6)", "relu6"),
    "tanh": ([N("Tanh", ["x"], "y")], [], 17, "Tanh", "tanh"),
    "hardswish-op": ([N("HardSwish", ["x"], "y")], [], 17, "HardSwish", "hardswish"),
    "elu": ([N("Elu", ["x"], "y", alpha=0.5)], [], 17, "Elu", "elu:0.5"),
    "selu": ([N("Selu", ["x"], "y")], [], 17, "Selu", "selu"),
    "celu": ([N("Celu", ["x"], "y", alpha=2.0)], [], 17, "Celu", "celu:2.0"),
    "softplus": ([N("Softplus", ["x"], "y")], [], 17, "Softplus", "softplus"),
    "mish-op": ([N("Mish", ["x"], "y")], [], 18, "Mish", "mish"),
    "gelu-op": ([N("Gelu", ["x"], "y")], [], 20, "Gelu", "gelu"),
    "gelu-tanh-op": ([N("Gelu", ["x"], "y", approximate="tanh")], [], 20, "Gelu", "gelu_tanh"),
    "silu": ([N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "y")], [], 17, "x*Sigmoid(x)", "silu"),
    "silu-swapped-inputs": ([N("Sigmoid", ["x"], "s"), N("Mul", ["s", "x"], "y")], [], 17, "x*Sigmoid(x)", "silu"),
    "mish": ([N("Softplus", ["x"], "sp"), N("Tanh", ["sp"], "t"), N("Mul", ["t", "x"], "y")], [], 17,
             "x*Tanh(Softplus(x))", "mish"),
    "hardswish-hardsigmoid": ([N("HardSigmoid", ["x"], "h", alpha=1 / 6), N("Mul", ["x", "h"], "y")], [], 13,
                              "x*HardSigmoid(x)", "hardswish"),
    "hardswish-clip": ([N("Add", ["x", "three"], "a"), N("Clip", ["a", "lo", "hi"], "c6"), N("Mul", ["x", "c6"], "m"),
                        N("Div", ["m", "hi"], "y")], [_init("three", 3.0), _init("lo", 0.0), _init("hi", 6.0)], 17,
                       "x*Clip(x+3,0,6)/6", "hardswish"),
    "gelu-erf-torch": ([_const("sqrt2", math.sqrt(2)), N("Div", ["x", "sqrt2"], "d"), N("Erf", ["d"], "e"),
                        _const("one", 1.0), N("Add", ["e", "one"], "a"), N("Mul", ["x", "a"], "m"),
                        _const("half", 0.5), N("Mul", ["m", "half"], "y")], [], 17, "GELU (erf form)", "gelu"),
    "gelu-erf-reordered": ([N("Mul", ["inv_sqrt2", "x"], "d"), N("Erf", ["d"], "e"), N("Add", ["one", "e"], "a"),
                            N("Mul", ["half", "x"], "hx"), N("Mul", ["hx", "a"], "y")],
                           [_init("inv_sqrt2", 1 / math.sqrt(2)), _init("one", 1.0), _init("half", 0.5)], 17,
                           "GELU (erf form)", "gelu"),
    "gelu-tanh-torch": ([N("Mul", ["x", "x"], "x2"), N("Mul", ["x", "x2"], "x3"), N("Mul", ["c", "x3"], "cx3"),
                         N("Add", ["x", "cx3"], "inner"), N("Mul", ["k", "inner"], "z"), N("Tanh", ["z"], "t"),
                         N("Add", ["one", "t"], "a"), N("Mul", ["x", "a"], "m"), N("Mul", ["half", "m"], "y")],
                        [_init("c", 0.044715), _init("k", GELU_TANH_K), _init("one", 1.0), _init("half", 0.5)], 17,
                        "GELU (tanh form)", "gelu_tanh"),
    "gelu-tanh-dynamo": ([N("Pow", ["x", "three"], "x3"), N("Mul", ["c", "x3"], "cx3"), N("Add", ["x", "cx3"], "inner"),
                          N("Div", ["two", "pi"], "two_over_pi"), N("Sqrt", ["two_over_pi"], "k"),
                          N("Mul", ["k", "inner"], "z"), N("Tanh", ["z"], "t"), N("Add", ["t", "one"], "a"),
                          N("Mul", ["x", "a"], "m"), N("Mul", ["half", "m"], "y")],
                         [_init("three", 3.0), _init("c", 0.044715), _init("two", 2.0), _init("pi", math.pi),
                          _init("one", 1.0), _init("half", 0.5)], 18, "GELU (tanh form)", "gelu_tanh"),
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_detects_each_pattern(name):
    nodes, inits, opset, pattern, act = PATTERNS[name]
    model = conv_graph(nodes, inits, opset=opset)
    found = find_activations(model)
    assert [(f.pattern, f.act, f.skipped) for f in found] == [(pattern, act, None)]
    assert found[0].input == "x" and found[0].output == "y"
    # every node of the activation belongs to the pattern, except those computing constants
    constant = {"two_over_pi", "k"}  # Div(2, pi) and its Sqrt in the dynamo form
    assert sorted(found[0].ops.split("+")) == sorted(
        n.op_type for n in nodes if n.op_type != "Constant" and n.output[0] not in constant)


@pytest.mark.parametrize("name", [n for n in PATTERNS if PATTERNS[n][2] >= 13])
def test_each_pattern_swaps_and_leaves_nothing_behind(name):
    nodes, inits, opset, _, act = PATTERNS[name]
    target, op = ("relu6", "Clip") if act == "relu" else ("relu", "Relu")
    report = swap_model(conv_graph(nodes, inits, opset=opset), target)
    assert len(report.swapped) == 1
    assert Counter(n.op_type for n in report.model.graph.node) == Counter({"Conv": 1, op: 1})
    kept = {t.name for t in report.model.graph.initializer if not t.name.startswith("swap/")}
    assert kept == {"w", "b"}  # the pattern's constants are gone with it
    x = x_input((1, C, 8, 8))
    conv_out = run(conv_graph([N("Identity", ["x"], "y")]), x)[0]
    expected = np.clip(conv_out, 0, 6) if target == "relu6" else np.maximum(conv_out, 0)
    np.testing.assert_array_equal(run(report.model, x)[0], expected)


@pytest.mark.parametrize("before", ["bn", "add"])
def test_batchnorm_or_add_right_after_a_conv_count_as_conv_output(before):
    found = find_activations(conv_graph([N("Relu", ["x"], "y")], before=before))
    assert [(f.act, f.skipped) for f in found] == [("relu", None)]


def test_activation_not_after_a_conv_is_left_unless_all():
    model = conv_graph([N("Relu", ["x"], "y")], before="reshape")
    (found,) = find_activations(model)
    assert found.skipped == NOT_AFTER_CONV and "Reshape" in found.detail
    (found,) = find_activations(model, include_all=True)
    assert found.skipped is None
    assert op_counts(swap_model(model, "hardswish", include_all=True).model)["HardSwish"] == 1
    with pytest.raises(InputError, match="no activations to swap.*input is not a conv output"):
        swap_model(model, "hardswish")


def _head_model() -> onnx.ModelProto:
    """conv -> Relu -> conv -> Sigmoid -> Reshape -> Concat -> scores: a detection head's class scores."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((C, C, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array([1, C, -1], np.int64), "shape")]
    nodes = [
        N("Relu", ["x"], "r"),
        helper.make_node("Conv", ["r", "w2"], ["logits"], name="/head/Conv"),
        helper.make_node("Sigmoid", ["logits"], ["p"], name="/head/Sigmoid"),
        helper.make_node("Reshape", ["p", "shape"], ["p2"], name="/head/Reshape"),
        helper.make_node("Reshape", ["x", "shape"], ["box"], name="/head/Reshape_1"),
        helper.make_node("Concat", ["box", "p2"], ["y"], axis=1, name="/head/Concat"),
    ]
    return conv_graph(nodes, inits, out_shape=(1, 2 * C, 64))


def test_head_sigmoid_stays():
    model = _head_model()
    found = {f.pattern: f for f in find_activations(model)}
    assert found["Relu"].skipped is None
    assert found["Sigmoid"].skipped == STANDALONE_GATE and "/head/Reshape" in found["Sigmoid"].detail
    report = swap_model(model, "hardswish")
    ops = op_counts(report.model)
    assert ops["Sigmoid"] == 1 and ops["HardSwish"] == 1 and ops["Relu"] == 0
    assert [f.pattern for f in report.skipped] == ["Sigmoid"]
    assert find_activations(model, include_all=True)[1].skipped is None


def test_squeeze_excitation_gate_stays():
    inits = [numpy_helper.from_array(np.full((C, C, 1, 1), 0.1, np.float32), "w2")]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="/se/Pool"),
        helper.make_node("Conv", ["pooled", "w2"], ["g"], name="/se/Conv"),
        helper.make_node("Sigmoid", ["g"], ["gate"], name="/se/Sigmoid"),
        helper.make_node("Mul", ["x", "gate"], ["y"], name="/se/Mul"),
    ]
    (found,) = find_activations(conv_graph(nodes, inits))
    assert found.pattern == "Sigmoid" and found.skipped == STANDALONE_GATE


def test_sigmoid_not_fed_by_a_conv_stays_even_as_a_pattern_of_one():
    model = conv_graph([N("Sigmoid", ["x"], "y")], before="reshape")
    (found,) = find_activations(model)
    assert found.skipped == NOT_AFTER_CONV


def test_unclean_pattern_is_reported_and_left():
    nodes = [N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "y")]
    model = conv_graph(nodes, extra_outputs=("s",))
    (found,) = find_activations(model, include_all=True)
    assert (found.pattern, found.skipped) == ("x*Sigmoid(x)", NOT_CLEAN) and "s is also used by" in found.detail
    with pytest.raises(InputError, match="not a clean pattern"):
        swap_model(model, "relu", include_all=True)


def test_clip_with_other_bounds_is_not_an_activation():
    model = conv_graph([N("Clip", ["x", "lo", "hi"], "y")], [_init("lo", -1.0), _init("hi", 1.0)])
    (found,) = find_activations(model)
    assert found.act is None and found.skipped == NOT_AN_ACTIVATION and "Clip(-1, 1)" in found.detail


def test_swap_needs_opset_13_and_leaves_the_input_model_alone():
    old = conv_graph([N("Clip", ["x"], "y", min=0.0, max=6.0)], opset=10)
    with pytest.raises(InputError, match="opset 10"):
        swap_model(old, "relu")
    model = conv_graph([N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "y")])
    before = model.SerializeToString()
    swap_model(model, "relu")
    assert model.SerializeToString() == before


def test_source_failing_the_full_check_is_not_blamed_on_the_swap(tiny_models):
    # conftest's tiny models declare an output without a shape, which the full checker rejects
    report = swap_model(tiny_models["mish"], "relu6")
    assert report.checks.startswith("onnx.checker's full check fails on the source model too")
    assert report.checks.endswith("onnxruntime loads it")
    assert run(report.model, x_input((1, 8, 16, 16)))[0].shape == (1, 8, 16, 16)


def test_float16_model_gets_float16_constants():
    model = conv_graph([N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "y")])
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for v in (*model.graph.input, *model.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT16
    report = swap_model(model, "relu6")
    assert {t.data_type for t in report.model.graph.initializer} == {TensorProto.FLOAT16}
    out = run(report.model, x_input((1, C, 8, 8)).astype(np.float16))[0]
    assert out.dtype == np.float16 and out.min() >= 0 and out.max() <= 6


def test_subgraph_reads_are_uses():
    def branch(name, op, reads):
        return helper.make_graph([helper.make_node(op, [reads], [f"{name}_out"], name=f"/{name}/{op}")], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, C, 8, 8])])

    def model(reads):
        nodes = [N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "act"),
                 helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", "Identity", reads),
                                  else_branch=branch("else", "Neg", "act"), name="/If")]
        return conv_graph(nodes, [numpy_helper.from_array(np.array(True), "cond")])

    (found,) = find_activations(model("s"))  # the Sigmoid's output is read inside a branch
    assert found.skipped == NOT_CLEAN and "a subgraph of /If" in found.detail
    report = swap_model(model("act"), "identity")  # readers of the output, branches included, now read x
    assert [n.op_type for n in report.model.graph.node] == ["Conv", "If"]
    x = x_input((1, C, 8, 8))
    np.testing.assert_array_equal(run(report.model, x)[0], run(conv_graph([N("Identity", ["x"], "y")]), x)[0])


def test_no_activation_is_an_error():
    with pytest.raises(InputError, match="no activations found"):
        swap_model(conv_graph([N("Identity", ["x"], "y")]), "relu")


# ---------------------------------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("swap-models")


def export(models_dir: Path, block: str, act: str, opset: int = 17) -> onnx.ModelProto:
    width, imgsz = (3, 32) if block.startswith("yolo") else (8, 16)  # whole models take an image
    spec = BlockSpec(block=block, act=act, width=width, imgsz=imgsz)
    return onnx.load(str(export_block(spec, models_dir=models_dir, opset=opset).path))


EXPORTED = [  # (act, opset, pattern torch's TorchScript exporter writes)
    ("silu", 17, "x*Sigmoid(x)"),
    ("mish", 17, "x*Tanh(Softplus(x))"),
    ("gelu", 17, "GELU (erf form)"),
    ("gelu_tanh", 17, "GELU (tanh form)"),
    ("hardswish", 17, "HardSwish"),
    ("hardswish", 13, "x*HardSigmoid(x)"),
    ("relu6", 17, "Clip"),
    ("leakyrelu:0.2", 17, "LeakyRelu"),
    ("gelu", 20, "Gelu"),
]


@pytest.mark.parametrize("act, opset, pattern", EXPORTED)
def test_detects_what_torch_exports(models_dir, act, opset, pattern):
    model = export(models_dir, "c2f", act, opset)
    found = find_activations(model)
    assert len(found) == sum(n.op_type == "Conv" for n in model.graph.node) == 4
    assert {(f.pattern, f.act, f.skipped) for f in found} == {(pattern, canonical_act(act), None)}
    # the nodes of each activation are exactly the ones torch put under the module's /act/ scope
    act_nodes = {n.name for n in model.graph.node if "/act/" in n.name and n.op_type != "Constant"}
    assert {name for f in found for name in f.nodes} == act_nodes


def _conv_weights(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [inits[name] for n in model.graph.node if n.op_type == "Conv" for name in n.input[1:]]


def test_seeded_build_gives_the_same_weights_for_every_activation(models_dir):
    reference = _conv_weights(export(models_dir, "c2f", "silu"))
    for act in ("relu", "mish", "hardswish"):
        weights = _conv_weights(export(models_dir, "c2f", act))
        assert len(weights) == len(reference) == 8  # weight and folded-BN bias of 4 convs
        for a, b in zip(weights, reference, strict=True):
            np.testing.assert_array_equal(a, b)


def _same_as_built(models_dir, block, src, target, opset=17):
    source = export(models_dir, block, src, opset)
    swapped = swap_model(source, target)
    built = export(models_dir, block, target, opset)
    onnx.checker.check_model(swapped.model, full_check=True)
    assert swapped.checks == "onnx.checker (full) and onnxruntime passed"
    assert op_counts(swapped.model) == op_counts(built)  # Constant nodes aside: swap uses initializers
    for field in ("input", "output"):
        assert getattr(swapped.model.graph, field) == getattr(source.graph, field)
    names = [n.name for n in swapped.model.graph.node]
    assert len(names) == len(set(names)) and all(names)
    x = x_input(tuple(d.dim_value for d in source.graph.input[0].type.tensor_type.shape.dim))
    for a, b in zip(run(swapped.model, x), run(built, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return swapped


@pytest.mark.parametrize("block, src, target", [
    ("c2f", "silu", "relu"),
    ("c2f", "silu", "hardswish"),
    ("c2f", "silu", "mish"),
    ("conv", "silu", "relu"),
    ("c3", "silu", "hardswish"),
    ("c3", "mish", "gelu_tanh"),
])
def test_swap_equals_the_block_built_with_the_target(models_dir, block, src, target):
    report = _same_as_built(models_dir, block, src, target)
    assert len(report.swapped) == {"conv": 1, "c2f": 4, "c3": 5}[block]
    assert report.by_pattern()[0].swapped == len(report.swapped)


def test_whole_yolo_n_swap_equals_yolo_n_built_with_relu(models_dir):
    report = _same_as_built(models_dir, "yolo-n", "silu", "relu")
    sigmoids = sum(n.op_type == "Sigmoid" for n in export(models_dir, "yolo-n", "silu").graph.node)
    assert len(report.swapped) == sigmoids - 1 > 40
    assert [n.op_type for n in report.model.graph.node].count("Sigmoid") == 1
    (head,) = report.skipped  # the detection head's final Sigmoid, after a Concat, stays
    assert head.pattern == "Sigmoid" and head.skipped == NOT_AFTER_CONV and "Concat" in head.detail


TARGETS = [(a, 17) for a in act_names()] + [("leakyrelu:0.2", 17), ("elu:0.5", 17), ("prelu:0.1", 17),
                                            ("sin:2", 17), ("hardswish", 13), ("gelu", 20), ("gelu_tanh", 20)]


@pytest.mark.parametrize("target, opset", TARGETS, ids=[f"{t}@{o}" for t, o in TARGETS])
def test_every_target_lowers_like_torch_exports_it(models_dir, target, opset):
    report = _same_as_built(models_dir, "conv", "silu", target, opset)
    if target.startswith("silu"):
        assert not report.swapped and report.skipped[0].skipped == "already the target"
        return
    assert len(report.swapped) == 1
    if target != "identity" and not target.startswith("sin"):  # Sin is not among the ops detected
        (again,) = find_activations(report.model, include_all=True)
        assert again.act == canonical_act(target)


def test_node_names_follow_the_replaced_nodes(models_dir):
    report = swap_model(export(models_dir, "c2f", "silu"), "mish")
    names = [n.name for n in report.model.graph.node if "/act/" in n.name]
    assert "/cv1/act/Softplus" in names and "/m.0/cv2/act/Mul" in names
    assert not any(n.op_type == "Sigmoid" for n in report.model.graph.node)


def test_dead_constants_and_deduplicated_slopes_are_removed(models_dir):
    gelu = swap_model(export(models_dir, "c2f", "gelu"), "relu").model
    assert not [n for n in gelu.graph.node if "/act/" in n.name and n.op_type != "Relu"]
    prelu = export(models_dir, "c2f", "prelu")
    assert sum(n.op_type == "Identity" for n in prelu.graph.node) == 3  # torch shares one slope through Identity
    swapped = swap_model(prelu, "relu").model
    used = {name for n in swapped.graph.node for name in n.input}
    assert all(t.name in used for t in swapped.graph.initializer)
    assert op_counts(swapped) == op_counts(export(models_dir, "c2f", "relu"))


def test_identity_wires_the_conv_to_the_output(models_dir):
    report = _same_as_built(models_dir, "conv", "silu", "identity")
    (conv,) = report.model.graph.node
    assert conv.output[0] == "output"


# ---------------------------------------------------------------------------------------------- command


@pytest.fixture
def silu_file(tmp_path) -> Path:
    path = tmp_path / "silu.onnx"
    onnx.save(conv_graph([N("Sigmoid", ["x"], "s"), N("Mul", ["x", "s"], "y")]), str(path))
    return path


def test_cli_swaps_and_writes(silu_file, tmp_path):
    out = tmp_path / "out.onnx"
    result = runner.invoke(app, ["swap", str(silu_file), "--to", "hardswish", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "x*Sigmoid(x)" in result.output and "Sigmoid+Mul" in result.output
    assert f"wrote {out}: 1 activation swapped to hardswish" in result.output
    assert op_counts(onnx.load(str(out))) == Counter({"Conv": 1, "HardSwish": 1})


def test_cli_dry_run_writes_nothing(silu_file, tmp_path):
    out = tmp_path / "out.onnx"
    result = runner.invoke(app, ["swap", str(silu_file), "--to", "relu", "-o", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run: 1 activation would be swapped to relu" in result.output and not out.exists()


def test_cli_reports_skipped_and_all_includes_them(tmp_path):
    path = tmp_path / "head.onnx"
    onnx.save(_head_model(), str(path))
    result = runner.invoke(app, ["swap", str(path), "--to", "relu6", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "skipped 1: standalone Sigmoid" in result.output and "/head/Sigmoid" in result.output
    result = runner.invoke(app, ["swap", str(path), "--to", "relu6", "--dry-run", "--all"])
    assert "2 activations would be swapped" in result.output


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty", "unknown-target", "unwritable", "no-output",
                                  "no-activations"])
def test_cli_one_line_errors(silu_file, tmp_path, case):
    model, to, out = str(silu_file), "hardswish", ["-o", str(tmp_path / "out.onnx")]
    expected = {
        "missing": "ONNX file not found",
        "corrupt": "cannot read",
        "empty": "ONNX file is empty",
        "unknown-target": "did you mean 'hardswish'?",
        "unwritable": "cannot write",
        "no-output": "no output file",
        "no-activations": "no activations found",
    }[case]
    if case == "missing":
        model = str(tmp_path / "nope.onnx")
    elif case == "corrupt":
        (tmp_path / "bad.onnx").write_bytes(b"\x08\x07not a model\xff\xff\xff")
        model = str(tmp_path / "bad.onnx")
    elif case == "empty":
        (tmp_path / "empty.onnx").write_bytes(b"")
        model = str(tmp_path / "empty.onnx")
    elif case == "unknown-target":
        to = "hardswsh"
    elif case == "unwritable":
        out = ["-o", str(tmp_path / "no-such-folder" / "out.onnx")]
    elif case == "no-output":
        out = []
    elif case == "no-activations":
        onnx.save(conv_graph([N("Identity", ["x"], "y")]), str(tmp_path / "plain.onnx"))
        model = str(tmp_path / "plain.onnx")
    line = _one_line_error(runner.invoke(app, ["swap", model, "--to", to, *out]))
    assert expected in line, line


def test_swap_runs_without_torch(silu_file, tmp_path):
    out = tmp_path / "out.onnx"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgeprof.swap import find_activations, swap_model\n"
        "from edgeprof.cli import app\n"
        f"report = swap_model({str(silu_file)!r}, 'mish')\n"
        "assert [f.act for f in report.swapped] == ['silu'], report.found\n"
        f"app(['swap', {str(silu_file)!r}, '--to', 'leakyrelu:0.2', '-o', {str(out)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [f.act for f in find_activations(out)] == ["leakyrelu:0.2"]
