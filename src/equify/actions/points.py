"""Points and vectors ``(B, N, d)`` transformed by the elements' orthogonal matrices.

Convention:
    Row vectors: ``apply(x, g)[b, n] = matrix(g_b) @ x[b, n]``. Coordinates are mathematical
    (y up), matching the display frame of images: ``CyclicGroup(4)`` element 1 sends ``(1, 0)``
    to ``(0, 1)``.
"""

from __future__ import annotations

import torch

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.actions.image import exact_codes
from equify.groups import Group

__all__ = ["PixelPointAction", "PointAction"]


class PointAction(Action):
    """Rotations and reflections of point clouds and vector features."""

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform points.

        Args:
            x: ``(B, N, d)`` floating points, or ``(B, d)`` one vector per sample.
            g: one element or ``B`` elements: indices with a finite ``group`` (``d = 2``), or
                ``(d, d)`` / ``(B, d, d)`` orthogonal matrices.
            group: the group of integer elements.

        Returns:
            Same shape, dtype and device as ``x``.
        """
        check_tensor(x, "points", (2, 3), "(B, N, d) or (B, d)")
        if not x.is_floating_point():
            raise TypeError(f"expected floating points, got dtype {x.dtype}")
        el = resolve_elements(g, group, x.shape[0], x.device, dim=x.shape[-1])
        m = el.matrices.to(x.dtype)
        pts = x if x.dim() == 3 else x.unsqueeze(1)
        out = pts @ m.transpose(-1, -2) if m.dim() == 2 else torch.bmm(pts, m.transpose(-1, -2))
        return out if x.dim() == 3 else out.squeeze(1)


class PixelPointAction(Action):
    """Rotations and reflections of points given in an image's pixel coordinates (prompts).

    Points ``(B, N, 2)`` are ``(x, y)`` with x to the right and y down, in the continuous pixel
    coordinates of :class:`~equify.actions.boxes.BoxAction` (pixel ``(i, j)`` covers
    ``[j, j+1) x [i, i+1)``; its centre is ``(j + 0.5, i + 0.5)``), turned about the image
    centre ``(W/2, H/2)`` as :class:`~equify.actions.image.ImageAction` turns the image: the
    centre of pixel ``(i, j)`` goes to the centre of the pixel that pixel moves to. Multiples of
    90° and reflections are exact for coordinates that are multiples of 1/2.

    Args:
        image_size: ``H`` (square) or ``(H, W)`` of the images the points live in.
    """

    def __init__(self, image_size: int | tuple[int, int]) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
        ):
            raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
        self.image_size = size

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform pixel points.

        Args:
            x: ``(B, N, 2)`` floating ``(x, y)`` pixel coordinates.
            g: one element or ``B`` elements (indices with ``group``, or ``2x2`` matrices).
            group: the group of integer elements.

        Returns:
            ``(B, N, 2)``, same dtype and device.
        """
        check_tensor(x, "points", (3,), "(B, N, 2)")
        if x.shape[-1] != 2:
            raise ValueError(
                f"expected pixel points of shape (B, N, 2) as (x, y), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating points, got dtype {x.dtype}")
        el = resolve_elements(g, group, x.shape[0], x.device, dim=2)
        h, w = self.image_size
        codes = exact_codes(el.matrices)
        if h != w and bool(((codes >= 0) & (codes % 2 == 1)).any()):
            raise ValueError(
                f"a rotation by an odd multiple of 90° needs a square image, got H x W = {h} x {w}"
            )
        m = el.matrices.to(x.dtype)
        if m.dim() == 2:
            m = m.expand(x.shape[0], 2, 2)
        cx, cy = x[..., 0] - w / 2, h / 2 - x[..., 1]  # display frame: y up, origin centred
        u = m[:, None, 0, 0] * cx + m[:, None, 0, 1] * cy
        v = m[:, None, 1, 0] * cx + m[:, None, 1, 1] * cy
        return torch.stack([u + w / 2, h / 2 - v], dim=-1)

    def __repr__(self) -> str:
        return f"PixelPointAction(image_size={self.image_size!r})"
