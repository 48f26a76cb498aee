"""OpenVINO's settings (``threads`` is the CPU plugin's INFERENCE_NUM_THREADS) and the compile config they make."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprof.errors import InputError
from edgeprof.runtime.base import RuntimeSettings

PRECISIONS = ("f32", "bf16", "f16")
HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class OpenVinoSettings(RuntimeSettings):
    """What moves OpenVINO's latency on CPU; every row records them in ``runtime_settings``."""

    streams: int = 1  # NUM_STREAMS
    precision: str = "f32"  # INFERENCE_PRECISION_HINT: f32 keeps it comparable with onnxruntime's fp32
    hint: str = "LATENCY"  # PERFORMANCE_HINT
    device: str = "CPU"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.streams, int) or self.streams < 1:
            raise InputError(f"streams must be at least 1, got {self.streams}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.hint not in HINTS:
            raise InputError(f"unknown performance hint {self.hint!r}; valid: {', '.join(HINTS)}")

    def label(self) -> str:
        return f"{super().label()}, {self.precision}, {self.device}"


def compile_config(settings: OpenVinoSettings, perf_count: bool = False) -> dict:
    """The CPU plugin's compile config: threads through its own API (INFERENCE_NUM_THREADS), one stream."""
    return {
        "INFERENCE_NUM_THREADS": settings.threads,
        "NUM_STREAMS": settings.streams,
        "PERFORMANCE_HINT": settings.hint,
        "INFERENCE_PRECISION_HINT": settings.precision,
        "PERF_COUNT": perf_count,
    }
