"""How a finite group transforms convolution kernels: one linear map per group element.

A layer learns ``n`` coefficients per kernel; ``T[h]`` of shape ``(k², n)`` maps them to the
``k x k`` kernel transformed by the element ``h``, ``(h·K)(d) = K(h⁻¹d)`` about the centre pixel
(``k`` odd). Layers expand their filter banks with one ``einsum`` over these maps.

Kernel bases (``basis=``):

* ``"square"``: the ``k²`` pixels. Non-exact elements rotate the kernel with
  :class:`~equify.actions.ImageAction` (bilinear by default); the corners leave the frame.
* ``"disk"``: the pixels of the inscribed disk (``circle_mask``), rotated by ImageAction like
  ``"square"``; no mass is lost at the corners.
* ``"harmonic"``: Gaussian rings of radius ``r = 0 .. (k-1)/2`` (width 0.9 px) times circular
  harmonics ``cos(mφ), sin(mφ)`` with ``m <= r``, cut to the inscribed disk. These are smooth
  functions of the plane, so a rotated kernel is the *sampled rotated function*, not an
  interpolation of pixels. For ``k = 5`` that is 9 coefficients per kernel.
* ``"auto"``: ``"square"`` when every element of the group is exact (C1, C2, C4, D1, D2, D4),
  ``"harmonic"`` otherwise.

Why ``"harmonic"`` for interpolated groups: relative score error of the default
:class:`~equify.canonicalization.networks.GroupScoreNetwork` (C8, float64, random init, smooth
33x33 images, worst non-exact element, mean of 3 seeds): square+bilinear 1.32, disk+bilinear
0.41, disk+bicubic 0.19, harmonic 0.048 (64x64: 1.59 / 0.42 / 0.20 / 0.022; D8 at 33x33:
0.54 / 0.33 / 0.18 / 0.078). Masking pixel kernels to the disk helps 2-3x, harmonics another 4-8x.
tests/nn/test_kernels.py pins this ranking.

Convention:
    For the pixel bases and an exact element ``h`` (multiple of 90°, flip), ``T[h]`` is the 0/1
    permutation matrix of ``ImageAction().apply(K, h, group)``: bit-exact. The elements are
    split into left cosets ``e·h0`` of the *exact subgroup* ``E`` (the elements whose matrix is
    a signed permutation); only the representatives ``h0`` are interpolated or evaluated, and
    ``T[e·h0] = P_e T[h0]`` with the exact permutation ``P_e``. So ``T[g·h] = P_g T[h]`` holds
    to the bit for every ``g`` in ``E``: layers built on it are exactly equivariant (to float
    rounding) under ``E`` even when ``G`` has interpolated elements.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from equify.actions import ImageAction, circle_mask
from equify.groups import FiniteGroup

__all__ = [
    "KERNEL_BASES",
    "check_kernel_size",
    "exact_elements",
    "kernel_transform_basis",
    "resolve_basis",
]

#: Accepted values of the ``basis`` / ``kernel_basis`` arguments.
KERNEL_BASES = ("auto", "square", "disk", "harmonic")

# Width (pixels) of the Gaussian rings of the harmonic basis.
_RING_SIGMA = 0.9


def check_kernel_size(kernel_size: object) -> int:
    """Validate an odd, positive kernel size.

    Raises:
        TypeError: not an int.
        ValueError: not positive or even. Even kernels have no centre pixel: rotating them about
            the kernel centre moves the output grid by half a pixel, so the layer cannot be
            exactly equivariant.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
        raise TypeError(f"kernel_size must be an odd int, got {type(kernel_size).__name__}")
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd, got {kernel_size}: an even kernel has no centre pixel, so "
            "rotating or flipping it about its centre shifts the output by half a pixel and the "
            "group convolution cannot be equivariant"
        )
    return kernel_size


def exact_elements(group: FiniteGroup) -> list[int]:
    """Indices of the elements of ``group`` whose image action is exact (a pixel permutation).

    They form a subgroup: the multiples of 90°, and the flips whose axis is a multiple of 45°.
    """
    exact = ImageAction().is_exact(group.elements(), group)
    return [int(i) for i in torch.nonzero(exact).flatten()]


def resolve_basis(group: FiniteGroup, basis: str) -> str:
    """The concrete basis name for ``basis`` (``"auto"`` resolved against ``group``)."""
    if basis not in KERNEL_BASES:
        raise ValueError(f"kernel basis must be one of {KERNEL_BASES}, got {basis!r}")
    if basis == "auto":
        return "square" if len(exact_elements(group)) == group.order else "harmonic"
    return basis


def _grid_points(k: int) -> torch.Tensor:
    """Display coordinates ``(x, y)`` (y up) of the ``k²`` kernel pixels, row-major, float64."""
    c = (k - 1) / 2
    i, j = torch.meshgrid(
        torch.arange(k, dtype=torch.float64), torch.arange(k, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([j - c, c - i], dim=-1).reshape(-1, 2)


def _harmonics(points: torch.Tensor, k: int) -> torch.Tensor:
    """Ring-Gaussian circular harmonics at ``points`` ``(P, 2)``: ``(P, n)``."""
    rho = points.norm(dim=-1)
    phi = torch.atan2(points[:, 1], points[:, 0])
    # The angle is undefined at the centre: harmonics with m >= 1 vanish there (else the centre
    # pixel would keep cos(m·0) under every rotation and break steerability).
    off_centre = (rho > 1e-9).to(points.dtype)
    columns = []
    for r in range((k - 1) // 2 + 1):
        ring = torch.exp(-((rho - r) ** 2) / (2 * _RING_SIGMA**2))
        columns.append(ring)
        for m in range(1, r + 1):
            columns += [
                ring * off_centre * torch.cos(m * phi),
                ring * off_centre * torch.sin(m * phi),
            ]
    return torch.stack(columns, dim=-1)


@lru_cache(maxsize=64)
def _basis(group: FiniteGroup, k: int, basis: str, interpolation: str) -> torch.Tensor:
    disk = circle_mask(k, k).flatten().to(torch.float64)
    action = ImageAction(interpolation=interpolation)
    points = _grid_points(k)
    if basis == "harmonic":
        scale = (_harmonics(points, k) * disk[:, None]).norm(dim=0)

        def representative(h0: int) -> torch.Tensor:
            # (h0·ψ)(d) = ψ(M⁻¹ d); rows of points are d, so M⁻¹ d = d @ M (M orthogonal).
            m = group.matrix(h0)
            return _harmonics(points @ m, k) * disk[:, None] / scale

    else:
        support = torch.ones(k * k, dtype=torch.float64) if basis == "square" else disk
        where = torch.nonzero(support).flatten()
        deltas = torch.zeros(where.numel(), k * k, dtype=torch.float64)
        deltas[torch.arange(where.numel()), where] = 1.0

        def representative(h0: int) -> torch.Tensor:
            # column i of T[h0] is h0 applied to the delta image of learnable pixel i
            moved = action.apply(deltas.view(-1, 1, k, k), h0, group).reshape(-1, k * k)
            return (moved * support).T

    exact = exact_elements(group)
    maps: list[torch.Tensor | None] = [None] * group.order
    for h0 in range(group.order):
        if maps[h0] is not None:
            continue
        t = representative(h0)  # (k², n)
        images = t.T.reshape(-1, 1, k, k)
        for e in exact:
            h = int(group.compose(e, h0))
            maps[h] = action.apply(images, e, group).reshape(-1, k * k).T.contiguous()
    return torch.stack(maps)  # type: ignore[arg-type]


def kernel_transform_basis(
    group: FiniteGroup, kernel_size: int, basis: str = "auto", interpolation: str = "bilinear"
) -> torch.Tensor:
    """The linear maps ``T[h]`` from kernel coefficients to transformed ``k x k`` kernels.

    Args:
        group: the finite group ``G``.
        kernel_size: odd kernel size ``k``.
        basis: ``"auto"``, ``"square"``, ``"disk"`` or ``"harmonic"`` (module docstring).
        interpolation: ImageAction interpolation for the non-exact elements of the pixel bases.

    Returns:
        float64 CPU tensor ``(|G|, k², n)``, ``n`` coefficients per kernel (a new copy).
        ``T[h] @ coefficients`` is the row-major ``k x k`` kernel transformed by ``h``.
    """
    if not isinstance(group, FiniteGroup):
        raise TypeError(
            f"expected a finite group (CyclicGroup, DihedralGroup), got {type(group).__name__}"
        )
    k = check_kernel_size(kernel_size)
    if interpolation not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(
            f"interpolation must be 'bilinear', 'nearest' or 'bicubic', got {interpolation!r}"
        )
    return _basis(group, k, resolve_basis(group, basis), interpolation).clone()
