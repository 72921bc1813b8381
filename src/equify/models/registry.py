"""Build models by name: ``create_model("small_cnn", in_channels=1, num_classes=10)``.

A model built by :func:`create_model` remembers its name and keyword arguments (see
:func:`architecture_of`), so :func:`equify.models.save_checkpoint` can store them and
:func:`equify.models.load_model` can rebuild the model without being told the architecture.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from equify.models.cnn import SmallCNN
from equify.models.dense import DensePredictor
from equify.models.efficientnet import efficientnet_lite0
from equify.models.gcnn import p4cnn, p4mcnn, p4mresnet, p4resnet
from equify.models.mobilenet import mobilenet_v2
from equify.models.partial_gcnn import full_gcnn, ordinary_cnn, partial_gcnn
from equify.models.pointset import PointTransformer
from equify.models.resnet import resnet18, resnet34, resnet50
from equify.models.unet import UNet
from equify.models.vit import PatchEmbeddingClassifier

__all__ = [
    "ARCHITECTURE_ATTRIBUTE",
    "architecture_of",
    "available_models",
    "create_model",
    "register_model",
]

#: Name of the attribute :func:`create_model` sets on the models it builds.
ARCHITECTURE_ATTRIBUTE = "equify_architecture"

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "vit_tiny": PatchEmbeddingClassifier,
    "dense": DensePredictor,
    "p4cnn": p4cnn,
    "p4mcnn": p4mcnn,
    "p4resnet": p4resnet,
    "p4mresnet": p4mresnet,
    "partial_gcnn": partial_gcnn,
    "full_gcnn": full_gcnn,
    "ordinary_cnn": ordinary_cnn,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_lite0": efficientnet_lite0,
    "unet": UNet,
    "point_transformer": PointTransformer,
}


def available_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def register_model(
    name: str, factory: Callable[..., nn.Module], *, overwrite: bool = False
) -> None:
    """Make ``create_model(name, **kwargs)`` call ``factory(**kwargs)``.

    Args:
        name: the registry name (a non-empty string).
        factory: a callable returning an ``nn.Module``.
        overwrite: replace an existing entry instead of raising.

    Raises:
        TypeError: ``name`` is not a string or ``factory`` is not callable.
        ValueError: ``name`` is empty, or taken and ``overwrite`` is False.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"expected name to be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"expected factory to be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model name {name!r} is already registered; pass overwrite=True")
    _REGISTRY[name] = factory


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: one of :func:`available_models` (``"small_cnn"``, ``"resnet18"``,
            ``"resnet34"``, ``"resnet50"``, ``"mobilenet_v2"``, ``"efficientnet_lite0"``,
            ``"vit_tiny"``, ``"dense"``, and the group CNNs
            ``"p4cnn"``, ``"p4mcnn"``, ``"p4resnet"``, ``"p4mresnet"``; the partial G-CNNs
            ``"partial_gcnn"``, ``"full_gcnn"`` and their baseline ``"ordinary_cnn"``; the
            segmentation network ``"unet"``).
        **kwargs: keyword arguments of the model's factory (e.g. ``in_channels``,
            ``num_classes``).

    Returns:
        The model (in training mode, freshly initialised), with ``name`` and ``kwargs``
        recorded for :func:`architecture_of`.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"unknown model name {name!r}; expected one of: {', '.join(available_models())}"
        )
    model = _REGISTRY[name](**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"the factory registered as {name!r} returned {type(model).__name__}, not an nn.Module"
        )
    object.__setattr__(
        model, ARCHITECTURE_ATTRIBUTE, {"name": name, "kwargs": copy.deepcopy(kwargs)}
    )
    return model


def architecture_of(model: nn.Module) -> dict[str, Any] | None:
    """``{"name": ..., "kwargs": {...}}`` for a model built by :func:`create_model`, else None.

    Returns a copy; editing it does not change the model.
    """
    spec = getattr(model, ARCHITECTURE_ATTRIBUTE, None)
    return copy.deepcopy(spec) if isinstance(spec, dict) else None
