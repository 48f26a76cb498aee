"""The CI latency regression gate: save a baseline, then check that current models did not get slower.

``save_baseline`` and ``run_check`` are the library behind ``edgeprof baseline save`` and
``edgeprof check``; ``decide`` holds the statistics (numpy, scipy.stats), ``load`` how busy the host was,
``measure`` the paired, interleaved timing in fresh worker processes (onnxruntime only), ``baseline`` the
folder and its manifest.
Nothing here imports torch unless blocks are to be built from sweep options.
"""

from edgeprof.gate.baseline import SCHEMA_VERSION, Baseline, load
from edgeprof.gate.check import MODES, CheckReport, ModelResult, run_check, save_baseline
from edgeprof.gate.decide import VERDICTS, Decision, DecisionRule, PairData, decide, decide_all
from edgeprof.gate.measure import GateOptions
from edgeprof.gate.models import BuildOptions, GateModel, from_files, from_options

__all__ = [
    "MODES",
    "SCHEMA_VERSION",
    "VERDICTS",
    "Baseline",
    "BuildOptions",
    "CheckReport",
    "Decision",
    "DecisionRule",
    "GateModel",
    "GateOptions",
    "ModelResult",
    "PairData",
    "decide",
    "decide_all",
    "from_files",
    "from_options",
    "load",
    "run_check",
    "save_baseline",
]
