"""Learned canonicalization without (``canon``) and with the prior (``canon-prior``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from equify.canonicalization import (
    ContinuousCanonicalizer,
    DataDrivenPrior,
    DiscreteCanonicalizer,
    EquivariantModel,
    ImagePreparation,
    OptimizationCanonicalizer,
)
from equify.canonicalization.networks import GroupScoreNetwork, VectorNetwork
from equify.groups import FiniteGroup
from equify.groups import group as parse_group
from equify.training.methods.base import (
    Method,
    MethodSetup,
    lr_schedule,
    prior_warmup_epochs,
    register,
)
from equify.training.tasks import task_of

__all__ = ["Canonicalization", "CanonicalizationWithPrior", "build_equivariant_model"]


def build_equivariant_model(
    cfg: dict[str, Any],
    predictor: nn.Module,
    data: Any | None,
    with_prior: bool,
    in_channels: int | None = None,
) -> EquivariantModel:
    """Wrap ``predictor`` with the configured canonicalizer (prior fitted on training data).

    Without ``data`` (loading a saved model), give ``in_channels``; a data-driven prior is then
    created empty and its distribution comes with the saved state dict.
    """
    a = cfg["adapt"]
    g = parse_group(a["group"])
    channels = data.in_channels if data is not None else in_channels
    if channels is None:
        raise ValueError("build_equivariant_model needs data or in_channels")
    prior: Any = None
    if with_prior:
        prior = "geodesic" if not isinstance(g, FiniteGroup) else "identity"
        if a["prior"] == "data":
            if not isinstance(g, FiniteGroup):
                raise ValueError("adapt.prior=data needs a finite group (C<n> or D<n>)")
            if data is None:
                prior = DataDrivenPrior(torch.full((g.order,), 1.0 / g.order), beta=a["beta"])
            else:
                loader = data.loader("train", cfg["evaluate"]["batch_size"], False, cfg["seed"])
                prior = DataDrivenPrior.estimate(
                    predictor, loader, g, beta=a["beta"], max_batches=20
                )
    torch.manual_seed(cfg["seed"])
    kind = a["canonicalizer"]
    task = task_of(cfg)
    own = task.make_canonicalizer(cfg, prior)  # point sets: the vector-neuron canonicalizer
    if own is not None:
        can = own
    elif kind == "continuous" or not isinstance(g, FiniteGroup):
        net = _capacity(a, lambda **kw: VectorNetwork(g, channels, **kw))
        can = ContinuousCanonicalizer(g, channels, network=net, prior=prior)
    elif kind == "optimization":  # no score network: validate_config refuses a capacity
        can = OptimizationCanonicalizer(g, channels, prior=prior)
    else:
        net = _capacity(a, lambda **kw: GroupScoreNetwork(g, channels, **kw))
        can = DiscreteCanonicalizer(g, channels, network=net, beta=a["beta"], prior=prior)
    view = getattr(can, "preparation", None)
    if isinstance(view, ImagePreparation) and view.size != a["canonicalizer_view"]:
        # the same crop and mask, another resolution (the view has no parameters)
        can.preparation = ImagePreparation(a["canonicalizer_view"], view.crop_ratio, view.mask)
    return EquivariantModel(predictor, can, out_action=task.output_action())


def _capacity(a: dict[str, Any], build: Any) -> Any:
    """``build(num_layers=..., hidden_channels=...)`` with the configured capacity, or None
    when neither ``adapt.canonicalizer_layers`` nor ``adapt.canonicalizer_width`` is set (the
    canonicalizer's default network)."""
    kw = {
        key: a[name]
        for key, name in (
            ("num_layers", "canonicalizer_layers"),
            ("hidden_channels", "canonicalizer_width"),
        )
        if a.get(name) is not None
    }
    return build(**kw) if kw else None


class _Canon(Method):
    with_prior = False

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        a = cfg["adapt"]
        model = build_equivariant_model(
            cfg, predictor, data, with_prior=self.with_prior, in_channels=in_channels
        )
        # "canon" builds its canonicalizer without a prior: aux_loss() is then only the
        # canonicalizer's own regularizer (the group-contrast loss of the optimization
        # canonicalizer, zero for the others), applied with weight 1.
        return MethodSetup(
            model,
            lr_model=0.0 if a["freeze_predictor"] else a["lr_predictor"],
            lr_other=a["lr_canonicalizer"],
            aux_weight=a["prior_weight"] if self.with_prior else 1.0,
            aux_only_epochs=prior_warmup_epochs(a) if self.with_prior else 0,
            lr_schedule=lr_schedule(a, auto="onecycle"),
        )


@register
class Canonicalization(_Canon):
    name = "canon"
    order = 2
    summary = "learned canonicalization (Kaba et al. 2023), trained on the task loss"


@register
class CanonicalizationWithPrior(_Canon):
    name = "canon-prior"
    order = 3
    summary = "learned canonicalization with the prior of Mondal et al. (2023)"
    with_prior = True
