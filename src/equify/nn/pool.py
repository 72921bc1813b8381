"""Pooling for group-equivariant networks: over the group axis, and exactly centred downsampling.

Why downsampling needs care (Edixhoven et al., ICCVw 2023): a layer with kernel ``k``, stride
``s`` and padding ``p`` on ``N`` pixels reads windows centred at input positions
``c_i = i·s - p + (k - 1)/2`` for ``i = 0 .. M-1``, ``M = floor((N + 2p - k)/s) + 1``. It commutes
with flips and 90° rotations only if that grid of centres is symmetric about the image centre
``(N - 1)/2``, i.e. ``c_0 + c_{M-1} = N - 1``, which simplifies to ``(M - 1)·s = N + 2p - k``:

    (N + 2p - k) ≡ 0 (mod s).

Otherwise the last ``(N + 2p - k) mod s`` pixels are silently dropped on one side only, and
rotating the input moves the dropped strip to another side. :class:`CentredPool2d` picks kernel
and padding per input size so that the condition holds for every size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify._validation import check_int as _check_int
from equify.groups import FiniteGroup
from equify.nn.gconv import check_finite_group

__all__ = ["CentredPool2d", "GroupPool", "centred_pool_geometry", "is_centred"]

_REDUCTIONS = ("mean", "max")


def is_centred(size: int, kernel_size: int, stride: int, padding: int = 0) -> bool:
    """Whether a strided layer samples a grid centred on the input (exactly rot90/flip-safe).

    Args:
        size: input length ``N`` along one axis.
        kernel_size: ``k``.
        stride: ``s``.
        padding: symmetric zero padding ``p``.

    Returns:
        True iff ``N + 2p >= k`` and ``(N + 2p - k) % s == 0``.

    Example:
        >>> is_centred(28, 3, 2, 1), is_centred(27, 3, 2, 1)
        (False, True)
    """
    n = _check_int(size, "size", 1)
    k = _check_int(kernel_size, "kernel_size", 1)
    s = _check_int(stride, "stride", 1)
    p = _check_int(padding, "padding", 0)
    span = n + 2 * p - k
    return span >= 0 and span % s == 0


def centred_pool_geometry(size: int, stride: int) -> tuple[int, int]:
    """Kernel and padding of a centred pooling with output size ``ceil(N / s)``.

    With ``r = s·ceil(N/s) - N`` (the pixels missing to a whole number of strides), the choice
    ``k = s + (r mod 2)``, ``p = ceil(r / 2)`` gives ``N + 2p - k = s·(ceil(N/s) - 1)``, so
    :func:`is_centred` holds; ``k >= s`` means every input pixel is read. For ``s = 2``: even
    ``N`` -> ``(2, 0)``, odd ``N`` -> ``(3, 1)``.

    Returns:
        ``(kernel_size, padding)``.
    """
    n = _check_int(size, "size", 1)
    s = _check_int(stride, "stride", 1)
    r = -n % s
    return s + r % 2, (r + 1) // 2


class CentredPool2d(nn.Module):
    """Downsampling by ``stride`` that is exactly equivariant to flips and 90° rotations.

    For each input size (height and width separately) the kernel and padding come from
    :func:`centred_pool_geometry`, so the sampling grid is always centred; the output is
    ``(B, C, ceil(H/s), ceil(W/s))``. It acts on every channel alike, so it commutes with the
    group-axis permutation of regular features too.

    Args:
        stride: downsampling factor ``s``.
        mode: ``"avg"`` (average, zero padding counted, a linear map) or ``"max"``.
    """

    def __init__(self, stride: int = 2, mode: str = "avg") -> None:
        super().__init__()
        self.stride = _check_int(stride, "stride", 1)
        if mode not in ("avg", "max"):
            raise ValueError(f"mode must be 'avg' or 'max', got {mode!r}")
        self.mode = mode

    def geometry(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((kh, kw), (ph, pw))`` used for an input of ``height x width``."""
        kh, ph = centred_pool_geometry(height, self.stride)
        kw, pw = centred_pool_geometry(width, self.stride)
        return (kh, kw), (ph, pw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, C, H, W)`` to ``(B, C, ceil(H/s), ceil(W/s))``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(
                "expected a tensor of shape (B, C, H, W), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if self.stride == 1:
            return x
        kernel, padding = self.geometry(x.shape[-2], x.shape[-1])
        if self.mode == "avg":
            return F.avg_pool2d(x, kernel, self.stride, padding, count_include_pad=True)
        return F.max_pool2d(x, kernel, self.stride, padding)

    def export(self) -> CentredPool2d:
        """A copy (already plain PyTorch: nothing to precompute)."""
        return CentredPool2d(self.stride, self.mode)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mode={self.mode!r}"


class GroupPool(nn.Module):
    """Pool regular features over the group axis: ``(B, C·|G|, *S) -> (B, C, *S)``.

    Invariant: the group axis is permuted by every group element, and the mean / max do not
    depend on the order. (Spatial transforms still act on the spatial axes ``*S``: the output of
    a 4-D input transforms like an image, of a 2-D input not at all.)

    Args:
        group: the finite group ``G``.
        reduction: ``"mean"`` or ``"max"``.
    """

    def __init__(self, group: FiniteGroup | str, reduction: str = "mean") -> None:
        super().__init__()
        self.group = check_finite_group(group)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, C·|G|, *S)`` (any number of trailing axes) to ``(B, C, *S)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor (B, C·|G|, ...), got {type(x).__name__}")
        n = self.group.order
        if x.dim() < 2 or x.shape[1] % n:
            raise ValueError(
                f"expected (B, C·|G|, ...) with a channel count divisible by |G| = {n} for "
                f"{self.group!r}, got shape {tuple(x.shape)}"
            )
        f = x.reshape(x.shape[0], x.shape[1] // n, n, *x.shape[2:])
        return f.mean(dim=2) if self.reduction == "mean" else f.amax(dim=2)

    def export(self) -> GroupPool:
        """A copy (already plain PyTorch: nothing to precompute)."""
        return GroupPool(self.group, self.reduction)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, reduction={self.reduction!r}"
