"""The :class:`Method` plug-in: how a pretrained predictor becomes the model a method trains.

A method says, for a configuration: which model to build around the (copied) pretrained
predictor, with which learning rates and extra-loss weight the shared
:class:`~equify.training.module.ClassifierModule` trains it, whether training images are
augmented, and whether it needs a finite group. The runner only looks methods up by name in the
registry (:func:`get_method`); adding a method is adding a module with a registered subclass
and its tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from equify.data.rotated import RotationSet
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group

__all__ = [
    "Method",
    "MethodSetup",
    "get_method",
    "lr_schedule",
    "method_names",
    "prior_warmup_epochs",
    "register",
    "unregister",
]

_REGISTRY: dict[str, Method] = {}


def lr_schedule(adapt: dict[str, Any], auto: str = "constant") -> str:
    """``adapt.lr_schedule``, with ``"auto"`` resolved to ``auto``: the canonicalization
    methods (a canonicalizer trained from scratch beside the pretrained predictor) pass
    ``"onecycle"``; fine-tuning and the symmetrizers keep the constant rates they were
    measured with."""
    schedule = adapt["lr_schedule"]
    return auto if schedule == "auto" else schedule


def prior_warmup_epochs(adapt: dict[str, Any]) -> int:
    """``adapt.prior_warmup_epochs`` as a number of epochs.

    ``"auto"`` is a fifth of ``adapt.epochs`` (rounded down), or none without a prior weight.
    """
    w = adapt["prior_warmup_epochs"]
    if w == "auto":
        return adapt["epochs"] // 5 if adapt["prior_weight"] else 0
    return w


@dataclass
class MethodSetup:
    """What :meth:`Method.build` returns: the model and how to train it.

    Attributes:
        model: the adapted model (a predictor, or a wrapper around it).
        lr_model: learning rate of the predictor's parameters (0 freezes them).
        lr_other: learning rate of the wrapper's own parameters.
        aux_weight: weight of the wrapper's ``aux_loss`` (the prior).
        augment: transformations to sample one per training input from (the task's
            ``augmentation``: a RotationSet for images, the group for 3-D point sets), or None.
        aux_only_epochs: first epochs trained on ``aux_weight * aux_loss`` alone (a prior-only
            warm-up of the canonicalizer, before the task loss joins).
        lr_schedule: ``"constant"`` or ``"onecycle"``; None follows ``adapt.lr_schedule``
            (whose ``"auto"`` is then constant: see :func:`lr_schedule`).
        extras: method-specific notes for logs.
    """

    model: nn.Module
    lr_model: float
    lr_other: float = 0.0
    aux_weight: float = 0.0
    augment: RotationSet | Group | None = None
    aux_only_epochs: int = 0
    lr_schedule: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """One adaptation method (a registered singleton per name)."""

    #: the name in ``adapt.methods`` and on the command line
    name: ClassVar[str]
    #: a one-line description for ``--help`` and the README
    summary: ClassVar[str]
    #: True when the method averages over the group's elements (C<n>/D<n> only)
    needs_finite_group: ClassVar[bool] = False
    #: position in listings (tables, ``--help``); methods outside the library come last
    order: ClassVar[int] = 100
    #: True when the method's model is meaningful untrained (``evaluate.zero_shot`` rows)
    zero_shot: ClassVar[bool] = False
    #: False when the model has no parameters besides the predictor's (then
    #: ``adapt.freeze_predictor`` would leave nothing to train)
    own_parameters: ClassVar[bool] = True

    @abstractmethod
    def build(
        self,
        cfg: dict[str, Any],
        predictor: nn.Module,
        data: Any | None,
        in_channels: int,
    ) -> MethodSetup:
        """The model around ``predictor`` (already a copy) and its training settings.

        Args:
            cfg: the resolved configuration.
            predictor: a trainable copy of the pretrained model (raw ``[0, 1]`` images in).
            data: the :class:`~equify.training.runner.DataBundle`, or None when a saved model
                is being rebuilt (then nothing may be estimated from data: the state dict brings
                every learned value).
            in_channels: image channels.
        """

    def check(self, cfg: dict[str, Any]) -> None:
        """Raise ValueError when the configuration does not fit this method."""
        if cfg["adapt"]["freeze_predictor"] is True and not self.own_parameters:
            raise ValueError(
                f"method {self.name!r} has no parameters of its own: with "
                "adapt.freeze_predictor=true it would train nothing (its untrained form is the "
                "zero-shot row: evaluate.zero_shot=true)"
            )
        if self.needs_finite_group:
            g = parse_group(cfg["adapt"]["group"])
            if not isinstance(g, FiniteGroup):
                raise ValueError(
                    f"method {self.name!r} averages over a finite group (C<n> or D<n>), got "
                    f"adapt.group {g}; use canon or canon-prior for SO2/O2 (and frames for SO3/O3)"
                )


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add one instance of ``cls`` to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove the method ``name`` from the registry (for tests and reloaded plug-ins)."""
    _REGISTRY.pop(name, None)


def get_method(name: str) -> Method:
    """The registered method ``name``; ValueError listing the valid ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(method_names())}") from None


def method_names() -> tuple[str, ...]:
    """Every registered method's name (fine-tuning, canonicalization, symmetrization, others)."""
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, list(_REGISTRY).index(n))))
