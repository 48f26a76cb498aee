"""The block-kind registry, torch-free: every kind of block edgeprof builds, with what applies to it.

A ``BlockKind`` says which size parameters apply (``depth``, ``kernel``, ``stride``; width, imgsz and batch
always do), the minimum width, how its output shape follows from its input, roughly how many parameters it
has (for the memory check before building), a one-line summary for the CLI's help, and the import path of
its torch builder (``builder(spec) -> nn.Module``; ``edgeprof.blocks.yolo.build_block`` calls it). BlockSpec
validation, the slug, the size planner, the report and the help text all read this table.

A kind of your own is one ``BlockKind`` in one file, named by import path: ``--blocks mypkg.blocks:MY_BLOCK``
(see ``tests/_user_blocks.py``). Its module should import torch inside the builder, so that reading results
(``edgeprof report``) works without torch; name the activation attribute of each conv ``act``, as
``edgeprof.blocks.yolo.Conv`` does, so the activation's nodes are found in the exported graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from edgeprof.errors import InputError
from edgeprof.spec.imports import import_object, is_import_path

if TYPE_CHECKING:
    from edgeprof.spec import BlockSpec

SIZE_PARAMS = ("depth", "kernel", "stride")
_B = "edgeprof.blocks.yolo"


def same_shape(spec: BlockSpec) -> tuple[int, ...]:
    """Output shape of a block that keeps its input's shape."""
    return spec.input_shape


def conv_shape(spec: BlockSpec) -> tuple[int, ...]:
    """Output shape of a conv with 'same' padding (kernel // 2) and a stride."""
    side = (spec.imgsz + 2 * (spec.kernel // 2) - spec.kernel) // spec.stride + 1
    return (spec.batch, spec.width, side, side)


@dataclass(frozen=True)
class BlockKind:
    """One kind of block. ``params(spec)`` is a rough parameter count (the memory check's weights);
    ``live_tensors`` how many tensors of the larger of input and output shape are alive at once at most;
    ``whole_model``: a network taking an RGB image (width 3, imgsz a multiple of 32), not a block."""

    name: str
    summary: str
    builder: str
    sizes: tuple[str, ...] = ()
    min_width: int = 1
    output_shape: Callable[[BlockSpec], tuple[int, ...]] = same_shape
    params: Callable[[BlockSpec], int] = lambda spec: 9 * spec.width * spec.width
    live_tensors: float = 3.0
    whole_model: bool = False

    def uses(self, size: str) -> bool:
        """Whether ``size`` (depth, kernel, stride) applies to this kind."""
        return size in self.sizes


def _bottleneck_params(spec: BlockSpec) -> int:
    return 2 * 9 * spec.width * spec.width


def _csp_params(spec: BlockSpec) -> int:
    return 2 * spec.width * spec.width + spec.depth * 9 * spec.width * spec.width // 2


BLOCK_KINDS: tuple[BlockKind, ...] = (
    BlockKind("conv", "Conv-BN-Act (--kernel, --stride)", f"{_B}:build_conv", ("kernel", "stride"),
              output_shape=conv_shape, params=lambda s: s.kernel * s.kernel * s.width * s.width),
    BlockKind("bottleneck", "two convs with a residual", f"{_B}:build_bottleneck", min_width=2,
              params=_bottleneck_params),
    BlockKind("c3", "CSP with --depths bottlenecks", f"{_B}:build_c3", ("depth",), min_width=2,
              params=_csp_params, live_tensors=4.0),
    BlockKind("c2f", "split, chain of --depths bottlenecks, concat", f"{_B}:build_c2f", ("depth",), min_width=2,
              params=_csp_params, live_tensors=4.0),
    BlockKind("sppf", "one max-pool applied three times", f"{_B}:build_sppf", min_width=2,
              params=lambda s: 3 * s.width * s.width, live_tensors=5.0),
    BlockKind("act", "the activation alone on a tensor", f"{_B}:build_act_alone", params=lambda s: 0,
              live_tensors=2.0),
    BlockKind("yolo-n", "YOLOv8-style detector, scale n", "edgeprof.blocks.networks:build_yolo", whole_model=True,
              params=lambda s: 3_200_000, live_tensors=40.0),
    BlockKind("yolo-s", "YOLOv8-style detector, scale s", "edgeprof.blocks.networks:build_yolo", whole_model=True,
              params=lambda s: 11_200_000, live_tensors=60.0),
)

_KINDS: dict[str, BlockKind] = {kind.name: kind for kind in BLOCK_KINDS}
BLOCK_NAMES = tuple(k.name for k in BLOCK_KINDS if not k.whole_model)
MODEL_NAMES = tuple(k.name for k in BLOCK_KINDS if k.whole_model)


def block_kind(name: str) -> BlockKind:
    """The kind called ``name``, or a user ``BlockKind`` by import path (registered under that path)."""
    if name in _KINDS:
        return _KINDS[name]
    if isinstance(name, str) and is_import_path(name):
        target = import_object(name, "block")
        if not isinstance(target, BlockKind):
            raise InputError(f"block {name!r} is a {type(target).__name__}, not an edgeprof BlockKind "
                             "(see edgeprof.spec.blocks)")
        bad = [s for s in target.sizes if s not in SIZE_PARAMS]
        if bad or ":" not in target.builder:
            raise InputError(f"block {name!r}: sizes must be among {', '.join(SIZE_PARAMS)} and builder an import "
                             f"path 'module:function', got sizes {target.sizes} and builder {target.builder!r}")
        kind = replace(target, name=name)
        _KINDS[name] = kind
        return kind
    raise InputError(f"unknown block {name!r}; valid blocks: {', '.join(BLOCK_NAMES)}; whole models: "
                     f"{', '.join(MODEL_NAMES)}; or your own BlockKind as module.path:NAME")


def uses_depth(name: str) -> bool:
    """Whether rows of block ``name`` have a meaningful depth; False for a name no longer importable."""
    try:
        return block_kind(name).uses("depth")
    except InputError:
        return False


def is_whole_model(name: str) -> bool:
    return name in _KINDS and _KINDS[name].whole_model


def blocks_help() -> str:
    """The ``--blocks`` help text, generated from the registry."""
    kinds = "; ".join(f"{k.name} ({k.summary})" for k in BLOCK_KINDS if not k.whole_model)
    return f"Blocks, comma-separated: {kinds}; or your own BlockKind as module.path:NAME."


def models_help() -> str:
    """The ``--model`` help text, generated from the registry."""
    return "Whole networks instead of blocks: " + ", ".join(f"{k.name} ({k.summary})" for k in BLOCK_KINDS
                                                             if k.whole_model) + "."


def depths_help() -> str:
    """The ``--depths`` help text: which kinds the depth applies to, from the registry."""
    kinds = ", ".join(k.name for k in BLOCK_KINDS if k.uses("depth"))
    return f"Bottlenecks in the blocks with a chain of them ({kinds}), comma-separated."
