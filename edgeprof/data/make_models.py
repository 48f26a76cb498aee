"""Writes the tiny ONNX models edgeprof ships: the two `edgeprof machine` times and the gate's stored-mode reference.

    python -m edgeprof.data.make_models
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def matmul_model():
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "N"])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "N"])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "matmul", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeprof")
    model.ir_version = 8
    return model


def copy_model():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["E"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["E"])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "copy", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeprof")
    model.ir_version = 8
    return model


def gate_reference_model():
    """The reference `edgeprof check --mode stored` times next to each model: Conv3x3 16->16 + Relu on 64x64."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(16, np.float32), "b")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 16, 64, 64])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16, 64, 64])
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="/conv/Conv"),
             helper.make_node("Relu", ["c"], ["output"], name="/act/Relu")]
    graph = helper.make_graph(nodes, "gate_reference", [x], [y], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeprof")
    model.ir_version = 8
    return model


def main() -> None:
    (HERE / "matmul.onnx").write_bytes(matmul_model().SerializeToString())
    (HERE / "copy.onnx").write_bytes(copy_model().SerializeToString())
    (HERE / "gate_ref.onnx").write_bytes(gate_reference_model().SerializeToString())


if __name__ == "__main__":
    main()
