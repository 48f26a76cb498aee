"""Torch modules of the activation table (``edgeprof.spec.acts.ACTS``): each entry's factory looked up by name.

The table in ``edgeprof.spec.acts`` is the single source of truth; this module adds no entries, only the
torch factories torch.nn lacks (``Sine``, ``prelu``, ``gelu_tanh``) and the lookups. A spec string names an
activation and, optionally, its numeric parameters::

    relu                  a registered name (case-insensitive; aliases such as ``swish`` work too)
    leakyrelu:0.2         parameters follow ':' separated by ':' or ',' in the order of ``ActInfo.params``
    mypkg.acts:MY_ACT     a user ActEntry by import path (its own torch factory and ONNX lowering)
    mypkg.acts:MyAct      a user nn.Module class or zero-argument factory by import path (build only)

Looking up is separate from building: ``get_act`` returns a factory, ``create_act`` a fresh module
(one per layer, so no two layers share an activation's state or parameters).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgeprof.errors import InputError
from edgeprof.spec.acts import ActEntry, entries, parse_act, register_user_entry, spec_names
from edgeprof.spec.imports import import_object, is_import_path

ActInfo = ActEntry  # the table's entries: one table, edgeprof.spec.acts.ACTS


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


def prelu(init: float) -> nn.Module:
    """PReLU with one learned slope starting at ``init`` (nn.PReLU's first argument is the slope count)."""
    return nn.PReLU(num_parameters=1, init=init)


def gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


def torch_factory(info: ActEntry) -> Callable[..., nn.Module]:
    """The torch factory an entry names by import path (``torch.nn:ReLU``, ``edgeprof.blocks.activations:Sine``)."""
    factory = import_object(info.torch, f"torch factory of activation {info.name}")
    if not callable(factory):
        raise InputError(f"activation {info.name}: its torch factory {info.torch!r} is not callable")
    return factory  # type: ignore[return-value]


def act_names() -> list[str]:
    """Canonical names of the built-in activations, in table order."""
    return spec_names()


def list_acts() -> list[ActEntry]:
    """Every built-in activation, in table order."""
    return [info for info in entries() if info.name in set(spec_names())]


@dataclass(frozen=True)
class _Parsed:
    canonical: str
    info: ActEntry | None
    factory: Callable[[], nn.Module]


def _parse_entry(spec: str) -> _Parsed:
    act = parse_act(spec)  # the one parser of spec strings (torch-free, shared with edgeprof.swap)
    info = act.info
    make = torch_factory(info)
    factory_args = act.values

    def factory() -> nn.Module:
        module = make(*factory_args)
        if not isinstance(module, nn.Module):
            raise InputError(f"activation {info.name}: its torch factory returned {type(module).__name__}, "
                             "not a torch.nn.Module")
        return module

    return _Parsed(act.canonical, info, factory)


def _parse_module_path(spec: str) -> _Parsed:
    """A user torch module (class or zero-argument factory) by import path; it has no ONNX lowering."""
    text = spec.strip()
    module_name, sep, attr_path = text.partition(":")
    if not sep or not attr_path.strip():
        raise InputError(
            f"activation {spec!r} is neither a registered name nor an import path of the form "
            f"'module.path:ClassName'; valid names: {', '.join(act_names())}"
        )
    target = import_object(text, "activation")
    if isinstance(target, type):
        if not issubclass(target, nn.Module):
            raise InputError(f"activation {spec!r}: {target.__name__} is a class but not a torch.nn.Module")
    elif not callable(target):
        raise InputError(
            f"activation {spec!r}: expected an nn.Module subclass, a zero-argument callable returning "
            f"one or an edgeprof ActEntry, got {type(target).__name__}"
        )
    maker: Callable[[], object] = target  # type: ignore[assignment]
    attr_path = attr_path.strip()

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
    if is_import_path(spec):
        text = spec.strip()
        if ":" in text and register_user_entry(":".join(text.split(":", 2)[:2])) is not None:
            return _parse_entry(text)
        return _parse_module_path(text)
    return _parse_entry(spec.strip())


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
