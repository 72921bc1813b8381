"""Optimization-based canonicalization (Panigrahi & Mondal, 2024).

Any network — equivariant or not — embeds all ``|G|`` transformed copies ``h⁻¹·x`` of the input;
the element whose embedding best matches a learnable reference vector wins:
``c(x) = argmax_h cos(φ(h⁻¹·x), r)``. Because the copies of ``g·x`` are the copies of ``x``
relabelled (``h⁻¹·g·x = (g⁻¹h)⁻¹·x``), the scores permute exactly by the regular representation
and ``c(g·x) = g·c(x)`` holds for every finite group — bit-exactly where the transforms are exact
(C4, D4), and within interpolation error otherwise. A group-contrast loss keeps the ``|G|``
embeddings of each input apart, so that the best match is unambiguous.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import Action
from equify.canonicalization.base import CanonicalizationResult
from equify.canonicalization.discrete import DiscreteCanonicalizer
from equify.canonicalization.priors import Prior
from equify.groups import Group

__all__ = ["EmbeddingNetwork", "OptimizationCanonicalizer", "group_contrast_loss"]


def group_contrast_loss(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean squared cosine similarity between the embeddings of different group elements.

    Args:
        embeddings: ``(B, |G|, D)``.

    Returns:
        Scalar; 0 when the ``|G|`` embeddings of each sample are mutually orthogonal.
    """
    e = F.normalize(embeddings, dim=-1)
    sim = e @ e.transpose(-1, -2)
    n = sim.shape[-1]
    if n < 2:
        return sim.new_zeros(())
    off = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    return sim[:, off].pow(2).mean()


class EmbeddingNetwork(nn.Sequential):
    """A small ordinary (non-equivariant) CNN: ``(B, C, H, W) -> (B, D)`` embeddings.

    Args:
        in_channels: input channels ``C``.
        embedding_dim: output size ``D``.
        width: channels of the hidden convolutions.
    """

    def __init__(self, in_channels: int, embedding_dim: int = 32, width: int = 16) -> None:
        super().__init__(
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.GroupNorm(1, width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GroupNorm(1, 2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # keeps coarse layout: orientation is visible to it
            nn.Flatten(),
            nn.Linear(2 * width * 16, embedding_dim),
        )


class OptimizationCanonicalizer(DiscreteCanonicalizer):
    """Canonicalization by matching embeddings of all transformed copies to a reference.

    Args:
        group: a finite group or its name.
        in_channels: input channels.
        network: any module ``(N, C, h, w) -> (N, D)``; default :class:`EmbeddingNetwork`.
        embedding_dim: ``D`` of the default network and of the reference vector.
        beta: inverse temperature on the cosine scores (they lie in [-1, 1]).
        contrast_weight: weight of :func:`group_contrast_loss` inside :meth:`prior_loss`.
        prior: ``"identity"``, a Prior or None (as in DiscreteCanonicalizer).
        in_action: how elements act on the input (default
            :func:`~equify.canonicalization.input_image_action`).
        preparation: the view the embedding network gets (default ``ImagePreparation(64)``).
        estimator: ``"straight_through"`` or ``"gumbel"``.
        tie_tolerance: ``(atol, rtol)`` of the tie rule on the cosine scores (as in
            DiscreteCanonicalizer); symmetric inputs tie exactly and are averaged over.

    Cost: ``|G|`` passes of the embedding network per input (batched together).
    """

    def __init__(
        self,
        group: Group | str = "C4",
        in_channels: int = 3,
        network: nn.Module | None = None,
        embedding_dim: int = 32,
        beta: float = 10.0,
        contrast_weight: float = 1.0,
        prior: Prior | str | None = "identity",
        in_action: Action | None = None,
        preparation: nn.Module | None = None,
        estimator: str = "straight_through",
        tie_tolerance: tuple[float, float] | None = None,
    ) -> None:
        if (
            isinstance(embedding_dim, bool)
            or not isinstance(embedding_dim, int)
            or embedding_dim < 1
        ):
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        self.embedding_dim = embedding_dim
        super().__init__(
            group,
            in_channels,
            network=network,
            beta=beta,
            estimator=estimator,
            prior=prior,
            in_action=in_action,
            preparation=preparation,
            tie_tolerance=tie_tolerance,
        )
        self.reference = nn.Parameter(torch.randn(embedding_dim))
        self.contrast_weight = float(contrast_weight)

    def default_network(self) -> nn.Module:
        return EmbeddingNetwork(self.in_channels, self.embedding_dim)

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        g = self.group
        view = self.preparation(x)
        copies = torch.stack([self.in_action.apply(view, g.inverse(h), g) for h in range(g.order)])
        B = x.shape[0]
        emb = self.network(copies.flatten(0, 1))
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] != g.order * B:
            raise ValueError(
                f"the embedding network must map (N, C, h, w) to (N, D) embeddings, got "
                f"{tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__} "
                f"for N = {g.order * B}"
            )
        if emb.shape[1] != self.reference.numel():
            raise ValueError(
                f"the embedding network returns D = {emb.shape[1]} but the reference vector has "
                f"{self.reference.numel()} entries: pass embedding_dim={emb.shape[1]}"
            )
        emb = emb.view(g.order, B, emb.shape[1]).transpose(0, 1)  # (B, |G|, D)
        ref = F.normalize(self.reference.to(emb.dtype), dim=0)
        logits = F.normalize(emb, dim=-1) @ ref
        return logits, {"embeddings": emb}

    def prior_loss(self, result: CanonicalizationResult | None = None) -> torch.Tensor:
        """The prior on the scores plus ``contrast_weight`` times the group-contrast loss."""
        result = self._result(result, "prior_loss")
        loss = super().prior_loss(result)
        emb = result.extras.get("embeddings")
        if emb is not None and self.contrast_weight and result.batch_size:
            loss = loss + self.contrast_weight * group_contrast_loss(emb)
        return loss
