"""ExecuTorch (XNNPACK) as an edgeprof runtime: the torch module rebuilt from the block's spec and seed, exported with
``torch.export`` and lowered with the XNNPACK partitioner to a .pte (cached by content); run by portable_lib."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.runtime.base import Conversion, ModelSource, Runner, Runtime, RuntimeSettings, check_file

PTE_MAGIC = b"ET"  # a .pte is a flatbuffer whose file identifier (bytes 4..8) is "ET" + two version digits


@dataclass(frozen=True)
class ExecuTorchSettings(RuntimeSettings):
    """ExecuTorch's settings: ``threads`` is the size of its process-wide thread pool (XNNPACK computes on it)."""

    partitioner: str = "xnnpack"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.partitioner != "xnnpack":
            raise InputError(f"executorch partitioner {self.partitioner!r} is not supported; valid: xnnpack")

    def label(self) -> str:
        return f"{super().label()}, {self.partitioner}"


class ExecuTorchRuntime(Runtime):
    name = "executorch"
    extra = "executorch"
    artifact_suffix = ".pte"
    settings_class = ExecuTorchSettings
    per_op_times = True  # ETDump: per XNNPACK operator and per portable kernel
    fusion_info = True  # ETDump names the XNNPACK operators that ran after XNNPACK's own fusions

    @classmethod
    def version(cls) -> str:
        try:
            from importlib.metadata import version

            return version("executorch")
        except Exception:
            return ""

    @classmethod
    def available(cls) -> bool:
        import importlib.util

        try:
            return importlib.util.find_spec("executorch.extension.pybindings") is not None
        except (ImportError, ValueError):
            return False

    def artifact_files(self, path: str | Path) -> list[Path]:
        """The .pte and, where the conversion wrote it, its record ``<name>.pte.json`` (input names, what XNNPACK
        took, which module each op came from)."""
        record = Path(str(path) + ".json")
        return [Path(path), *([record] if record.exists() else [])]

    def convert(self, onnx_path: str | Path, out_dir: str | Path, source: ModelSource | None = None) -> Conversion:
        from edgeprof.runtime.executorch.convert import convert_to_pte

        return convert_to_pte(Path(onnx_path), Path(out_dir), source, self.version())

    def validate(self, path: str | Path, settings: RuntimeSettings, shapes: dict | None = None) -> None:
        """A readable .pte (by its flatbuffer identifier); the parent does not load the runtime (it would import
        torch there too), the worker reports a program executorch cannot load in one line."""
        path = check_file(path, "ExecuTorch program")
        with open(path, "rb") as fh:
            head = fh.read(8)
        if path.suffix == self.artifact_suffix and head[4:6] != PTE_MAGIC:
            raise InputError(f"not an ExecuTorch program (.pte): {path}")

    def runner(self, path: str, settings: RuntimeSettings, shapes: dict | None = None, seed: int = 0) -> Runner:
        from edgeprof.runtime.executorch.runner import ExecuTorchRunner

        return ExecuTorchRunner(path, settings, shapes, seed)
