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

from dataclasses import dataclass

import torch
from torch import nn

from equify.actions import Action, ImageAction, PointAction
from equify.canonicalization.base import (
    CanonicalizationResult,
    Canonicalizer,
    TieSet,
    check_images,
    input_image_action,
)
from equify.canonicalization.discrete import check_tie_tolerance, resolve_prior
from equify.canonicalization.preprocess import ImagePreparation
from equify.canonicalization.priors import Prior
from equify.groups import ContinuousGroup, CyclicGroup, DihedralGroup, Group
from equify.groups import group as parse_group

__all__ = [
    "ContinuousCanonicalizer",
    "Frames",
    "default_frame_tolerance",
    "fallback_elements",
    "frame_from_vectors",
    "frame_result",
    "frames_from_vectors",
    "vectors_needed",
]


def vectors_needed(group: ContinuousGroup) -> int:
    """How many input vectors the frame of ``group`` is built from."""
    if group.dim == 2:
        return 2 if group.has_reflections else 1
    return 3 if group.has_reflections else 2


# (atol, rtol) of the frame rule per dtype of the vectors: a first vector shorter than atol has no
# direction; a later vector whose component orthogonal to the earlier ones is within
# atol + rtol·|vector| of zero is parallel to them (rounding of a symmetric input).
_FRAME_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-2),
    torch.bfloat16: (1e-2, 5e-2),
    torch.float32: (1e-6, 1e-5),
    torch.float64: (1e-12, 1e-10),
}


def default_frame_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` of the degenerate-frame rule for vectors of ``dtype``."""
    return _FRAME_TOLERANCES.get(dtype, _FRAME_TOLERANCES[torch.float32])


@dataclass(frozen=True)
class Frames:
    """Frames built from equivariant vectors, with the samples where they are not unique.

    Attributes:
        matrices: ``(B, d, d)`` orthogonal frames, always defined: the identity where
            ``degenerate``, the determinant +1 completion where ``ambiguous``.
        degenerate: ``(B,)`` bool: a vector needed for the rotation part vanished (a zero first
            vector; for SO(3)/O(3) also a second vector parallel to the first), so there is no
            direction to align.
        ambiguous: ``(B,)`` bool: the rotation part is defined but the handedness is not (O(2):
            the two vectors are parallel; O(3): the third lies in the plane of the first two).
            Both frames ``Q`` and ``Q·diag(1, .., 1, -1)`` are valid; this happens for inputs
            with a reflection symmetry.
    """

    matrices: torch.Tensor
    degenerate: torch.Tensor
    ambiguous: torch.Tensor


def _norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _unit(v: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    # the floor only keeps the division finite; rows below the tolerance are replaced later
    return v / norm.clamp_min(torch.finfo(v.dtype).tiny ** 0.5)


def frames_from_vectors(
    v: torch.Tensor,
    group: ContinuousGroup,
    atol: float | None = None,
    rtol: float | None = None,
) -> Frames:
    """Orthonormal frames from equivariant vectors by Gram–Schmidt, with degenerate cases flagged.

    Args:
        v: ``(B, k, d)`` vectors, ``k >= vectors_needed(group)`` (extra vectors are ignored).
        group: SO2, O2, SO3 or O3.
        atol: vectors shorter than this have no direction (default per dtype of ``v``,
            :func:`default_frame_tolerance`; float32: 1e-6).
        rtol: an orthogonalised vector within ``atol + rtol·|v_j|`` of zero counts as parallel
            to the earlier ones (float32: 1e-5).

    Returns:
        :class:`Frames`; matrices are computed in float64 and returned in ``v``'s dtype. Where
        the vectors are not degenerate, ``Q(M v) = M Q(v)`` for every ``M`` in the group; the
        flags are functions of norms only, hence invariant.

    Convention:
        Columns are the frame. SO(2): ``[q1, R90 q1]``; O(2): Gram–Schmidt of ``v1, v2``;
        SO(3): ``q1, q2`` by Gram–Schmidt and ``q3 = q1 × q2``; O(3): Gram–Schmidt of three.
        Degenerate samples get the identity; ambiguous ones the completion with determinant +1.

    The tolerances are absolute in the vectors' units: a vector that a symmetry forces to zero
    must come out below ``atol`` (not as rounding noise that grows with the network's scale).
    The native :class:`~equify.canonicalization.networks.VectorNetwork` guarantees this at any
    scale (it zeroes vectors below its scores' rounding level); for the escnn network and your
    own, measured at initialisation (~4e-8 for a 180°-symmetric image), pass a larger ``atol``
    if your network's outputs are much larger than 1.
    """
    k = vectors_needed(group)
    if not isinstance(v, torch.Tensor) or not v.is_floating_point():
        raise TypeError(
            "expected floating frame vectors (B, k, d), got "
            f"{v.dtype if isinstance(v, torch.Tensor) else type(v).__name__}"
        )
    if v.dim() != 3 or v.shape[-1] != group.dim or v.shape[1] < k:
        raise ValueError(
            f"{group} frames need (B, k, {group.dim}) vectors with k >= {k}, got {tuple(v.shape)}"
        )
    d_atol, d_rtol = default_frame_tolerance(v.dtype)
    atol = d_atol if atol is None else float(atol)
    rtol = d_rtol if rtol is None else float(rtol)
    dtype = v.dtype
    v = v.double()  # Gram–Schmidt of nearly parallel vectors loses precision in float32
    B, d = v.shape[0], group.dim
    n1 = _norm(v[:, 0])
    degenerate = n1[:, 0] <= atol
    cols = [_unit(v[:, 0], n1)]
    ambiguous = torch.zeros_like(degenerate)
    if d == 2 and not group.has_reflections:
        cols.append(torch.stack([-cols[0][:, 1], cols[0][:, 0]], dim=-1))
    else:
        last = k - 1 if group.has_reflections else k  # index of the handedness vector, if any
        for j in range(1, k):
            w = v[:, j]
            for q in cols:
                w = w - (w * q).sum(-1, keepdim=True) * q
            nw = _norm(w)
            small = nw[:, 0] <= atol + rtol * _norm(v[:, j])[:, 0]
            if j == last:
                ambiguous = ambiguous | small
            else:
                degenerate = degenerate | small
            cols.append(_unit(w, nw))
        if d == 3 and not group.has_reflections:
            cols.append(torch.linalg.cross(cols[0], cols[1], dim=-1))
    q = torch.stack(cols, dim=-1)
    if group.has_reflections and bool(ambiguous.any()):
        # the determinant +1 completion of the first d-1 columns
        if d == 2:
            last_col = torch.stack([-q[:, 1, 0], q[:, 0, 0]], dim=-1)
        else:
            last_col = torch.linalg.cross(q[:, :, 0], q[:, :, 1], dim=-1)
        fixed = torch.cat([q[:, :, :-1], last_col[:, :, None]], dim=-1)
        q = torch.where(ambiguous[:, None, None], fixed, q)
    eye = torch.eye(d, dtype=q.dtype, device=q.device).expand(B, d, d)
    q = torch.where(degenerate[:, None, None], eye, q)
    return Frames(q.to(dtype), degenerate, ambiguous & ~degenerate)


def frame_from_vectors(
    v: torch.Tensor,
    group: ContinuousGroup,
    atol: float | None = None,
    rtol: float | None = None,
) -> torch.Tensor:
    """``(B, d, d)`` orthogonal frames of :func:`frames_from_vectors` (its ``matrices``).

    Always orthogonal: a zero vector gives the identity, parallel vectors the determinant +1
    completion (see :class:`Frames` for the flags).
    """
    return frames_from_vectors(v, group, atol, rtol).matrices


def fallback_elements(group: ContinuousGroup, device: torch.device) -> torch.Tensor:
    """The candidates averaged over for degenerate samples: ``(K, d, d)`` float64 matrices.

    2-D: the exact grid symmetries (C4 for SO(2), D4 for O(2)), so the average is exactly
    equivariant to them; 3-D: the identity alone.
    """
    if group.dim == 2:
        grid = DihedralGroup(4) if group.has_reflections else CyclicGroup(4)
        return grid.matrix(grid.elements(device), dtype=torch.float64, device=device)
    return torch.eye(group.dim, dtype=torch.float64, device=device)[None]


def frame_ties(frames: Frames, group: ContinuousGroup) -> TieSet | None:
    """The tie set of degenerate (fallback set) and ambiguous (both handedness) samples."""
    q = frames.matrices
    device = q.device
    samples, elements, weights, primary = [], [], [], []
    deg = frames.degenerate.nonzero().squeeze(1)
    fb = fallback_elements(group, device).to(q.dtype)
    if deg.numel() and fb.shape[0] > 1:
        K = fb.shape[0]
        samples.append(deg.repeat_interleave(K))
        elements.append(fb.repeat(deg.numel(), 1, 1))
        weights.append(torch.full((deg.numel() * K,), 1.0 / K, dtype=torch.float64, device=device))
        first = torch.zeros(K, dtype=torch.bool, device=device)
        first[0] = True  # the identity, which is the frame of a degenerate sample
        primary.append(first.repeat(deg.numel()))
    amb = frames.ambiguous.nonzero().squeeze(1)
    if amb.numel():
        flip = torch.ones(group.dim, dtype=q.dtype, device=device)
        flip[-1] = -1
        pair = torch.stack([q[amb], q[amb] * flip], dim=1)  # (A, 2, d, d)
        samples.append(amb.repeat_interleave(2))
        elements.append(pair.flatten(0, 1))
        weights.append(torch.full((amb.numel() * 2,), 0.5, dtype=torch.float64, device=device))
        primary.append(torch.tensor([True, False], device=device).repeat(amb.numel()))
    if not samples:
        return None
    return TieSet(torch.cat(samples), torch.cat(elements), torch.cat(weights), torch.cat(primary))


def frame_result(
    v: object,
    group: ContinuousGroup,
    batch: int,
    frame_tolerance: tuple[float, float] | None = None,
) -> CanonicalizationResult:
    """The canonicalization of a batch from its network's vectors ``v`` ``(B, k, d)``: the
    frames, their tie set and the degenerate flags; ValueError when ``v`` has the wrong shape."""
    k, d = vectors_needed(group), group.dim
    if (
        not isinstance(v, torch.Tensor)
        or v.dim() != 3
        or v.shape[0] != batch
        or v.shape[1] < k
        or v.shape[2] != d
    ):
        shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(
            f"the canonicalization network must return (B, k, d) = ({batch}, >={k}, {d}) "
            f"vectors for {group}, got {shape}"
        )
    frames = frames_from_vectors(v, group, *(frame_tolerance or (None, None)))
    return CanonicalizationResult(
        group,
        frames.matrices,
        vectors=v,
        ties=frame_ties(frames, group),
        degenerate=frames.degenerate,
    )


class ContinuousCanonicalizer(Canonicalizer):
    """Learned canonicalization for SO(2) and O(2) images (SO(3)/O(3) with your own network).

    Args:
        group: ``"SO2"``, ``"O2"`` (or ``"SO3"``/``"O3"``) or a group value.
        in_channels: image channels (ignored for point clouds).
        network: a module mapping the prepared input to ``(B, k, d)`` equivariant vectors.
            Default for images: :class:`~equify.canonicalization.networks.VectorNetwork` (a C_8 /
            D_8 G-CNN whose scores are projected onto vectors). SO(3)/O(3) have no default.
        prior: ``"geodesic"`` (default), a Prior or None.
        in_action: action on the predictor's input; default
            :func:`~equify.canonicalization.input_image_action` for 2-D groups and
            ``PointAction()`` for 3-D ones.
        preparation: the network's view of images; default ``ImagePreparation(64, mask="circle")``.
        frame_tolerance: ``(atol, rtol)`` of the degenerate-frame rule
            (:func:`frames_from_vectors`); None for the per-dtype default.

    Convention:
        Degenerate frames. A sample whose first vector vanishes (a blank or rotation-symmetric
        image) has no orientation: its frame is the identity, it is flagged in
        ``result.degenerate`` (counted in ``summary()`` and the ``equify adapt`` report), and
        :class:`~equify.canonicalization.EquivariantModel` averages its output over the exact
        grid symmetries (C4 for SO(2), D4 for O(2); the identity alone in 3-D), so it stays
        exactly equivariant to those and approximately to the rest. Where only the handedness
        is undefined (O(2): parallel vectors, an input with a mirror symmetry; O(3): coplanar
        third vector), both handedness frames are candidates and the output is averaged over
        them. Gradients stay finite. Measured: with the default O(2) network at random
        initialisation, the handedness of ``c(g·x)`` differs from that of ``c(x)`` for 9–25%
        of MNIST digits under random rotations ``g`` (``benchmarks/o2_handedness.py``).
    """

    def __init__(
        self,
        group: Group | str = "SO2",
        in_channels: int = 3,
        network: nn.Module | None = None,
        prior: Prior | str | None = "geodesic",
        in_action: Action | None = None,
        preparation: nn.Module | None = None,
        frame_tolerance: tuple[float, float] | None = None,
    ) -> None:
        g = parse_group(group)
        if not isinstance(g, ContinuousGroup):
            raise ValueError(
                f"ContinuousCanonicalizer handles SO2, O2, SO3 and O3, got {g!r}; "
                "use DiscreteCanonicalizer for C_n and D_n"
            )
        images = g.dim == 2
        if in_action is None:
            in_action = input_image_action() if images else PointAction()
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
        self.frame_tolerance = check_tie_tolerance(frame_tolerance, "frame_tolerance")

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
        return frame_result(v, self.group, x.shape[0], self.frame_tolerance)

    def transform_input(self, x: torch.Tensor, result: CanonicalizationResult) -> torch.Tensor:
        """``Qᵀ·x``, differentiable in ``Q``."""
        return self.in_action.apply(x, result.elements.transpose(-1, -2).to(x.dtype), self.group)

    def extra_repr(self) -> str:
        return f"group={self.group}, in_channels={self.in_channels}, in_action={self.in_action!r}"
