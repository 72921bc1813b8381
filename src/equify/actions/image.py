"""Rotations and reflections of images ``(B, C, H, W)``.

Convention:
    x points right, y points down in memory; angles are measured in the display frame (y up), so a
    positive angle rotates counter-clockwise as displayed. The rotation centre is the image centre,
    pixel ``(i, j)`` sits at display coordinates ``(j - (W-1)/2, (H-1)/2 - i)``. ``(g·x)(p) =
    x(g⁻¹ p)``: the element ``CyclicGroup(4)`` 1 (90°) gives ``torch.rot90(x, 1, (-2, -1))``, and
    the reflection ``diag(-1, 1)`` gives ``torch.flip(x, (-1,))``.

    Elements whose matrix is a signed permutation (multiples of 90°, optionally with a reflection)
    take the exact path: ``torch.flip`` then ``torch.rot90``, an index permutation, bit-identical
    and free of interpolation for any size. Every other element interpolates with
    ``F.affine_grid``/``F.grid_sample`` (``align_corners=False``): corners leave the frame and are
    filled according to ``padding``; use :meth:`ImageAction.is_exact` to know which path runs.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import torch
import torch.nn.functional as F

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.groups import Group

__all__ = [
    "ImageAction",
    "check_interpolation",
    "circle_mask",
    "exact_codes",
    "transform_images",
]

logger = logging.getLogger(__name__)

_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")
_PADDINGS = ("zeros", "reflection", "border")
_MASKS = (None, "circle")
# A matrix whose entries are this close to integers counts as a signed permutation.
_EXACT_TOL = 1e-6


def check_interpolation(interpolation: object, padding: object) -> None:
    """Raise ValueError unless both are names that ``grid_sample`` accepts."""
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if padding not in _PADDINGS:
        raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")


def exact_codes(mats: torch.Tensor) -> torch.Tensor:
    """Classify 2x2 orthogonal matrices as exact grid symmetries.

    Args:
        mats: ``(..., 2, 2)`` orthogonal matrices.

    Returns:
        LongTensor ``(...)``: ``k + 4 f`` for the matrix ``R(90°·k) @ diag(-1, 1)^f`` (the flip
        first, then ``k`` quarter turns), or -1 where the matrix is not a signed permutation.
    """
    m = mats.double()
    r = m.round()
    ok = (m - r).abs().amax(dim=(-1, -2)) < _EXACT_TOL
    det = r[..., 0, 0] * r[..., 1, 1] - r[..., 0, 1] * r[..., 1, 0]
    f = det < 0
    col_sign = torch.tensor([-1.0, 1.0], dtype=torch.float64, device=m.device)
    rot = torch.where(f[..., None, None], r * col_sign, r)  # R = M S, S = diag(-1, 1)
    c, s = rot[..., 0, 0], rot[..., 1, 0]
    k = torch.where(c == 1, 0, torch.where(s == 1, 1, torch.where(c == -1, 2, 3)))
    ok = ok & (det.abs() == 1) & ((c.abs() + s.abs()) == 1)
    return torch.where(ok, k + 4 * f.long(), -1)


def _apply_code(x: torch.Tensor, code: int) -> torch.Tensor:
    """Exact transform of ``(..., H, W)`` by the code of :func:`exact_codes` (a new tensor)."""
    if code == 0:
        return x.clone()
    k, f = code % 4, code // 4
    if k % 2 == 1 and x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"a rotation by {90 * k}° needs a square image, got H x W = "
            f"{x.shape[-2]} x {x.shape[-1]}; pad or crop to a square first"
        )
    if f:
        x = torch.flip(x, (-1,))
    if k:
        x = torch.rot90(x, k, (-2, -1))
    return x


def _interpolate(x: torch.Tensor, mats: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
    """Rotate ``(B, C, H, W)`` by ``(B, 2, 2)`` matrices with ``grid_sample``."""
    if not x.is_floating_point():
        raise TypeError(
            f"rotating by an angle that is not a multiple of 90° interpolates and needs a floating "
            f"image, got dtype {x.dtype}; use MaskAction for label maps"
        )
    B, C, H, W = x.shape
    logger.debug("interpolating %d image(s) of size %dx%d (%s)", B, H, W, mode)
    # Output normalised coords p -> display coords D p -> input display R^T D p -> D^-1 R^T D p.
    d = torch.tensor([W / 2.0, -H / 2.0], dtype=torch.float64, device=x.device)
    rt = mats.transpose(-1, -2).to(device=x.device, dtype=torch.float64)
    lin = rt * d[None, :] / d[:, None]
    theta = torch.cat([lin, lin.new_zeros(B, 2, 1)], dim=-1).to(x.dtype)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)


def transform_images(
    x: torch.Tensor, mats: torch.Tensor, mode: str = "bilinear", padding: str = "zeros"
) -> torch.Tensor:
    """Transform images by planar orthogonal matrices, exactly where the matrix allows it.

    Args:
        x: ``(B, C, H, W)`` images.
        mats: ``(2, 2)`` for one element on the whole batch, or ``(B, 2, 2)`` per sample.
        mode: ``grid_sample`` interpolation for non-exact elements.
        padding: ``grid_sample`` padding mode for non-exact elements.

    Returns:
        ``(B, C, H, W)`` transformed images, always a new tensor (a copy for the identity).
    """
    B = x.shape[0]
    if B == 0:
        return x.clone()  # an empty batch: nothing to move
    if mats.dim() == 2:
        code = int(exact_codes(mats))
        if code >= 0:
            return _apply_code(x, code)
        return _interpolate(x, mats.expand(B, 2, 2), mode, padding)
    codes = exact_codes(mats)
    values = codes.unique().tolist()
    if len(values) == 1:
        if values[0] >= 0:
            return _apply_code(x, values[0])
        return _interpolate(x, mats, mode, padding)
    pieces, where = [], []
    for v in values:
        idx = (codes == v).nonzero().squeeze(1)
        sub = x.index_select(0, idx)
        pieces.append(
            _apply_code(sub, v) if v >= 0 else _interpolate(sub, mats[idx], mode, padding)
        )
        where.append(idx)
    order = torch.cat(where).argsort()
    return torch.cat(pieces, dim=0).index_select(0, order)


@lru_cache(maxsize=32)
def _circle(h: int, w: int, device: torch.device) -> torch.Tensor:
    u = torch.arange(w, dtype=torch.float64, device=device) - (w - 1) / 2
    v = torch.arange(h, dtype=torch.float64, device=device) - (h - 1) / 2
    return (u[None, :] ** 2 + v[:, None] ** 2) <= (min(h, w) / 2) ** 2


def circle_mask(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of the disk inscribed in the image, centred like the rotations.

    It is invariant under every exact grid symmetry of a square image.
    """
    return _circle(
        int(h), int(w), torch.device(device) if device is not None else torch.device("cpu")
    )


class ImageAction(Action):
    """Rotations and reflections of images ``(B, C, H, W)`` (see the module's Convention).

    Args:
        interpolation: ``"bilinear"``, ``"nearest"`` or ``"bicubic"``, for non-exact angles.
        padding: ``"zeros"``, ``"reflection"`` or ``"border"``: what fills the corners that
            a non-exact rotation brings in from outside the frame.
        mask: None, or ``"circle"`` to zero every pixel outside the inscribed disk after the
            transform (the disk never leaves the frame, so the action is then consistent at every
            angle; note that ``apply`` with the identity then masks too).

    Example:
        >>> from equify.groups import CyclicGroup
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> torch.equal(ImageAction().apply(x, 1, CyclicGroup(4)), torch.rot90(x, 1, (-2, -1)))
        True
    """

    def __init__(
        self, interpolation: str = "bilinear", padding: str = "zeros", mask: str | None = None
    ) -> None:
        check_interpolation(interpolation, padding)
        if mask not in _MASKS:
            raise ValueError(f"mask must be one of {_MASKS}, got {mask!r}")
        self.interpolation = interpolation
        self.padding = padding
        self.mask = mask

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform images.

        Args:
            x: ``(B, C, H, W)`` images, any dtype for exact elements, floating otherwise.
            g: one element or ``B`` elements (indices with ``group``, or ``2x2`` matrices).
            group: the group of integer elements.

        Returns:
            ``(B, C, H, W)``, same dtype and device as ``x``; always a new tensor, also for the
            identity, so in-place operations on the result never write into ``x``.
        """
        check_tensor(x, "images", (4,), "(B, C, H, W)")
        el = resolve_elements(g, group, x.shape[0], x.device, dim=2)
        out = transform_images(x, el.matrices, self.interpolation, self.padding)
        if self.mask == "circle":
            out = torch.where(circle_mask(x.shape[-2], x.shape[-1], x.device), out, 0)
        return out

    def is_exact(self, g: object, group: Group | None = None) -> torch.Tensor:
        """Boolean tensor (``()`` or ``(B,)``): True where ``g`` takes the exact path."""
        batch = g.shape[0] if isinstance(g, torch.Tensor) and g.dim() in (1, 3) else 1
        device = g.device if isinstance(g, torch.Tensor) else torch.device("cpu")
        el = resolve_elements(g, group, batch, device, dim=2)
        return exact_codes(el.matrices) >= 0

    def __repr__(self) -> str:
        return (
            f"ImageAction(interpolation={self.interpolation!r}, padding={self.padding!r}, "
            f"mask={self.mask!r})"
        )
