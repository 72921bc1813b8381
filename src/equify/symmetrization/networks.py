"""Small networks the symmetrizers learn: per-view weights (λ) and per-view features."""

from __future__ import annotations

from torch import nn

from equify._validation import check_int

__all__ = ["ViewEncoder"]


class ViewEncoder(nn.Sequential):
    """A tiny CNN for one view: ``(N, C, H, W) -> (N, out_features)``, any ``H, W``.

    The default λ network of :class:`~equify.symmetrization.LambdaEquitune` (``out_features=1``:
    one score per view) and feature network of :class:`~equify.symmetrization.EquiAttention`.
    It is deliberately not equivariant: the symmetrizer's combination is what makes the output
    equivariant, whatever this network computes.

    Args:
        in_channels: image channels ``C``.
        out_features: output size.
        width: channels of the hidden convolutions.
    """

    def __init__(self, in_channels: int, out_features: int = 1, width: int = 16) -> None:
        c = check_int(in_channels, "in_channels", 1)
        out = check_int(out_features, "out_features", 1)
        w = check_int(width, "width", 1)
        super().__init__(
            nn.Conv2d(c, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),  # keeps coarse layout: the orientation is visible
            nn.Flatten(),
            nn.Linear(4 * w, out),
        )
