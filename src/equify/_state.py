"""Module state shared by the wrappers of the canonicalization and symmetrization families."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["DetachedLastResult"]


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
