"""edgeprof: what activation functions cost inside YOLO-style blocks, measured with onnxruntime.

Importing this package is cheap: it imports neither torch nor onnxruntime. Data flows one way:
``edgeprof.spec`` (torch-free: block kinds, the activation table, the sweep plan) -> ``edgeprof.blocks``
(the only torch) -> ``edgeprof.convert`` (ONNX export) -> ``edgeprof.runtime`` (a runtime in worker
processes) and ``edgeprof.measure`` (interleaving, statistics, memory, host) -> ``edgeprof.results``
(rows, CSV) -> ``edgeprof.report`` and ``edgeprof.gate``. ``edgeprof.pipeline`` ties them; ``edgeprof.cli``
parses, calls the library and renders.
"""

__version__ = "0.1.0"

from edgeprof.errors import EdgeprofError, InputError, RegressionError, RuntimeFailure  # noqa: E402
from edgeprof.spec import BlockSpec  # noqa: E402

__all__ = ["BlockSpec", "EdgeprofError", "InputError", "RegressionError", "RuntimeFailure", "__version__"]
