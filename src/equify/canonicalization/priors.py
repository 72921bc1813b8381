"""Canonicalization priors (Mondal et al., NeurIPS 2023).

A pretrained predictor knows the orientations of its training data. Learned canonicalization
alone may pick any orientation consistently — equivariant, but one the predictor has never seen.
A prior regularizes the canonicalization network towards orientations the predictor knows:

* :class:`IdentityPrior`: cross-entropy of the element scores to the identity element, for
  predictors trained on upright data (the paper's canonicalization prior).
* :class:`DataDrivenPrior`: a distribution ``p`` over group elements estimated from the
  pretrained predictor's confidence on transformed training images, matched by
  ``KL(p || softmax(β·scores))``. It reduces to the identity prior when ``p`` is one-hot; it
  keeps the chosen orientation among those the predictor knows when training data are not all
  upright.
* :class:`GeodesicPrior`: for continuous groups, ``1 − cos θ`` of the geodesic angle ``θ``
  between ``c(x)`` and the identity (smooth at the identity, increasing in ``θ``), plus a smooth
  penalty on reflections for O(2)/O(3).

Every prior is an ``nn.Module`` with ``forward(result) -> scalar loss``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from equify._state import eval_mode
from equify.actions import Action, ImageAction
from equify.canonicalization.base import CanonicalizationResult
from equify.groups import ContinuousGroup, FiniteGroup

__all__ = ["DataDrivenPrior", "GeodesicPrior", "IdentityPrior", "Prior"]

logger = logging.getLogger(__name__)


class Prior(nn.Module):
    """Base class: ``forward(result)`` returns a scalar loss."""

    def forward(self, result: CanonicalizationResult) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def _logits(result: CanonicalizationResult, who: str) -> torch.Tensor:
    if not isinstance(result, CanonicalizationResult):
        raise TypeError(f"{who} expects a CanonicalizationResult, got {type(result).__name__}")
    if result.logits is None:
        raise ValueError(f"{who} needs element scores (a finite-group canonicalizer)")
    return result.logits


class IdentityPrior(Prior):
    """Cross-entropy of the (temperature-scaled) element scores to the identity element.

    Args:
        beta: inverse temperature applied to the scores, as in the canonicalizer.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, result: CanonicalizationResult) -> torch.Tensor:
        """Mean over the batch of ``-log softmax(β·scores)[identity]``."""
        logits = _logits(result, "IdentityPrior")
        target = torch.full(
            (logits.shape[0],), result.group.identity, dtype=torch.long, device=logits.device
        )
        return F.cross_entropy(self.beta * logits, target)


class DataDrivenPrior(Prior):
    """Match the element scores to a distribution ``p`` over group elements, by KL divergence.

    Args:
        distribution: ``(|G|,)`` non-negative weights (normalised here).
        beta: inverse temperature applied to the scores.

    Use :meth:`estimate` to obtain ``p`` from a pretrained predictor and training data.
    """

    def __init__(self, distribution: torch.Tensor, beta: float = 1.0) -> None:
        super().__init__()
        if not isinstance(distribution, torch.Tensor) or distribution.dim() != 1:
            raise ValueError(
                "expected distribution as a 1-D tensor of |G| weights, got "
                f"{getattr(distribution, 'shape', type(distribution).__name__)}"
            )
        p = distribution.detach().double()
        if bool((p < 0).any()) or not bool(torch.isfinite(p).all()) or float(p.sum()) <= 0:
            raise ValueError("distribution must be finite, non-negative and not all zero")
        self.register_buffer("distribution", (p / p.sum()).float())
        self.beta = float(beta)

    def forward(self, result: CanonicalizationResult) -> torch.Tensor:
        """Mean over the batch of ``KL(p || softmax(β·scores))``."""
        logits = _logits(result, "DataDrivenPrior")
        if logits.shape[1] != self.distribution.numel():
            raise ValueError(
                f"the prior has {self.distribution.numel()} elements but the scores have "
                f"{logits.shape[1]}"
            )
        p = self.distribution.to(device=logits.device, dtype=logits.dtype)
        log_q = F.log_softmax(self.beta * logits, dim=1)
        entropy_term = torch.where(p > 0, p * torch.log(p.clamp_min(1e-30)), 0.0).sum()
        return entropy_term - (p[None] * log_q).sum(1).mean()

    @classmethod
    @torch.no_grad()
    def estimate(
        cls,
        predictor: Callable[[torch.Tensor], torch.Tensor],
        data: Iterable,
        group: FiniteGroup,
        in_action: Action | None = None,
        temperature: float = 1.0,
        beta: float = 1.0,
        max_batches: int | None = None,
    ) -> DataDrivenPrior:
        """Estimate ``p`` from the pretrained predictor's confidence on transformed data.

        For every sample ``x`` and every element ``h``, the predictor is run on ``h⁻¹·x`` — the
        input it would see if the canonicalizer chose ``c(x) = h``. Its confidence (the log
        probability of the true label when labels are given, else of its top class) is turned
        into a per-sample distribution ``q_x = softmax_h(confidence / temperature)``, and
        ``p = mean_x q_x``. Upright training data give ``p`` peaked at the identity.

        Args:
            predictor: the pretrained classifier, ``(B, C, H, W) -> (B, classes)`` logits.
            data: an iterable of batches: tensors ``x`` or ``(x, y, ...)`` tuples.
            group: the finite group.
            in_action: how elements act on ``x`` (default ``ImageAction()``).
            temperature: softness of the per-sample distributions.
            beta: the prior's inverse temperature on the canonicalizer's scores.
            max_batches: stop after this many batches.

        Returns:
            The fitted prior (its ``distribution`` buffer holds ``p``).
        """
        if not isinstance(group, FiniteGroup):
            raise ValueError(f"DataDrivenPrior needs a finite group, got {group!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        action = in_action if in_action is not None else ImageAction()
        total, count = torch.zeros(group.order, dtype=torch.float64), 0
        with eval_mode(predictor):
            for i, batch in enumerate(data):
                if max_batches is not None and i >= max_batches:
                    break
                x, y = (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
                conf = []
                for h in range(group.order):
                    logp = F.log_softmax(predictor(action.apply(x, group.inverse(h), group)), 1)
                    if y is not None:
                        conf.append(logp.gather(1, y.to(logp.device).long().view(-1, 1))[:, 0])
                    else:
                        conf.append(logp.max(1).values)
                q = torch.softmax(torch.stack(conf, 1).double() / temperature, dim=1)
                total += q.sum(0).cpu()
                count += q.shape[0]
        if count == 0:
            raise ValueError("DataDrivenPrior.estimate got no data")
        p = total / count
        logger.info("data-driven prior over %s: %s", group, [round(v, 4) for v in p.tolist()])
        return cls(p, beta=beta)


class GeodesicPrior(Prior):
    """``mean(1 − cos θ)`` of the geodesic angle to the identity, for continuous groups.

    For groups with reflections, a smooth penalty ``(1 − D) / 2`` is added, where ``D`` is the
    determinant of the normalised raw vectors (``+1`` for a right-handed frame, ``-1`` for a
    reflection); the determinant of the orthonormal frame itself is ±1 and has no gradient.
    For a reflection ``Q``, ``θ`` is the angle of ``Q·diag(1, ..., 1, -1)``: the rotation that the
    frame becomes when its last raw vector crosses over to the right-handed side. That keeps the
    loss continuous across the two components of O(d), so the penalty can turn a reflected
    frame into the identity instead of trapping it (in 2-D, ``cos θ`` is then ``q₁·e₁`` on both
    components).

    Args:
        reflection_weight: weight of the reflection penalty.
    """

    def __init__(self, reflection_weight: float = 1.0) -> None:
        super().__init__()
        self.reflection_weight = float(reflection_weight)

    def forward(self, result: CanonicalizationResult) -> torch.Tensor:
        """Scalar loss over the batch."""
        if not isinstance(result, CanonicalizationResult):
            raise TypeError(f"GeodesicPrior expects a CanonicalizationResult, got {result!r}")
        group = result.group
        if not isinstance(group, ContinuousGroup):
            raise ValueError(f"GeodesicPrior needs a continuous group, got {group!r}")
        q = result.elements
        d = group.dim
        if group.has_reflections:  # rotation part Q·diag(1, ..., 1, -1): negate the last column
            refl = torch.linalg.det(q.detach().double()) < 0
            sign = torch.where(refl, -1.0, 1.0).to(q.dtype)
            rot = torch.cat([q[..., :-1], q[..., -1:] * sign[:, None, None]], dim=-1)
        else:
            rot = q
        cos = (rot.diagonal(dim1=-2, dim2=-1).sum(-1) - (d - 2)) / 2
        loss = (1 - cos).mean()
        if group.has_reflections and self.reflection_weight and result.vectors is not None:
            v = result.vectors[:, :d]
            if v.shape[1] == d:
                v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                det = torch.linalg.det(v.transpose(-1, -2))
                loss = loss + self.reflection_weight * ((1 - det) / 2).mean()
        return loss
