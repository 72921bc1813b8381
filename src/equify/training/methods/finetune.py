"""Fine-tuning baselines: on upright data (``vanilla``), with group augmentation (``augment``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from equify.training.methods.base import Method, MethodSetup, register
from equify.training.tasks import orbit_rotations, task_of

__all__ = ["Augmented", "Vanilla", "augment_rotations"]


def augment_rotations(group_name: str) -> Any:
    """The transformations of augmentation: the finite group, or 15° steps for SO(2)/O(2)."""
    return orbit_rotations(group_name)


@register
class Vanilla(Method):
    name = "vanilla"
    order = 0
    summary = "fine-tune the predictor on upright images"

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        return MethodSetup(predictor, lr_model=cfg["adapt"]["lr_predictor"])


@register
class Augmented(Method):
    name = "augment"
    order = 1
    summary = "fine-tune on images transformed by random group elements"

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        # the task says what to sample: image transformations, or Haar rotations of 3-D sets
        rotations = task_of(cfg).augmentation(cfg)
        return MethodSetup(predictor, lr_model=cfg["adapt"]["lr_predictor"], augment=rotations)
