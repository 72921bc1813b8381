"""Partial group convolutions on SE(2) / E(2) with continuous kernels (Romero & Lohit 2022).

Feature maps on a sampled subset of the group travel as :class:`GroupFeatures`: a tensor
``(B, C, N, H, W)`` (``N`` sampled elements) with the :class:`~equify.nn.GroupSamples` it lives
on. With ``g = R(a) F^s`` (:mod:`equify.nn.sampling`) and kernel pixel offsets ``p`` (display
coordinates, scaled to ``[-1, 1]``):

* lifting, R² -> G: ``out(x, g) = Σ_y f(y) K(g⁻¹(y - x))``;
* group convolution, G -> G: ``out(x, g) = Σ_h ŵ_h Σ_y f(y, h) K(g⁻¹(y - x), g⁻¹h)`` over the
  input's elements ``h`` with weights ``ŵ_h = N_in w_h / Σ w`` (a Monte-Carlo sum over the
  input's subset; a weight of 0 drops an element). ``g⁻¹h`` enters the kernel as
  ``(cos Δ, sin Δ)`` of its angle (and ``±1`` for its flip, E(2));
* :class:`PartialGroupPool`: the weighted max (or mean) over the elements.

``K`` is a :class:`~equify.nn.KernelNet` and is evaluated where the elements put the kernel's
pixels, so any sampled rotation has its kernel. The kernel is zero outside the disc of radius
``(k - 1)/2 + 1/2`` pixels (``circular=True``), a support that rotations keep. When every
sample set is a group acting on the pixel grid (θ = 1 with evenly spaced multiples of 90°, or a
fixed ``C4``/``D4``), rotated kernel pixels land exactly on pixels (the rotation's cosines and
sines are snapped to 0/±1, :func:`~equify.nn.sampling.snap_trig`) and the network is exactly
equivariant, to rounding; at other angles it is equivariant only approximately (measured in the
tests and the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from equify._validation import check_int
from equify.groups import FiniteGroup
from equify.nn.continuous import KernelNet
from equify.nn.sampling import ElementSampler, GroupSamples, snap_trig

__all__ = [
    "GroupFeatures",
    "PartialBatchNorm",
    "PartialGroupConv",
    "PartialGroupPool",
    "PartialLiftingConv",
    "kernel_positions",
    "spatial",
]


@dataclass(frozen=True)
class GroupFeatures:
    """Features on a sampled subset of the group.

    Attributes:
        tensor: ``(B, C, N, H, W)``.
        samples: the ``N`` elements (and weights) of the group axis.
    """

    tensor: torch.Tensor
    samples: GroupSamples

    def with_tensor(self, tensor: torch.Tensor) -> GroupFeatures:
        """The same elements with new values ``(B, C', N, H', W')``."""
        return GroupFeatures(tensor, self.samples)


def kernel_positions(kernel_size: int, circular: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel pixel offsets in display coordinates scaled to ``[-1, 1]``, and their mask.

    Returns:
        ``(k², 2)`` float64 positions ``(x, y)`` (row-major pixels, y up) and a ``(k²,)`` float64
        mask (1 inside the disc of radius ``(k-1)/2 + 1/2`` pixels, else 0; all ones when not
        ``circular``). Both are exactly symmetric under 90° turns and flips.
    """
    c = (kernel_size - 1) / 2
    i, j = torch.meshgrid(
        torch.arange(kernel_size, dtype=torch.float64),
        torch.arange(kernel_size, dtype=torch.float64),
        indexing="ij",
    )
    pixels = torch.stack([j - c, c - i], dim=-1).reshape(-1, 2)
    mask = torch.ones(pixels.shape[0], dtype=torch.float64)
    if circular:
        mask = (pixels.norm(dim=-1) <= c + 0.5 + 1e-9).to(torch.float64)
    return pixels / max(c, 1.0), mask


def _inverse_act(samples: GroupSamples, points: torch.Tensor) -> torch.Tensor:
    """``g⁻¹ p`` for every element ``g`` and point ``p``: ``(N, P, 2)``."""
    cos = snap_trig(torch.cos(samples.angles))[:, None]
    sin = snap_trig(torch.sin(samples.angles))[:, None]
    x, y = points[None, :, 0], points[None, :, 1]
    rx = cos * x + sin * y  # R(-a) p
    ry = -sin * x + cos * y
    rx = torch.where(samples.flips[:, None] > 0.5, -rx, rx)  # then F^s
    return torch.stack([rx, ry], dim=-1)


def _check_features(x: object, in_channels: int, name: str) -> GroupFeatures:
    if not isinstance(x, GroupFeatures):
        raise TypeError(
            f"{name} expected GroupFeatures (from a partial lifting layer), got {type(x).__name__}"
        )
    t = x.tensor
    if t.dim() != 5 or t.shape[1] != in_channels or t.shape[2] != len(x.samples):
        raise ValueError(
            f"{name} expected a tensor (B, {in_channels}, N={len(x.samples)}, H, W), got "
            f"{tuple(t.shape)}"
        )
    return x


class _PartialConv(nn.Module):
    """Shared parts: the sampler, the kernel net, the positions, the bias, the dtype checks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        group: str | FiniteGroup,
        samples: int | None,
        *,
        kernel_inputs: int,
        fan_in_elements: int,
        sampler: bool,
        padding: int | None,
        bias: bool,
        theta: float,
        learn_theta: bool,
        reflection_probability: float,
        learn_reflection: bool,
        stochastic: bool,
        theta_rate: float,
        reflection_rate: float,
        reflection_estimator: str,
        hidden: int,
        layers: int,
        kernel_net: str,
        omega_0: float,
        circular: bool,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_int(kernel_size, "kernel_size", 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centre pixel), got {kernel_size}")
        k = self.kernel_size
        self.padding = k // 2 if padding is None else check_int(padding, "padding", 0)
        self.sampler: ElementSampler | None = (
            ElementSampler(
                group,
                samples,
                theta=theta,
                learn_theta=learn_theta,
                reflection_probability=reflection_probability,
                learn_reflection=learn_reflection,
                stochastic=stochastic,
                theta_rate=theta_rate,
                reflection_rate=reflection_rate,
                reflection_estimator=reflection_estimator,
            )
            if sampler
            else None
        )
        positions, mask = kernel_positions(self.kernel_size, circular)
        self.register_buffer("positions", positions.float(), persistent=False)
        self.register_buffer("mask", mask.float(), persistent=False)
        fan_in = self.in_channels * fan_in_elements * max(int(mask.sum()), 1)
        self.kernel = KernelNet(
            kernel_inputs,
            self.out_channels * self.in_channels,
            fan_in,
            hidden=hidden,
            layers=layers,
            kind=kernel_net,
            omega_0=omega_0,
        )
        self.bias = nn.Parameter(torch.zeros(self.out_channels)) if bias else None

    def _dtype(self) -> torch.dtype:
        return self.kernel.net[0].weight.dtype

    def _work_dtype(self) -> torch.dtype:
        """Angles, rotations and their snapping run in float64 for float64 weights, else in
        float32 (half-precision angles would miss the exact 90° pixels)."""
        return torch.float64 if self._dtype() == torch.float64 else torch.float32

    def _samples(self, samples: GroupSamples | None) -> GroupSamples:
        if samples is None:
            if self.sampler is None:
                raise ValueError(
                    f"{type(self).__name__} has no sampler of its own: pass the output samples"
                )
            samples = self.sampler()
        if not isinstance(samples, GroupSamples):
            raise TypeError(f"expected samples as GroupSamples, got {type(samples).__name__}")
        return samples.to(self._work_dtype(), self.positions.device)

    def _check_dtype(self, x: torch.Tensor, name: str) -> None:
        if not x.is_floating_point():
            raise TypeError(f"{name} expected floating inputs, got dtype {x.dtype}")
        if x.dtype != self._dtype() and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"{name} has {self._dtype()} weights but got {x.dtype} inputs: convert the model "
                f"(model.to({x.dtype})) or the inputs"
            )

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, n_out: int) -> torch.Tensor:
        out = F.conv2d(x, weight, padding=self.padding)
        b, _, h, w = out.shape
        out = out.view(b, self.out_channels, n_out, h, w)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out

    def exactness_report(self, checked: FiniteGroup) -> tuple[bool | None, str] | None:
        """For :func:`equify.analysis.exact_sizes`: is this layer exact for ``checked``, and why.

        Stride 1 with symmetric padding keeps the geometry; exactness is decided by the group the
        evaluation samples form (:meth:`ElementSampler.evaluation_group`). None for a layer
        without a sampler (its output elements are another layer's, checked there).
        """
        if self.sampler is None:
            return None
        g = self.sampler.evaluation_group()
        if g is None:
            theta = float(self.sampler.theta.detach())
            return False, (
                f"partial: its samples cover θ = {theta:.3f} of the circle, not a group "
                f"containing {checked}"
            )
        try:
            g.from_matrix(checked.matrix(checked.elements()))
        except ValueError:
            return False, f"samples form {g}: not equivariant to every element of {checked}"
        return True, f"samples form {g}, stride 1"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}"
        )


_KERNEL_DEFAULTS = dict(hidden=32, layers=2, kernel_net="siren", omega_0=10.0, circular=True)


class PartialLiftingConv(_PartialConv):
    """Lifting convolution R² -> G on a learned subset of SE(2) / E(2) (or a fixed C_n / D_n).

    Args:
        in_channels: image channels ``C``.
        out_channels: output fields ``C'``.
        kernel_size: odd ``k``.
        group: ``"SE2"``, ``"E2"``, ``"C4"``, ``"D4"``, ... (see :class:`ElementSampler`).
        samples: rotations per pass (see :class:`ElementSampler`).
        padding: zero padding (default ``k // 2``: same size).
        bias: one bias per output field (shared by the elements).
        theta, learn_theta, reflection_probability, learn_reflection, stochastic, theta_rate,
            reflection_rate, reflection_estimator: the :class:`~equify.nn.ElementSampler`'s.
        hidden, layers, kernel_net, omega_0: the :class:`KernelNet`'s.
        circular: zero the kernel outside the inscribed disc.

    Shapes:
        ``(B, C, H, W)`` -> :class:`GroupFeatures` ``(B, C', N, H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        group: str | FiniteGroup = "SE2",
        samples: int | None = None,
        *,
        padding: int | None = None,
        bias: bool = True,
        theta: float = 1.0,
        learn_theta: bool = True,
        reflection_probability: float = 1.0,
        learn_reflection: bool = True,
        stochastic: bool = True,
        theta_rate: float = 1.0,
        reflection_rate: float = 100.0,
        reflection_estimator: str = "relaxed",
        **kernel: object,
    ) -> None:
        opts = {**_KERNEL_DEFAULTS, **_check_kernel_options(kernel)}
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            group,
            samples,
            kernel_inputs=2,
            fan_in_elements=1,
            sampler=True,
            padding=padding,
            bias=bias,
            theta=theta,
            learn_theta=learn_theta,
            reflection_probability=reflection_probability,
            learn_reflection=learn_reflection,
            stochastic=stochastic,
            theta_rate=theta_rate,
            reflection_rate=reflection_rate,
            reflection_estimator=reflection_estimator,
            **opts,
        )

    def filter_bank(self, samples: GroupSamples) -> torch.Tensor:
        """Conv weights ``(C'·N, C, k, k)`` for the output elements ``samples``."""
        k, n = self.kernel_size, len(samples)
        q = _inverse_act(samples, self.positions.to(self._work_dtype()))  # (N, P, 2)
        values = self.kernel(q.reshape(-1, 2).to(self._dtype()))
        values = values * self.mask.to(values.dtype).repeat(n)[:, None]
        values = values.view(n, k, k, self.out_channels, self.in_channels)
        return values.permute(3, 0, 4, 1, 2).reshape(self.out_channels * n, self.in_channels, k, k)

    def forward(self, x: torch.Tensor, samples: GroupSamples | None = None) -> GroupFeatures:
        """Lift images ``(B, C, H, W)`` to features on this pass's elements."""
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} expected images (B, {self.in_channels}, H, W), got {shape}")
        self._check_dtype(x, name)
        s = self._samples(samples)
        return GroupFeatures(self._conv(x, self.filter_bank(s), len(s)), s)


class PartialGroupConv(_PartialConv):
    """Group convolution G -> G between sampled subsets of SE(2) / E(2) (or C_n / D_n).

    The input's elements come with its :class:`GroupFeatures`; the output's are drawn from this
    layer's own sampler, or passed in (``sampler=False``: e.g. a residual shortcut that must land
    on the elements of the block's last convolution).

    Args:
        in_channels: input fields ``C``.
        out_channels: output fields ``C'``.
        kernel_size: odd ``k`` (1: a point-wise mixing over the elements).
        group, samples: as in :class:`PartialLiftingConv`; ``samples`` also fixes the kernel's
            scale (the number of input elements it expects).
        sampler: draw output elements (else ``forward`` needs ``samples``).
        Other arguments as in :class:`PartialLiftingConv`.

    Shapes:
        :class:`GroupFeatures` ``(B, C, N, H, W)`` -> ``(B, C', N', H', W')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        group: str | FiniteGroup = "SE2",
        samples: int | None = None,
        *,
        sampler: bool = True,
        padding: int | None = None,
        bias: bool = True,
        theta: float = 1.0,
        learn_theta: bool = True,
        reflection_probability: float = 1.0,
        learn_reflection: bool = True,
        stochastic: bool = True,
        theta_rate: float = 1.0,
        reflection_rate: float = 100.0,
        reflection_estimator: str = "relaxed",
        **kernel: object,
    ) -> None:
        opts = {**_KERNEL_DEFAULTS, **_check_kernel_options(kernel)}
        probe = ElementSampler(group, samples)  # validates group and samples, sizes the kernel
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            group,
            samples,
            kernel_inputs=5 if probe.reflections else 4,
            fan_in_elements=probe.size,
            sampler=sampler,
            padding=padding,
            bias=bias,
            theta=theta,
            learn_theta=learn_theta,
            reflection_probability=reflection_probability,
            learn_reflection=learn_reflection,
            stochastic=stochastic,
            theta_rate=theta_rate,
            reflection_rate=reflection_rate,
            reflection_estimator=reflection_estimator,
            **opts,
        )
        self.reflections = probe.reflections

    def filter_bank(self, inputs: GroupSamples, outputs: GroupSamples) -> torch.Tensor:
        """Conv weights ``(C'·N_out, C·N_in, k, k)`` from input to output elements."""
        k, n_in, n_out = self.kernel_size, len(inputs), len(outputs)
        p = self.positions.shape[0]
        q = _inverse_act(outputs, self.positions.to(self._work_dtype()))  # (N_out, P, 2)
        sign = 1.0 - 2.0 * outputs.flips  # g⁻¹h = R((-1)^s (b - a)) F^(s xor t)
        delta = sign[:, None] * (inputs.angles[None, :] - outputs.angles[:, None])
        rel = [snap_trig(torch.cos(delta)), snap_trig(torch.sin(delta))]
        if self.reflections:
            s, t = outputs.flips[:, None], inputs.flips[None, :]
            rel.append(2.0 * (s + t - 2.0 * s * t) - 1.0)
        rel_t = torch.stack(rel, dim=-1)  # (N_out, N_in, R)
        points = torch.cat(
            [
                q[:, None].expand(n_out, n_in, p, 2),
                rel_t[:, :, None].expand(n_out, n_in, p, rel_t.shape[-1]),
            ],
            dim=-1,
        )
        values = self.kernel(points.reshape(-1, points.shape[-1]).to(self._dtype()))
        values = values * self.mask.to(values.dtype).repeat(n_out * n_in)[:, None]
        values = values.view(n_out, n_in, k, k, self.out_channels, self.in_channels)
        values = values.permute(4, 0, 5, 1, 2, 3)
        return values.reshape(self.out_channels * n_out, self.in_channels * n_in, k, k)

    def forward(self, x: GroupFeatures, samples: GroupSamples | None = None) -> GroupFeatures:
        """Convolve features on the input's elements to features on the output's."""
        name = type(self).__name__
        x = _check_features(x, self.in_channels, name)
        self._check_dtype(x.tensor, name)
        out = self._samples(samples)
        inp = x.samples.to(self._work_dtype(), self.positions.device)
        n_in = len(inp)
        w = inp.weights * (n_in / inp.weights.sum().clamp_min(1e-12))
        t = x.tensor * w.to(x.tensor.dtype).view(1, 1, -1, 1, 1)
        b, c, _, h, wd = t.shape
        y = self._conv(t.reshape(b, c * n_in, h, wd), self.filter_bank(inp, out), len(out))
        return GroupFeatures(y, out)


def _check_kernel_options(options: dict[str, object]) -> dict[str, object]:
    unknown = sorted(set(options) - set(_KERNEL_DEFAULTS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(unknown)}; kernel options are "
            f"{', '.join(_KERNEL_DEFAULTS)}"
        )
    return options


class PartialBatchNorm(nn.BatchNorm3d):
    """Batch norm of :class:`GroupFeatures`: statistics per field over batch, elements, plane.

    The statistics include the elements of weight 0: their features are computed (only their
    contribution to the sums over the group that follow is dropped), so in training they move
    the batch statistics like any other element.

    Args:
        fields: ``C``.
        **kwargs: those of :class:`torch.nn.BatchNorm3d`.
    """

    def __init__(self, fields: int, **kwargs: object) -> None:
        super().__init__(check_int(fields, "fields", 1), **kwargs)

    def forward(self, x: GroupFeatures) -> GroupFeatures:  # type: ignore[override]
        x = _check_features(x, self.num_features, type(self).__name__)
        if x.tensor.shape[0] == 0:
            w = self.weight if self.weight is not None else x.tensor.new_ones(self.num_features)
            return x.with_tensor(x.tensor * w.view(1, -1, 1, 1, 1))
        return x.with_tensor(super().forward(x.tensor))


#: Reductions of :class:`PartialGroupPool`.
POOL_REDUCTIONS = ("max", "mean")


class PartialGroupPool(nn.Module):
    """Pool :class:`GroupFeatures` over the elements: ``(B, C, N, H, W) -> (B, C, H, W)``.

    ``"mean"``: ``Σ w_i f_i / Σ w_i``. ``"max"``: the max over the elements of weight 1 (a
    dropped element gets no gradient for its weight from the max: the weight's gradient comes
    from the group convolutions' sums) — written
    as ``m + max_i w_i (f_i - m)`` with ``m`` the minimum over the elements of non-zero weight
    (at least one element always has weight 1), so that a 0/1 weight drops an element
    exactly and the weights still receive gradients. Both are invariant to any permutation of
    the elements that keeps the weights.

    Args:
        reduction: ``"max"`` or ``"mean"``.
    """

    def __init__(self, reduction: str = "max") -> None:
        super().__init__()
        if reduction not in POOL_REDUCTIONS:
            raise ValueError(f"reduction must be one of {POOL_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, x: GroupFeatures) -> torch.Tensor:
        if not isinstance(x, GroupFeatures):
            raise TypeError(f"PartialGroupPool expected GroupFeatures, got {type(x).__name__}")
        t = x.tensor
        w = x.samples.weights.to(t.dtype).view(1, 1, -1, 1, 1)
        if self.reduction == "mean":
            return (t * w).sum(2) / w.sum(2).clamp_min(1e-12)
        if t.numel() == 0:
            return t.amax(2) if t.shape[2] else t.sum(2)
        kept = (x.samples.weights.detach() > 0).view(1, 1, -1, 1, 1)
        low = torch.where(kept, t.detach(), torch.inf).amin(2, keepdim=True)
        return low.squeeze(2) + ((t - low) * w).amax(2)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def spatial(fn: nn.Module, x: GroupFeatures) -> GroupFeatures:
    """Apply a 4-D spatial module (e.g. :class:`~equify.nn.CentredPool2d`) to every element."""
    t = x.tensor
    b, c, n, h, w = t.shape
    y = fn(t.reshape(b, c * n, h, w))
    return x.with_tensor(y.view(b, c, n, *y.shape[-2:]))
