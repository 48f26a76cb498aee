"""What to build and measure: frozen, validated records with no torch in sight."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeprof.errors import InputError
from edgeprof.spec.blocks import BLOCK_NAMES, MODEL_NAMES, block_kind

__all__ = ["BLOCK_NAMES", "MODEL_NAMES", "BlockSpec", "ModelRecord", "content_hash", "file_sha256",
           "parse_int_list", "parse_name_list"]


@dataclass(frozen=True)
class BlockSpec:
    """One YOLO-style block with one activation at one size.

    ``width`` is the block's input and output channel count, ``depth`` the number of bottlenecks
    (c3, c2f), ``imgsz`` the square input's side, ``kernel``/``stride`` apply to the ``conv`` block.
    ``act`` is an activation spec as the registry reads it: ``relu``, ``leakyrelu:0.2``,
    ``mypkg.acts:MyAct``.
    """

    block: str
    act: str
    width: int
    depth: int = 1
    imgsz: int = 160
    batch: int = 1
    kernel: int = 3
    stride: int = 1

    def __post_init__(self) -> None:
        kind = block_kind(self.block)  # the block-kind registry (edgeprof.spec.blocks) says what applies
        for name in ("width", "depth", "imgsz", "batch", "kernel", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive whole number, got {value!r}")
        if self.kernel > self.imgsz:
            raise InputError(f"kernel {self.kernel} is larger than the input size {self.imgsz}")
        if self.stride > self.imgsz:
            raise InputError(f"stride {self.stride} is larger than the input size {self.imgsz}")
        if kind.uses("kernel") and self.kernel % 2 == 0:
            raise InputError(f"kernel {self.kernel} is even: 'same' padding (kernel // 2) would change the output "
                             f"size; use an odd kernel (1, 3, 5, 7)")
        if kind.whole_model:
            if self.width != 3 or self.imgsz % 32:
                raise InputError(f"model {self.block} takes 3 input channels and an input size that is a multiple "
                                 f"of 32, got width {self.width} and imgsz {self.imgsz}")
        elif self.width < kind.min_width:
            raise InputError(f"block {self.block} needs width >= {kind.min_width}, got {self.width}")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.width, self.imgsz, self.imgsz)

    def as_dict(self) -> dict:
        return asdict(self)

    def slug(self) -> str:
        """A file-name-friendly name that says what the model is."""
        act = re.sub(r"[^A-Za-z0-9.]+", "-", self.act).strip("-")
        kind = block_kind(self.block)
        shape = (f"k{self.kernel}s{self.stride}" if kind.uses("kernel") or kind.uses("stride") else "") + (
            f"n{self.depth}" if kind.uses("depth") else "")
        name = re.sub(r"[^A-Za-z0-9.]+", "-", self.block).strip("-")
        block = f"{name}-{shape}" if shape else name
        return f"{block}_{act}_w{self.width}_i{self.imgsz}_b{self.batch}"

    def output_shape(self) -> tuple[int, ...]:
        """The block's output shape, as its kind says (the conv block's stride shrinks it)."""
        return tuple(block_kind(self.block).output_shape(self))

    def act_alone(self) -> BlockSpec:
        """The activation alone (block ``act``) on a tensor of this block's output shape."""
        batch, width, side, _ = self.output_shape()
        return BlockSpec(block="act", act=self.act, width=width, imgsz=side, batch=batch, kernel=1, stride=1)



@dataclass(frozen=True)
class ModelRecord:
    """What a result row needs to know of a model that was built: where it is, its size, how it was exported,
    and for a quantized variant its output error. ``ExportResult`` (build) has the fields a row reads too."""

    path: Path
    params: int
    macs: int
    exporter: str
    opset: int
    parity_max_abs_err: float
    act_ops: list[str] = field(default_factory=list)
    quant_max_abs_err: float | None = None
    quant_rel_err: float | None = None
    quant_method: str = ""
    ref: Path | None = None  # torch's reference (<model>.ref.npz) for the runtime's parity check, when there is one
    converter: str = ""  # what made the artifact at ``path`` (a bundle's converted artifact)
    converter_version: str = ""
    unsupported: str = ""  # why the runtime or its converter cannot handle this model (not measured; a row says so)


def content_hash(payload: dict, length: int = 12) -> str:
    """A stable short hash of a JSON-able dict (sorted keys)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (``hashlib.file_digest``)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def parse_int_list(text: str, name: str) -> list[int]:
    """Parse ``"16,32,64"`` into ints, with an error that names the option."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            values.append(int(part))
        except ValueError:
            raise InputError(f"--{name}: {part!r} is not a whole number (expected e.g. 16,32,64)") from None
    if not values:
        raise InputError(f"--{name}: no values given (expected e.g. 16,32,64)")
    bad = [v for v in values if v < 1]
    if bad:
        raise InputError(f"--{name}: sizes must be positive, got {bad[0]}")
    return values


def parse_name_list(text: str, name: str) -> list[str]:
    values = [p.strip() for p in str(text).split(",") if p.strip()]
    if not values:
        raise InputError(f"--{name}: no values given")
    return values
