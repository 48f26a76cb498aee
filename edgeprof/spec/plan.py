"""The size planner, torch-free: which (block, size, activation) configs a sweep builds, grouped and labelled.

A plan's sizes come from ``--widths``/``--depths``/``--imgsz`` (or the YOLO ``--scale`` presets) and are
labelled with how they grow (``scaling``): ``width``, ``depth`` or ``imgsz`` when only that one varies,
``fixed-tensor`` (width grows, width*imgsz^2 kept), ``preset`` (``--scale``), ``grid`` (several vary) or
``single`` (one size). Which size parameters apply to a block comes from the block-kind registry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

from edgeprof.errors import InputError
from edgeprof.spec import BlockSpec
from edgeprof.spec.blocks import block_kind
from edgeprof.spec.memory import available_bytes, check_block_fits

DEFAULT_ACTS = ("relu", "leakyrelu", "silu", "hardswish", "mish")

# YOLOv8's depth and width multipliers, applied to a P3-stage C2f (256 channels, 6 bottlenecks at scale l).
SCALES: dict[str, tuple[float, float]] = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75),
                                          "l": (1.00, 1.00), "x": (1.00, 1.25)}
SCALE_BASE_WIDTH = 256
SCALE_BASE_DEPTH = 6
SCALING_MODES = ("auto", "grid", "width", "depth", "imgsz", "fixed-tensor")


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep builds: every combination of blocks, sizes and activations."""

    acts: tuple[str, ...] = DEFAULT_ACTS
    blocks: tuple[str, ...] = ("conv",)
    widths: tuple[int, ...] = (16, 32, 64)
    depths: tuple[int, ...] = (1,)
    imgsz: tuple[int, ...] = (160,)
    batch: tuple[int, ...] = (1,)
    kernel: int = 3
    stride: int = 1
    baseline: str = "relu"
    opset: int = 17
    exporter: str = "torchscript"
    seed: int = 0
    act_alone: bool = True
    roofline: bool = True
    scales: tuple[str, ...] = ()
    scaling: str = "auto"
    quantize: str | None = None
    calib: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_acts(acts: list[str] | tuple[str, ...], baseline: str) -> tuple[list[str], str]:
    """Canonical activation specs (validated) with the baseline first if it was not asked for."""
    from edgeprof.blocks.activations import canonical_act  # builds each once: needs torch

    canon = []
    for a in acts:
        c = canonical_act(a)
        if c not in canon:
            canon.append(c)
    base = canonical_act(baseline)
    if base not in canon:
        canon.insert(0, base)
    return canon, base


def resolved(plan: SweepPlan) -> SweepPlan:
    """``plan`` with its activations canonical (``resolve_acts``): what a sweep or a bundle runs."""
    acts, baseline = resolve_acts(plan.acts, plan.baseline)
    return SweepPlan(**{**plan.as_dict(), "acts": tuple(acts), "baseline": baseline})


def scale_size(scale: str) -> tuple[int, int]:
    """(width, depth) of a YOLO scale preset: a P3-stage C2f with YOLOv8's multipliers."""
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    depth_mult, width_mult = SCALES[scale]
    width = max(8, int(round(SCALE_BASE_WIDTH * width_mult / 8)) * 8)
    return width, max(1, round(SCALE_BASE_DEPTH * depth_mult))


def _auto_mode(plan: SweepPlan) -> str:
    depth_applies = any(block_kind(block).uses("depth") for block in plan.blocks)
    varying = [name for name, values in (("width", plan.widths), ("depth", plan.depths), ("imgsz", plan.imgsz))
               if len(set(values)) > 1 and (name != "depth" or depth_applies)]
    if not varying:
        return "single"
    return varying[0] if len(varying) == 1 else "grid"


def plan_sizes(plan: SweepPlan) -> list[dict]:
    """The sizes a plan measures, each labelled with its scaling mode (and scale preset, if any)."""
    if plan.scaling not in SCALING_MODES:
        raise InputError(f"unknown scaling mode {plan.scaling!r}; valid: {', '.join(SCALING_MODES)}")
    sizes = []
    if plan.scales:
        for scale in plan.scales:
            width, depth = scale_size(scale)
            for imgsz in plan.imgsz:
                sizes.append({"width": width, "depth": depth, "imgsz": imgsz, "scale": scale, "scaling": "preset"})
        return sizes
    mode = _auto_mode(plan) if plan.scaling == "auto" else plan.scaling
    held = {"width": ("imgsz",), "depth": ("width", "imgsz"), "imgsz": ("width",)}
    for other in held.get(mode, ()):
        values = {"width": plan.widths, "depth": plan.depths, "imgsz": plan.imgsz}[other]
        if len(set(values)) != 1:
            option = "--widths" if other == "width" else f"--{other if other == 'imgsz' else 'depths'}"
            raise InputError(f"--scaling {mode} grows the {mode} with everything else fixed: give a single {option}")
    if mode == "fixed-tensor":
        if len(plan.imgsz) != 1:
            raise InputError("--scaling fixed-tensor takes one --imgsz: the input side at the first width")
        w0, side0 = plan.widths[0], plan.imgsz[0]
        for width in plan.widths:
            side = max(1, round(side0 * math.sqrt(w0 / width)))  # width * side^2 stays (nearly) constant
            for depth in plan.depths:
                sizes.append({"width": width, "depth": depth, "imgsz": side, "scale": "", "scaling": mode})
        return sizes
    for width, depth, imgsz in itertools.product(plan.widths, plan.depths, plan.imgsz):
        sizes.append({"width": width, "depth": depth, "imgsz": imgsz, "scale": "", "scaling": mode})
    return sizes


def plan_groups(plan: SweepPlan) -> list[list[BlockSpec]]:
    """Specs grouped by size: each group is one block at one size, with every activation."""
    return [specs for specs, _ in labelled_groups(plan)]


def labelled_groups(plan: SweepPlan, check_memory: bool = True) -> list[tuple[list[BlockSpec], dict]]:
    """``plan_groups`` with each group's labels (``scaling``, ``scale``).

    With ``check_memory``, a config that needs more memory than the machine has available is refused here,
    with one line, before anything is built (``edgeprof.spec.memory``).
    """
    groups = []
    seen = set()
    available = available_bytes() if check_memory else None
    for block, size, batch in itertools.product(plan.blocks, plan_sizes(plan), plan.batch):
        kind = block_kind(block)
        depth = size["depth"] if kind.uses("depth") else 1  # only blocks with a chain of bottlenecks
        kernel = plan.kernel if kind.uses("kernel") else 3
        stride = plan.stride if kind.uses("stride") else 1
        key = (block, size["width"], depth, size["imgsz"], batch)
        if key in seen:
            continue
        seen.add(key)
        specs = [BlockSpec(block=block, act=act, width=size["width"], depth=depth, imgsz=size["imgsz"], batch=batch,
                           kernel=kernel, stride=stride) for act in plan.acts]
        if available is not None:
            check_block_fits(specs[0], available)
        groups.append((specs, {"scaling": size["scaling"], "scale": size["scale"]}))
    return groups
