"""Module state shared across equify: the wrappers' remembered results, and evaluating a model
without leaving its mode changed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["DetachedLastResult", "device_of", "eval_mode"]


@contextlib.contextmanager
def eval_mode(model: object) -> Iterator[None]:
    """Put an ``nn.Module`` in eval mode for the block and restore its mode after, also on
    errors; any other callable is left alone."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def device_of(model: Callable) -> torch.device:
    """The device of a module's first parameter; the CPU for parameterless models and plain
    callables."""
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


class DetachedLastResult(nn.Module):
    """Mixin: ``copy.deepcopy`` and pickling keep ``last_result`` without its autograd graph.

    A non-leaf tensor cannot be deep-copied, and a graph has no business in a checkpoint, so a
    module that remembers the result of its last call (anything with a ``detach()`` method)
    stores a detached copy in its pickled state; the live module keeps the graph for its
    auxiliary losses.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if getattr(state.get("last_result"), "detach", None) is not None:
            state = dict(state)
            state["last_result"] = state["last_result"].detach()
        return state
