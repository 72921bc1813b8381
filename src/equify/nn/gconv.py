"""Group-equivariant convolutions on the plane: lifting (image -> regular) and group (regular ->
regular) convolutions for ``CyclicGroup(n)`` and ``DihedralGroup(n)``.

Both layers hold one learnable kernel per (output field, input field) pair and build the full
filter bank of a plain ``Conv2d`` by transforming it with every group element (see
:mod:`equify.nn.kernels`). :meth:`export` returns that ``nn.Conv2d`` with the bank precomputed.

Convention:
    Regular feature maps are ``(B, C·|G|, H, W)`` with channel ``c·|G| + h`` (group axis inner),
    transforming as ``(g·f)(p, h) = f(g⁻¹p, g⁻¹h)`` (:class:`~equify.actions.RegularAction`).
    PyTorch convolutions are cross-correlations, ``y(p) = Σ_d K(d) x(p + d)``. With the
    transformed kernels ``(h·K)(d) = K(h⁻¹d)``:

    * lifting: ``y(p, h) = Σ_d K(h⁻¹d) x(p + d)``;
    * group: ``y(p, h) = Σ_k Σ_d Ψ(h⁻¹d, h⁻¹k) f(p + d, k)``: for output element ``h`` the input
      group slot ``k`` gets the learnable kernel of slot ``h⁻¹k``, transformed spatially by ``h``.

    Substituting ``d = g d'``, ``k = g k'`` shows ``y[g·x](p, h) = y[x](g⁻¹p, g⁻¹h)``: both layers
    are equivariant for every ``g`` whose kernel transform is exact (all elements of C1, C2, C4,
    D1, D2, D4; the 90° multiples and axis-aligned flips otherwise) and approximately so for
    interpolated elements. A bias is shared over the group axis of each output field.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equify.groups import FiniteGroup
from equify.groups import group as parse_group
from equify.nn.kernels import check_kernel_size, kernel_transform_basis, resolve_basis

__all__ = ["GroupConv2d", "LiftingConv2d", "check_features", "check_finite_group"]


def check_finite_group(group: object) -> FiniteGroup:
    """Return ``group`` as a :class:`FiniteGroup` (names like ``"C4"`` are parsed).

    Raises:
        TypeError: not a finite planar group.
    """
    if isinstance(group, str):
        group = parse_group(group)
    if not isinstance(group, FiniteGroup):
        raise TypeError(
            "expected a finite group (CyclicGroup(n), DihedralGroup(n) or a name like 'C4'), "
            f"got {group!r}"
        )
    return group


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_features(
    x: object, channels: int, shape_doc: str, ref: torch.Tensor | None = None
) -> torch.Tensor:
    """Validate a floating ``(B, C, H, W)`` batch with ``channels`` channels.

    Args:
        x: the candidate input.
        channels: the expected channel count ``C``.
        shape_doc: how the expected shape is written in error messages.
        ref: a parameter whose dtype and device the input must match.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of shape {shape_doc}, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"expected input of shape {shape_doc}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(
            f"expected {channels} input channels {shape_doc}, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating input, got dtype {x.dtype}")
    if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
        raise TypeError(
            f"input is {x.dtype} on {x.device} but the parameters are {ref.dtype} on "
            f"{ref.device}; move the module with .to(dtype=..., device=...) first"
        )
    return x


class _PlanarGroupConv(nn.Module):
    """Shared machinery: validation, the transform basis, the filter bank and export."""

    in_fields_have_group_axis: bool = False
    _in_shape_doc: str = "(B, C, H, W)"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        group: FiniteGroup | str,
        padding: int | None = None,
        bias: bool = True,
        kernel_basis: str = "auto",
        interpolation: str = "bilinear",
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.group = check_finite_group(group)
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.out_channels = _check_positive_int(out_channels, "out_channels")
        self.kernel_size = check_kernel_size(kernel_size)
        self.stride = _check_positive_int(stride, "stride")
        self.dilation = _check_positive_int(dilation, "dilation")
        if padding is None:
            padding = self.dilation * (self.kernel_size // 2)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int or None, got {padding!r}")
        self.padding = padding
        self.kernel_basis = resolve_basis(self.group, kernel_basis)
        self.interpolation = interpolation
        basis = kernel_transform_basis(
            self.group, self.kernel_size, self.kernel_basis, interpolation
        )
        # float64 master copy kept off the state dict and away from .to(): it is derived from the
        # group and kernel size, and casting it down to float32 and back would lose precision.
        self._basis64 = basis
        self._basis_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        n_coefficients = basis.shape[-1]
        order = self.group.order
        group_axis = (order,) if self.in_fields_have_group_axis else ()
        shape = (self.out_channels, self.in_channels, *group_axis, n_coefficients)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    @property
    def fan_in(self) -> int:
        """Coefficients feeding one output unit: input channels (times |G|) times ``n``."""
        return math.prod(self.weight.shape[1:])

    def reset_parameters(self) -> None:
        """Uniform init with bound ``1/sqrt(fan_in)``, like ``nn.Conv2d``."""
        bound = 1.0 / math.sqrt(self.fan_in)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def _basis(self) -> torch.Tensor:
        key = (self.weight.device, self.weight.dtype)
        t = self._basis_cache.get(key)
        if t is None:
            t = self._basis64.to(device=self.weight.device, dtype=self.weight.dtype)
            self._basis_cache[key] = t
        return t

    def filter_bank(self) -> torch.Tensor:
        """The expanded ``Conv2d`` weight (differentiable), shape ``(Cout·|G|, Cin', k, k)``."""
        raise NotImplementedError

    def expanded_bias(self) -> torch.Tensor | None:
        """The bias repeated over the group axis, ``(Cout·|G|,)``, or None."""
        if self.bias is None:
            return None
        return self.bias.repeat_interleave(self.group.order)

    @property
    def conv_in_channels(self) -> int:
        """Channels the input must have."""
        g_in = self.group.order if self.in_fields_have_group_axis else 1
        return self.in_channels * g_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.conv_in_channels, self._in_shape_doc, ref=self.weight)
        return F.conv2d(
            x,
            self.filter_bank(),
            self.expanded_bias(),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )

    def export(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the filter bank precomputed (same output, no group code).

        The copy is detached: training it does not update this layer.
        """
        conv = nn.Conv2d(
            self.conv_in_channels,
            self.out_channels * self.group.order,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(self.filter_bank())
            if self.bias is not None:
                conv.bias.copy_(self.expanded_bias())
        return conv.train(self.training)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"group={self.group!r}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, bias={self.bias is not None}, "
            f"kernel_basis={self.kernel_basis!r} ({self.weight.shape[-1]} coefficients)"
        )


class LiftingConv2d(_PlanarGroupConv):
    """Lifting convolution: images ``(B, Cin, H, W)`` -> regular features ``(B, Cout·|G|, H', W')``.

    Output channel ``c·|G| + h`` is the correlation of the input with kernel ``c`` transformed by
    ``h``. Equivariant: ``conv(ImageAction().apply(x, g, G)) == RegularAction(G).apply(conv(x),
    g, G)`` to float rounding for every exact ``g``.

    Args:
        in_channels: input image channels ``Cin``.
        out_channels: output fields ``Cout`` (the output has ``Cout·|G|`` channels).
        kernel_size: odd ``k``.
        group: ``CyclicGroup(n)``, ``DihedralGroup(n)`` or a name such as ``"D4"``.
        padding: zero padding; default ``dilation · (k // 2)`` keeps the size at stride 1.
        bias: learn one bias per output field, shared over the group axis.
        kernel_basis: ``"auto"`` | ``"square"`` | ``"disk"`` | ``"harmonic"``
            (:mod:`equify.nn.kernels`): ``"auto"`` learns all ``k²`` pixels for groups whose
            elements are all exact, and smooth ring harmonics otherwise.
        interpolation: ImageAction interpolation that rotates pixel kernels by non-exact angles.
        stride, dilation: as in ``nn.Conv2d``. A stride > 1 keeps 90° rotations and flips
            exact only when the sampling grid is centred, ``(N + 2p − d(k − 1) − 1) % s == 0``
            (:func:`equify.analysis.exact_sizes` tells which sizes do).

    Shapes:
        weight: ``(Cout, Cin, n)`` with ``n`` coefficients per kernel (``k²`` for
        ``"square"``).
    """

    in_fields_have_group_axis = False
    _in_shape_doc = "(B, Cin, H, W)"

    def filter_bank(self) -> torch.Tensor:
        """Expanded weight ``(Cout·|G|, Cin, k, k)``: ``W[o·|G| + h, i] = h·K[o, i]``."""
        k = self.kernel_size
        w = torch.einsum("hds,ois->ohid", self._basis(), self.weight)
        return w.reshape(self.out_channels * self.group.order, self.in_channels, k, k)


class GroupConv2d(_PlanarGroupConv):
    """Group convolution: regular features ``(B, Cin·|G|, H, W)`` -> ``(B, Cout·|G|, H', W')``.

    Equivariant under :class:`~equify.actions.RegularAction` on both sides (to float rounding
    for every exact element). The kernel of output element ``h`` and input slot ``k`` is the
    learnable kernel of slot ``h⁻¹k`` transformed spatially by ``h`` (see the module Convention).

    Args:
        in_channels: input fields ``Cin`` (the input has ``Cin·|G|`` channels).
        out_channels: output fields ``Cout``.
        kernel_size, group, padding, bias, kernel_basis, interpolation, stride, dilation: as in
            :class:`LiftingConv2d`.

    Shapes:
        weight: ``(Cout, Cin, |G|, n)`` with ``n`` coefficients per kernel.
    """

    in_fields_have_group_axis = True
    _in_shape_doc = "(B, Cin·|G|, H, W)"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        g = self.group
        e = g.elements()
        # slot[h, k] = h⁻¹k: which learnable group slot feeds input slot k of output element h
        self.register_buffer(
            "_slot", g.compose(g.inverse(e)[:, None], e[None, :]), persistent=False
        )

    def filter_bank(self) -> torch.Tensor:
        """Expanded weight ``(Cout·|G|, Cin·|G|, k, k)``.

        ``W[o·|G| + h, i·|G| + k] = h·Ψ[o, i, h⁻¹k]``.
        """
        k, n = self.kernel_size, self.group.order
        permuted = self.weight[:, :, self._slot]  # (Cout, Cin, |G|_h, |G|_k, n)
        w = torch.einsum("hds,oihks->ohikd", self._basis(), permuted)
        return w.reshape(self.out_channels * n, self.in_channels * n, k, k)
