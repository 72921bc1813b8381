"""A small, deliberately non-equivariant CNN classifier for MNIST-sized images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equify.models._checks import (
    check_images,
    check_positive_int,
    check_probability,
    check_widths,
)

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Conv/BN/ReLU/max-pool blocks, adaptive pooling to a fixed grid, flatten, linear head.

    The last feature map is average-pooled to a ``grid x grid`` map (``nn.AdaptiveAvgPool2d``)
    and flattened, so the head sees *where* each feature is: the network works at any input size
    ``>= 2 ** (len(channels) - 1)`` (e.g. 27, 28, 29, 32, 33) and is, like any ordinary CNN with
    a position-dependent head, neither rotation-invariant nor reflection-invariant.

    113,386 parameters by default. Trained on 4,000 MNIST digits for 3 epochs (Adam, one-cycle
    learning rate up to 3e-3, batch 64) it reaches 97.5-98% accuracy on 1,000 held-out digits,
    in about 10 s on 2 CPU cores.

    Args:
        in_channels: input channels ``C``.
        num_classes: number of output logits ``K``.
        channels: output channels of each conv block; every block but the last is followed by
            a 2x2 max pool (floor for odd sizes).
        grid: side of the pooled grid fed to the head.
        dropout: dropout probability before the head.

    Shape:
        - Input: ``(B, C, H, W)`` floating, ``H, W >= 2 ** (len(channels) - 1)``.
        - Output: ``(B, K)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        channels: Sequence[int] = (32, 64, 128),
        grid: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.channels = check_widths(channels, "channels")
        self.grid = check_positive_int(grid, "grid")
        p = check_probability(dropout, "dropout")
        layers: list[nn.Module] = []
        c_in = self.in_channels
        for i, c_out in enumerate(self.channels):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i < len(self.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(p), nn.Linear(c_in * self.grid**2, self.num_classes)
        )
        self.min_size = 2 ** (len(self.channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, K)`` logits.
        """
        check_images(x, self.in_channels, self.min_size, "SmallCNN")
        return self.head(self.pool(self.features(x)))
