"""Runtime-neutral measuring (numpy only; the runtime runs in worker processes): runs on an edge device where
torch is not installed. ``SessionSettings`` are onnxruntime's settings, the default runtime's."""

from edgeprof.measure.interleave import (
    Measurement,
    MeasurementInterrupted,
    MeasureOptions,
    measure,
    paired_ratio_detail,
    paired_ratio_to,
)
from edgeprof.runtime.onnxruntime.session import OPT_LEVELS, SessionSettings, create_session, make_inputs, parse_shapes

__all__ = [
    "OPT_LEVELS",
    "MeasureOptions",
    "Measurement",
    "MeasurementInterrupted",
    "SessionSettings",
    "create_session",
    "make_inputs",
    "measure",
    "paired_ratio_detail",
    "paired_ratio_to",
    "parse_shapes",
]
