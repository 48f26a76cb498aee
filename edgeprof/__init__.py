"""edgeprof: what activation functions cost inside YOLO-style blocks, measured with onnxruntime.

Importing this package is cheap: it imports neither torch nor onnxruntime. The layers are
``edgeprof.build`` (torch: activations, blocks, ONNX export), ``edgeprof.profile`` (onnxruntime and
numpy only), ``edgeprof.report`` (pandas) and ``edgeprof.cli`` (Typer). ``edgeprof.sweep`` ties them.
"""

__version__ = "0.1.0"

from edgeprof.errors import EdgeprofError, InputError, RegressionError, RuntimeFailure  # noqa: E402
from edgeprof.spec import BlockSpec  # noqa: E402

__all__ = ["BlockSpec", "EdgeprofError", "InputError", "RegressionError", "RuntimeFailure", "__version__"]
