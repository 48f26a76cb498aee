"""YOLO-style blocks (Conv, Bottleneck, C3, C2f, SPPF) with the activation passed in, plus size counters.

The blocks follow Ultralytics' definitions (``ultralytics/nn/modules/conv.py`` and ``block.py``) and
signatures, with one deliberate difference: the activation is an argument handed down to every Conv,
and each Conv makes its own module with ``create_act``. There is no class attribute to assign, so
building one model never changes the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeprof.blocks.activations import create_act
from edgeprof.errors import InputError
from edgeprof.spec import BlockSpec
from edgeprof.spec.blocks import block_kind
from edgeprof.spec.imports import import_object

ActSpec = str | nn.Module | type

KernelSize = int | Sequence[int]


def autopad(k: KernelSize, p: KernelSize | None = None, d: int = 1) -> KernelSize:
    """Padding that keeps the output the input's size at stride 1 ('same' padding)."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation."""

    def __init__(
        self,
        c1: int,
        c2: int,
        k: KernelSize = 1,
        s: int = 1,
        p: KernelSize | None = None,
        g: int = 1,
        d: int = 1,
        act: ActSpec = "silu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = create_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two Convs with a residual add when ``shortcut`` and the channel counts match."""

    def __init__(
        self,
        c1: int,
        c2: int,
        shortcut: bool = True,
        g: int = 1,
        k: tuple[KernelSize, KernelSize] = (3, 3),
        e: float = 0.5,
        act: ActSpec = "silu",
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)  # hidden channels
        self.cv1 = Conv(c1, c_, k[0], 1, act=act)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with three Convs: two 1x1 branches, n bottlenecks on one, concat, 1x1."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
        act: ActSpec = "silu",
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)  # hidden channels
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.cv3 = Conv(2 * c_, c2, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=((1, 1), (3, 3)), e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C2f(nn.Module):
    """Faster CSP bottleneck (YOLOv8): split in two, a chain of n bottlenecks, concat all, 1x1."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = False,
        g: int = 1,
        e: float = 0.5,
        act: ActSpec = "silu",
    ) -> None:
        super().__init__()
        self.c = int(c2 * e)  # hidden channels
        self.cv1 = Conv(c1, 2 * self.c, 1, 1, act=act)
        self.cv2 = Conv((2 + n) * self.c, c2, 1, act=act)
        self.m = nn.ModuleList(
            Bottleneck(self.c, self.c, shortcut, g, k=((3, 3), (3, 3)), e=1.0, act=act) for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast (YOLOv5): one max-pool applied three times, concat, 1x1."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: ActSpec = "silu") -> None:
        super().__init__()
        c_ = c1 // 2  # hidden channels
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


def _randomize_batchnorm(model: nn.Module) -> None:
    """Give every BatchNorm seeded, non-trivial statistics so that folding it into the Conv matters.

    Ranges keep the outputs in a sane range: scale and variance in [0.5, 1.5], shifts and means small.
    Draws from the global torch RNG, which ``build_block`` has seeded.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                channels = module.num_features
                module.weight.copy_(torch.rand(channels) + 0.5)
                module.bias.copy_((torch.rand(channels) - 0.5) * 0.2)
                module.running_mean.copy_(torch.randn(channels) * 0.1)
                module.running_var.copy_(torch.rand(channels) + 0.5)


class ActAlone(nn.Module):
    """The activation on its own (block ``act``): its standalone cost on a tensor of a block's output shape."""

    def __init__(self, act="silu") -> None:
        super().__init__()
        self.act = create_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


def build_conv(spec: BlockSpec) -> nn.Module:
    return Conv(spec.width, spec.width, k=spec.kernel, s=spec.stride, act=spec.act)


def build_bottleneck(spec: BlockSpec) -> nn.Module:
    return Bottleneck(spec.width, spec.width, shortcut=True, act=spec.act)


def build_c3(spec: BlockSpec) -> nn.Module:
    return C3(spec.width, spec.width, n=spec.depth, act=spec.act)


def build_c2f(spec: BlockSpec) -> nn.Module:
    return C2f(spec.width, spec.width, n=spec.depth, shortcut=True, act=spec.act)


def build_sppf(spec: BlockSpec) -> nn.Module:
    return SPPF(spec.width, spec.width, act=spec.act)


def build_act_alone(spec: BlockSpec) -> nn.Module:
    return ActAlone(spec.act)


def build_block(spec: BlockSpec, seed: int = 0) -> nn.Module:
    """The block ``spec`` describes, in eval mode, with weights fixed by ``seed``.

    The builder is the one its kind names in the block-kind registry (``edgeprof.spec.blocks``). The global
    torch RNG is seeded inside ``torch.random.fork_rng``, so the caller's RNG state is left as it was.
    """
    kind = block_kind(spec.block)
    builder = import_object(kind.builder, f"builder of block {spec.block}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(spec)
        if not isinstance(model, nn.Module):
            raise InputError(f"block {spec.block}: its builder {kind.builder} returned {type(model).__name__}, "
                             "not a torch.nn.Module")
        _randomize_batchnorm(model)
    return model.eval()


def count_params(model: nn.Module) -> int:
    """Number of parameter elements in the torch model (BatchNorm included, i.e. before folding)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers on one forward pass of ``input_shape``.

    Measured with forward hooks on a real pass (so a layer called twice counts twice):
    Conv2d = output elements * (in_channels / groups) * kh * kw; Linear = output elements * in_features.
    Other layers (BatchNorm, activations, pooling, adds) are not counted. The model runs in eval mode
    and its training flag is restored afterwards.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        first = next(model.parameters(), None)
        dtype = first.dtype if first is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return int(total)
