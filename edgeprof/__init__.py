"""edgeprof: what activation functions cost inside YOLO-style blocks, measured with onnxruntime.

Importing this package is cheap: it imports neither torch nor onnxruntime. Data flows one way:
``edgeprof.spec`` (torch-free: block kinds, the activation table, the sweep plan) -> ``edgeprof.blocks``
(the only torch) -> ``edgeprof.convert`` (ONNX export) -> ``edgeprof.runtime`` (a runtime in worker
processes) and ``edgeprof.measure`` (interleaving, statistics, memory, host) -> ``edgeprof.results``
(rows, CSV) -> ``edgeprof.report`` and ``edgeprof.gate``. ``edgeprof.pipeline`` ties them; ``edgeprof.cli``
parses, calls the library and renders.

Words (the README's "Words" section says the same): a **block** is one YOLO-style building block (conv,
bottleneck, c3, c2f, sppf, or act: the activation alone) at one size with one activation; a **network** is a
whole YOLO-style detector built from blocks (yolo-n, yolo-s); a **model** is an ONNX file that is measured
(a block's or a network's export, a variant of one, or the user's own file); the **baseline** is what a
comparison is made against: the baseline activation of a sweep's ratios, or the gate baseline folder that
``edgeprof baseline save`` writes.
"""

__version__ = "0.1.0"

from edgeprof.errors import EdgeprofError, InputError, RegressionError, RuntimeFailure  # noqa: E402
from edgeprof.spec import BlockSpec  # noqa: E402

__all__ = ["BlockSpec", "EdgeprofError", "InputError", "RegressionError", "RuntimeFailure", "__version__"]
