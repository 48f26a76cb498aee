"""ncnn: pnnx conversion (ONNX -> .ncnn.param + .ncnn.bin), the extractor runner, the .param reader."""
