"""A small, deliberately non-equivariant per-pixel predictor (the library's "segmenter")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify.models._checks import check_images, check_positive_int

__all__ = ["DensePredictor", "coordinate_channels"]


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """Pixel-coordinate channels for a batch of images (as in CoordConv).

    Args:
        x: ``(B, C, H, W)``; only its shape, dtype and device are used.

    Returns:
        ``(B, 2, H, W)`` on ``x``'s device and dtype: channel 0 is the column coordinate
        (``-1`` at the left edge, ``+1`` at the right), channel 1 the row coordinate
        (``-1`` at the top, ``+1`` at the bottom). A size-1 axis gets 0.

    Convention:
        Coordinates are those of the memory grid (x right, y down); they are *not* rotated with
        the image, which is what makes a network fed with them position-aware.
    """
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device) if h > 1 else x.new_zeros(1)
    xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device) if w > 1 else x.new_zeros(1)
    grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=0)  # (2, H, W)
    return grid.unsqueeze(0).expand(b, -1, -1, -1)


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class DensePredictor(nn.Module):
    """A two-scale encoder-decoder mapping images to per-pixel logits at the input size.

    Layout: (optionally) two coordinate channels (:func:`coordinate_channels`) are appended to
    the input; two 3x3 conv/BN/ReLU layers at full resolution; a stride-2 3x3 conv and another
    3x3 conv at half resolution; bilinear upsampling back to exactly ``(H, W)``, concatenation
    with the full-resolution features, a 3x3 conv and a 1x1 classifier. Works at any
    ``H, W >= 1`` (odd sizes included).

    The coordinate channels make the prediction depend on absolute position, so the network is
    clearly not rotation-equivariant (even before training, and for inputs that are themselves
    symmetric); the stride-2 path breaks equivariance further at odd sizes.

    Args:
        in_channels: input channels ``C``.
        num_classes: output channels ``K`` (per-pixel logits).
        width: channels at full resolution (``2 * width`` at half resolution).
        coord_channels: append the coordinate channels to the input.

    Shape:
        - Input: ``(B, C, H, W)`` floating.
        - Output: ``(B, K, H, W)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        width: int = 32,
        coord_channels: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.width = check_positive_int(width, "width")
        if not isinstance(coord_channels, bool):
            raise TypeError(
                f"expected coord_channels to be a bool, got {type(coord_channels).__name__}"
            )
        self.coord_channels = coord_channels
        c0 = in_channels + (2 if coord_channels else 0)
        self.full_res = nn.Sequential(*_block(c0, width), *_block(width, width))
        self.down = nn.Sequential(
            *_block(width, 2 * width, stride=2), *_block(2 * width, 2 * width)
        )
        self.fuse = nn.Sequential(*_block(3 * width, width))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict per-pixel logits.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, K, H, W)`` logits.
        """
        check_images(x, self.in_channels, 1, "DensePredictor")
        if self.coord_channels:
            x = torch.cat([x, coordinate_channels(x)], dim=1)
        f = self.full_res(x)
        h = self.down(f)
        up = F.interpolate(h, size=f.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([f, up], dim=1)))
