"""The wrapper most users want: canonicalize -> predict -> invert, as one ``nn.Module``."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

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
            ``BoxAction(size)``, ``RegularAction(group)``, ``PointAction()`` (vectors: turned,
            never translated), ``PointSetAction(PointLayout())`` (positions: turned and moved
            back by the centroid of a canonicalizer that centres, as
            :class:`~equify.canonicalization.pointcloud.PointCloudCanonicalizer` does).
        prompt_actions: how the group acts on side inputs that describe the image (a
            prompt-conditioned segmenter's boxes, points or masks, as SAM takes them), one action
            per extra argument of ``forward``: ``BoxAction(size)``, ``PixelPointAction(size)``,
            ``MaskAction()``, ``ImageAction()``. Each prompt is canonicalized with its image
            (``c(x)⁻¹·p``) before the predictor sees it: ``Φ(x, p) = c(x)·φ(c(x)⁻¹·x,
            c(x)⁻¹·p)``, equivariant in ``(x, p)`` jointly. The canonicalizer looks at the image
            only.

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
        prompt_actions: Sequence[Action] | None = None,
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
        prompt_actions = tuple(prompt_actions) if prompt_actions is not None else ()
        for i, a in enumerate(prompt_actions):
            if not isinstance(a, Action):
                raise TypeError(
                    f"prompt_actions[{i}] must be an equify Action (e.g. BoxAction(size)), got "
                    f"{type(a).__name__}"
                )
        self.predictor = predictor
        self.canonicalizer = canonicalizer
        self.out_action = out_action
        self.prompt_actions = prompt_actions
        self.last_result: CanonicalizationResult | None = None

    def _check_prompts(self, x: torch.Tensor, prompts: tuple) -> None:
        if len(prompts) != len(self.prompt_actions):
            raise ValueError(
                f"this model takes {len(self.prompt_actions)} prompt(s) after the images "
                f"(prompt_actions={list(self.prompt_actions)!r}), got {len(prompts)}"
            )
        for i, (p, act) in enumerate(zip(prompts, self.prompt_actions, strict=True)):
            size = getattr(act, "image_size", None)
            if size is not None and x.dim() == 4 and tuple(size) != tuple(x.shape[-2:]):
                raise ValueError(
                    f"prompt {i}'s action {act!r} turns coordinates about the centre of "
                    f"{tuple(size)} images, but the images are {tuple(x.shape[-2:])}: build it "
                    "with the images' size"
                )
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"prompt {i} must be a torch.Tensor, got {type(p).__name__}")
            if p.dim() == 0 or p.shape[0] != x.shape[0]:
                raise ValueError(
                    f"prompt {i} must have one entry per image (batch {x.shape[0]}), got shape "
                    f"{tuple(p.shape)}"
                )

    def _move_prompts(
        self, prompts: tuple, sample: torch.Tensor | None, elements: torch.Tensor
    ) -> list[torch.Tensor]:
        """``g⁻¹·p`` for each prompt (its rows at ``sample``, or all), ``elements`` per row."""
        group = self.canonicalizer.group
        out = []
        for p, act in zip(prompts, self.prompt_actions, strict=True):
            rows = p if sample is None else p.index_select(0, sample.to(p.device))
            back = inverse_elements(self._elements(elements, rows), group)
            out.append(act.apply(rows, back, group))
        return out

    def forward_with_result(
        self, x: torch.Tensor, *prompts: torch.Tensor
    ) -> tuple[torch.Tensor, CanonicalizationResult]:
        """Explicit form: ``(Φ(x, *prompts), result)``, keeping no state.

        Args:
            x: the inputs the canonicalizer acts on, e.g. images ``(B, C, H, W)``.
            *prompts: one tensor per entry of ``prompt_actions``, batch first, e.g. boxes
                ``(B, K, 4)``.
        """
        self._check_prompts(x, prompts)
        x_c, result = self.canonicalizer.canonicalize(x)
        p_c = self._move_prompts(prompts, None, result.elements) if prompts else []
        ties = result.ties
        extra = None if ties is None else ~ties.primary
        if extra is None or not bool(extra.any()):
            y = self._predict(x_c, p_c)
            return self.canonicalizer.invert(y, self.out_action, result=result), result
        B = x.shape[0]
        t = result.extras.get("translation")  # a canonicalizer that centres (point sets)
        x0 = x if t is None else self.canonicalizer.in_action.translate(x, -t)
        x_t = self._tied_inputs(x0, x_c, result, extra)
        if prompts:
            p_t = self._move_prompts(prompts, ties.sample[extra], ties.elements[extra])
            p_c = [torch.cat([a, b]) for a, b in zip(p_c, p_t, strict=True)]
        y_all = self._predict(torch.cat([x_c, x_t]), p_c)
        y = self.canonicalizer.invert(y_all[:B], self.out_action, result=result)
        if not y.is_floating_point():
            logger.warning(
                "%d tied sample(s) keep the primary element's output: integer outputs (%s) "
                "cannot be averaged over the tie set; return logits to stay equivariant",
                int(ties.primary.sum()),
                y.dtype,
            )
            return y, result
        return self._average(y, y_all[B:], ties, extra, t), result

    def _predict(self, x: torch.Tensor, prompts: list[torch.Tensor] | None = None) -> torch.Tensor:
        y = self.predictor(x, *(prompts or ()))
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
        self,
        y: torch.Tensor,
        y_t: torch.Tensor,
        ties: TieSet,
        extra: torch.Tensor,
        translation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``Σ_t w_t · t·φ(t⁻¹·x)`` for the tied samples; other rows of ``y`` unchanged.

        ``y`` is already mapped back (with the translation, if any); ``translation`` ``(B, d)``
        moves the tied candidates' outputs the same way."""
        group = self.canonicalizer.group
        shape = (-1,) + (1,) * (y.dim() - 1)
        mapped = self.out_action.apply(y_t, self._elements(ties.elements[extra], y_t), group)
        scale = torch.ones(y.shape[0], dtype=y.dtype, device=y.device)
        prim = ties.primary.to(y.device)
        scale[ties.sample.to(y.device)[prim]] = ties.weights.to(y)[prim]
        w = ties.weights.to(y)[extra.to(y.device)]
        sample = ties.sample.to(y.device)[extra.to(y.device)]
        if translation is not None:
            mapped = self.out_action.translate(mapped, translation.index_select(0, sample))
        return (y * scale.view(shape)).index_add(0, sample, mapped * w.view(shape))

    def forward(self, x: torch.Tensor, *prompts: torch.Tensor) -> torch.Tensor:
        """``Φ(x, *prompts)``; the canonicalization is kept in ``last_result``."""
        y, result = self.forward_with_result(x, *prompts)
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
