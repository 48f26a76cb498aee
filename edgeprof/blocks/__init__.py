"""Blocks and networks in torch: the only layer that imports torch.

``activations`` holds the torch factories of the activation table, ``yolo`` the YOLO-style blocks and their
size counters, ``networks`` whole detectors. ``edgeprof.convert`` exports them.
"""

from edgeprof.errors import InputError as _InputError

try:
    import onnx as _onnx  # noqa: F401
    import torch as _torch  # noqa: F401
except ImportError as _exc:
    raise _InputError(
        f"building and exporting blocks needs torch and onnx ({_exc.name} is not installed here); install the "
        "build extra (pip install 'edgeprof[build]' with the pins in constraints.txt), or on a device run a "
        "bundle: edgeprof profile DIR"
    ) from None

from edgeprof.blocks.activations import (  # noqa: E402
    ActInfo,
    act_info,
    act_names,
    canonical_act,
    create_act,
    get_act,
    list_acts,
)
from edgeprof.blocks.yolo import C3, SPPF, Bottleneck, C2f, Conv, build_block, count_macs, count_params  # noqa: E402

__all__ = [
    "C3",
    "SPPF",
    "ActInfo",
    "Bottleneck",
    "C2f",
    "Conv",
    "act_info",
    "act_names",
    "build_block",
    "canonical_act",
    "count_macs",
    "count_params",
    "create_act",
    "get_act",
    "list_acts",
]
