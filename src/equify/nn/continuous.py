"""Continuous kernels: a small network maps relative positions (and group elements) to weights.

A continuous kernel (Romero et al., CKConv; Romero & Lohit 2022) is a function, not a table of
weights: the convolution evaluates it wherever its sampled group elements put the kernel's
pixels, so kernels exist at any rotation. :class:`KernelNet` is that function:

* ``kind="siren"`` (default): linear layers with ``sin(ω₀ ·)`` activations (Sitzmann et al.,
  NeurIPS 2020) and their initialisation (first layer ``U(-1/d, 1/d)``, hidden layers
  ``U(-√(6/d)/ω₀, √(6/d)/ω₀)``); ``ω₀`` sets how fast the kernel may vary;
* ``kind="mlp"``: linear layers with GELU activations (smooth, for comparison).

The last layer is linear, initialised so that kernel values have variance ``gain² / fan_in``
(``fan_in``: the inputs the convolution sums over), like He initialisation of a table of weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from equify._validation import check_int

__all__ = ["KERNEL_NETS", "KernelNet"]

#: The kernel network kinds.
KERNEL_NETS = ("siren", "mlp")


class _Sine(nn.Module):
    def __init__(self, omega_0: float) -> None:
        super().__init__()
        self.omega_0 = omega_0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega_0 * x)

    def extra_repr(self) -> str:
        return f"omega_0={self.omega_0}"


class KernelNet(nn.Module):
    """A point-wise network ``(P, in_features) -> (P, out_features)``: a continuous kernel.

    Args:
        in_features: coordinates per point (2 for positions; more with group elements).
        out_features: kernel values per point (``out_channels · in_channels``).
        fan_in: the number of products the convolution sums per output (sets the output scale).
        hidden: hidden units per layer.
        layers: hidden layers (at least 1).
        kind: ``"siren"`` or ``"mlp"``.
        omega_0: SIREN's frequency ``ω₀`` (ignored by the MLP).
        gain: output scale (``√2`` suits ReLU networks).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        fan_in: int,
        *,
        hidden: int = 32,
        layers: int = 2,
        kind: str = "siren",
        omega_0: float = 10.0,
        gain: float = math.sqrt(2.0),
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        fan_in = check_int(fan_in, "fan_in", 1)
        hidden = check_int(hidden, "hidden", 1)
        layers = check_int(layers, "layers", 1)
        if kind not in KERNEL_NETS:
            raise ValueError(f"kernel net kind must be one of {KERNEL_NETS}, got {kind!r}")
        if isinstance(omega_0, bool) or not isinstance(omega_0, (int, float)) or omega_0 <= 0:
            raise ValueError(f"omega_0 must be a positive number, got {omega_0!r}")
        self.kind = kind
        self.omega_0 = float(omega_0)
        modules: list[nn.Module] = []
        width = self.in_features
        for i in range(layers):
            linear = nn.Linear(width, hidden)
            with torch.no_grad():
                if kind == "siren":
                    bound = 1.0 / width if i == 0 else math.sqrt(6.0 / width) / self.omega_0
                    linear.weight.uniform_(-bound, bound)
                    linear.bias.uniform_(-bound, bound)
            modules += [linear, _Sine(self.omega_0) if kind == "siren" else nn.GELU()]
            width = hidden
        out = nn.Linear(width, self.out_features)
        with torch.no_grad():
            # sin activations have variance ~1/2, GELU's roughly the same at this scale
            out.weight.normal_(0.0, gain * math.sqrt(2.0 / (width * fan_in)))
            out.bias.zero_()
        modules.append(out)
        self.net = nn.Sequential(*modules)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Kernel values ``(P, out_features)`` at ``points`` ``(P, in_features)``."""
        if points.dim() != 2 or points.shape[-1] != self.in_features:
            raise ValueError(
                f"KernelNet expected points of shape (P, {self.in_features}), got "
                f"{tuple(points.shape)}"
            )
        return self.net(points)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
