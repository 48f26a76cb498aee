"""Small ONNX models for the benchmarks, made with onnx.helper so no torch is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def conv_relu(path: Path, channels: int, size: int) -> Path:
    """Conv3x3 (pad 1) + Relu on a 1 x channels x size x size input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.1).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(channels, np.float32), "b")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["output"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, b]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
