"""Learned weights over the views: λ-equitune (Basu et al., NeurIPS 2023) and equiattention
(Vlasenko et al., 2024).

Both compute ``Φ(x) = Σ_g w_g(x) · g·M(g⁻¹·x)`` with learned weights that permute with the
input (see :mod:`equify.symmetrization.base`), so they are equivariant whatever the networks
compute: λ-equitune scores each view on its own, ``w_g ∝ λ(g⁻¹·x)``; equiattention scores each
view from the set of all views by self-attention, which is permutation equivariant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equify._validation import check_int
from equify.actions import Action
from equify.groups import FiniteGroup
from equify.symmetrization.base import SymmetrizationResult, Symmetrizer
from equify.symmetrization.networks import ViewEncoder

__all__ = ["NORMALIZATIONS", "EquiAttention", "LambdaEquitune"]

#: How λ-equitune turns per-view scores into weights.
NORMALIZATIONS = ("softmax", "sum")


def _default_net(net: nn.Module | None, in_channels: int | None, out: int, who: str) -> nn.Module:
    if net is not None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"{who} must be an nn.Module, got {type(net).__name__}")
        return net
    if in_channels is None:
        raise ValueError(
            f"give in_channels (for the default ViewEncoder) or your own {who}, e.g. "
            "in_channels=3 for RGB images"
        )
    return ViewEncoder(in_channels, out)


class LambdaEquitune(Symmetrizer):
    """λ-equitune: ``Φ(x) = Σ_g λ(g⁻¹·x) · g·M(g⁻¹·x) / Σ_g λ(g⁻¹·x)``.

    Args:
        predictor, group, in_action, out_action, chunk_size, head, feature_action: as in
            :class:`~equify.symmetrization.Symmetrizer` (``head`` gives the feature-level form:
            the backbone's features are mapped back and combined before the head).
        weight_net: any module mapping views ``(N, ...)`` to one score each, ``(N,)`` or
            ``(N, 1)``; default a :class:`~equify.symmetrization.ViewEncoder` (needs
            ``in_channels``).
        in_channels: channels of the images, for the default ``weight_net``.
        normalization: ``"softmax"`` (default; ``w = softmax_g(s / temperature)``, the
            normalisation of Vlasenko et al., well defined for any score) or ``"sum"`` (Basu et
            al.'s ``w = λ / Σλ`` with ``λ = softplus(s)``, positive).
        temperature: of the softmax.
    """

    def __init__(
        self,
        predictor: nn.Module,
        group: FiniteGroup | str = "C4",
        weight_net: nn.Module | None = None,
        in_channels: int | None = None,
        normalization: str = "softmax",
        temperature: float = 1.0,
        in_action: Action | None = None,
        out_action: Action | None = None,
        chunk_size: int | None = None,
        head: nn.Module | None = None,
        feature_action: Action | None = None,
    ) -> None:
        super().__init__(predictor, group, in_action, out_action, chunk_size, head, feature_action)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.weight_net = _default_net(weight_net, in_channels, 1, "weight_net")
        self.normalization = normalization
        self.temperature = float(temperature)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, |G|)`` raw scores ``s(g⁻¹·x)`` of every view."""
        s = self.per_view(self.weight_net, x, "weight_net (λ network)")
        if s.dim() == 3 and s.shape[2] == 1:
            s = s[..., 0]
        if s.dim() != 2:
            raise ValueError(
                "the weight_net (λ network) must return one score per view, (N,) or (N, 1); "
                f"got {tuple(s.shape[2:])} per view"
            )
        return s.transpose(0, 1)

    def weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, |G|)`` weights from the scores."""
        if self.normalization == "softmax":
            return torch.softmax(scores / self.temperature, dim=1)
        lam = F.softplus(scores) + torch.finfo(scores.dtype).tiny
        return lam / lam.sum(dim=1, keepdim=True)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        scores = self.scores(x)
        w = self.weights(scores)
        y = self.combine(x, w)
        return y, SymmetrizationResult(self.group, w, scores=scores, passes=float(self.group.order))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", normalization={self.normalization!r}"


class _MLP(nn.Sequential):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class EquiAttention(Symmetrizer):
    """Equiattention: attention over the ``|G|`` views decides their weights.

    Each view ``g⁻¹·x`` gets a feature ``f_g`` (``feature_net``); queries, keys and values come
    from small MLPs; every view attends over all views,
    ``a_g = Σ_h softmax_h(q_g·k_h / √d) v_h``, and ``w = softmax_g(score(a_g))``. Relabelling the
    views permutes ``w`` the same way, so ``Φ(x) = Σ_g w_g · g·M(g⁻¹·x)`` is equivariant (not only
    invariant: dense outputs are mapped back by ``g`` before the sum).

    Args:
        predictor, group, in_action, out_action, chunk_size, head, feature_action: as in
            :class:`~equify.symmetrization.Symmetrizer`.
        feature_net: views ``(N, ...)`` -> features ``(N, feature_dim)``; default a
            :class:`~equify.symmetrization.ViewEncoder` (needs ``in_channels``).
        in_channels: channels of the images, for the default ``feature_net``.
        feature_dim: size of the views' features.
        hidden: size of the queries, keys and values.
    """

    def __init__(
        self,
        predictor: nn.Module,
        group: FiniteGroup | str = "C4",
        feature_net: nn.Module | None = None,
        in_channels: int | None = None,
        feature_dim: int = 32,
        hidden: int = 32,
        in_action: Action | None = None,
        out_action: Action | None = None,
        chunk_size: int | None = None,
        head: nn.Module | None = None,
        feature_action: Action | None = None,
    ) -> None:
        super().__init__(predictor, group, in_action, out_action, chunk_size, head, feature_action)
        d = check_int(feature_dim, "feature_dim", 1)
        h = check_int(hidden, "hidden", 1)
        self.feature_net = _default_net(feature_net, in_channels, d, "feature_net")
        self.feature_dim = d
        self.query, self.key, self.value = _MLP(d, h), _MLP(d, h), _MLP(d, h)
        self.score = nn.Linear(h, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, |G|, feature_dim)`` features of every view."""
        f = self.per_view(self.feature_net, x, "feature_net")
        if f.dim() != 3 or f.shape[2] != self.feature_dim:
            raise ValueError(
                f"the feature_net must return (N, {self.feature_dim}) features, got "
                f"{tuple(f.shape[2:])} per view"
            )
        return f.transpose(0, 1)

    def attention_scores(self, f: torch.Tensor) -> torch.Tensor:
        """Per-view logits ``(B, |G|)`` from features ``(B, |G|, D)``; permutation equivariant."""
        q, k, v = self.query(f), self.key(f), self.value(f)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.score(att @ v)[..., 0]

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        f = self.features(x)
        ref = next(self.score.parameters())
        scores = self.attention_scores(f.to(ref.dtype))
        w = torch.softmax(scores, dim=1)
        y = self.combine(x, w)
        return y, SymmetrizationResult(self.group, w, scores=scores, passes=float(self.group.order))
