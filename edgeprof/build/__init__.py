"""Build and export blocks: the only layer that imports torch.

``activations`` is the registry of activation functions, ``blocks`` the YOLO-style blocks and their
size counters, ``export`` the checked, cached ONNX export.
"""

from edgeprof.build.activations import (
    ActInfo,
    act_info,
    act_names,
    canonical_act,
    create_act,
    get_act,
    list_acts,
)
from edgeprof.build.blocks import C3, SPPF, Bottleneck, C2f, Conv, build_block, count_macs, count_params
from edgeprof.build.export import ExportResult, export_block, export_module

__all__ = [
    "C3",
    "SPPF",
    "ActInfo",
    "Bottleneck",
    "C2f",
    "Conv",
    "ExportResult",
    "act_info",
    "act_names",
    "build_block",
    "canonical_act",
    "count_macs",
    "count_params",
    "create_act",
    "export_block",
    "export_module",
    "get_act",
    "list_acts",
]
