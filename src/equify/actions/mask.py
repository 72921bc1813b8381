"""Segmentation masks ``(B, H, W)`` or ``(B, 1, H, W)``: nearest-neighbour transforms, dtype kept.

Convention:
    The same geometry as :class:`~equify.actions.image.ImageAction`. Exact elements (multiples
    of 90°, reflections) permute pixels; other angles take the label of the nearest source pixel
    and give ``fill_value`` to pixels that come from outside the frame.
"""

from __future__ import annotations

import torch

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.actions.image import exact_codes, transform_images
from equify.groups import Group

__all__ = ["MaskAction"]


class MaskAction(Action):
    """Rotations and reflections of label masks.

    Args:
        fill_value: label for pixels that a non-exact rotation brings in from outside the image
            (e.g. 0 for background or 255 for an ignore index).
    """

    def __init__(self, fill_value: int | float | bool = 0) -> None:
        if not isinstance(fill_value, (int, float, bool)):
            raise TypeError(f"fill_value must be a number, got {type(fill_value).__name__}")
        self.fill_value = fill_value

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform masks.

        Args:
            x: ``(B, H, W)`` or ``(B, 1, H, W)`` masks of any dtype (integer, bool, float).
            g: one element or ``B`` elements (indices with ``group``, or ``2x2`` matrices).
            group: the group of integer elements.

        Returns:
            Masks of the same shape, dtype and device.
        """
        check_tensor(x, "masks", (3, 4), "(B, H, W) or (B, 1, H, W)")
        if x.dim() == 4 and x.shape[1] != 1:
            raise ValueError(
                f"expected masks of shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}; "
                "use ImageAction for multi-channel maps"
            )
        el = resolve_elements(g, group, x.shape[0], x.device, dim=2)
        x4 = x if x.dim() == 4 else x.unsqueeze(1)
        if bool((exact_codes(el.matrices) >= 0).all()):
            out = transform_images(x4, el.matrices)
        else:
            # Nearest sampling of float64 copies keeps every integer label up to 2**53 exact.
            both = torch.cat([x4.double(), torch.ones_like(x4, dtype=torch.float64)], dim=1)
            moved = transform_images(both, el.matrices, mode="nearest", padding="zeros")
            values = moved[:, :1].round() if not x.is_floating_point() else moved[:, :1]
            out = torch.where(moved[:, 1:] > 0.5, values, float(self.fill_value)).to(x.dtype)
        return out if x.dim() == 4 else out.squeeze(1)

    def __repr__(self) -> str:
        return f"MaskAction(fill_value={self.fill_value!r})"
