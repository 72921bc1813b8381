"""A small U-Net (Ronneberger et al. 2015) for semantic segmentation at any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify.models._checks import check_images, check_positive_int

__all__ = ["UNet"]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 conv (same padding) + BatchNorm + ReLU layers: ``(B, c_in, H, W) -> (B, c_out,
    H, W)``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections that predicts one logit per class and pixel.

    The encoder has ``depth + 1`` double-conv blocks (3x3 conv + BatchNorm + ReLU, twice) of
    ``width * 2**i`` channels (``i = 0 .. depth``), with a 2x2 max pool before each block but the
    first. The decoder mirrors it: a 2x2 transposed convolution (stride 2) halves the channels
    and doubles the resolution, the encoder's feature map of that resolution is concatenated,
    and a double-conv block fuses them. A 1x1 convolution gives the logits.

    Any ``H, W >= 1`` works: the input is zero-padded at the bottom and right to multiples of
    ``2**depth`` and the logits are cropped back to ``H x W``. (In training mode BatchNorm needs
    more than one value per channel at the coarsest level: batch 1 with ``H, W <= 2**depth``
    fails there, as any BatchNorm network does.) The network is not rotation-equivariant.

    Args:
        in_channels: input channels ``C``.
        num_classes: number of output logits per pixel ``K`` (background included).
        width: channels of the first block; block ``i`` has ``width * 2**i``.
        depth: number of down-sampling steps (``0``: a single double-conv block and the head).

    Shape:
        - Input: ``(B, C, H, W)`` floating, any ``H, W >= 1``.
        - Output: ``(B, K, H, W)`` logits, same dtype and device as the input.

    Example:
        model = UNet(in_channels=1, num_classes=11)
        logits = model(torch.rand(2, 1, 64, 64))   # (2, 11, 64, 64)
        masks = logits.argmax(1)                   # (2, 64, 64)
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 2, width: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.width = check_positive_int(width, "width")
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"expected depth to be a non-negative int, got {type(depth).__name__}")
        if not 0 <= depth <= 8:
            raise ValueError(f"expected depth to be an int in [0, 8], got {depth}")
        self.depth = depth
        chans = [self.width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c_prev = self.in_channels
        for c in chans:
            self.encoders.append(_double_conv(c_prev, c))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.decoders.append(_double_conv(2 * chans[i], chans[i]))
        self.head = nn.Conv2d(chans[0], self.num_classes, 1)
        self.multiple = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits.

        Args:
            x: ``(B, C, H, W)`` floating images.

        Returns:
            ``(B, K, H, W)`` logits.

        Raises:
            TypeError: ``x`` not a floating tensor.
            ValueError: ``x`` not of shape ``(B, in_channels, H, W)`` with ``H, W >= 1``.
        """
        check_images(x, self.in_channels, 1, "UNet")
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, block in zip(self.ups, self.decoders, strict=True):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[..., :h, :w]
