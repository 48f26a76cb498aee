"""From torch to a runtime's own format: the checked, cached ONNX export (``onnx_export``)."""
