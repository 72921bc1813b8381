"""Axis-aligned bounding boxes ``(B, K, 4)`` in pixel ``xyxy`` coordinates.

Convention:
    Continuous pixel coordinates: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``, the image
    covers ``[0, W] x [0, H]``, and rotations turn about its centre ``(W/2, H/2)``, as images do
    in :class:`~equify.actions.image.ImageAction`. A box maps to the axis-aligned box around its
    four transformed corners: exact for multiples of 90° and reflections (then the box is the
    image box's exact counterpart, and the group law holds bit-exactly for coordinates that are
    multiples of 1/2), an enclosing box that grows for other angles. Boxes are not clipped
    unless ``clip=True``.
"""

from __future__ import annotations

import torch

from equify.actions.base import Action, check_tensor
from equify.actions.points import PixelPointAction
from equify.groups import Group

__all__ = ["BoxAction"]


class BoxAction(Action):
    """Rotations and reflections of boxes in an image of a fixed size.

    Args:
        image_size: ``H`` (square) or ``(H, W)`` of the images the boxes live in.
        clip: clip the transformed boxes to the image (breaks invertibility at other angles).
    """

    def __init__(self, image_size: int | tuple[int, int], clip: bool = False) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
        ):
            raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
        self.image_size = size
        self.clip = bool(clip)

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform boxes.

        Args:
            x: ``(B, K, 4)`` floating boxes ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``.
            g: one element or ``B`` elements (indices with ``group``, or ``2x2`` matrices).
            group: the group of integer elements.

        Returns:
            ``(B, K, 4)`` boxes, same dtype and device.
        """
        check_tensor(x, "boxes", (3,), "(B, K, 4)")
        if x.shape[-1] != 4:
            raise ValueError(f"expected boxes of shape (B, K, 4) in xyxy, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected floating boxes, got dtype {x.dtype}")
        b, k = x.shape[:2]
        x1, y1, x2, y2 = x.unbind(-1)
        # a box is its four corners: pixel points, turned as the image is
        corners = torch.stack(
            [torch.stack([x1, x2, x2, x1], -1), torch.stack([y1, y1, y2, y2], -1)], -1
        )
        moved = PixelPointAction(self.image_size).apply(corners.reshape(b, k * 4, 2), g, group)
        px, py = moved.reshape(b, k, 4, 2).unbind(-1)
        out = torch.stack([px.amin(-1), py.amin(-1), px.amax(-1), py.amax(-1)], dim=-1)
        if self.clip:
            h, w = self.image_size
            lim = torch.tensor([w, h, w, h], dtype=x.dtype, device=x.device)
            out = torch.minimum(out.clamp_min(0), lim)
        return out

    def __repr__(self) -> str:
        return f"BoxAction(image_size={self.image_size!r}, clip={self.clip})"
