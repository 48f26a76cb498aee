"""ncnn as an edgeprof runtime: ONNX converted by pnnx to .ncnn.param + .ncnn.bin, run at the threads of
``net.opt.num_threads``; fusion read from the .param; no per-layer times in the pip wheel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeprof.runtime.base import Conversion, ModelSource, Runner, Runtime, RuntimeSettings, check_file


@dataclass(frozen=True)
class NcnnSettings(RuntimeSettings):
    """ncnn's settings beside ``threads`` (``net.opt.num_threads``). ``fp16``: ncnn's fp16 storage, packing and
    arithmetic where the CPU has them (ncnn's own default on ARMv8.2; no effect on x86 without fp16 support);
    off by default, so every runtime computes in fp32 and parity holds at fp32 tolerance."""

    fp16: bool = False

    def label(self) -> str:
        return super().label() + (", fp16" if self.fp16 else "")


class NcnnRuntime(Runtime):
    name = "ncnn"
    extra = "ncnn"  # the runtime alone (the on-device install); the converter is the extra ncnn-convert
    artifact_suffix = ".ncnn.param"  # the graph; its weights are the .ncnn.bin beside it (artifact_files)
    settings_class = NcnnSettings
    per_op_times = False  # the pip wheel is built without ncnn's per-layer timer (NCNN_BENCHMARK)
    fusion_info = True  # the .param names each layer and the activation fused into each convolution

    @classmethod
    def version(cls) -> str:
        try:
            from importlib.metadata import version

            return version("ncnn")
        except Exception:
            return ""

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("ncnn") is not None

    @staticmethod
    def artifact_files(path: str | Path) -> list[Path]:
        """Every file of an ncnn artifact, for bundles to copy and checksum: the .param and its .bin."""
        from edgeprof.runtime.ncnn.convert import bin_path

        return [Path(path), bin_path(path)]

    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        """pnnx from the ONNX file (``source`` is not needed: pnnx's ONNX and TorchScript routes give the same
        ncnn graph for edgeprof's blocks, and the ONNX route also serves ONNX files edgeprof did not build);
        cached in ``out_dir/ncnn/``. A model pnnx or ncnn cannot handle raises UnsupportedModel."""
        from edgeprof.runtime.ncnn.convert import convert_onnx

        return convert_onnx(onnx_path, out_dir)

    def validate(self, path: str | Path, settings: NcnnSettings, shapes: dict | None = None) -> None:
        """Load the net here, in the parent, and resolve its input shapes: a missing .param or .bin, a file ncnn
        cannot load or an input without a shape fails in one line before any measuring. An ONNX file (not yet
        converted) is only checked to be a readable file: converting it tells what pnnx and ncnn make of it."""
        from edgeprof.runtime.ncnn.runner import load_net, resolve_shapes

        if not str(path).endswith(self.artifact_suffix):
            check_file(path, "model file")
            return
        check_file(path, "ncnn model")
        net = load_net(str(path), settings)
        resolve_shapes(str(path), list(net.input_names()), shapes)

    def runner(self, path: str, settings: NcnnSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.ncnn.runner import NcnnRunner

        return NcnnRunner(path, settings, shapes, seed)
