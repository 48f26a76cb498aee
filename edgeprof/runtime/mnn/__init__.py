"""MNN (Alibaba): ONNX converted in-process by MNN's own converter, a session runner, per-op callbacks and fusion."""
