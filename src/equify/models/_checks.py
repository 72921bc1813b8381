"""Argument and input validation shared by the model modules."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_images", "check_positive_int", "check_probability", "check_widths"]


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` when it is an ``int >= 1``; raise TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected {name} to be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"expected {name} to be a positive int, got {value}")
    return value


def check_probability(value: object, name: str) -> float:
    """Return ``value`` as a float in ``[0, 1)``; raise TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected {name} to be a float in [0, 1), got {type(value).__name__}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"expected {name} to be a float in [0, 1), got {value}")
    return float(value)


def check_widths(value: object, name: str) -> tuple[int, ...]:
    """Return a non-empty sequence of positive ints as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise TypeError(
            f"expected {name} to be a non-empty sequence of positive ints, got {value!r}"
        )
    return tuple(check_positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


def check_images(x: object, in_channels: int, min_size: int, model: str) -> torch.Tensor:
    """Raise TypeError/ValueError unless ``x`` is a floating ``(B, in_channels, H, W)`` batch.

    Args:
        x: the input to check.
        in_channels: the channel count ``C`` the model was built for.
        min_size: the smallest ``H`` and ``W`` the model accepts.
        model: the model's name, for the message.

    Returns:
        ``x`` itself.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{model} expected a torch.Tensor of shape (B, {in_channels}, H, W), "
            f"got {type(x).__name__}"
        )
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{model} expected images of shape (B, {in_channels}, H, W), got {tuple(x.shape)}"
        )
    if x.shape[-2] < min_size or x.shape[-1] < min_size:
        raise ValueError(
            f"{model} needs H and W of at least {min_size}, got H x W = "
            f"{x.shape[-2]} x {x.shape[-1]}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{model} expected floating images, got dtype {x.dtype}")
    return x
