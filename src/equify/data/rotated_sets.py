"""Random-rotation views of 3-D point sets (particles, atoms, point clouds).

Convention:
    A set is a ``(B, N, 3)`` tensor of row vectors; sample ``b`` is transformed by its own
    matrix ``R_b`` as ``x @ R_b.T``, i.e. every point ``p`` becomes ``R_b p``. Vector features
    (velocities, forces) transform the same way; scalar features (charges, masses) do not, so
    they are not passed to :func:`rotate_sets`.

Example:
    >>> import torch
    >>> from equify.data import random_rotations, rotate_sets
    >>> x, v = torch.randn(4, 5, 3), torch.randn(4, 5, 3)
    >>> r = random_rotations(4, seed=1)
    >>> xr, vr = rotate_sets(r, x, v)
    >>> bool(torch.allclose(xr.norm(dim=-1), x.norm(dim=-1), atol=1e-5))
    True
"""

from __future__ import annotations

from typing import overload

import torch

from equify._validation import check_int
from equify.data.splits import check_seed
from equify.groups import O3, SO3, Group, check_orthogonal
from equify.groups import group as parse_group

__all__ = ["random_rotations", "rotate_sets"]


def random_rotations(
    n: int,
    group: str | Group = "SO3",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` Haar-random 3-D rotations (``"SO3"``) or rotations and reflections (``"O3"``).

    Drawn with :meth:`equify.groups.SO3.sample` / :meth:`equify.groups.O3.sample` from a
    ``torch.Generator`` seeded with ``seed``: the same arguments give the same matrices on every
    machine and device (they are drawn on the CPU, then moved).

    Args:
        n: number of matrices, ``>= 0``.
        group: ``"SO3"`` or ``"O3"`` (any spelling :func:`equify.groups.group` accepts) or an
            ``SO3()`` / ``O3()`` instance. O(3) samples are a Haar rotation times ``±I``, each
            sign with probability 1/2.
        seed: non-negative seed.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        Orthogonal matrices ``(n, 3, 3)``.

    Raises:
        TypeError: ``n`` or ``seed`` not an int, ``dtype`` not floating.
        ValueError: a group other than SO(3) or O(3), a negative ``n`` or ``seed``.
    """
    check_int(n, "n", 0)
    check_seed(seed)
    g = parse_group(group)
    if not isinstance(g, SO3 | O3):
        raise ValueError(f"random_rotations needs the group SO3 or O3, got {g!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    generator = torch.Generator().manual_seed(seed)
    return g.sample(n, generator=generator, dtype=dtype, device=device)


@overload
def rotate_sets(matrices: torch.Tensor, tensor: torch.Tensor, /) -> torch.Tensor: ...


@overload
def rotate_sets(
    matrices: torch.Tensor, first: torch.Tensor, second: torch.Tensor, /, *tensors: torch.Tensor
) -> tuple[torch.Tensor, ...]: ...


def rotate_sets(
    matrices: torch.Tensor, *tensors: torch.Tensor
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Transform each sample's points by its own orthogonal matrix: ``x[b] @ matrices[b].T``.

    Args:
        matrices: ``(B, 3, 3)`` orthogonal matrices (e.g. from :func:`random_rotations`).
        *tensors: one or more ``(B, ..., 3)`` floating tensors, typically ``(B, N, 3)``
            positions, velocities or targets. Each is returned in its own dtype and on its own
            device.

    Returns:
        The transformed tensor when one is given, else a tuple in the order given.

    Raises:
        TypeError: a non-tensor or non-floating input.
        ValueError: no tensors, matrices that are not ``(B, 3, 3)`` orthogonal, or a tensor
            whose batch size or last dimension does not fit.
    """
    check_orthogonal(matrices, 3, name="matrices")
    if matrices.dim() != 3:
        raise ValueError(f"expected matrices of shape (B, 3, 3), got {tuple(matrices.shape)}")
    if not tensors:
        raise ValueError("rotate_sets needs at least one tensor to transform")
    b = matrices.shape[0]
    out = []
    for k, x in enumerate(tensors):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected tensor {k} as a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"expected tensor {k} to be floating, got dtype {x.dtype}")
        if x.dim() < 2 or x.shape[0] != b or x.shape[-1] != 3:
            raise ValueError(
                f"expected tensor {k} of shape ({b}, ..., 3) to match {b} matrices, "
                f"got {tuple(x.shape)}"
            )
        r_t = matrices.to(dtype=x.dtype, device=x.device).transpose(-1, -2)
        flat = x.reshape(b, -1, 3)
        out.append((flat @ r_t).reshape(x.shape))
    return out[0] if len(out) == 1 else tuple(out)
