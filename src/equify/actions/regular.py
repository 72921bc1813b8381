"""Regular-representation feature maps ``(B, C·|G|, H, W)``: how G-CNN features transform.

Convention:
    Channel ``c·|G| + h`` holds field ``c`` at group element ``h`` (the group axis is the inner
    one, ``x.view(B, C, |G|, H, W)``). The action is ``(g·f)(p, h) = f(g⁻¹p, g⁻¹h)``: the spatial
    part is :class:`~equify.actions.image.ImageAction` and the group axis is permuted by the group
    law, ``out[:, c, h] = T_g(in[:, c, g⁻¹h])``. Vectors ``(B, C·|G|)`` (pooled features) take
    the permutation alone.
"""

from __future__ import annotations

import torch

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.actions.image import check_interpolation, transform_images
from equify.groups import FiniteGroup, Group

__all__ = ["RegularAction"]


class RegularAction(Action):
    """The regular representation of a finite group on feature maps.

    Args:
        group: the finite group ``G`` whose regular representation the channels carry.
        interpolation: spatial interpolation for non-exact elements (as in ImageAction).
        padding: spatial padding for non-exact elements (as in ImageAction).
    """

    def __init__(
        self, group: FiniteGroup, interpolation: str = "bilinear", padding: str = "zeros"
    ) -> None:
        if not isinstance(group, FiniteGroup):
            raise ValueError(
                f"RegularAction needs a finite group (CyclicGroup, DihedralGroup), got {group!r}"
            )
        check_interpolation(interpolation, padding)
        self.group = group
        self.interpolation = interpolation
        self.padding = padding

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform regular feature maps.

        Args:
            x: ``(B, C·|G|, H, W)`` feature maps or ``(B, C·|G|)`` vectors.
            g: one element or ``B`` elements of ``self.group`` (indices or matrices).
            group: optional; if given it must equal ``self.group``.

        Returns:
            Same shape, dtype and device as ``x``; always a new tensor.
        """
        if group is not None and group != self.group:
            raise ValueError(f"this RegularAction is for {self.group!r}, got elements of {group!r}")
        check_tensor(x, "regular features", (2, 4), "(B, C·|G|, H, W) or (B, C·|G|)")
        n = self.group.order
        if x.shape[1] % n:
            raise ValueError(
                f"expected a channel count divisible by |G| = {n} for {self.group!r}, "
                f"got {x.shape[1]} channels"
            )
        el = resolve_elements(g, self.group, x.shape[0], x.device, dim=2)
        idx = el.indices if el.indices is not None else self.group.from_matrix(el.matrices)
        # perm[..., h] = g^-1 h: the input slot that lands on output slot h
        inv = self.group.inverse(idx).to(x.device)
        perm = self.group.compose(inv[..., None], self.group.elements(x.device))
        B, C = x.shape[0], x.shape[1] // n
        f = x.reshape(B, C, n, *x.shape[2:])
        if perm.dim() == 1:
            f = f.index_select(2, perm)
        else:
            gather_idx = perm.view(B, 1, n, *([1] * (x.dim() - 2))).expand_as(f)
            f = torch.gather(f, 2, gather_idx)
        f = f.reshape(x.shape)
        if x.dim() == 4:
            f = transform_images(f, el.matrices, self.interpolation, self.padding)
        return f

    def __repr__(self) -> str:
        return (
            f"RegularAction({self.group!r}, interpolation={self.interpolation!r}, "
            f"padding={self.padding!r})"
        )
