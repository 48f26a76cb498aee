"""User-defined activations that the tests load by import path (``tests._user_acts:ScaledSiLU``)."""

import torch
from torch import nn

from edgeprof.spec.acts import X_TIMES_ATOM, ActEntry, Form


class ScaledSiLU(nn.Module):
    """x * sigmoid(1.5 * x): exports to Mul + Sigmoid + Mul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.5 * x)


def make_scaled_silu() -> nn.Module:
    """A zero-argument factory, the other accepted form."""
    return ScaledSiLU()


class Erfcx(nn.Module):
    """Uses an op the TorchScript exporter has no ONNX lowering for (aten::special_erfcx)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.erfcx(x)


class NotAModule:
    """A class that is not an nn.Module."""


def returns_a_number() -> float:
    """A callable that does not return a module."""
    return 1.0


NOT_CALLABLE = 3


# ---------------------------------------------------------------------------------------------- a whole entry
# One ActEntry is all a new activation needs: sweep builds it (torch factory by import path), swap lowers it
# (ONNX lowering) and detects it (its form), report colours it. Used as ``tests._user_acts:TANHEXP``.
class TanhExp(nn.Module):
    """TanhExp (Liu & Di, 2020): x * tanh(exp(x)); exports to Exp + Tanh + Mul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(torch.exp(x))


def _lower_tanhexp(b, act, x: str, y: str, opset: int) -> None:
    b.op("Mul", [x, b.op("Tanh", [b.op("Exp", [x])])], y)


TANHEXP = ActEntry(
    "tanhexp", "x * tanh(exp(x))", "gated", "Exp+Tanh+Mul", "tests._user_acts:TanhExp", lower=_lower_tanhexp,
    forms=(Form("x*Tanh(Exp(x))", ("Tanh",), X_TIMES_ATOM, inner_op="Exp"),), colour="#000000",
)
