"""Learned canonicalization for finite groups C_n and D_n (Kaba et al., ICML 2023).

An equivariant network scores every group element; the canonical element is the argmax:
``c(x) = argmax_h s(x)_h``. When the scores transform by the regular representation,
``s(g·x)_h = s(x)_{g⁻¹h}``, the argmax moves with the input: ``c(g·x) = g·c(x)``.

Gradients (the hard argmax has none) use a straight-through estimator. The forward pass is the
exact hard choice ``c(x)⁻¹·x`` — for C4/D4 a bit-exact index permutation — and the backward pass
is that of the soft mixture ``Σ_h p_h · h⁻¹·x`` with ``p = softmax(β·s)`` (or a Gumbel-softmax
sample in training), so the canonicalization network learns from the task loss. Training with the
task loss alone costs ``|G|`` cheap transforms of the input per step; evaluation (or
``torch.no_grad()``) transforms each input once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from equify.actions import Action
from equify.actions.image import exact_codes
from equify.canonicalization.base import (
    CanonicalizationResult,
    Canonicalizer,
    TieSet,
    check_images,
    input_image_action,
)
from equify.canonicalization.preprocess import ImagePreparation
from equify.canonicalization.priors import IdentityPrior, Prior
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group
from equify.ties import tie_mask

__all__ = ["DiscreteCanonicalizer"]

_ESTIMATORS = ("straight_through", "gumbel")


def finite_group(group: Group | str, who: str) -> FiniteGroup:
    """Parse ``group`` and require C_n or D_n."""
    g = parse_group(group)
    if not isinstance(g, FiniteGroup):
        raise ValueError(
            f"{who} handles the finite groups C_n and D_n, got {g!r}; "
            "use ContinuousCanonicalizer for SO2/O2"
        )
    return g


def is_exact_group(group: FiniteGroup) -> bool:
    """True when every element acts on images by an exact permutation (C1, C2, C4, D1, D2, D4)."""
    return bool((exact_codes(group.matrix(group.elements())) >= 0).all())


def resolve_prior(prior: Prior | str | None, beta: float, default: str) -> Prior | None:
    """``"identity"`` -> IdentityPrior, a Prior passes through, None disables the prior."""
    if prior is None or isinstance(prior, Prior):
        return prior
    if prior == "identity" and default == "identity":
        return IdentityPrior(beta=beta)
    if prior == "geodesic" and default == "geodesic":
        from equify.canonicalization.priors import GeodesicPrior

        return GeodesicPrior()
    raise ValueError(f"prior must be {default!r}, a Prior instance or None, got {prior!r}")


def check_tie_tolerance(tol: object, name: str = "tie_tolerance") -> tuple[float, float] | None:
    """None, or a pair ``(atol, rtol)`` of non-negative numbers."""
    if tol is None:
        return None
    if (
        not isinstance(tol, (tuple, list))
        or len(tol) != 2
        or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0 for t in tol)
    ):
        raise ValueError(f"{name} must be None or (atol, rtol) with both >= 0, got {tol!r}")
    return float(tol[0]), float(tol[1])


class DiscreteCanonicalizer(Canonicalizer):
    """Learned canonicalization for C_n and D_n.

    Args:
        group: ``"C4"``, ``"C8"``, ``"D4"``, ... or a CyclicGroup/DihedralGroup.
        in_channels: channels ``C`` of the input images.
        network: any module mapping the prepared view ``(B, C, h, w)`` to ``(B, |G|)`` scores that
            transform by the regular representation. Default: the native
            :class:`~equify.canonicalization.networks.GroupScoreNetwork` (exactly equivariant at
            every size for C4/D4).
        beta: inverse temperature of ``softmax(β·scores)`` for gradients and the prior.
        estimator: ``"straight_through"`` (default; deterministic) or ``"gumbel"`` (Gumbel-softmax
            sampling in training mode only; evaluation stays deterministic).
        gumbel_tau: Gumbel-softmax temperature.
        prior: ``"identity"`` (default), a :class:`~equify.canonicalization.priors.Prior` (e.g. a
            fitted DataDrivenPrior) or None.
        in_action: how elements act on the predictor's input. Default
            :func:`~equify.canonicalization.input_image_action` (bicubic, reflection padding):
            exact for 90° multiples and flips; other angles reflect the image at its border
            instead of bringing in black corners.
        preparation: the canonicalization network's view. Default ``ImagePreparation(size=64)``,
            with a disk mask for groups that have non-90° rotations.
        tie_tolerance: ``(atol, rtol)`` of the tie rule (:func:`equify.ties.tie_mask`); None for
            the per-dtype default (float32: 1e-4, float64: 1e-10), ``(0, 0)`` for exact ties only.

    Convention:
        ``elements`` is the ``argmax`` of the scores (the lowest index among equal maxima). The
        tie set — every element whose score is within ``atol + rtol · max|score|`` of the
        maximum — goes into ``result.ties``; it is non-trivial for every input with a symmetry
        (``k·x = x``, ``k ≠ e``: the scores of a coset are equal) and moves with the input, so
        :class:`~equify.canonicalization.EquivariantModel` averages over it and stays exactly
        equivariant for dense outputs too. Ties are not computed for Gumbel sampling in
        training (the choice is random there).
    """

    def __init__(
        self,
        group: Group | str = "C4",
        in_channels: int = 3,
        network: nn.Module | None = None,
        beta: float = 1.0,
        estimator: str = "straight_through",
        gumbel_tau: float = 1.0,
        prior: Prior | str | None = "identity",
        in_action: Action | None = None,
        preparation: nn.Module | None = None,
        tie_tolerance: tuple[float, float] | None = None,
    ) -> None:
        g = finite_group(group, type(self).__name__)
        super().__init__(g, in_action if in_action is not None else input_image_action())
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if not beta > 0 or not gumbel_tau > 0:
            raise ValueError(f"beta and gumbel_tau must be positive, got {beta}, {gumbel_tau}")
        if network is not None and not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        self.in_channels = in_channels
        self.beta = float(beta)
        self.estimator = estimator
        self.gumbel_tau = float(gumbel_tau)
        self.exact = is_exact_group(g)
        self.preparation = (
            preparation
            if preparation is not None
            else ImagePreparation(size=64, mask=None if self.exact else "circle")
        )
        self.network = network if network is not None else self.default_network()
        self.prior = resolve_prior(prior, self.beta, "identity")
        self.tie_tolerance = check_tie_tolerance(tie_tolerance)

    def default_network(self) -> nn.Module:
        """The native G-CNN score network for this group."""
        from equify.canonicalization.networks import GroupScoreNetwork

        return GroupScoreNetwork(self.group, self.in_channels)

    def validate_input(self, x: object) -> torch.Tensor:
        return check_images(x, self.in_channels)

    # ------------------------------------------------------------------ scoring
    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Element scores ``(B, |G|)`` of a validated batch, plus method-specific extras."""
        logits = self.network(self.preparation(x))
        self._check_scores(logits, x.shape[0])
        return logits, {}

    def _check_scores(self, logits: object, batch: int) -> None:
        order = self.group.order
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, order):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(
                f"the canonicalization network must return (B, |G|) = ({batch}, {order}) scores "
                f"for {self.group}, got {shape}"
            )

    def _select(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard choice ``(B,)`` and the soft probabilities ``(B, |G|)`` carrying gradients."""
        z = self.beta * logits
        if self.training and self.estimator == "gumbel":
            u = torch.rand_like(z).clamp_(1e-10, 1 - 1e-10)
            z = z - torch.log(-torch.log(u))
            return z.argmax(dim=1), torch.softmax(z / self.gumbel_tau, dim=1)
        return logits.argmax(dim=1), torch.softmax(z, dim=1)

    def predict(self, x: torch.Tensor) -> CanonicalizationResult:
        logits, extras = self.scores(x)
        elements, probs = self._select(logits)
        extras["probabilities"] = probs
        ties = None
        if not (self.training and self.estimator == "gumbel"):
            atol, rtol = self.tie_tolerance or (None, None)
            ties = TieSet.from_mask(tie_mask(logits, atol, rtol), elements)
        return CanonicalizationResult(
            self.group, elements.detach(), logits=logits, extras=extras, ties=ties
        )

    # ------------------------------------------------------------------ transforms
    def transform_input(self, x: torch.Tensor, result: CanonicalizationResult) -> torch.Tensor:
        """Exact hard ``c(x)⁻¹·x`` plus a zero-valued straight-through term carrying gradients."""
        g = self.group
        x_c = self.in_action.apply(x, g.inverse(result.elements), g)
        probs = result.extras.get("probabilities")
        if probs is not None and torch.is_grad_enabled() and probs.requires_grad:
            # Exactly zero in the forward pass; its gradient is that of Σ_h p_h · h⁻¹·x.
            delta = (probs - probs.detach()).to(x.dtype)
            candidates = torch.stack(
                [self.in_action.apply(x, g.inverse(h), g) for h in range(g.order)], dim=1
            )
            x_c = x_c + torch.einsum("bg,bg...->b...", delta, candidates)
        return x_c

    def extra_repr(self) -> str:
        return (
            f"group={self.group}, in_channels={self.in_channels}, beta={self.beta}, "
            f"estimator={self.estimator!r}, exact={self.exact}, tie_tolerance={self.tie_tolerance}"
        )
