"""The static memory estimate on hand-made graphs whose peak is known."""

import numpy as np
import pytest

from edgeprof.analysis import estimate_memory

MIB = 1024 * 1024


def _model(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _vi(name, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_chain_peak_is_two_tensors():
    from onnx import helper

    # x -> Relu -> a -> Relu -> b -> Relu -> y, each 1 MiB: at most input and output of one step are live
    n = MIB // 4
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    est = estimate_memory(_model(nodes, [_vi("x", [n])], [_vi("y", [n])]))
    assert est["act_peak_mb"] == pytest.approx(2.0)
    assert est["weights_mb"] == 0 and est["act_estimate_complete"]


def test_skip_connection_keeps_input_alive():
    from onnx import helper

    # x feeds the Add at the end, so x, the chain's live tensor and the next one coexist: 3 MiB
    n = MIB // 4
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Add", ["x", "b"], ["y"])]
    est = estimate_memory(_model(nodes, [_vi("x", [n])], [_vi("y", [n])]))
    assert est["act_peak_mb"] == pytest.approx(3.0)


def test_weights_are_counted_and_unknown_shapes_flagged():
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((256, 1024), np.float32), "w")  # 1 MiB
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    est = estimate_memory(_model(nodes, [_vi("x", ["N", 256])], [_vi("y", None)], [w]))
    assert est["weights_mb"] == pytest.approx(1.0)
    assert not est["act_estimate_complete"]
