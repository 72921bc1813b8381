"""Learned canonicalization for continuous groups SO(2), O(2) (and SO(3), O(3) with a user network).

An equivariant network outputs ``k`` vectors ``v(x)`` (``(B, k, d)``) with ``v(g·x) = g·v(x)``.
Gram–Schmidt turns them into an orthonormal frame ``Q(x)`` (the vectors are its columns), which
is again equivariant, ``Q(g·x) = g·Q(x)``: that frame is the canonical element ``c(x)``.

* SO(2): one vector; the second column is the first turned by +90°, so ``det Q = +1``.
* O(2): two vectors orthonormalised; ``det Q = ±1`` tells whether ``c(x)`` reflects.
* SO(3): two vectors orthonormalised, the third column is their cross product (``det = +1``).
* O(3): three vectors orthonormalised.

The canonicalized input ``Q⁻¹·x = Qᵀ·x`` is differentiable in ``Q`` (the image is resampled with
``grid_sample``), so the task loss trains the network directly — no estimator needed.
Equivariance is exact up to the network's and the resampling's discretisation: measure it with
:func:`equify.testing.equivariance_error`.
"""

from __future__ import annotations

import torch
from torch import nn

from equify.actions import Action, ImageAction, PointAction
from equify.canonicalization.base import CanonicalizationResult, Canonicalizer, check_images
from equify.canonicalization.discrete import resolve_prior
from equify.canonicalization.preprocess import ImagePreparation
from equify.canonicalization.priors import Prior
from equify.groups import ContinuousGroup, Group
from equify.groups import group as parse_group

__all__ = ["ContinuousCanonicalizer", "frame_from_vectors", "vectors_needed"]


def vectors_needed(group: ContinuousGroup) -> int:
    """How many input vectors the frame of ``group`` is built from."""
    if group.dim == 2:
        return 2 if group.has_reflections else 1
    return 3 if group.has_reflections else 2


def _unit(v: torch.Tensor, eps: float) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def frame_from_vectors(v: torch.Tensor, group: ContinuousGroup, eps: float = 1e-8) -> torch.Tensor:
    """Orthonormal frames from equivariant vectors by Gram–Schmidt.

    Args:
        v: ``(B, k, d)`` vectors, ``k >= vectors_needed(group)`` (extra vectors are ignored).
        group: SO2, O2, SO3 or O3.
        eps: floor on norms (a zero vector has no direction).

    Returns:
        ``(B, d, d)`` orthogonal matrices (computed in float64, returned in ``v``'s dtype) whose
        columns are the frame; ``Q(M v) = M Q(v)`` for every ``M`` in the group.
    """
    k = vectors_needed(group)
    if v.dim() != 3 or v.shape[-1] != group.dim or v.shape[1] < k:
        raise ValueError(
            f"{group} frames need (B, k, {group.dim}) vectors with k >= {k}, got {tuple(v.shape)}"
        )
    dtype = v.dtype
    v = v.double()  # Gram–Schmidt of nearly parallel vectors loses precision in float32
    q1 = _unit(v[:, 0], eps)
    cols = [q1]
    if group.dim == 2 and not group.has_reflections:
        cols.append(torch.stack([-q1[:, 1], q1[:, 0]], dim=-1))
    else:
        for j in range(1, k):
            w = v[:, j]
            for q in cols:
                w = w - (w * q).sum(-1, keepdim=True) * q
            cols.append(_unit(w, eps))
        if group.dim == 3 and not group.has_reflections:
            cols.append(torch.linalg.cross(cols[0], cols[1], dim=-1))
    return torch.stack(cols, dim=-1).to(dtype)


class ContinuousCanonicalizer(Canonicalizer):
    """Learned canonicalization for SO(2) and O(2) images (SO(3)/O(3) with your own network).

    Args:
        group: ``"SO2"``, ``"O2"`` (or ``"SO3"``/``"O3"``) or a group value.
        in_channels: image channels (ignored for point clouds).
        network: a module mapping the prepared input to ``(B, k, d)`` equivariant vectors.
            Default for images: :class:`~equify.canonicalization.networks.VectorNetwork` (a C_8 /
            D_8 G-CNN whose scores are projected onto vectors). SO(3)/O(3) have no default.
        prior: ``"geodesic"`` (default), a Prior or None.
        in_action: action on the predictor's input; default ``ImageAction(padding="reflection")``
            for 2-D groups and ``PointAction()`` for 3-D ones.
        preparation: the network's view of images; default ``ImagePreparation(64, mask="circle")``.
    """

    def __init__(
        self,
        group: Group | str = "SO2",
        in_channels: int = 3,
        network: nn.Module | None = None,
        prior: Prior | str | None = "geodesic",
        in_action: Action | None = None,
        preparation: nn.Module | None = None,
    ) -> None:
        g = parse_group(group)
        if not isinstance(g, ContinuousGroup):
            raise ValueError(
                f"ContinuousCanonicalizer handles SO2, O2, SO3 and O3, got {g!r}; "
                "use DiscreteCanonicalizer for C_n and D_n"
            )
        images = g.dim == 2
        if in_action is None:
            in_action = ImageAction(padding="reflection") if images else PointAction()
        super().__init__(g, in_action)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if network is not None and not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        self.images = isinstance(self.in_action, ImageAction)
        self.in_channels = in_channels
        if network is None:
            if not images:
                raise ValueError(
                    f"there is no default network for {g}: pass network= returning "
                    f"(B, {vectors_needed(g)}, 3) equivariant vectors (e.g. a vector-neuron net)"
                )
            from equify.canonicalization.networks import VectorNetwork

            network = VectorNetwork(g, in_channels)
        self.network = network
        if preparation is None and self.images:
            preparation = ImagePreparation(size=64, mask="circle")
        self.preparation = preparation if preparation is not None else nn.Identity()
        self.prior = resolve_prior(prior, 1.0, "geodesic")

    def validate_input(self, x: object) -> torch.Tensor:
        if self.images:
            return check_images(x, self.in_channels)
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.group.dim:
            raise ValueError(
                f"expected points of shape (B, N, {self.group.dim}), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating points, got dtype {x.dtype}")
        return x

    def predict(self, x: torch.Tensor) -> CanonicalizationResult:
        v = self.network(self.preparation(x))
        k = vectors_needed(self.group)
        if (
            not isinstance(v, torch.Tensor)
            or v.dim() != 3
            or v.shape[0] != x.shape[0]
            or v.shape[1] < k
            or v.shape[2] != self.group.dim
        ):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(
                f"the canonicalization network must return (B, k, d) = ({x.shape[0]}, >={k}, "
                f"{self.group.dim}) vectors for {self.group}, got {shape}"
            )
        q = frame_from_vectors(v, self.group)
        return CanonicalizationResult(self.group, q, vectors=v)

    def transform_input(self, x: torch.Tensor, result: CanonicalizationResult) -> torch.Tensor:
        """``Qᵀ·x``, differentiable in ``Q``."""
        return self.in_action.apply(x, result.elements.transpose(-1, -2).to(x.dtype), self.group)

    def extra_repr(self) -> str:
        return f"group={self.group}, in_channels={self.in_channels}, in_action={self.in_action!r}"
