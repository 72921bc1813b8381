"""Group averaging (equitune; Basu et al., AAAI 2023): ``Φ(x) = 1/|G| Σ_g g·M(g⁻¹·x)``."""

from __future__ import annotations

import torch

from equify.symmetrization.base import SymmetrizationResult, Symmetrizer

__all__ = ["GroupAveraging"]


class GroupAveraging(Symmetrizer):
    """Equitune: the mean of the mapped-back outputs of all ``|G|`` views.

    Args: as :class:`~equify.symmetrization.Symmetrizer` (predictor, group, in_action,
    out_action, chunk_size, head, feature_action).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = GroupAveraging(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), "C4")
        >>> model(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 3])
    """

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        n = self.group.order
        weights = torch.full((x.shape[0], n), 1.0 / n, device=x.device, dtype=torch.float64)
        y = self.combine(x, weights)
        return y, SymmetrizationResult(self.group, weights, passes=float(n))
