"""User-defined activations that the tests load by import path (``tests._user_acts:ScaledSiLU``)."""

import torch
from torch import nn


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
