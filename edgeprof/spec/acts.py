"""Activation spec strings, torch-free: the registered names, aliases and parameters, and their one parser.

Both the torch registry (``edgeprof.blocks.activations``, which adds formulas, ONNX lowerings and module
factories and checks at import that its entries match these) and ``edgeprof.swap`` (which must work
without torch) parse spec strings here, with this grammar::

    relu                  a registered name (case-insensitive; aliases such as ``swish`` work too)
    leakyrelu:0.2         parameters follow ':' separated by ':' or ',' in the order of ``params``

Import paths (``mypkg.acts:MyAct``) are not accepted: a user's torch module has no ONNX lowering here.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from edgeprof.errors import InputError


@dataclass(frozen=True)
class SpecInfo:
    """One registered activation as swap knows it: name, aliases, parameter names and defaults."""

    name: str
    aliases: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()

    @property
    def usage(self) -> str:
        return self.name + "".join(f"[:{p}]" for p in self.params)


# Same order, names, aliases, params and defaults as edgeprof.blocks.activations._ENTRIES (tested).
SPECS: tuple[SpecInfo, ...] = (
    SpecInfo("identity", ("none", "linear")),
    SpecInfo("relu"),
    SpecInfo("relu6"),
    SpecInfo("leakyrelu", ("leaky_relu", "lrelu"), ("negative_slope",), (0.1,)),
    SpecInfo("prelu", (), ("init",), (0.25,)),
    SpecInfo("elu", (), ("alpha",), (1.0,)),
    SpecInfo("selu"),
    SpecInfo("celu", (), ("alpha",), (1.0,)),
    SpecInfo("gelu"),
    SpecInfo("gelu_tanh", ("gelu-tanh",)),
    SpecInfo("sigmoid"),
    SpecInfo("tanh"),
    SpecInfo("silu", ("swish",)),
    SpecInfo("hardswish", ("hswish", "hard_swish")),
    SpecInfo("hardsigmoid", ("hsigmoid", "hard_sigmoid")),
    SpecInfo("mish"),
    SpecInfo("softplus"),
    SpecInfo("sin", ("sine", "siren"), ("w0",), (1.0,)),
)

_BY_NAME = {info.name: info for info in SPECS}
_LOOKUP = {key: info.name for info in SPECS for key in (info.name, *info.aliases)}


def spec_names() -> list[str]:
    """Canonical activation names, in registry order."""
    return [info.name for info in SPECS]


@dataclass(frozen=True)
class Act:
    """A parsed activation spec: canonical name and every parameter value (defaults filled in)."""

    name: str
    values: tuple[float, ...] = ()

    @property
    def info(self) -> SpecInfo:
        return _BY_NAME[self.name]

    def param(self, name: str) -> float:
        return self.values[self.info.params.index(name)]

    @property
    def canonical(self) -> str:
        """The registry's label: trailing parameters equal to their defaults dropped (``leakyrelu:0.2``)."""
        kept = list(self.values)
        while kept and kept[-1] == self.info.defaults[len(kept) - 1]:
            kept.pop()
        return ":".join([self.name, *(repr(float(v)) for v in kept)])


def _unknown(name: str, spec: str) -> InputError:
    close = difflib.get_close_matches(name, list(_LOOKUP), n=1)
    hint = f"; did you mean {_LOOKUP[close[0]]!r}?" if close else ";"
    return InputError(f"unknown activation {spec!r}{hint} valid: {', '.join(spec_names())}")


def parse_act(spec: str) -> Act:
    """Parse ``spec`` (``"LeakyReLU:0.2"``, ``"swish"``) into an ``Act``; ``InputError`` names what is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"activation must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if "." in name:
        raise InputError(
            f"activation {spec!r} is an import path; swap can only write registered activations "
            f"(valid: {', '.join(spec_names())})"
        )
    if name not in _LOOKUP:
        raise _unknown(name, spec)
    info = _BY_NAME[_LOOKUP[name]]
    raw = [part.strip() for part in re.split(r"[:,]", rest)] if ":" in spec else []
    if len(raw) > len(info.params):
        takes = "takes no parameters"
        if info.params:
            takes = f"takes {len(info.params)} parameter(s) ({', '.join(info.params)})"
        raise InputError(f"activation {info.name} {takes}, got {len(raw)} in {spec!r}; usage: {info.usage}")
    values = list(info.defaults)
    for i, part in enumerate(raw):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(
                f"activation {info.name}: parameter {info.params[i]} must be a finite number, "
                f"got {part!r} in {spec!r}; usage: {info.usage}"
            )
        values[i] = value
    if info.name == "celu" and values[0] == 0.0:
        raise InputError("activation celu: alpha must not be 0 (it divides by alpha)")
    return Act(info.name, tuple(values))


def act_label(name: str, *values: float) -> str:
    """Canonical label of a detected activation; float32 attribute values are written in their shortest form.

    ``act_label("leakyrelu", 0.20000000298023224)`` is ``"leakyrelu:0.2"``; a default is dropped.
    """
    import numpy as np

    shortest = [float(str(np.float32(v))) for v in values]
    return Act(name, tuple(shortest) + _BY_NAME[name].defaults[len(shortest):]).canonical
