"""Will it fit? The memory a config needs, estimated before anything is built or allocated, against the machine's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from edgeprof.errors import InputError

if TYPE_CHECKING:
    from edgeprof.spec import BlockSpec

FLOAT_BYTES = 4
WEIGHT_COPIES = 3  # torch's model, the exported proto, onnxruntime's session


def available_bytes(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """The machine's available memory (``MemAvailable``), in bytes; None where it cannot be read."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_fits(need_bytes: float, what: str, available: int | None = None) -> None:
    """``InputError`` naming ``what`` and both figures when ``need_bytes`` exceeds the available memory."""
    available = available_bytes() if available is None else available
    if available is not None and need_bytes > available:
        raise InputError(f"{what} needs about {_gib(need_bytes)} of memory, more than the {_gib(available)} "
                         "this machine has available; choose smaller sizes")


def block_need_bytes(spec: BlockSpec) -> int:
    """Rough memory to build, export and run one block: its weights (a few copies) and its largest live tensors
    (the larger of its input and output shape, as many as its kind keeps alive), fp32."""
    from edgeprof.spec.blocks import block_kind

    kind = block_kind(spec.block)
    elements = max(math.prod(spec.input_shape), math.prod(kind.output_shape(spec)))
    return int(FLOAT_BYTES * (WEIGHT_COPIES * kind.params(spec) + kind.live_tensors * elements))


def check_block_fits(spec: BlockSpec, available: int | None = None) -> None:
    """The memory check for one config, before it is built."""
    check_fits(block_need_bytes(spec), f"block {spec.slug()}", available)


def inputs_need_bytes(shapes: Iterable[tuple[tuple[int, ...], int]]) -> int:
    """Bytes of input tensors given as (shape, bytes per element)."""
    return sum(math.prod(shape) * itemsize for shape, itemsize in shapes)
