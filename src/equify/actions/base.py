"""The :class:`Action` interface and the normalisation of group elements shared by all actions.

Convention:
    Actions are left actions: ``apply(apply(x, h), g) == apply(x, compose(g, h))``.
    ``g`` is either one element for the whole batch or one element per sample:

    * finite groups: an ``int``, a 0-d integer tensor, or a LongTensor of shape ``(B,)``
      (the ``group`` argument is then required, it says what the index means);
    * any group: an orthogonal matrix ``(d, d)`` or a batch of them ``(B, d, d)`` (floating).

    Undo an action with ``apply(y, inverse_elements(g, group), group)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from equify.groups import ContinuousGroup, FiniteGroup, Group, check_orthogonal

__all__ = ["Action", "ElementBatch", "InvariantAction", "inverse_elements", "resolve_elements"]


@dataclass(frozen=True)
class ElementBatch:
    """Group elements resolved against a batch of data.

    Attributes:
        matrices: float64 orthogonal matrices on the data's device, ``(d, d)`` when one element
            acts on the whole batch, else ``(B, d, d)``.
        indices: the finite-group indices they came from (``()`` or ``(B,)``), or None when the
            elements were given as matrices.
    """

    matrices: torch.Tensor
    indices: torch.Tensor | None

    @property
    def batched(self) -> bool:
        """True when there is one element per sample."""
        return self.matrices.dim() == 3


def resolve_elements(
    g: object,
    group: Group | None,
    batch: int,
    device: torch.device,
    dim: int | None = None,
) -> ElementBatch:
    """Validate group elements ``g`` against a batch of ``batch`` samples.

    Args:
        g: indices (int, 0-d or ``(B,)`` integer tensor) or matrices (``(d, d)``/``(B, d, d)``).
        group: the group the elements belong to; required for indices.
        batch: the data's batch size ``B``.
        device: the data's device; the returned tensors live there.
        dim: the matrix size the data needs (2 for images), or None for any.

    Returns:
        The elements as an :class:`ElementBatch`.

    Raises:
        TypeError: ``g`` is neither indices nor floating matrices, or indices come without a
            finite group.
        ValueError: wrong shape, a batch size that does not match the data, indices out of range,
            matrices that are not orthogonal or not in ``group``.
    """
    if group is not None and not isinstance(group, Group):
        raise TypeError(f"expected group to be a Group (e.g. CyclicGroup(4)), got {group!r}")
    if isinstance(g, bool):
        raise TypeError("expected group elements as indices or matrices, got a bool")
    if isinstance(g, int) or (
        isinstance(g, torch.Tensor) and not g.is_floating_point() and not g.is_complex()
    ):
        if not isinstance(group, FiniteGroup):
            raise TypeError(
                "integer group elements need their finite group, e.g. apply(x, 1, CyclicGroup(4)); "
                f"got group={group!r}. Pass orthogonal matrices to act without one."
            )
        idx = g if isinstance(g, torch.Tensor) else torch.tensor(g)
        if idx.dim() > 1:
            raise ValueError(
                f"expected one element index or a (B,) tensor of them, got shape {tuple(idx.shape)}"
            )
        if idx.dim() == 1 and idx.shape[0] != batch:
            raise ValueError(
                f"got {idx.shape[0]} group elements for a batch of {batch}: pass one element per "
                "sample or a single element for the whole batch"
            )
        if dim is not None and dim != group.dim:
            raise ValueError(
                f"{group!r} acts by {group.dim}x{group.dim} matrices on {group.dim}-D data, "
                f"got data with d = {dim}: expected (..., {group.dim}, {group.dim}) "
                "matrices or data of the group's dimension"
            )
        idx = idx.to(device)
        mats = group.matrix(idx, dtype=torch.float64, device=device)
        return ElementBatch(mats, idx)
    if isinstance(g, torch.Tensor):
        if dim is None and g.dim() < 2:
            raise ValueError(
                f"expected a (d, d) matrix or a (B, d, d) batch, got shape {tuple(g.shape)}"
            )
        d = dim if dim is not None else g.shape[-1]
        check_orthogonal(g, d, name="group element matrix")
        if g.dim() not in (2, 3):
            raise ValueError(
                f"expected a ({d}, {d}) matrix or a (B, {d}, {d}) batch, got shape {tuple(g.shape)}"
            )
        if g.dim() == 3 and g.shape[0] != batch:
            raise ValueError(
                f"got {g.shape[0]} group elements for a batch of {batch}: pass one element per "
                "sample or a single element for the whole batch"
            )
        if isinstance(group, ContinuousGroup):
            if group.dim != d:
                raise ValueError(f"{group!r} acts by {group.dim}x{group.dim} matrices, got {d}x{d}")
            group.validate(g)
        elif isinstance(group, FiniteGroup):
            group.from_matrix(g)  # raises when a matrix is not an element of the group
        return ElementBatch(g.to(device=device, dtype=torch.float64), None)
    raise TypeError(
        "expected group elements as an int, an integer tensor (finite groups) or floating "
        f"orthogonal matrices, got {type(g).__name__}"
    )


def inverse_elements(g: object, group: Group | None = None) -> object:
    """The inverses of elements given in any form :func:`resolve_elements` accepts.

    Indices are inverted by ``group``; matrices by transposition.
    """
    if isinstance(g, torch.Tensor) and g.is_floating_point():
        return g.transpose(-1, -2)
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"inverting integer elements needs their finite group, got {group!r}")
    return group.inverse(g)


def check_tensor(x: object, name: str, ndims: tuple[int, ...], shape_doc: str) -> torch.Tensor:
    """Raise TypeError/ValueError unless ``x`` is a tensor with one of the ranks ``ndims``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected {name} as a torch.Tensor {shape_doc}, got {type(x).__name__}")
    if x.dim() not in ndims:
        raise ValueError(f"expected {name} of shape {shape_doc}, got shape {tuple(x.shape)}")
    return x


class Action(ABC):
    """How group elements act on one kind of data."""

    @abstractmethod
    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Transform ``x`` by ``g`` (see the module docstring for the forms of ``g``).

        Returns a new tensor that shares no memory with ``x`` — also for the identity element
        and for :class:`InvariantAction` — so in-place operations on the result (e.g. a
        predictor's ``ReLU(inplace=True)``) never write into ``x``; ``x`` is never modified.
        An empty batch (``B = 0``, with ``(0,)`` elements) gives an empty result.
        """

    def undo(self, y: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Apply the inverse of ``g``: ``undo(apply(x, g), g) == x`` where the action is exact."""
        return self.apply(y, inverse_elements(g, group), group)

    #: True when :meth:`translate` moves the data (positions); False for data that translations
    #: leave alone (logits, scalars, vectors, images of a rotation group)
    translates: bool = False

    def translate(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Move ``x`` by the translations ``t`` ``(B, d)``: unchanged unless the data holds
        positions (:class:`~equify.actions.pointsets.PointSetAction`)."""
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InvariantAction(Action):
    """The trivial action, for outputs that must not change (class logits, scalars)."""

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Return a copy of ``x`` after checking ``g`` against the batch.

        Args:
            x: any tensor; its first dimension is the batch when ``g`` is batched.
            g: group elements (validated, then ignored).
            group: the group of ``g``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        resolve_elements(g, group, x.shape[0] if x.dim() else 1, x.device)
        return x.clone()
