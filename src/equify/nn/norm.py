"""Equivariant normalization of regular feature maps.

Convention:
    Statistics are per sample and per field: the mean and variance of field ``c`` run over its
    ``|G|`` group channels ``c·|G| .. c·|G| + |G| - 1`` and all spatial positions. The affine scale
    and shift are one value per field, shared over the group axis. Both are invariant under the
    group-axis permutation and under exact spatial symmetries, so the layer is equivariant; and
    no output depends on other samples of the batch (train and eval behave alike).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify.groups import FiniteGroup
from equify.nn.gconv import check_finite_group

__all__ = ["OneValueGroupNorm", "RegularBatchNorm", "RegularGroupNorm", "group_norm"]


def group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """``F.group_norm``, also when a group holds a single value (a 1x1 map of one channel).

    ``F.group_norm`` refuses that case; mathematically ``x - mean`` is 0 there, so the output is
    the bias (0 without affine parameters).
    """
    if x.numel() and x.numel() // (x.shape[0] * num_groups) == 1:
        out = torch.zeros_like(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if weight is not None:
            out = out * weight.view(shape) + bias.view(shape)
        return out
    return F.group_norm(x, num_groups, weight, bias, eps)


class OneValueGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that also accepts groups of one value (see :func:`group_norm`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class RegularGroupNorm(nn.Module):
    """Per-sample normalization of regular features ``(B, C·|G|, *S)`` over each field.

    Equivalent to ``nn.GroupNorm(C, C·|G|)`` with its affine parameters tied across the group
    axis; :meth:`export` returns exactly that module.

    Args:
        group: the finite group ``G``.
        num_fields: ``C``, the number of regular fields.
        eps: added to the variance.
        affine: learn a scale (init 1) and shift (init 0) per field.
    """

    def __init__(
        self, group: FiniteGroup | str, num_fields: int, eps: float = 1e-5, affine: bool = True
    ) -> None:
        super().__init__()
        self.group = check_finite_group(group)
        if isinstance(num_fields, bool) or not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(f"num_fields must be a positive int, got {num_fields!r}")
        self.num_fields = num_fields
        self.eps = float(eps)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_fields))
            self.bias = nn.Parameter(torch.zeros(num_fields))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def _affine(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.weight is None:
            return None, None
        n = self.group.order
        return self.weight.repeat_interleave(n), self.bias.repeat_interleave(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``(B, C·|G|, *S)``; same shape out."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor (B, C·|G|, ...), got {type(x).__name__}")
        expected = self.num_fields * self.group.order
        if x.dim() < 2 or x.shape[1] != expected:
            raise ValueError(
                f"expected (B, {self.num_fields}·{self.group.order} = {expected}, ...) regular "
                f"features, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected a floating input, got dtype {x.dtype}")
        w, b = self._affine()
        return group_norm(x, self.num_fields, w, b, self.eps)

    def export(self) -> nn.GroupNorm:
        """An ``nn.GroupNorm`` giving the same output (affine parameters expanded, detached).

        Like every ``nn.GroupNorm`` it refuses inputs with a single value per group (a 1x1 map
        of a C1 field), which this module maps to its bias; use :class:`OneValueGroupNorm` there.
        """
        n = self.group.order
        affine = self.weight is not None
        ref = self.weight if affine else None
        norm = nn.GroupNorm(
            self.num_fields,
            self.num_fields * n,
            eps=self.eps,
            affine=affine,
            device=None if ref is None else ref.device,
            dtype=None if ref is None else ref.dtype,
        )
        if affine:
            w, b = self._affine()
            with torch.no_grad():
                norm.weight.copy_(w)
                norm.bias.copy_(b)
        return norm

    def extra_repr(self) -> str:
        return (
            f"{self.num_fields}, group={self.group!r}, eps={self.eps}, "
            f"affine={self.weight is not None}"
        )


class RegularBatchNorm(nn.BatchNorm3d):
    """Batch norm of regular features ``(B, C·|G|, H, W)`` with statistics shared over the group.

    Each field's mean and variance are taken over the batch, the group axis and the plane (one
    ``BatchNorm3d`` channel per field on the ``(B, C, |G|, H, W)`` view), and its affine
    parameters are shared over the group axis, so the layer commutes with the regular
    representation (in eval mode exactly; in training mode the batch statistics of ``g·x`` equal
    those of ``x``).

    Args:
        group: the finite group ``G``.
        num_fields: ``C``.
        eps, momentum, affine, track_running_stats: as in ``nn.BatchNorm3d``.
    """

    def __init__(
        self,
        group: FiniteGroup | str,
        num_fields: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        g = check_finite_group(group)
        if isinstance(num_fields, bool) or not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(f"num_fields must be a positive int, got {num_fields!r}")
        super().__init__(num_fields, eps, momentum, affine, track_running_stats)
        self.group = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``(B, C·|G|, *S)``; same shape out."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor (B, C·|G|, ...), got {type(x).__name__}")
        n = self.group.order
        if x.dim() < 3 or x.shape[1] != self.num_features * n:
            raise ValueError(
                f"expected (B, {self.num_features}·{n} = {self.num_features * n}, ...) regular "
                f"features, got shape {tuple(x.shape)}"
            )
        f = x.reshape(x.shape[0], self.num_features, n, *x.shape[2:])
        if f.dim() == 4:
            f = f.unsqueeze(-1)
        return super().forward(f).reshape(x.shape)

    def export(self) -> RegularBatchNorm:
        """A copy (already plain PyTorch ops)."""
        import copy

        return copy.deepcopy(self)

    def extra_repr(self) -> str:
        return f"{self.num_features}, group={self.group!r}, eps={self.eps}"
