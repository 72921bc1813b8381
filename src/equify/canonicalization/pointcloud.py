"""Learned canonicalization of point sets under SO(3) / O(3), with translations (SE(3) / E(3)).

Kaba et al. (ICML 2023) canonicalize point clouds with a vector-neuron network: it outputs
vectors that turn with the input, ``v(Q·x + t) = Q·v(x)``, and Gram–Schmidt makes a frame of
them (:func:`~equify.canonicalization.continuous.frames_from_vectors`, in float64, determinant
+1 for SO(3); for O(3) the frame's handedness comes from the third vector). The translation is
the centroid of the real points. The canonical form of a set is ``Qᵀ·(x − t)``, and
:class:`~equify.canonicalization.EquivariantModel` maps the predictor's output back with ``Q``
(and ``+ t`` for predicted positions), so any predictor becomes invariant (molecular properties)
or equivariant (future positions) to rotations, reflections (O(3)) and translations. Give
predicted positions the output action ``PointSetAction(PointLayout())``, which translates;
``PointAction()`` is for vectors (velocities, forces), which turn but do not move.

Inputs are packed point sets (:class:`~equify.actions.PointLayout`): positions, vectors that
turn with them (velocities), invariant scalars (atom types, charges) and a padding mask, so sets
of different sizes share a batch; padding never enters the network, the centroid or the frame.

Degenerate sets have no unique frame: a single point, a set whose points coincide, and sets
whose symmetry forces the network's vectors to vanish or to be parallel (collinear sets under
SO(3)). Their frame is the identity and they are flagged in ``result.degenerate`` (counted by the
report); their output is then exactly invariant only to the symmetries that the set has.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from equify.actions import Action, PointLayout, PointSetAction
from equify.canonicalization.base import CanonicalizationResult, Canonicalizer
from equify.canonicalization.continuous import frame_result, vectors_needed
from equify.canonicalization.discrete import check_tie_tolerance, resolve_prior
from equify.canonicalization.priors import Prior
from equify.groups import ContinuousGroup, Group
from equify.groups import group as parse_group

__all__ = ["PointCloudCanonicalizer"]


class PointCloudCanonicalizer(Canonicalizer):
    """Learned canonicalization of packed point sets for SO(3) and O(3) (and translations).

    Args:
        group: ``"SO3"`` (default) or ``"O3"`` (or a group value).
        layout: the channels of the input (:class:`~equify.actions.PointLayout`); default bare
            positions ``(B, N, 3)``.
        network: a module called as ``network(positions, mask=..., scalars=..., vectors=...)``
            (each keyword only when the layout has that part: positions ``(B, N, 3)``, mask
            ``(B, N)`` bool, scalars ``(B, N, s)``, vectors ``(B, N, v, 3)``) returning
            ``(B, k, 3)`` equivariant vectors, ``k >= 2`` (SO(3)) or 3 (O(3)). Default: a
            :class:`~equify.canonicalization.point_networks.VNCanonicalizationNetwork` of
            ``hidden`` channels and ``neighbours`` nearest neighbours.
        prior: ``"geodesic"`` (default: pulls the frame towards the identity, so that a
            pretrained predictor keeps seeing the orientations it was trained on), a Prior or
            None.
        translation: centre the sets on their real points' centroid (SE(3)/E(3)); False keeps
            the origin (sets already centred, or a model that must see absolute positions).
        hidden, neighbours, layers: the default network's width, k-nearest-neighbour count and
            depth.
        frame_tolerance: ``(atol, rtol)`` of the degenerate-frame rule; None for the per-dtype
            default (:func:`~equify.canonicalization.continuous.default_frame_tolerance`).
    """

    def __init__(
        self,
        group: Group | str = "SO3",
        layout: PointLayout | None = None,
        network: nn.Module | None = None,
        prior: Prior | str | None = "geodesic",
        translation: bool = True,
        hidden: int = 32,
        neighbours: int = 8,
        layers: int = 3,
        frame_tolerance: tuple[float, float] | None = None,
    ) -> None:
        g = parse_group(group)
        if not isinstance(g, ContinuousGroup) or g.dim != 3:
            raise ValueError(
                f"PointCloudCanonicalizer handles SO3 and O3, got {g!r}; use "
                "ContinuousCanonicalizer for SO2/O2 images and DiscreteCanonicalizer for C<n>/D<n>"
            )
        layout = layout if layout is not None else PointLayout()
        if not isinstance(layout, PointLayout):
            raise TypeError(f"layout must be a PointLayout, got {type(layout).__name__}")
        if layout.dim != 3:
            raise ValueError(f"3-D canonicalization needs layout.dim = 3, got {layout.dim}")
        super().__init__(g, PointSetAction(layout))
        self.layout = layout
        if network is None:
            from equify.canonicalization.point_networks import VNCanonicalizationNetwork

            network = VNCanonicalizationNetwork(
                out_vectors=vectors_needed(g),
                hidden=hidden,
                layers=layers,
                neighbours=neighbours,
                scalar_features=layout.scalars,
                vector_features=layout.vectors,
            )
        elif not isinstance(network, nn.Module):
            raise TypeError(f"network must be an nn.Module, got {type(network).__name__}")
        self.network = network
        self.prior = resolve_prior(prior, 1.0, "geodesic")
        self.translation = bool(translation)
        self.frame_tolerance = check_tie_tolerance(frame_tolerance, "frame_tolerance")

    def validate_input(self, x: object) -> torch.Tensor:
        return self.layout.check(x)

    def centroids(self, x: torch.Tensor) -> torch.Tensor | None:
        """``(B, 3)`` the translation part ``t(x)`` (real points' centroid), or None."""
        return self.layout.centroid(x) if self.translation else None

    def canonicalize(self, x: torch.Tensor) -> tuple[torch.Tensor, CanonicalizationResult]:
        """``(Qᵀ·(x − t), result)``; ``result.extras["translation"]`` holds ``t`` ``(B, 3)``."""
        x = self.validate_input(x)
        t = self.centroids(x)
        x0 = x if t is None else self.in_action.translate(x, -t)
        result = self.predict(x0)
        if t is not None:
            result.extras["translation"] = t
        return self.transform_input(x0, result), result

    def predict(self, x: torch.Tensor) -> CanonicalizationResult:
        """The frames of (already centred) sets ``x`` ``(B, N, C)``."""
        lay = self.layout
        kwargs: dict[str, Any] = {}
        if lay.mask:
            kwargs["mask"] = lay.point_mask(x)
        if lay.scalars:
            kwargs["scalars"] = lay.scalar_features(x)
        if lay.vectors:
            kwargs["vectors"] = lay.vector_features(x)
        v = self.network(lay.positions(x), **kwargs)
        return frame_result(v, self.group, x.shape[0], self.frame_tolerance)

    def transform_input(self, x: torch.Tensor, result: CanonicalizationResult) -> torch.Tensor:
        """``Qᵀ·x`` (positions and vectors), differentiable in ``Q``."""
        return self.in_action.apply(x, result.elements.transpose(-1, -2).to(x.dtype), self.group)

    def invert(
        self, y: torch.Tensor, out_action: Action, result: CanonicalizationResult | None = None
    ) -> torch.Tensor:
        """``Q·y``, plus ``t`` where ``out_action`` moves positions (``PointSetAction``)."""
        result = self._result(result, "invert")
        out = super().invert(y, out_action, result)
        t = result.extras.get("translation")
        return out if t is None else out_action.translate(out, t)

    def extra_repr(self) -> str:
        return f"group={self.group}, layout={self.layout}, translation={self.translation}"
