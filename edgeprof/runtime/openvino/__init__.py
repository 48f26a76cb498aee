"""OpenVINO: ONNX -> IR with ``openvino.convert_model``, the CPU plugin's compiled model timed on pre-bound inputs,
fusion read from its runtime model and per-op times from its performance counters."""
