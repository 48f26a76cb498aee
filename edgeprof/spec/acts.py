"""The activation table, torch-free: one entry per activation with everything edgeprof knows about it.

Each ``ActEntry`` carries its metadata (name, aliases, parameters and defaults, family, formula), its ONNX
lowering (a function writing nodes through a builder, so this module needs neither torch nor onnx), the
multi-op forms ``edgeprof.swap`` detects it by, the op types it may run as after onnxruntime's graph
optimisation, its plot colour, and the import path of its torch factory (``edgeprof.blocks.activations``
looks it up; there is no second table). Spec strings::

    relu                  a registered name (case-insensitive; aliases such as ``swish`` work too)
    leakyrelu:0.2         parameters follow ':' separated by ':' or ',' in the order of ``params``
    mypkg.acts:MY_ACT     a user ``ActEntry`` by import path, parameters after a further ':'

An activation of your own is one ``ActEntry`` in one file (see ``tests/_user_acts.py``); a plain
``nn.Module`` class by import path also works for building (``edgeprof.blocks.activations``), but swap can
only write an activation with a lowering.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from edgeprof.errors import InputError
from edgeprof.spec.imports import import_object, is_import_path

FAMILIES = ("linear", "piecewise-linear", "exponential", "gated", "periodic")

# A polynomial in x and one "atom" (a Sigmoid, Tanh, Erf... output): (power of x, atom is a factor) -> coefficient.
Poly = dict[tuple[int, bool], float]
X: Poly = {(1, False): 1.0}
X_TIMES_ATOM: Poly = {(1, True): 1.0}


class Builder(Protocol):
    """What a lowering writes through (``edgeprof.swap.lower`` provides it)."""

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str: ...

    def const(self, purpose: str, value: float, shape: tuple[int, ...] = ()) -> str: ...


@dataclass(frozen=True)
class Form:
    """A multi-op pattern the detector recognises: ``atom = atom_op(inner(x))``, output ``outer(x, atom)``.

    ``inner`` is the atom's input as a polynomial in x; ``inner_op`` instead says the atom's input is
    that op applied to x (mish: ``Tanh(Softplus(x))``). ``atom_check`` names an attribute rule the detector
    applies to the atom node (``torch_hardsigmoid``, ``clip_0_6``).
    """

    pattern: str
    atom_ops: tuple[str, ...]
    outer: Poly
    inner: Poly | None = None
    inner_op: str = ""
    atom_check: str = ""


@dataclass(frozen=True)
class ActEntry:
    """One activation.

    ``onnx_ops``: how it exports with torch's TorchScript exporter at opset 17 (op types in first-seen order
    joined by '+', Constant nodes left out; tested against a real export). ``lower(b, act, x, y, opset)``
    writes ``y = act(x)`` with ``b.op``/``b.const`` as that exporter would at ``opset`` (None: no nodes, as
    for identity). ``single``/``single_attrs``: the one ONNX op that computes it, and the attribute (with its
    ONNX default) holding each parameter. ``forms``: its multi-op patterns. ``runs_as``: op types it may run
    as after onnxruntime's fusions beyond its exported ones (``QuickGelu`` for x*sigmoid(x)). ``torch``: import
    path of a factory called with the parameter values, returning an ``nn.Module``. ``colour``: its colour in
    every plot (None: the palette's next free one). ``check(values)``: why parameter values are invalid, "" when
    they are fine.
    """

    name: str
    formula: str
    family: str
    onnx_ops: str
    torch: str
    aliases: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    defaults: tuple[float, ...] = ()
    lower: Callable[[Builder, Act, str, str, int], None] | None = None
    single: str = ""
    single_attrs: tuple[tuple[str, float], ...] = ()
    forms: tuple[Form, ...] = ()
    runs_as: tuple[str, ...] = ()
    colour: str | None = None
    check: Callable[[tuple[float, ...]], str] | None = None
    float32_only: bool = False  # its ONNX op is defined for float32 only

    @property
    def onnx_op_list(self) -> list[str]:
        """``onnx_ops`` as a list (empty for an activation that exports to no node)."""
        return self.onnx_ops.split("+") if self.onnx_ops else []

    @property
    def usage(self) -> str:
        """How to write this activation in a spec string, e.g. ``leakyrelu[:negative_slope]``."""
        return self.name + "".join(f"[:{p}]" for p in self.params)

    @property
    def op_types(self) -> frozenset[str]:
        """Every op type its own nodes may run as: exported at any opset, or fused by onnxruntime."""
        return frozenset([*self.onnx_op_list, *self.runs_as, *([self.single] if self.single else [])])


# ---------------------------------------------------------------------------------------------- lowerings
def _one(op_type: str, **attrs_from_params: str) -> Callable[[Builder, Act, str, str, int], None]:
    """A lowering to one op; ``attrs_from_params`` maps an ONNX attribute to the parameter it takes."""

    def lower(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
        b.op(op_type, [x], y, **{a: act.param(p) for a, p in attrs_from_params.items()})

    return lower


def _lower_relu6(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    b.op("Clip", [x, b.const("relu6_min", 0.0), b.const("relu6_max", 6.0)], y)


def _lower_prelu(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    b.op("PRelu", [x, b.const("prelu_slope", act.param("init"), (1,))], y)


def _lower_gelu(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    if opset >= 20:
        b.op("Gelu", [x], y, approximate="none")
        return
    erf = b.op("Erf", [b.op("Div", [x, b.const("gelu_sqrt2", math.sqrt(2.0))])])  # torch: Div, Erf, Add, Mul, Mul
    scaled = b.op("Mul", [x, b.op("Add", [erf, b.const("one", 1.0)])])
    b.op("Mul", [scaled, b.const("half", 0.5)], y)


def _lower_gelu_tanh(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    if opset >= 20:
        b.op("Gelu", [x], y, approximate="tanh")
        return
    cube = b.op("Mul", [x, b.op("Mul", [x, x])])  # 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
    inner = b.op("Add", [x, b.op("Mul", [b.const("gelu_tanh_coeff", 0.044715), cube])])
    t = b.op("Tanh", [b.op("Mul", [b.const("gelu_tanh_scale", math.sqrt(2.0 / math.pi)), inner])])
    scaled = b.op("Mul", [x, b.op("Add", [b.const("one", 1.0), t])])
    b.op("Mul", [b.const("half", 0.5), scaled], y)


def _lower_silu(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    b.op("Mul", [x, b.op("Sigmoid", [x])], y)


def _lower_hardswish(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    if opset >= 14:
        b.op("HardSwish", [x], y)
    else:
        b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1.0 / 6.0)], y)


def _lower_hardsigmoid(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    b.op("HardSigmoid", [x], y, alpha=1.0 / 6.0)


def _lower_mish(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])], y)  # torch's TorchScript exporter never writes Mish


def _lower_sin(b: Builder, act: Act, x: str, y: str, opset: int) -> None:
    w0 = act.param("w0")
    b.op("Sin", [x if w0 == 1.0 else b.op("Mul", [x, b.const("sin_w0", w0)])], y)


def _celu_check(values: tuple[float, ...]) -> str:
    return "alpha must not be 0 (it divides by alpha)" if values[0] == 0.0 else ""


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_F = "edgeprof.blocks.activations"  # where the torch factories that torch.nn lacks live

# ---------------------------------------------------------------------------------------------- the table
ACTS: tuple[ActEntry, ...] = (
    ActEntry("identity", "x", "linear", "", "torch.nn:Identity", ("none", "linear")),
    ActEntry("relu", "max(0, x)", "piecewise-linear", "Relu", "torch.nn:ReLU", lower=_one("Relu"), single="Relu",
             colour="#1f77b4"),
    ActEntry("relu6", "min(max(0, x), 6)", "piecewise-linear", "Clip", "torch.nn:ReLU6", lower=_lower_relu6,
             colour="#e377c2"),
    ActEntry("leakyrelu", "x if x >= 0 else negative_slope * x", "piecewise-linear", "LeakyRelu",
             "torch.nn:LeakyReLU", ("leaky_relu", "lrelu"), ("negative_slope",), (0.1,),
             lower=_one("LeakyRelu", alpha="negative_slope"), single="LeakyRelu", single_attrs=(("alpha", 0.01),),
             colour="#ff7f0e"),
    ActEntry("prelu", "x if x >= 0 else a * x, a learned (one per layer), starting at init", "piecewise-linear",
             "PRelu", f"{_F}:prelu", (), ("init",), (0.25,), lower=_lower_prelu),
    ActEntry("elu", "x if x > 0 else alpha * (exp(x) - 1)", "exponential", "Elu", "torch.nn:ELU", (), ("alpha",),
             (1.0,), lower=_one("Elu", alpha="alpha"), single="Elu", single_attrs=(("alpha", 1.0),),
             colour="#17becf"),
    ActEntry("selu", "scale * (x if x > 0 else alpha * (exp(x) - 1)), alpha ~ 1.6733, scale ~ 1.0507",
             "exponential", "Selu", "torch.nn:SELU", lower=_one("Selu")),
    ActEntry("celu", "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))", "exponential", "Celu", "torch.nn:CELU", (),
             ("alpha",), (1.0,), lower=_one("Celu", alpha="alpha"), single="Celu", single_attrs=(("alpha", 1.0),),
             check=_celu_check, float32_only=True),
    ActEntry("gelu", "x * 0.5 * (1 + erf(x / sqrt(2)))", "gated", "Div+Erf+Add+Mul", "torch.nn:GELU",
             lower=_lower_gelu, forms=(Form("GELU (erf form)", ("Erf",), {(1, False): 0.5, (1, True): 0.5},
                                            inner={(1, False): 1 / math.sqrt(2.0)}),),
             runs_as=("Gelu", "FastGelu", "BiasGelu"), colour="#8c564b"),
    ActEntry("gelu_tanh", "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))", "gated", "Mul+Add+Tanh",
             f"{_F}:gelu_tanh", ("gelu-tanh",), lower=_lower_gelu_tanh,
             forms=(Form("GELU (tanh form)", ("Tanh",), {(1, False): 0.5, (1, True): 0.5},
                         inner={(1, False): _SQRT_2_OVER_PI, (3, False): _SQRT_2_OVER_PI * 0.044715}),),
             runs_as=("Gelu", "FastGelu", "BiasGelu")),
    ActEntry("sigmoid", "1 / (1 + exp(-x))", "exponential", "Sigmoid", "torch.nn:Sigmoid", lower=_one("Sigmoid"),
             single="Sigmoid"),
    ActEntry("tanh", "tanh(x)", "exponential", "Tanh", "torch.nn:Tanh", lower=_one("Tanh"), single="Tanh"),
    ActEntry("silu", "x * sigmoid(x)", "gated", "Sigmoid+Mul", "torch.nn:SiLU", ("swish",), lower=_lower_silu,
             forms=(Form("x*Sigmoid(x)", ("Sigmoid",), X_TIMES_ATOM, inner=X),), runs_as=("QuickGelu", "Swish"),
             colour="#d62728"),
    ActEntry("hardswish", "x * min(max(0, x + 3), 6) / 6", "gated", "HardSwish", "torch.nn:Hardswish",
             ("hswish", "hard_swish"), lower=_lower_hardswish, single="HardSwish",
             forms=(Form("x*HardSigmoid(x)", ("HardSigmoid",), X_TIMES_ATOM, inner=X, atom_check="torch_hardsigmoid"),
                    Form("x*Clip(x+3,0,6)/6", ("Clip",), {(1, True): 1 / 6}, inner={(1, False): 1.0, (0, False): 3.0},
                         atom_check="clip_0_6")),
             runs_as=("HardSigmoid", "Mul"), colour="#2ca02c"),
    ActEntry("hardsigmoid", "min(max(0, x + 3), 6) / 6", "piecewise-linear", "HardSigmoid", "torch.nn:Hardsigmoid",
             ("hsigmoid", "hard_sigmoid"), lower=_lower_hardsigmoid),
    ActEntry("mish", "x * tanh(softplus(x))", "gated", "Softplus+Tanh+Mul", "torch.nn:Mish", lower=_lower_mish,
             single="Mish", forms=(Form("x*Tanh(Softplus(x))", ("Tanh",), X_TIMES_ATOM, inner_op="Softplus"),),
             colour="#9467bd"),
    ActEntry("softplus", "log(1 + exp(x))", "exponential", "Softplus", "torch.nn:Softplus", lower=_one("Softplus"),
             single="Softplus"),
    ActEntry("sin", "sin(w0 * x)", "periodic", "Sin", f"{_F}:Sine", ("sine", "siren"), ("w0",), (1.0,),
             lower=_lower_sin),
)


def _check_entry(entry: ActEntry, where: str) -> None:
    def bad(why: str) -> InputError:
        return InputError(f"activation entry {entry.name!r} ({where}): {why}")

    if entry.family not in FAMILIES:
        raise bad(f"unknown family {entry.family!r}; valid: {', '.join(FAMILIES)}")
    if len(entry.params) != len(entry.defaults):
        raise bad("params and defaults differ in length")
    if entry.single_attrs and len(entry.single_attrs) != len(entry.params):
        raise bad("single_attrs must name one attribute per parameter")
    if entry.onnx_ops and entry.lower is None:
        raise bad("it exports to ONNX ops but has no lowering")
    if ":" not in entry.torch:
        raise bad(f"torch factory {entry.torch!r} must be an import path 'module:name'")


_REGISTRY: dict[str, ActEntry] = {}
_LOOKUP: dict[str, str] = {}
for _entry in ACTS:
    _check_entry(_entry, "edgeprof.spec.acts")
    for _key in (_entry.name, *_entry.aliases):
        if _key in _LOOKUP or _key != _key.lower():
            raise RuntimeError(f"activation name {_key!r} is registered twice or not lower-case")
        _LOOKUP[_key] = _entry.name
    _REGISTRY[_entry.name] = _entry


def spec_names() -> list[str]:
    """Canonical names of the built-in activations, in table order."""
    return [entry.name for entry in ACTS]


def entries() -> list[ActEntry]:
    """Every known activation: the built-in ones, then user entries met so far (by import path)."""
    return list(_REGISTRY.values())


def entry(name: str) -> ActEntry:
    """The entry of a canonical name or an already-parsed user import path."""
    return _REGISTRY[name]


@dataclass(frozen=True)
class Act:
    """A parsed activation spec: canonical name and every parameter value (defaults filled in)."""

    name: str
    values: tuple[float, ...] = ()

    @property
    def info(self) -> ActEntry:
        return _REGISTRY[self.name]

    def param(self, name: str) -> float:
        return self.values[self.info.params.index(name)]

    @property
    def canonical(self) -> str:
        """The table's label: trailing parameters equal to their defaults dropped (``leakyrelu:0.2``)."""
        kept = list(self.values)
        while kept and kept[-1] == self.info.defaults[len(kept) - 1]:
            kept.pop()
        return ":".join([self.name, *(repr(float(v)) for v in kept)])


def _unknown(name: str, spec: str) -> InputError:
    close = difflib.get_close_matches(name, list(_LOOKUP), n=1)
    hint = f"; did you mean {_LOOKUP[close[0]]!r}?" if close else ";"
    return InputError(f"unknown activation {spec!r}{hint} valid: {', '.join(spec_names())}, or your own "
                      "ActEntry as module.path:NAME")


def register_user_entry(path: str) -> ActEntry | None:
    """The ``ActEntry`` at import path ``module:NAME``, registered under that path; None when the object there
    is not an ActEntry (a plain torch module, which only ``edgeprof.blocks.activations`` can build)."""
    path = path.strip()
    if path in _REGISTRY:
        return _REGISTRY[path]
    target = import_object(path, "activation")
    if not isinstance(target, ActEntry):
        return None
    user = replace(target, name=path, aliases=())
    _check_entry(user, path)
    _REGISTRY[path] = user
    _LOOKUP[path.lower()] = path
    return user


def split_import_spec(spec: str) -> tuple[str, str]:
    """(``module:NAME``, parameter text) of a user spec ``module:NAME[:p1[:p2]]``."""
    module, _, rest = spec.strip().partition(":")
    attr, sep, params = rest.partition(":")
    return f"{module.strip()}:{attr.strip()}", (":" + params) if sep else ""


def parse_act(spec: str) -> Act:
    """Parse ``spec`` (``"LeakyReLU:0.2"``, ``"swish"``, ``"mypkg.acts:MY_ACT:2"``) into an ``Act``.

    ``InputError`` names what is wrong. An import path must name an ``ActEntry``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"activation must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if is_import_path(spec):
        path, rest = split_import_spec(spec)
        info = register_user_entry(path)
        if info is None:
            raise InputError(f"activation {spec!r} is a torch module, not an edgeprof ActEntry; swap can only write "
                             f"activations with an ONNX lowering (valid: {', '.join(spec_names())}, or an ActEntry)")
    else:
        name, _, rest = spec.partition(":")
        name = name.strip().lower()
        if name not in _LOOKUP:
            raise _unknown(name, spec)
        info = _REGISTRY[_LOOKUP[name]]
        rest = ":" + rest if ":" in spec else ""
    raw = [part.strip() for part in re.split(r"[:,]", rest[1:])] if rest else []
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
    problem = info.check(tuple(values)) if info.check else ""
    if problem:
        raise InputError(f"activation {info.name}: {problem}")
    return Act(info.name, tuple(values))


def act_label(name: str, *values: float) -> str:
    """Canonical label of a detected activation; float32 attribute values are written in their shortest form.

    ``act_label("leakyrelu", 0.20000000298023224)`` is ``"leakyrelu:0.2"``; a default is dropped.
    """
    import numpy as np

    shortest = [float(str(np.float32(v))) for v in values]
    return Act(name, tuple(shortest) + _REGISTRY[name].defaults[len(shortest):]).canonical


# ---------------------------------------------------------------------------------------------- lookups
def _entry_of_label(label: str) -> ActEntry | None:
    """The entry of a canonical label (``leakyrelu:0.2``, ``mypkg.acts:MY_ACT``) without importing anything new."""
    if not label:
        return None
    if is_import_path(label):
        return _REGISTRY.get(split_import_spec(label)[0])
    return _REGISTRY.get(_LOOKUP.get(label.split(":", 1)[0].strip().lower(), ""))


def act_op_types(label: str, exported_ops: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The op types the activation ``label``'s own nodes may run as: its entry's (exported at any opset or fused
    by onnxruntime) plus the ops it was exported as (all a user's torch module has)."""
    info = _entry_of_label(label)
    return frozenset(exported_ops) | (info.op_types if info is not None else frozenset())


ARITHMETIC_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Neg"})


def activation_op_types() -> frozenset[str]:
    """Op types that are an activation wherever they appear (arithmetic left out: a Mul is not an activation)."""
    return frozenset().union(*(e.op_types for e in ACTS)) - ARITHMETIC_OPS


def act_colour(label: str) -> str | None:
    """The plot colour an activation keeps in every report (exact built-in or user names only)."""
    info = _entry_of_label(label)
    return info.colour if info is not None and label in (info.name, *info.aliases) else None
