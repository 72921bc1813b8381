"""The wrapper most users want: canonicalize -> predict -> invert, as one ``nn.Module``."""

from __future__ import annotations

import copy

import torch
from torch import nn

from equify.actions import Action, InvariantAction
from equify.canonicalization.base import CanonicalizationResult, Canonicalizer

__all__ = ["EquivariantModel"]


class EquivariantModel(nn.Module):
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
        y = self.predictor(x_c)
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"the predictor must return a torch.Tensor, got {type(y).__name__}; wrap it to "
                "return the tensor that the output action transforms"
            )
        return self.canonicalizer.invert(y, self.out_action, result=result), result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Φ(x)``; the canonicalization is kept in ``last_result``."""
        y, result = self.forward_with_result(x)
        self.last_result = result
        return y

    def prior_loss(self, result: CanonicalizationResult | None = None) -> torch.Tensor:
        """The canonicalizer's prior on ``result`` (default: the last forward call's)."""
        return self.canonicalizer.prior_loss(result if result is not None else self.last_result)

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
