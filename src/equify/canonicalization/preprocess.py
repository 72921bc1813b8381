"""What the canonicalization network sees: a centre crop, a smaller resize, an optional disk mask.

As in Kaba et al. (2023) and Mondal et al. (2023), the canonicalization network only needs the
coarse orientation of the input, so it may look at a cheap, smaller view of it while the
predictor gets the full-resolution canonicalized image.

Convention:
    Every step commutes with the exact grid symmetries (90° rotations and flips) of a square
    image, so exact equivariance survives the preparation: the crop is centred with an even margin
    on every side (the crop size is rounded to the parity of the image size), the resize is
    bilinear with ``align_corners=False`` (sample positions symmetric about the centre) and
    anti-aliasing, and the mask is the inscribed disk. Images are only ever shrunk, never enlarged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import circle_mask

__all__ = ["ImagePreparation"]


def _centred_crop_size(n: int, ratio: float) -> int:
    """Crop size close to ``ratio * n`` with ``n - size`` even (a centred crop)."""
    size = max(1, round(ratio * n))
    if (n - size) % 2:
        size += 1
    return min(size, n)


class ImagePreparation(nn.Module):
    """The canonicalization network's view of an image batch.

    Args:
        size: longest side after resizing (images larger than this are shrunk, keeping the aspect
            ratio); None keeps the resolution. Default 64, as in Mondal et al. (2023).
        crop_ratio: fraction of each side kept by the centre crop (1.0: no crop).
        mask: None, or ``"circle"`` to zero everything outside the inscribed disk, so that rotated
            inputs (whose corners differ) look alike to the network. Useful for groups with
            non-90° rotations.
    """

    def __init__(self, size: int | None = 64, crop_ratio: float = 1.0, mask: str | None = None):
        super().__init__()
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive int or None, got {size!r}")
        if not isinstance(crop_ratio, (int, float)) or not 0.0 < float(crop_ratio) <= 1.0:
            raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio!r}")
        if mask not in (None, "circle"):
            raise ValueError(f"mask must be None or 'circle', got {mask!r}")
        self.size = size
        self.crop_ratio = float(crop_ratio)
        self.mask = mask

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """``(h', w')`` of the prepared view for an ``h x w`` input."""
        h, w = _centred_crop_size(h, self.crop_ratio), _centred_crop_size(w, self.crop_ratio)
        if self.size is not None and max(h, w) > self.size:
            scale = self.size / max(h, w)
            h, w = max(1, round(h * scale)), max(1, round(w * scale))
        return h, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prepare ``(B, C, H, W)`` images; returns ``(B, C, h', w')``."""
        H, W = x.shape[-2:]
        if self.crop_ratio < 1.0:
            ch, cw = _centred_crop_size(H, self.crop_ratio), _centred_crop_size(W, self.crop_ratio)
            top, left = (H - ch) // 2, (W - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        h, w = self.output_size(H, W)
        if (h, w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        if self.mask == "circle":
            x = torch.where(circle_mask(h, w, x.device), x, 0)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, crop_ratio={self.crop_ratio}, mask={self.mask!r}"
