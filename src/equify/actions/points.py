"""Points and vectors ``(B, N, d)`` transformed by the elements' orthogonal matrices.

Convention:
    Row vectors: ``apply(x, g)[b, n] = matrix(g_b) @ x[b, n]``. Coordinates are mathematical
    (y up), matching the display frame of images: ``CyclicGroup(4)`` element 1 sends ``(1, 0)``
    to ``(0, 1)``.
"""

from __future__ import annotations

import torch

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.groups import Group

__all__ = ["PointAction"]


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
