"""Vector-neuron layers: O(3)-equivariant networks on 3-D vector features, pure PyTorch.

Deng et al. (ICCV 2021), "Vector Neurons: A General Framework for SO(3)-Equivariant Networks".

Convention:
    * Vector features are ``(..., C, 3)``: ``C`` vector channels of 3 coordinates each. Point
      features are ``(B, N, C, 3)`` (``B`` clouds of ``N`` points); per-cloud features are
      ``(B, C, 3)``. The channel-wise layers (:class:`VNLinear`, :class:`VNLeakyReLU`,
      :class:`VNBatchNorm`, :class:`VNInvariant`) accept any leading dimensions.
    * A group element acts on the coordinates: ``x -> x @ Q.T`` for an orthogonal ``Q``
      (``det Q = ±1``, rotations and reflections). Every layer commutes with it,
      ``f(x @ Q.T) == f(x) @ Q.T``, by construction: channels are mixed only by linear maps
      over the channel axis, and the only other operations are multiplications of vectors by
      invariant scalars (inner products and norms). :class:`VNInvariant` is invariant instead,
      ``f(x @ Q.T) == f(x)``. No layer has a bias on vector features (a fixed vector would not
      rotate) and no cross product is used (it is a pseudovector, flipped by reflections).
    * An optional boolean ``mask`` over the leading point dimensions marks real entries
      (``False`` = padding). Pools never use padding; :class:`VNBatchNorm` leaves it out of its
      statistics and outputs zeros there. :class:`VNLinear` and :class:`VNLeakyReLU` map zero
      vectors to zero vectors, so zeroed padding stays zero through them.

Exactness: equivariance holds to float rounding (about 1e-7 relative in float32, 1e-16 in
float64). The two hard choices, the neighbours of :func:`knn_indices` and the pick of
:class:`VNMaxPool`, would break it at ties (symmetric clouds, repeated points), where rounding
decides; both treat values within a tolerance of a few hundred to a few thousand ``eps(dtype)``
times their scale as tied and resolve ties by point index, so only values near that tolerance
(not at rounding level) can still be resolved differently for a transformed input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from equify._validation import check_int

__all__ = [
    "VNBatchNorm",
    "VNInvariant",
    "VNLeakyReLU",
    "VNLinear",
    "VNMaxPool",
    "VNMeanPool",
    "check_point_mask",
    "check_vectors",
    "gather_neighbours",
    "knn_edge_features",
    "knn_indices",
    "masked_mean",
    "neighbour_edges",
]

#: absolute floor of vector norms in divisions (keeps 0 / 0 and sqrt'(0) away)
_NORM_FLOOR = 1e-12


def _check_positive_float(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite float {bound}, got {value}")
    return value


def check_vectors(
    x: object,
    channels: int | None,
    *,
    min_dim: int = 2,
    shape_doc: str = "(..., C, 3)",
    ref: torch.Tensor | None = None,
) -> torch.Tensor:
    """Validate floating vector features ``(..., C, 3)``.

    Args:
        x: the candidate input.
        channels: the expected channel count ``C`` (``None``: any).
        min_dim: the smallest number of dimensions (2 for ``(C, 3)``, 4 for ``(B, N, C, 3)``).
        shape_doc: how the expected shape is written in error messages.
        ref: a parameter whose dtype and device the input must match.

    Returns:
        ``x`` itself.

    Raises:
        TypeError: not a tensor, not floating, or another dtype/device than ``ref``.
        ValueError: a wrong number of dimensions, last dimension or channel count.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.dim() < min_dim or x.shape[-1] != 3:
        raise ValueError(
            f"expected vector features of shape {shape_doc} (last dimension 3), "
            f"got shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[-2] != channels:
        raise ValueError(
            f"expected {channels} vector channels {shape_doc}, got {x.shape[-2]} "
            f"(input shape {tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected floating vector features, got dtype {x.dtype}")
    if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
        raise TypeError(
            f"input is {x.dtype} on {x.device} but the parameters are {ref.dtype} on "
            f"{ref.device}; move the module with .to(dtype=..., device=...) first"
        )
    return x


def check_point_mask(mask: object, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Validate a boolean mask of the given shape (``True`` = real entry, ``False`` = padding).

    Args:
        mask: the candidate mask.
        shape: the expected shape, e.g. ``(B, N)``.
        device: the device of the features it masks.

    Returns:
        ``mask`` itself.

    Raises:
        TypeError: not a tensor or not ``torch.bool``.
        ValueError: another shape or device.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool torch.Tensor of shape {shape}, got {type(mask)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but the features are on {device}")
    return mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Mean of vector features over the point dimension ``dim``, leaving out padding.

    Args:
        x: ``(..., P, ..., C, 3)`` features, ``P`` at position ``dim`` (a non-negative index
            among the leading dimensions).
        mask: boolean ``x.shape[:dim + 1]`` (``True`` = real) or ``None`` (all real).

    Returns:
        ``x`` without dimension ``dim``; zeros where no entry is real.
    """
    if mask is None:
        return x.mean(dim) if x.shape[dim] else x.sum(dim)
    w = mask.to(x.dtype).reshape(*mask.shape, *(1,) * (x.dim() - mask.dim()))
    total = torch.where(w > 0, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim)
    count = w.sum(dim).clamp_min(1.0)
    return total / count


class VNLinear(nn.Module):
    """Linear map over vector channels: ``(..., C_in, 3) -> (..., C_out, 3)``, no bias.

    ``y[..., o, :] = sum_c W[o, c] x[..., c, :]``, which commutes with every linear map of the
    coordinates, in particular with O(3).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/sqrt(C_in)``, as ``nn.Linear`` does."""
        bound = 1.0 / math.sqrt(self.in_channels)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix channels.

        Args:
            x: ``(..., C_in, 3)``.

        Returns:
            ``(..., C_out, 3)``.
        """
        check_vectors(x, self.in_channels, shape_doc="(..., C_in, 3)", ref=self.weight)
        return torch.matmul(self.weight, x)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class VNLeakyReLU(nn.Module):
    """Vector-neuron leaky ReLU with a learned direction per channel.

    For each channel, ``k = U v`` (a :class:`VNLinear` of the input, one direction per channel
    or one shared by all) and

    ``v' = v - (1 - a) · min(<v, k>, 0) / (|k|² + eps) · k``,

    i.e. where ``<v, k> < 0`` the component of ``v`` along ``-k`` is removed (scaled by the
    negative slope ``a``), else ``v`` passes unchanged (Deng et al. 2021, eq. 5 with the
    leaky mix). ``<v, k>`` and ``|k|²`` are invariants, so the output is equivariant. A zero
    input gives exactly zero, with finite gradients (``eps`` keeps the division defined).

    Args:
        channels: ``C``.
        negative_slope: ``a`` in ``[0, 1)``; 0 is the plain VN-ReLU.
        share_direction: one direction ``k`` for all channels (``U`` is ``(1, C)``).
        eps: added to ``|k|²`` in the division.
    """

    def __init__(
        self,
        channels: int,
        negative_slope: float = 0.2,
        share_direction: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        slope = _check_positive_float(negative_slope, "negative_slope", allow_zero=True)
        if slope >= 1:
            raise ValueError(f"negative_slope must be in [0, 1), got {slope}")
        self.negative_slope = slope
        if not isinstance(share_direction, bool):
            raise TypeError(f"share_direction must be a bool, got {type(share_direction)}")
        self.share_direction = share_direction
        self.eps = _check_positive_float(eps, "eps")
        self.direction = VNLinear(channels, 1 if share_direction else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the nonlinearity.

        Args:
            x: ``(..., C, 3)``.

        Returns:
            ``(..., C, 3)``.
        """
        check_vectors(x, self.channels, ref=self.direction.weight)
        k = self.direction(x)  # (..., C or 1, 3)
        dot = (x * k).sum(-1, keepdim=True)
        k_sq = (k * k).sum(-1, keepdim=True)
        coef = (1.0 - self.negative_slope) * dot.clamp_max(0.0) / (k_sq + self.eps)
        return x - coef * k

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, negative_slope={self.negative_slope}, "
            f"share_direction={self.share_direction}, eps={self.eps}"
        )


class VNBatchNorm(nn.Module):
    """Batch normalization of vector norms: ``v -> v · bn(|v|) / |v|``.

    The norms ``|v|`` (invariants) of each channel are normalized with batch statistics in
    train mode and running statistics in eval mode, with a learned scale and shift per
    channel, as ``nn.BatchNorm1d`` does; each vector is rescaled by the normalized norm over
    its norm. The statistics run over all leading dimensions (``B`` for ``(B, C, 3)``, ``B·N``
    for ``(B, N, C, 3)``), leaving out masked entries, whose outputs are zero.

    Near-zero vectors: ``v / |v|`` has no limit at 0, so a vector that is zero by symmetry
    (the centre atom of a symmetric molecule, say) but carries rounding noise would come out
    with the noise's arbitrary direction at full length. The division therefore uses
    ``sqrt(|v|² + (norm_eps · rms)²)``, with ``rms`` the root-mean-square norm of the channel
    (batch or running statistics, an invariant): vectors much shorter than
    ``norm_eps · rms`` are scaled linearly, with a bounded gain, and zero vectors stay exactly
    zero with finite gradients. Vectors longer than that are rescaled as above (to
    ``norm_eps²/2`` relative at ``|v| = rms``).

    Args:
        channels: ``C``.
        eps: added to the variance.
        momentum: running-statistics update ``(1 - m) · running + m · batch``.
        affine: learn a scale (init 1) and shift (init 0) per channel.
        norm_eps: the relative floor of the norm in the division, see above.
    """

    def __init__(
        self,
        channels: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        norm_eps: float = 1e-2,
    ) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self.eps = _check_positive_float(eps, "eps")
        self.momentum = _check_positive_float(momentum, "momentum", allow_zero=True)
        if self.momentum > 1:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")
        self.norm_eps = _check_positive_float(norm_eps, "norm_eps")
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalize.

        Args:
            x: ``(..., C, 3)`` with at least one leading dimension, e.g. ``(B, C, 3)`` or
                ``(B, N, C, 3)``.
            mask: boolean ``x.shape[:-2]`` (``True`` = real) or ``None`` (all real).

        Returns:
            ``(..., C, 3)``; zero at masked entries. An input with no real entry gives zeros
            and leaves the running statistics unchanged.
        """
        check_vectors(x, self.channels, min_dim=3, shape_doc="(..., C, 3)", ref=self.running_mean)
        lead = x.shape[:-2]
        if mask is not None:
            check_point_mask(mask, lead, x.device)
        sq = (x * x).sum(-1)  # (..., C)
        norm = torch.sqrt(sq + _NORM_FLOOR**2)  # differentiable at 0
        flat = norm.reshape(-1, self.channels)
        real = None if mask is None else mask.reshape(-1, 1)
        if self.training:
            if real is None:
                count = torch.full((), flat.shape[0], dtype=x.dtype, device=x.device)
                flat_real = flat
            else:
                count = real.sum().to(x.dtype)
                flat_real = torch.where(real, flat, torch.zeros_like(flat))
            safe = count.clamp_min(1.0)
            mean = flat_real.sum(0) / safe
            dev = flat - mean
            if real is not None:
                dev = torch.where(real, dev, torch.zeros_like(dev))
            var = (dev * dev).sum(0) / safe
            with torch.no_grad():
                unbiased = var * (count / (count - 1.0).clamp_min(1.0))
                m = self.momentum * (count > 0).to(x.dtype)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * unbiased.detach())
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        normed = (norm - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            normed = normed * self.weight + self.bias
        floor_sq = self.norm_eps**2 * (var + mean * mean) + _NORM_FLOOR**2
        out = x * (normed / torch.sqrt(sq + floor_sq)).unsqueeze(-1)
        if mask is not None:
            out = torch.where(mask[..., None, None], out, torch.zeros_like(out))
        return out

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.weight is not None}, norm_eps={self.norm_eps}"
        )


class VNMaxPool(nn.Module):
    """Per-channel max pool over points: ``(B, N, C, 3) -> (B, C, 3)``.

    A learned :class:`VNLinear` gives a direction ``k`` per point and channel; per channel the
    pool returns the point's vector with the largest ``<v, k>`` (an invariant, so the choice
    does not change under O(3)). Padding is never picked; a cloud without real points gives
    zeros.

    Ties: scores within ``4096 · eps(dtype) · max_n |v_n| |k_n|`` of the maximum count as tied
    and the lowest point index among them is picked, so rounding-level ties (symmetric
    clouds, repeated points) resolve alike for a transformed input. A score just at that
    tolerance from the maximum can still be resolved differently; and with ties, permuting the
    points may change which tied vector is picked.

    The pick is piecewise constant, so the direction map gets no gradient (as in Deng et al.):
    it stays at its initial (random) weights unless trained otherwise.

    Args:
        channels: ``C``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self.direction = VNLinear(channels, channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool.

        Args:
            x: ``(B, N, C, 3)``.
            mask: boolean ``(B, N)`` (``True`` = real) or ``None`` (all real).

        Returns:
            ``(B, C, 3)``.
        """
        check_vectors(
            x, self.channels, min_dim=4, shape_doc="(B, N, C, 3)", ref=self.direction.weight
        )
        if x.dim() != 4:
            raise ValueError(f"expected point features (B, N, C, 3), got shape {tuple(x.shape)}")
        B, N, C, _ = x.shape
        if N == 0:
            return x.new_zeros(B, C, 3)
        if mask is not None:
            check_point_mask(mask, (B, N), x.device)
        k = self.direction(x)
        score = (x * k).sum(-1)  # (B, N, C)
        # near-ties (within rounding of the scores' scale) go to the lowest index
        size = torch.sqrt((x * x).sum(-1) * (k * k).sum(-1))
        if mask is not None:
            score = score.masked_fill(~mask[..., None], float("-inf"))
            size = size.masked_fill(~mask[..., None], 0.0)
        tol = _tie_tolerance(x.dtype) * size.amax(1, keepdim=True)
        best = score.amax(1, keepdim=True)
        tied = score >= best - tol  # (B, N, C); padding (-inf) never, a real maximum always
        first = torch.arange(N, 0, -1, device=x.device)[None, :, None]
        idx = torch.where(tied, first, 0).argmax(dim=1)  # (B, C): the first tied point
        out = torch.gather(x, 1, idx[:, None, :, None].expand(B, 1, C, 3)).squeeze(1)
        if mask is not None:
            out = torch.where(mask.any(1)[:, None, None], out, torch.zeros_like(out))
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class VNMeanPool(nn.Module):
    """Mean over points, leaving out padding: ``(B, N, C, 3) -> (B, C, 3)``.

    A cloud without real points gives zeros.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool.

        Args:
            x: ``(B, N, C, 3)``.
            mask: boolean ``(B, N)`` (``True`` = real) or ``None`` (all real).

        Returns:
            ``(B, C, 3)``.
        """
        check_vectors(x, None, min_dim=4, shape_doc="(B, N, C, 3)")
        if x.dim() != 4:
            raise ValueError(f"expected point features (B, N, C, 3), got shape {tuple(x.shape)}")
        if mask is not None:
            check_point_mask(mask, tuple(x.shape[:2]), x.device)
        return masked_mean(x, mask, 1)


class VNInvariant(nn.Module):
    """O(3)-invariant read-out: inner products with learned equivariant vectors.

    ``u = VNLinear(v)`` gives ``n_vectors`` vectors ``u_j``; the output holds every
    ``<v_c, u_j>``. Since ``<Qa, Qb> = <a, b>`` for orthogonal ``Q``, it is invariant to
    rotations and reflections.

    Args:
        channels: ``C``.
        n_vectors: the number of vectors ``u_j`` (3 spans a frame in general position).
    """

    def __init__(self, channels: int, n_vectors: int = 3) -> None:
        super().__init__()
        self.channels = check_int(channels, "channels", 1)
        self.n_vectors = check_int(n_vectors, "n_vectors", 1)
        self.frame = VNLinear(channels, n_vectors)

    @property
    def out_features(self) -> int:
        """``C · n_vectors``, the size of the last output dimension."""
        return self.channels * self.n_vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Read out invariants.

        Args:
            x: ``(..., C, 3)``.

        Returns:
            ``(..., C · n_vectors)``, ordered channel-major (``out[..., c · n + j]`` is
            ``<v_c, u_j>``).
        """
        check_vectors(x, self.channels, ref=self.frame.weight)
        u = self.frame(x)  # (..., n, 3)
        dots = torch.matmul(x, u.transpose(-1, -2))  # (..., C, n)
        return dots.reshape(*x.shape[:-2], self.out_features)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, n_vectors={self.n_vectors}"


def _tie_tolerance(dtype: torch.dtype) -> float:
    """Relative tolerance of the max pool's ties."""
    return 4096.0 * torch.finfo(dtype).eps


#: knn ties: gaps below this · eps · R · distance count as rounding
_KNN_TIE_FACTOR = 128.0


def _check_points(points: object, mask: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor (B, N, 3), got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (B, N, 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating, got dtype {points.dtype}")
    B, N, _ = points.shape
    if mask is None:
        return points, torch.ones(B, N, dtype=torch.bool, device=points.device)
    return points, check_point_mask(mask, (B, N), points.device)


def knn_indices(
    points: torch.Tensor, mask: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the ``k`` nearest real neighbours of every real point, robust to ties.

    For each real point ``i`` the neighbours ``j`` are the ``k`` nearest other real points; a
    point with fewer than ``k`` other real points gets the ones there are and masked slots; a
    point that is alone in its cloud gets itself in slot 0. Padding points (``mask`` False)
    are never neighbours and get all slots masked. Masked slots hold index 0.

    Ties: distances are invariant, but for a transformed input they are computed with other
    rounding errors, which could flip the order of (near-)tied distances and so break
    equivariance. The squared distances of a row are therefore sorted and consecutive ones
    ``a <= b`` closer than ``128 · eps(dtype) · R · sqrt(b)`` (``R = max_i |x_i|``; the
    rounding of ``b`` under an orthogonal map and centring was measured below
    ``7 · eps · R · sqrt(b)``) are merged into one tie group; groups are ordered by distance
    and a group's points by index. Exact or rounding-level ties (repeated points, symmetric
    clouds) thus resolve by index whatever the transformation; only a gap within ~5% of the
    tolerance can still be resolved differently. The tolerance scales with the distance, so
    dense clouds do not chain their neighbours into one group; in float32 (``R`` ≈ 4) about
    0.2% of the points of a 3000-point Gaussian cloud swap an 8th neighbour for one as near
    to ~1e-4 relative. Centre the points first: ``R`` grows with an offset.
    Ties make the choice depend on the points' order: the result is exactly equivariant, but
    permuting the points may change which of several tied neighbours is taken.

    Memory is ``O(B · N²)``.

    Args:
        points: ``(B, N, 3)`` floating coordinates; padding rows may hold anything
            (even NaN): they are ignored.
        mask: boolean ``(B, N)`` (``True`` = real point) or ``None`` (all real).
        k: the number of neighbour slots, ``>= 1``.

    Returns:
        ``(index, valid)``: ``index`` ``(B, N, k)`` long, the neighbours' point indices, and
        ``valid`` ``(B, N, k)`` bool, ``True`` for real neighbour slots.
    """
    points, mask = _check_points(points, mask)
    k = check_int(k, "k", 1)
    B, N, _ = points.shape
    device = points.device
    if N == 0 or B == 0:
        index = torch.zeros(B, N, k, dtype=torch.long, device=device)
        return index, torch.zeros(B, N, k, dtype=torch.bool, device=device)
    x = torch.where(mask[..., None], points, torch.zeros((), dtype=points.dtype, device=device))
    # squared distances without a matrix product (exact per coordinate, no TF32)
    d2 = torch.zeros(B, N, N, dtype=x.dtype, device=device)
    for c in range(3):
        diff = x[:, :, None, c] - x[:, None, :, c]
        d2 = d2 + diff * diff
    eye = torch.eye(N, dtype=torch.bool, device=device)
    other = mask[:, None, :] & mask[:, :, None] & ~eye  # (B, N_i, N_j) real neighbour candidates
    d2 = torch.where(other, d2, torch.full((), float("inf"), dtype=x.dtype, device=device))

    radius = torch.sqrt((x * x).sum(-1).amax(-1))[:, None, None]  # (B, 1, 1)
    sorted_d2, order = torch.sort(d2, dim=-1, stable=True)
    upper = sorted_d2[..., 1:]
    upper = torch.where(upper.isfinite(), upper, torch.zeros_like(upper))
    tol = _KNN_TIE_FACTOR * torch.finfo(x.dtype).eps * radius * torch.sqrt(upper)
    gaps = sorted_d2[..., 1:] - sorted_d2[..., :-1]  # inf - inf = nan: not a new group
    new_group = (gaps > tol).to(torch.long)  # (groups past the real candidates do not matter)
    group_sorted = torch.cat(
        [torch.zeros(B, N, 1, dtype=torch.long, device=device), new_group.cumsum(-1)], dim=-1
    )
    group = torch.empty_like(group_sorted).scatter_(-1, order, group_sorted)
    # real others by (group, index); then the point itself; then padding
    position = torch.arange(N, device=device)
    rank = torch.where(other, group, torch.full((), N + 2, dtype=torch.long, device=device))
    rank = torch.where(eye & mask[:, :, None], torch.full_like(rank, N + 1), rank)
    take = min(k, N)
    index = torch.sort(rank * N + position, dim=-1).indices[..., :take]  # (B, N, take)
    valid = torch.gather(other, -1, index)
    alone = mask & ~other.any(-1)  # real points without another real point: slot 0 is itself
    valid[..., 0] = valid[..., 0] | alone
    if take < k:
        index = torch.cat([index, index.new_zeros(B, N, k - take)], dim=-1)
        valid = torch.cat([valid, valid.new_zeros(B, N, k - take)], dim=-1)
    return torch.where(valid, index, torch.zeros_like(index)), valid


def gather_neighbours(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-neighbour copies of point values: ``(B, N, *F)`` and ``(B, N, k)`` -> ``(B, N, k, *F)``.

    Args:
        values: ``(B, N, *F)`` per-point values.
        index: ``(B, N, k)`` neighbour indices from :func:`knn_indices`.

    Returns:
        ``out[b, i, s] = values[b, index[b, i, s]]``.
    """
    B = values.shape[0]
    batch = torch.arange(B, device=values.device)[:, None, None]
    return values[batch, index]


def knn_edge_features(
    points: torch.Tensor, mask: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge vectors to the ``k`` nearest real neighbours of every real point.

    Neighbours as in :func:`knn_indices` (tie-robust; a point alone in its cloud is its own
    neighbour, giving the edge ``[0, x_i]``). Both channels are vectors (no cross product,
    which would be a pseudovector), so the edges are O(3)-equivariant. Masked slots and
    padding points hold zeros; padding rows never change the real points' edges.

    Args:
        points: ``(B, N, 3)`` floating coordinates; padding rows may hold anything.
        mask: boolean ``(B, N)`` (``True`` = real point) or ``None`` (all real).
        k: the number of neighbour slots, ``>= 1``.

    Returns:
        ``(edges, edge_mask)``: ``edges`` ``(B, N, k, 2, 3)`` with channels
        ``[x_j - x_i, x_i]`` and ``edge_mask`` ``(B, N, k)`` bool, ``True`` for real edges.
    """
    points, mask = _check_points(points, mask)
    index, valid = knn_indices(points, mask, k)
    zero = torch.zeros((), dtype=points.dtype, device=points.device)
    return neighbour_edges(torch.where(mask[..., None], points, zero), index, valid), valid


def neighbour_edges(points: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Edge vectors ``[x_j - x_i, x_i]`` for given neighbours (see :func:`knn_edge_features`).

    Args:
        points: ``(B, N, 3)`` finite coordinates (zero the padding rows first).
        index: ``(B, N, k)`` neighbour indices from :func:`knn_indices`.
        valid: ``(B, N, k)`` bool, ``True`` for real neighbour slots.

    Returns:
        ``(B, N, k, 2, 3)``; zeros at masked slots.
    """
    neighbours = gather_neighbours(points, index)  # (B, N, k, 3)
    centre = points[:, :, None, :].expand_as(neighbours)
    edges = torch.stack([neighbours - centre, centre], dim=-2)
    return torch.where(valid[..., None, None], edges, torch.zeros_like(edges))
