"""Equizero (Basu et al., NeurIPS 2023): the view with the best proxy loss wins.

``g* = argmin_g ℓ(M(g⁻¹·x))`` for a proxy loss ``ℓ`` that needs no label, and
``Φ(x) = g*·M(g*⁻¹·x)``. The proxy of the view ``g`` of ``h·x`` is that of the view ``h⁻¹g`` of
``x``, so ``g*(h·x) = h·g*(x)`` and ``Φ`` is equivariant. Where several views tie (an input with
a symmetry: a coset of views is identical), the mapped-back outputs of the whole tie set are
averaged, with the tie rule of :mod:`equify.ties`, which keeps ``Φ`` equivariant there too.

Zero-shot use needs no training. For fine-tuning, the hard choice has no gradient: in training
mode the output is ``mean + (equizero - mean).detach()``, the straight-through estimator whose
gradient is that of group averaging (equitune).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import Action
from equify.groups import FiniteGroup
from equify.symmetrization.base import SymmetrizationResult, Symmetrizer, weighted_sum
from equify.ties import tie_mask

__all__ = ["PROXIES", "EquiZero", "entropy_proxy", "max_probability_proxy"]


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).mean(1) if v.dim() > 1 else v


def entropy_proxy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` over dim 1, averaged over the rest: ``(B,)``.

    Low entropy = a confident view. Dense logits ``(B, K, H, W)`` give the mean pixel entropy.
    """
    logp = F.log_softmax(logits, dim=1)
    return _per_sample(-(logp.exp() * logp).sum(1))


def max_probability_proxy(logits: torch.Tensor) -> torch.Tensor:
    """Minus the largest class probability (averaged over pixels for dense logits): ``(B,)``.

    The most confident view has the *lowest* proxy and wins (the argmin of the negative).
    """
    return _per_sample(-torch.softmax(logits, dim=1).amax(1))


#: Named proxy losses.
PROXIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "entropy": entropy_proxy,
    "max_prob": max_probability_proxy,
}


class EquiZero(Symmetrizer):
    """The best view under a proxy loss, mapped back; ties averaged.

    Memory: the proxies need every view's output before the choice, so the ``|G|`` mapped-back
    outputs of a batch are kept (``|G|·B`` logits: small; dense maps: ``|G|`` maps per input);
    the views themselves and the predictor's activations are dropped chunk by chunk under
    ``torch.no_grad()``.

    Args:
        predictor, group, in_action, out_action, chunk_size: as in
            :class:`~equify.symmetrization.Symmetrizer` (no feature-level form: the proxy needs
            the predictor's own outputs).
        proxy: ``"entropy"`` (default), ``"max_prob"`` or a callable mapping the predictor's
            output on a batch of views ``(B, ...)`` to ``(B,)`` losses (lower is better).
        tie_tolerance: ``(atol, rtol)`` of the tie rule on the proxies; None for the per-dtype
            default of :func:`equify.ties.tie_mask`.
        straight_through: in training mode, use the equitune gradient (default True).
    """

    def __init__(
        self,
        predictor: nn.Module,
        group: FiniteGroup | str = "C4",
        proxy: str | Callable[[torch.Tensor], torch.Tensor] = "entropy",
        tie_tolerance: tuple[float, float] | None = None,
        straight_through: bool = True,
        in_action: Action | None = None,
        out_action: Action | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(predictor, group, in_action, out_action, chunk_size)
        if isinstance(proxy, str):
            if proxy not in PROXIES:
                raise ValueError(
                    f"proxy must be one of {sorted(PROXIES)} or a callable, got {proxy!r}"
                )
            self.proxy_name, self.proxy = proxy, PROXIES[proxy]
        elif callable(proxy):
            self.proxy_name, self.proxy = getattr(proxy, "__name__", "custom"), proxy
        else:
            raise TypeError(f"proxy must be a name or a callable, got {type(proxy).__name__}")
        if tie_tolerance is not None and (
            len(tie_tolerance) != 2
            or any(not (isinstance(t, (int, float)) and t >= 0) for t in tie_tolerance)
        ):
            raise ValueError(
                f"tie_tolerance must be None or (atol, rtol) >= 0, got {tie_tolerance!r}"
            )
        self.tie_tolerance = tie_tolerance
        self.straight_through = bool(straight_through)

    def losses(self, raw: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` proxy losses of the raw outputs ``(k, B, ...)`` of ``k`` views."""
        out = []
        for y in raw:
            v = self.proxy(y)
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != (y.shape[0],):
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(
                    f"the proxy must return one loss per input, ({y.shape[0]},), got {shape}"
                )
            out.append(v)
        return torch.stack(out, dim=1)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        # the proxies are computed chunk by chunk; only the mapped-back outputs are kept
        mapped, parts = self.outputs_and(x, self.losses)
        losses = torch.cat(parts, dim=1)
        if not mapped.is_floating_point():
            raise TypeError(
                "equizero averages tied views, so the predictor's outputs must be floating "
                f"(logits), got dtype {mapped.dtype}"
            )
        atol, rtol = self.tie_tolerance or (None, None)
        if losses.shape[0]:
            scored = losses.detach() if losses.is_floating_point() else losses.detach().double()
            mask = tie_mask(-scored, atol, rtol)
        else:
            mask = torch.zeros(losses.shape, dtype=torch.bool, device=losses.device)
        weights = mask.double() / mask.sum(1, keepdim=True).clamp_min(1)
        y = weighted_sum(weights, mapped)
        if self.training and self.straight_through and torch.is_grad_enabled():
            mean = mapped.mean(0)
            y = mean + (y - mean).detach()
        chosen = losses.detach().argmin(1) if losses.shape[0] else losses.new_zeros(0).long()
        return y, SymmetrizationResult(
            self.group,
            weights,
            scores=losses,
            passes=float(self.group.order),
            extras={"chosen": chosen, "tied": mask.sum(1) > 1},
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", proxy={self.proxy_name!r}"
