"""The activation registry: one table from name to factory, aliases, formula and ONNX lowering.

This table is the single source of truth for the CLI's choices, the labels in results and the docs.
A spec string names an activation and, optionally, its numeric parameters::

    relu                  a registered name (case-insensitive; aliases such as ``swish`` work too)
    leakyrelu:0.2         parameters follow ':' separated by ':' or ',' in the order of ``ActInfo.params``
    mypkg.acts:MyAct      a user activation by import path: the part before the first ':' contains a '.'

Looking up is separate from building: ``get_act`` returns a factory, ``create_act`` a fresh module
(one per layer, so no two layers share an activation's state or parameters).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from edgeprof.errors import InputError
from edgeprof.spec.acts import SPECS, parse_act

FAMILIES = ("linear", "piecewise-linear", "exponential", "gated", "periodic")


@dataclass(frozen=True)
class ActInfo:
    """What the registry knows about one activation.

    ``onnx_ops`` is how the activation lowers with torch's TorchScript ONNX exporter at opset 17,
    op types in first-seen order joined by '+' (Constant nodes left out; empty when the exporter
    emits no node at all, as for ``identity``). It describes the default parameters; the test suite
    exports every entry and checks this field against the exported graph.
    """

    name: str
    aliases: tuple[str, ...]
    formula: str
    family: str
    onnx_ops: str
    params: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()
    _factory: Callable[..., nn.Module] = field(default=nn.Identity, repr=False, compare=False)

    @property
    def onnx_op_list(self) -> list[str]:
        """``onnx_ops`` as a list (empty for an activation that exports to no node)."""
        return self.onnx_ops.split("+") if self.onnx_ops else []

    @property
    def usage(self) -> str:
        """How to write this activation in a spec string, e.g. ``leakyrelu[:negative_slope]``."""
        return self.name + "".join(f"[:{p}]" for p in self.params)


class Sine(nn.Module):
    """SIREN-style periodic activation: ``sin(w0 * x)``; with ``w0 == 1`` just ``sin(x)``."""

    def __init__(self, w0: float = 1.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w0 == 1.0:
            return torch.sin(x)
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


def _celu(alpha: float) -> nn.Module:
    if alpha == 0.0:
        raise InputError("activation celu: alpha must not be 0 (it divides by alpha)")
    return nn.CELU(alpha)


_ENTRIES: tuple[ActInfo, ...] = (
    ActInfo("identity", ("none", "linear"), "x", "linear", "", _factory=nn.Identity),
    ActInfo("relu", (), "max(0, x)", "piecewise-linear", "Relu", _factory=nn.ReLU),
    ActInfo("relu6", (), "min(max(0, x), 6)", "piecewise-linear", "Clip", _factory=nn.ReLU6),
    ActInfo(
        "leakyrelu",
        ("leaky_relu", "lrelu"),
        "x if x >= 0 else negative_slope * x",
        "piecewise-linear",
        "LeakyRelu",
        ("negative_slope",),
        (0.1,),
        _factory=lambda negative_slope: nn.LeakyReLU(negative_slope),
    ),
    ActInfo(
        "prelu",
        (),
        "x if x >= 0 else a * x, a learned (one per layer), starting at init",
        "piecewise-linear",
        "PRelu",
        ("init",),
        (0.25,),
        _factory=lambda init: nn.PReLU(num_parameters=1, init=init),
    ),
    ActInfo(
        "elu",
        (),
        "x if x > 0 else alpha * (exp(x) - 1)",
        "exponential",
        "Elu",
        ("alpha",),
        (1.0,),
        _factory=lambda alpha: nn.ELU(alpha),
    ),
    ActInfo(
        "selu",
        (),
        "scale * (x if x > 0 else alpha * (exp(x) - 1)), alpha ~ 1.6733, scale ~ 1.0507",
        "exponential",
        "Selu",
        _factory=nn.SELU,
    ),
    ActInfo(
        "celu",
        (),
        "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
        "exponential",
        "Celu",
        ("alpha",),
        (1.0,),
        _factory=_celu,
    ),
    ActInfo(
        "gelu",
        (),
        "x * 0.5 * (1 + erf(x / sqrt(2)))",
        "gated",
        "Div+Erf+Add+Mul",
        _factory=nn.GELU,
    ),
    ActInfo(
        "gelu_tanh",
        ("gelu-tanh",),
        "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))",
        "gated",
        "Mul+Add+Tanh",
        _factory=lambda: nn.GELU(approximate="tanh"),
    ),
    ActInfo("sigmoid", (), "1 / (1 + exp(-x))", "exponential", "Sigmoid", _factory=nn.Sigmoid),
    ActInfo("tanh", (), "tanh(x)", "exponential", "Tanh", _factory=nn.Tanh),
    ActInfo("silu", ("swish",), "x * sigmoid(x)", "gated", "Sigmoid+Mul", _factory=nn.SiLU),
    ActInfo(
        "hardswish",
        ("hswish", "hard_swish"),
        "x * min(max(0, x + 3), 6) / 6",
        "gated",
        "HardSwish",
        _factory=nn.Hardswish,
    ),
    ActInfo(
        "hardsigmoid",
        ("hsigmoid", "hard_sigmoid"),
        "min(max(0, x + 3), 6) / 6",
        "piecewise-linear",
        "HardSigmoid",
        _factory=nn.Hardsigmoid,
    ),
    ActInfo("mish", (), "x * tanh(softplus(x))", "gated", "Softplus+Tanh+Mul", _factory=nn.Mish),
    ActInfo("softplus", (), "log(1 + exp(x))", "exponential", "Softplus", _factory=nn.Softplus),
    ActInfo(
        "sin",
        ("sine", "siren"),
        "sin(w0 * x)",
        "periodic",
        "Sin",
        ("w0",),
        (1.0,),
        _factory=Sine,
    ),
)


def _build_tables() -> tuple[dict[str, ActInfo], dict[str, str]]:
    registry: dict[str, ActInfo] = {}
    lookup: dict[str, str] = {}
    for info in _ENTRIES:
        if info.family not in FAMILIES:
            raise RuntimeError(f"activation {info.name}: unknown family {info.family!r}")
        if len(info.params) != len(info.defaults):
            raise RuntimeError(f"activation {info.name}: params and defaults differ in length")
        for key in (info.name, *info.aliases):
            if key in lookup or key != key.lower():
                raise RuntimeError(f"activation name {key!r} is registered twice or not lower-case")
            lookup[key] = info.name
        registry[info.name] = info
    specs = {(i.name, i.aliases, i.params, i.defaults) for i in SPECS}
    entries = {(i.name, i.aliases, i.params, i.defaults) for i in _ENTRIES}
    if specs != entries or [i.name for i in SPECS] != list(registry):
        raise RuntimeError("edgeprof.spec.acts.SPECS and the activation registry disagree; keep them the same")
    return registry, lookup


_REGISTRY, _LOOKUP = _build_tables()


def act_names() -> list[str]:
    """Canonical activation names in registry order."""
    return list(_REGISTRY)


def list_acts() -> list[ActInfo]:
    """Every registered activation, in registry order."""
    return list(_REGISTRY.values())


def _is_import_path(spec: str) -> bool:
    return "." in spec.split(":", 1)[0]


@dataclass(frozen=True)
class _Parsed:
    canonical: str
    info: ActInfo | None
    factory: Callable[[], nn.Module]


def _parse_registered(spec: str) -> _Parsed:
    act = parse_act(spec)  # the one parser of spec strings (torch-free, shared with edgeprof.swap)
    info = _REGISTRY[act.name]
    factory_args = act.values

    def factory() -> nn.Module:
        return info._factory(*factory_args)

    return _Parsed(act.canonical, info, factory)


def _parse_import_path(spec: str) -> _Parsed:
    text = spec.strip()
    module_name, sep, attr_path = text.partition(":")
    if not sep or not attr_path.strip():
        raise InputError(
            f"activation {spec!r} is neither a registered name nor an import path of the form "
            f"'module.path:ClassName'; valid names: {', '.join(act_names())}"
        )
    module_name, attr_path = module_name.strip(), attr_path.strip()
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is a problem with the user's input
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"activation {spec!r}: cannot import module {module_name!r}: {first}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InputError(f"activation {spec!r}: module {module_name!r} has no attribute {attr_path!r}") from None
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise InputError(f"activation {spec!r}: {target.__name__} is a class but not a torch.nn.Module")
    elif not callable(target):
        raise InputError(
            f"activation {spec!r}: expected an nn.Module subclass or a zero-argument callable returning "
            f"one, got {type(target).__name__}"
        )
    maker: Callable[[], object] = target  # type: ignore[assignment]

    def factory() -> nn.Module:
        try:
            module = maker()
        except Exception as exc:  # a failing user factory is a problem with the user's input
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"activation {spec!r}: calling {attr_path}() failed: {first}") from None
        if not isinstance(module, nn.Module):
            raise InputError(
                f"activation {spec!r}: {attr_path}() returned {type(module).__name__}, not a torch.nn.Module"
            )
        return module

    return _Parsed(text, None, factory)


def _parse(spec: str) -> _Parsed:
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"activation must be a non-empty string, got {spec!r}")
    if _is_import_path(spec):
        return _parse_import_path(spec)
    return _parse_registered(spec.strip())


def canonical_act(spec: str) -> str:
    """The normalised label of an activation spec, after validating it.

    Names are lower-cased and aliases resolved (``"Swish"`` -> ``"silu"``), numbers written in their
    shortest form and trailing default parameters dropped (``"LeakyReLU:0.20"`` -> ``"leakyrelu:0.2"``,
    ``"leakyrelu:0.1"`` -> ``"leakyrelu"``). An import path stays as given. The activation is built
    once here, so a bad parameter or a broken user class fails before any work starts.
    """
    parsed = _parse(spec)
    parsed.factory()
    return parsed.canonical


def get_act(spec: str | nn.Module | type) -> Callable[[], nn.Module]:
    """A zero-argument factory for the activation ``spec``.

    ``spec`` is a spec string, an ``nn.Module`` subclass (called with no arguments) or a module
    instance (each call returns a deep copy, so layers never share it).
    """
    if isinstance(spec, nn.Module):
        instance = spec
        return lambda: copy.deepcopy(instance)
    if isinstance(spec, type):
        if not issubclass(spec, nn.Module):
            raise InputError(f"activation class {spec.__name__} is not a torch.nn.Module")
        return spec
    if isinstance(spec, str):
        return _parse(spec).factory
    raise InputError(f"activation must be a name, an nn.Module subclass or instance, got {type(spec).__name__}")


def create_act(spec: str | nn.Module | type) -> nn.Module:
    """A fresh activation module (call once per layer)."""
    return get_act(spec)()


def act_info(spec: str) -> ActInfo | None:
    """Registry metadata for a spec string; ``None`` for a user activation given by import path."""
    return _parse(spec).info
