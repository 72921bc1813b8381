"""Argument checks shared across equify's layers (depends on nothing but the standard library)."""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` when it is an ``int >= minimum``; raise TypeError/ValueError otherwise.

    Args:
        value: the argument to check (``bool`` is rejected although it is an ``int``).
        name: the argument's name, for the error message.
        minimum: the smallest allowed value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
