"""Writes the two tiny ONNX models `edgeprof machine` times (needs onnx; run once, the files are shipped).

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


def main() -> None:
    (HERE / "matmul.onnx").write_bytes(matmul_model().SerializeToString())
    (HERE / "copy.onnx").write_bytes(copy_model().SerializeToString())


if __name__ == "__main__":
    main()
