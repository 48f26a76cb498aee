"""onnxruntime: sessions and their settings, the io-binding runner, the profiler trace reader."""
