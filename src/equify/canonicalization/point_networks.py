"""Vector-neuron canonicalization network for 3-D point clouds (and molecules).

:class:`VNCanonicalizationNetwork` maps a (padded) batch of point clouds ``(B, N, 3)`` to
``out_vectors`` vectors per cloud ``(B, k, 3)`` that turn with the cloud,
``net(x @ Q.T) == net(x) @ Q.T`` for every orthogonal ``Q`` (rotations and reflections), and do
not move with it (``net(x + t) == net(x)``). Gram–Schmidt of those vectors
(:func:`~equify.canonicalization.frames_from_vectors`) is an equivariant frame for SO(3)
(``k = 2``) or O(3) (``k = 3``): the canonical element of learned canonicalization (Kaba et al.
2023) for point clouds.

Architecture (vector neurons, Deng et al. 2021, DGCNN-style first layer):
    1. centre the cloud on the centroid of its real points;
    2. edge features ``[x_j - x_i, x_i]`` to the ``neighbours`` nearest points
       (:func:`~equify.nn.knn_edge_features`), plus the per-point vectors of both ends
       (velocities) when ``vector_features > 0``;
    3. ``VNLinear(2 + 2V, hidden)`` (+ ``VNBatchNorm``) + ``VNLeakyReLU`` on every edge; optional
       invariant per-point scalars (e.g. one-hot atom types) of both ends of the edge gate
       the edge's channels: ``h_ij <- h_ij · (1 + g(s_i, s_j))`` with a small MLP ``g``
       (last layer zero-initialised, so the gate starts at 1);
    4. masked mean over the neighbours;
    5. ``layers - 1`` point-wise blocks ``VNLinear`` (+ ``VNBatchNorm``) + ``VNLeakyReLU``;
    6. VN max (or mean) pool over the real points;
    7. ``VNLinear(hidden, out_vectors)``.

Exactness: equivariance holds to float rounding (worst relative error over 16 rotations and
reflections, measured in the tests: ~1e-7 in float32, ~1e-15 in float64, train and eval mode).
The hard choices (neighbours, max-pool pick) resolve exact and rounding-level ties by point
index (:func:`~equify.nn.knn_indices`, :class:`~equify.nn.VNMaxPool`), so symmetric clouds
stay exact too; only a near-tie just at their tolerances can break it. Padding rows
(``mask`` False) never change the output (up to summation order, ~1e-7 in float32), in train
mode too when the batch is otherwise the same. Degenerate clouds (one point, all points
equal, collinear or planar clouds, clouds with a symmetry) give finite, possibly zero or
parallel vectors — the frame construction flags those. With ``batch_norm=True`` in train
mode, a batch whose norms have (near) zero variance (a single degenerate cloud) amplifies
rounding by up to ``1/sqrt(eps)`` (measured ~1e-4 in float32 there).
"""

from __future__ import annotations

import torch
from torch import nn

from equify._validation import check_int
from equify.nn.vector_neurons import (
    VNBatchNorm,
    VNLeakyReLU,
    VNLinear,
    VNMaxPool,
    VNMeanPool,
    check_point_mask,
    gather_neighbours,
    knn_indices,
    masked_mean,
    neighbour_edges,
)

__all__ = ["VNCanonicalizationNetwork"]

_POOLINGS = ("max", "mean")


class _VNBlock(nn.Module):
    """``VNLinear`` (+ ``VNBatchNorm``) + ``VNLeakyReLU``: ``(..., C_in, 3) -> (..., C_out, 3)``."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, slope: float):
        super().__init__()
        self.linear = VNLinear(in_channels, out_channels)
        self.norm = VNBatchNorm(out_channels) if batch_norm else None
        self.act = VNLeakyReLU(out_channels, negative_slope=slope)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h, mask)
        return self.act(h)


class VNCanonicalizationNetwork(nn.Module):
    """Equivariant vectors of 3-D point clouds: ``(B, N, 3) -> (B, out_vectors, 3)``.

    See the module docstring for the architecture and the exactness.

    Args:
        out_vectors: vectors per cloud, ``>= 1`` (2 for an SO(3) frame, 3 for O(3)).
        hidden: vector channels of every layer.
        layers: VN blocks, ``>= 1``: the edge block and ``layers - 1`` point-wise blocks.
        neighbours: ``k`` of the k-nearest-neighbour edge features, ``>= 1``.
        scalar_features: ``F``, the size of the optional invariant per-point features
            ``(B, N, F)`` that gate the edge channels; 0 for none.
        vector_features: ``V``, per-point vectors ``(B, N, V, 3)`` that turn with the cloud
            (velocities); the vectors of both ends join the edge channels. 0 for none.
        pooling: ``"max"`` (:class:`~equify.nn.VNMaxPool`) or ``"mean"`` over points.
        batch_norm: put a :class:`~equify.nn.VNBatchNorm` in every block (batch statistics in
            train mode make a cloud's output depend on the rest of the batch there).
        negative_slope: of every :class:`~equify.nn.VNLeakyReLU`.
    """

    def __init__(
        self,
        out_vectors: int = 2,
        hidden: int = 32,
        layers: int = 3,
        neighbours: int = 8,
        scalar_features: int = 0,
        pooling: str = "max",
        *,
        vector_features: int = 0,
        batch_norm: bool = False,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.out_vectors = check_int(out_vectors, "out_vectors", 1)
        self.hidden = check_int(hidden, "hidden", 1)
        self.layers = check_int(layers, "layers", 1)
        self.neighbours = check_int(neighbours, "neighbours", 1)
        self.scalar_features = check_int(scalar_features, "scalar_features", 0)
        self.vector_features = check_int(vector_features, "vector_features", 0)
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
        self.batch_norm = batch_norm

        # edge channels: x_j - x_i, x_i, then the per-point vectors of both ends
        self.edge_block = _VNBlock(2 + 2 * self.vector_features, hidden, batch_norm, negative_slope)
        if scalar_features:
            self.gate: nn.Sequential | None = nn.Sequential(
                nn.Linear(2 * scalar_features, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
            )
            nn.init.zeros_(self.gate[-1].weight)
            nn.init.zeros_(self.gate[-1].bias)
        else:
            self.gate = None
        self.point_blocks = nn.ModuleList(
            _VNBlock(hidden, hidden, batch_norm, negative_slope) for _ in range(layers - 1)
        )
        self.pool: VNMaxPool | VNMeanPool = VNMaxPool(hidden) if pooling == "max" else VNMeanPool()
        self.head = VNLinear(hidden, out_vectors)

    def _check_inputs(
        self,
        points: object,
        mask: object,
        scalars: object,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not isinstance(points, torch.Tensor):
            raise TypeError(f"points must be a torch.Tensor (B, N, 3), got {type(points).__name__}")
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(
                f"points must have shape (B, N, 3) (last dimension 3), got {tuple(points.shape)}"
            )
        if not points.is_floating_point():
            raise TypeError(f"points must be floating, got dtype {points.dtype}")
        ref = self.head.weight
        if points.dtype != ref.dtype or points.device != ref.device:
            raise TypeError(
                f"points are {points.dtype} on {points.device} but the parameters are "
                f"{ref.dtype} on {ref.device}; move the network with .to(dtype=..., device=...)"
            )
        B, N, _ = points.shape
        if mask is None:
            mask_t = torch.ones(B, N, dtype=torch.bool, device=points.device)
        else:
            mask_t = check_point_mask(mask, (B, N), points.device)
        if B and not bool(mask_t.any(1).all()):
            empty = (~mask_t.any(1)).nonzero().flatten().tolist()
            raise ValueError(f"every cloud needs at least one real point; clouds {empty} have none")
        real = mask_t[..., None]
        if not bool(torch.where(real, points.isfinite(), True).all()):
            raise ValueError("points hold NaN or inf coordinates at real (unmasked) points")
        if self.scalar_features == 0:
            if scalars is not None:
                raise ValueError(
                    "scalars were given but the network has scalar_features=0; build it with "
                    "scalar_features=F to use (B, N, F) per-point features"
                )
            return points, mask_t, None
        if scalars is None:
            raise ValueError(
                f"the network has scalar_features={self.scalar_features}: pass scalars of "
                f"shape (B, N, {self.scalar_features})"
            )
        if not isinstance(scalars, torch.Tensor):
            raise TypeError(f"scalars must be a torch.Tensor, got {type(scalars).__name__}")
        if tuple(scalars.shape) != (B, N, self.scalar_features):
            raise ValueError(
                f"scalars must have shape (B, N, F) = {(B, N, self.scalar_features)}, "
                f"got {tuple(scalars.shape)}"
            )
        if scalars.is_complex():
            raise TypeError(f"scalars must be real, got dtype {scalars.dtype}")
        if scalars.device != points.device:
            raise ValueError(f"scalars are on {scalars.device} but points on {points.device}")
        scalars = scalars.to(points.dtype)
        if not bool(torch.where(real, scalars.isfinite(), True).all()):
            raise ValueError("scalars hold NaN or inf values at real (unmasked) points")
        return points, mask_t, torch.where(real, scalars, scalars.new_zeros(()))

    def forward(
        self,
        points: torch.Tensor,
        mask: torch.Tensor | None = None,
        scalars: torch.Tensor | None = None,
        vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Equivariant vectors of each cloud.

        Args:
            points: ``(B, N, 3)`` floating coordinates, the network's dtype and device;
                padding rows may hold anything.
            mask: boolean ``(B, N)``, ``True`` for real points (each cloud needs one), or
                ``None`` (all real).
            scalars: ``(B, N, F)`` invariant per-point features, required exactly when
                ``scalar_features = F > 0``.
            vectors: ``(B, N, V, 3)`` per-point vectors (velocities), required exactly when
                ``vector_features = V > 0``; they turn with the cloud but do not move with it.

        Returns:
            ``(B, out_vectors, 3)``.

        Raises:
            TypeError: non-tensor or non-floating points, a non-bool mask, or points of
                another dtype/device than the parameters.
            ValueError: a wrong shape, NaN/inf at real points, a cloud without real points,
                or scalars that do not match ``scalar_features``.
        """
        points, mask, scalars = self._check_inputs(points, mask, scalars)
        vectors = self._check_vectors(vectors, points, mask)
        if points.shape[0] == 0:
            return points.new_zeros(0, self.out_vectors, 3)
        zero = torch.zeros((), dtype=points.dtype, device=points.device)
        x = torch.where(mask[..., None], points, zero)
        centroid = masked_mean(x[..., None, :], mask, 1)  # (B, 1, 3)
        x = torch.where(mask[..., None], x - centroid, zero)

        # = knn_edge_features(x, mask, k), keeping the indices for the scalar gate
        index, edge_mask = knn_indices(x, mask, self.neighbours)  # (B, N, k)
        edges = neighbour_edges(x, index, edge_mask)  # (B, N, k, 2, 3)
        if vectors is not None:  # (B, N, k, 2 + 2V, 3): both ends' vectors join the edge
            v_j = gather_neighbours(vectors, index)  # (B, N, k, V, 3)
            v_i = vectors[:, :, None].expand_as(v_j)
            both = torch.where(edge_mask[..., None, None], torch.cat([v_i, v_j], 3), zero)
            edges = torch.cat([edges, both], dim=3)
        h = self.edge_block(edges, edge_mask)  # (B, N, k, H, 3)
        if self.gate is not None:
            s_j = gather_neighbours(scalars, index)  # (B, N, k, F)
            s_i = scalars[:, :, None, :].expand_as(s_j)
            gate = 1.0 + self.gate(torch.cat([s_i, s_j], dim=-1))  # (B, N, k, H)
            h = h * gate[..., None]
        h = torch.where(edge_mask[..., None, None], h, zero)
        h = masked_mean(h, edge_mask, 2)  # (B, N, H, 3)
        for block in self.point_blocks:
            h = block(h, mask)
        h = torch.where(mask[..., None, None], h, zero)
        pooled = self.pool(h, mask)  # (B, H, 3)
        return self.head(pooled)

    def _check_vectors(
        self, vectors: object, points: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor | None:
        B, N, _ = points.shape
        V = self.vector_features
        if V == 0:
            if vectors is not None:
                raise ValueError(
                    "vectors were given but the network has vector_features=0; build it with "
                    "vector_features=V to use (B, N, V, 3) per-point vectors"
                )
            return None
        if not isinstance(vectors, torch.Tensor) or tuple(vectors.shape) != (B, N, V, 3):
            got = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else vectors
            raise ValueError(f"vectors must have shape (B, N, V, 3) = {(B, N, V, 3)}, got {got}")
        if not vectors.is_floating_point():
            raise TypeError(f"vectors must be floating, got dtype {vectors.dtype}")
        vectors = vectors.to(points.dtype)
        real = mask[..., None, None]
        if not bool(torch.where(real, vectors.isfinite(), True).all()):
            raise ValueError("vectors hold NaN or inf values at real (unmasked) points")
        return torch.where(real, vectors, vectors.new_zeros(()))

    def extra_repr(self) -> str:
        return (
            f"out_vectors={self.out_vectors}, hidden={self.hidden}, layers={self.layers}, "
            f"neighbours={self.neighbours}, scalar_features={self.scalar_features}, "
            f"vector_features={self.vector_features}, "
            f"pooling={self.pooling!r}, batch_norm={self.batch_norm}"
        )
