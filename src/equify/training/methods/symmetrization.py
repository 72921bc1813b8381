"""The symmetrization family: ``equitune``, ``lambda-equitune``, ``equizero``, ``equiattention``.

Each wraps the predictor in a :mod:`equify.symmetrization` module over ``adapt.group`` (C<n> or
D<n>); the views are rotated with reflection padding, as the canonicalizer's inputs are, and
the outputs mapped back as the task says (class logits invariant, dense maps turned back).
``adapt.lr_predictor`` trains the predictor (``adapt.freeze_predictor`` freezes it) and
``adapt.lr_canonicalizer`` the small networks (λ, attention).
"""

from __future__ import annotations

import torch
from torch import nn

from equify.actions import Action
from equify.canonicalization import input_image_action
from equify.symmetrization import EquiAttention, EquiZero, GroupAveraging, LambdaEquitune
from equify.training.methods.base import Method, MethodSetup, register
from equify.training.tasks import task_of

__all__ = ["EquiAttentionMethod", "EquiZeroMethod", "Equitune", "LambdaEquituneMethod"]


def _outputs(cfg) -> Action:
    """How the group acts on the predictor's outputs: the task says (logits are invariant)."""
    return task_of(cfg).output_action()


class _Sym(Method):
    needs_finite_group = True

    def wrap(self, cfg, predictor: nn.Module, in_channels: int) -> nn.Module:
        raise NotImplementedError

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        a = cfg["adapt"]
        torch.manual_seed(cfg["seed"])
        model = self.wrap(cfg, predictor, in_channels)
        return MethodSetup(
            model,
            lr_model=0.0 if a["freeze_predictor"] else a["lr_predictor"],
            lr_other=a["lr_canonicalizer"],
        )


@register
class Equitune(_Sym):
    name = "equitune"
    zero_shot = True
    own_parameters = False
    order = 10
    summary = "group averaging: the mean of g·M(g⁻¹x) over the group (Basu et al. 2023)"

    def wrap(self, cfg, predictor, in_channels):
        return GroupAveraging(
            predictor,
            cfg["adapt"]["group"],
            in_action=input_image_action(),
            out_action=_outputs(cfg),
        )


@register
class LambdaEquituneMethod(_Sym):
    name = "lambda-equitune"
    order = 11
    summary = "weighted group averaging with a learned λ network (softmax weights)"

    def wrap(self, cfg, predictor, in_channels):
        return LambdaEquitune(
            predictor,
            cfg["adapt"]["group"],
            in_channels=in_channels,
            in_action=input_image_action(),
            out_action=_outputs(cfg),
        )


@register
class EquiZeroMethod(_Sym):
    name = "equizero"
    zero_shot = True
    own_parameters = False
    order = 12
    summary = "the most confident view (lowest entropy), straight-through equitune gradient"

    def wrap(self, cfg, predictor, in_channels):
        return EquiZero(
            predictor,
            cfg["adapt"]["group"],
            in_action=input_image_action(),
            out_action=_outputs(cfg),
        )


@register
class EquiAttentionMethod(_Sym):
    name = "equiattention"
    order = 13
    summary = "attention over the views decides their weights (Vlasenko et al. 2024)"

    def wrap(self, cfg, predictor, in_channels):
        return EquiAttention(
            predictor,
            cfg["adapt"]["group"],
            in_channels=in_channels,
            in_action=input_image_action(),
            out_action=_outputs(cfg),
        )
