"""The wrapper most users want: canonicalize -> predict -> invert, as one ``nn.Module``."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from equify.actions import Action, InvariantAction
from equify.actions.base import inverse_elements
from equify.canonicalization.base import (
    CanonicalizationResult,
    Canonicalizer,
    DetachedLastResult,
    TieSet,
)
from equify.groups import ContinuousGroup, FiniteGroup

logger = logging.getLogger(__name__)

__all__ = ["EquivariantModel"]


class EquivariantModel(DetachedLastResult):
    """``Φ(x) = c(x)·φ(c(x)⁻¹·x)``: any predictor made equivariant by a canonicalizer.

    Args:
        predictor: the (pretrained) network ``φ``; left unchanged.
        canonicalizer: a :class:`~equify.canonicalization.base.Canonicalizer`.
        out_action: how the group acts on the predictor's output: ``InvariantAction()``
            (default; class logits), ``ImageAction()`` for dense maps, ``MaskAction()``,
            ``BoxAction(size)``, ``RegularAction(group)``, ``PointAction()``.

    Example:
        >>> import equify, torch
        >>> from torch import nn
        >>> predictor = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
        >>> model = equify.EquivariantModel(predictor, equify.DiscreteCanonicalizer("C4", 3))
        >>> model(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 10])

    ``forward`` keeps the last canonicalization in ``last_result`` (see the stateful form in
    :mod:`equify.canonicalization.base`); :meth:`forward_with_result` returns it instead.

    Convention:
        Where ``c(x)`` is ambiguous — tied scores of an input with a symmetry, a degenerate
        frame — the result's tie set lists every candidate ``t`` with a weight ``w_t`` and
        ``Φ(x) = Σ_t w_t · t·φ(t⁻¹·x)`` (frame averaging over the tie set). The set moves with
        the input, so ``Φ`` stays equivariant for every output action, also on constant,
        blank and symmetric images. Untied samples cost one predictor pass; all passes of a
        batch go through the predictor as one batch (a predictor with BatchNorm in train mode
        then counts a tied sample once per candidate in its batch statistics). Floating outputs
        are averaged; integer outputs (labels) cannot be, and keep the primary element's output.
    """

    def __init__(
        self,
        predictor: nn.Module,
        canonicalizer: Canonicalizer,
        out_action: Action | None = None,
    ) -> None:
        super().__init__()
        if not callable(predictor):
            raise TypeError(f"predictor must be an nn.Module or callable, got {predictor!r}")
        if not isinstance(canonicalizer, Canonicalizer):
            raise TypeError(
                f"canonicalizer must be an equify Canonicalizer, got {type(canonicalizer).__name__}"
            )
        out_action = out_action if out_action is not None else InvariantAction()
        if not isinstance(out_action, Action):
            raise TypeError(f"out_action must be an equify Action, got {out_action!r}")
        self.predictor = predictor
        self.canonicalizer = canonicalizer
        self.out_action = out_action
        self.last_result: CanonicalizationResult | None = None

    def forward_with_result(self, x: torch.Tensor) -> tuple[torch.Tensor, CanonicalizationResult]:
        """Explicit form: ``(Φ(x), result)``, keeping no state."""
        x_c, result = self.canonicalizer.canonicalize(x)
        ties = result.ties
        extra = None if ties is None else ~ties.primary
        if extra is None or not bool(extra.any()):
            y = self._predict(x_c)
            return self.canonicalizer.invert(y, self.out_action, result=result), result
        B = x.shape[0]
        x_t = self._tied_inputs(x, x_c, result, extra)
        y_all = self._predict(torch.cat([x_c, x_t]))
        y = self.canonicalizer.invert(y_all[:B], self.out_action, result=result)
        if not y.is_floating_point():
            logger.warning(
                "%d tied sample(s) keep the primary element's output: integer outputs (%s) "
                "cannot be averaged over the tie set; return logits to stay equivariant",
                int(ties.primary.sum()),
                y.dtype,
            )
            return y, result
        return self._average(y, y_all[B:], ties, extra), result

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        y = self.predictor(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"the predictor must return a torch.Tensor, got {type(y).__name__}; wrap it to "
                "return the tensor that the output action transforms"
            )
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"the predictor must return one output per input sample: got shape "
                f"{tuple(y.shape)} for a batch of {x.shape[0]}"
            )
        return y

    def _elements(self, elements: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if isinstance(self.canonicalizer.group, ContinuousGroup) and like.is_floating_point():
            return elements.to(like.dtype)
        return elements

    def _tied_inputs(
        self,
        x: torch.Tensor,
        x_c: torch.Tensor,
        result: CanonicalizationResult,
        extra: torch.Tensor,
    ) -> torch.Tensor:
        """``t⁻¹·x`` for the non-primary candidates.

        Finite groups: plus the primary's straight-through term, ``x_c - c⁻¹·x`` (zero in value,
        no gradient to ``x``), so the canonicalization network learns from every pass. Continuous
        groups need none: a candidate built from the frame carries the frame's graph itself.
        """
        group = self.canonicalizer.group
        act = self.canonicalizer.in_action
        ties = result.ties
        sample = ties.sample[extra].to(x.device)
        elements = self._elements(ties.elements[extra], x)
        x_s = x.index_select(0, sample)
        x_t = act.apply(x_s, inverse_elements(elements, group), group)
        if (
            isinstance(group, FiniteGroup)
            and torch.is_grad_enabled()
            and x_c.requires_grad
            and x_c.is_floating_point()
        ):
            chosen = result.elements.to(x.device).index_select(0, sample)
            hard = act.apply(x_s, group.inverse(chosen), group)
            x_t = x_t + (x_c.index_select(0, sample) - hard)
        return x_t

    def _average(
        self, y: torch.Tensor, y_t: torch.Tensor, ties: TieSet, extra: torch.Tensor
    ) -> torch.Tensor:
        """``Σ_t w_t · t·φ(t⁻¹·x)`` for the tied samples; other rows of ``y`` unchanged."""
        group = self.canonicalizer.group
        shape = (-1,) + (1,) * (y.dim() - 1)
        mapped = self.out_action.apply(y_t, self._elements(ties.elements[extra], y_t), group)
        scale = torch.ones(y.shape[0], dtype=y.dtype, device=y.device)
        prim = ties.primary.to(y.device)
        scale[ties.sample.to(y.device)[prim]] = ties.weights.to(y)[prim]
        w = ties.weights.to(y)[extra.to(y.device)]
        sample = ties.sample.to(y.device)[extra.to(y.device)]
        return (y * scale.view(shape)).index_add(0, sample, mapped * w.view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Φ(x)``; the canonicalization is kept in ``last_result``."""
        y, result = self.forward_with_result(x)
        self.last_result = result
        return y

    def prior_loss(self, result: CanonicalizationResult | None = None) -> torch.Tensor:
        """The canonicalizer's prior on ``result`` (default: the last forward call's)."""
        return self.canonicalizer.prior_loss(result if result is not None else self.last_result)

    def aux_loss(self, result: CanonicalizationResult | None = None) -> torch.Tensor:
        """The wrapper protocol's extra loss: :meth:`prior_loss`."""
        return self.prior_loss(result)

    def diagnostics(self, result: CanonicalizationResult | None = None) -> dict:
        """Identity fraction, element histogram, angles of the last (or given) batch."""
        return self.canonicalizer.diagnostics(result if result is not None else self.last_result)

    def export(self) -> EquivariantModel:
        """A copy in eval mode whose canonicalization network is exported to plain PyTorch.

        Networks with an ``export()`` method (the native and escnn networks) are replaced by
        their export; others are kept. Outputs are the same up to float rounding.
        """
        exported = copy.deepcopy(self).eval()
        net = getattr(exported.canonicalizer, "network", None)
        if net is not None and callable(getattr(net, "export", None)):
            exported.canonicalizer.network = net.export()
        exported.last_result = None
        exported.canonicalizer.last_result = None
        return exported
