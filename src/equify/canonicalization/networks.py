"""Small equivariant networks that score group elements, for learned canonicalization.

:class:`GroupScoreNetwork` maps images to one score per element of a finite group ``C_n``/``D_n``;
the scores permute like the regular representation, so ``argmax`` is an equivariant choice of
group element (Kaba et al. 2023; Mondal et al. 2023). :class:`VectorNetwork` turns such scores
into vectors that rotate with the input, for the continuous groups SO(2) and O(2).

Convention:
    * Scores ``(B, |G|)``: ``scores(ImageAction().apply(x, g, G)) ==
      RegularAction(G).apply(scores(x), g, G)``, i.e. ``scores(g·x)[h] = scores(x)[g⁻¹h]``.
    * Vectors ``(B, k, 2)`` in the display frame (x right, y up), ``v(g·x) = matrix(g) @ v(x)``
      (:class:`~equify.actions.PointAction`); ``k = 1`` for SO(2), ``k = 2`` for O(2).

Exactness (float64, default networks, random init; the tests pin these with margins):
    * C1, C2, C4, D1, D2, D4: exact to float rounding at every input size (relative error
      below 1e-14 in float64 for every size 9..40, ~1e-6 in float32), thanks to
      :class:`~equify.nn.CentredPool2d`. The same network with plain stride-2 pooling
      (``downsampling="strided"``) is exact only when every intermediate size is even: with two
      blocks, only for sizes divisible by 4.
    * Groups with interpolated elements: exact to rounding (~1e-15) for the elements whose image
      action is exact (the 90° multiples inside C8, the D4 inside D8, 180° in C6),
      approximate for the others. Worst relative score error over the non-exact elements, mean
      of 3 seeds (worst seed):

      ======  ===============  ===============  ===============  ===============
      group   smooth 33x33     noise 33x33      smooth 64x64     noise 64x64
      ======  ===============  ===============  ===============  ===============
      C8      0.048 (0.059)    0.15 (0.19)      0.022 (0.037)    0.088 (0.14)
      D8      0.078 (0.15)     0.30 (0.59)      0.048 (0.093)    0.15 (0.30)
      C3      0.046 (0.069)    0.11 (0.18)      0.027 (0.044)    0.12 (0.25)
      C6      0.059 (0.073)    0.14 (0.20)      0.038 (0.042)    0.064 (0.086)
      ======  ===============  ===============  ===============  ===============

      "smooth" are sums of Gaussian blobs (tests/actions/helpers.py), "noise" is white noise,
      whose pixel-scale content no interpolated rotation can reproduce.
    * :class:`VectorNetwork`, 64 Haar-sampled angles on smooth images, relative vector error
      max (median), mean of 3 seeds: SO(2) 0.066 (0.036) at 33x33, 0.041 (0.021) at 64x64;
      O(2) 0.11 (0.052) at 33x33, 0.066 (0.031) at 64x64. Exact to rounding for the 90°
      multiples and the flips of D4.
    * float32 on CUDA: cuDNN's default TF32 convolutions round to ~1e-4 relative (measured
      8e-5 / 9e-5 for C4 / D4 on an H100), above the checker's float32 default of 1e-5; with
      ``torch.backends.cudnn.allow_tf32 = False`` it is ~2e-6.
"""

from __future__ import annotations

import torch
from torch import nn

from equify._validation import check_int as _check_int
from equify.actions import circle_mask
from equify.groups import O2, SO2, CyclicGroup, DihedralGroup, FiniteGroup, Group
from equify.groups import group as parse_group
from equify.nn import CentredPool2d, GroupConv2d, LiftingConv2d, RegularGroupNorm, exact_elements
from equify.nn.gconv import check_features, check_finite_group
from equify.ties import default_tie_tolerance, tie_mask

__all__ = [
    "GroupScoreNetwork",
    "InscribedDiskMask",
    "ScoresToVectors",
    "SpatialMean",
    "VectorNetwork",
    "count_parameters",
]

_DOWNSAMPLING = ("centred", "strided", "none")
_INPUT_MASKS = ("auto", "circle", None)


class InscribedDiskMask(nn.Module):
    """Zero every pixel outside the disk inscribed in the image: ``(B, C, H, W)`` in and out.

    The disk (``equify.actions.circle_mask``) is invariant under every exact grid symmetry and,
    up to pixelation, under every rotation, so masked inputs of rotated images look alike.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * circle_mask(x.shape[-2], x.shape[-1], x.device).to(x.dtype)


class SpatialMean(nn.Module):
    """Mean over the spatial axes, ``(B, C, H, W) -> (B, C)``; optionally over the inscribed disk.

    Args:
        disk: average only the pixels of the inscribed disk (``circle_mask``).
    """

    def __init__(self, disk: bool = False) -> None:
        super().__init__()
        self.disk = bool(disk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.disk:
            return x.mean(dim=(-2, -1))
        m = circle_mask(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        return (x * m).sum(dim=(-2, -1)) / m.sum()

    def extra_repr(self) -> str:
        return f"disk={self.disk}"


class _StridedPool2d(nn.AvgPool2d):
    """Plain stride-2 average pooling (kernel 2): centred only for even sizes."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2)

    def export(self) -> nn.AvgPool2d:
        return nn.AvgPool2d(kernel_size=2, stride=2)


def _export(module: nn.Module) -> nn.Module:
    """Plain-PyTorch version of one building block."""
    if hasattr(module, "export"):
        return module.export()
    if isinstance(module, (nn.ReLU, nn.Identity, InscribedDiskMask)):
        return type(module)()
    if isinstance(module, SpatialMean):
        return SpatialMean(module.disk)
    raise TypeError(f"no export rule for {type(module).__name__}")


class GroupScoreNetwork(nn.Module):
    """Equivariant scores of every group element: ``(B, Cin, H, W) -> (B, |G|)``.

    Architecture: ``num_layers`` blocks of (lifting conv for the first, group conv after;
    :class:`~equify.nn.RegularGroupNorm`; ReLU; exact downsampling by 2), then a one-field group
    conv and a spatial mean. Defaults: ``kernel_size=5``, ``hidden_channels = min(8, max(2,
    64 // |G|))`` fields (at most 64 channels), and ``num_layers`` 3 for the groups whose every
    element acts exactly (C1, C2, C4, D1, D2, D4: a 64x64 input is scored from an 8x8 map) and
    2 for the others (C8, D8, C3, ...: from a 16x16 map).

    Depth: with two blocks, a D4 canonicalizer trained on the identity prior alone (upright
    MNIST digits, 10 epochs, one-cycle rate) kept 96.7% of held-out upright digits upright; a
    third block made it 97.9% (``benchmarks/upright_gap.py --probe``; ``equify adapt --group
    D4`` gained 0.8–2.0 points upright from it, ``benchmarks/upright_gap.py``); a fourth block
    or wider blocks (16 fields) did not help. For groups with
    interpolated elements a third block at 1/8 resolution multiplied the C8 error on smooth
    64x64 images by 4 (0.021 -> 0.092), so they keep two.

    Measured defaults (``in_channels=3``): parameters C4 14.3k, D4 27.9k (three blocks), C8 5.4k
    (harmonic kernels), D8 3.0k (4 fields). ``export()`` gains little on CPU (the filter
    expansion is cheap next to the convolutions) but ~4x on an H100. The third block runs at
    1/4 resolution, so it adds little time: see ``benchmarks/canonicalization_overhead.py``.

    Args:
        group: ``CyclicGroup(n)``, ``DihedralGroup(n)`` or a name such as ``"C4"``.
        in_channels: image channels ``Cin``.
        hidden_channels: regular fields per hidden layer (``hidden·|G|`` channels); None for
            ``min(8, max(2, 64 // |G|))``.
        kernel_size: odd kernel size of every convolution.
        num_layers: hidden blocks (>= 1); each halves the resolution unless
            ``downsampling="none"``. None: 3 for groups that act exactly, 2 otherwise.
        downsampling: ``"centred"`` (:class:`~equify.nn.CentredPool2d`, exact at every size),
            ``"none"``, or ``"strided"`` (plain ``AvgPool2d(2, 2)``: exact only when every
            intermediate size is even; kept to demonstrate the failure, Edixhoven et al. 2023).
        input_mask: ``"circle"`` to zero the input outside its inscribed disk and average the
            final map over the disk only; ``None`` for neither; ``"auto"`` picks ``"circle"`` for
            groups with interpolated elements (where it reduces the equivariance error) and
            ``None`` otherwise.
        kernel_basis: ``"auto"`` | ``"square"`` | ``"disk"`` | ``"harmonic"``
            (:mod:`equify.nn.kernels`); ``"auto"``: pixels for exact groups, harmonics otherwise.
        interpolation: how kernels are rotated by non-exact angles (ImageAction interpolation).

    Shapes:
        input ``(B, Cin, H, W)`` floating, same dtype and device as the parameters; any
        ``H, W >= 1`` (rotations by 90° need ``H == W``); output ``(B, |G|)``.

    Example:
        >>> net = GroupScoreNetwork(CyclicGroup(4), in_channels=3)
        >>> net(torch.randn(2, 3, 33, 33)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        group: FiniteGroup | str,
        in_channels: int,
        hidden_channels: int | None = None,
        kernel_size: int = 5,
        num_layers: int | None = None,
        downsampling: str = "centred",
        input_mask: str | None = "auto",
        kernel_basis: str = "auto",
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        self.group = check_finite_group(group)
        self.in_channels = _check_int(in_channels, "in_channels", 1)
        if hidden_channels is None:
            hidden_channels = min(8, max(2, 64 // self.group.order))
        hidden = _check_int(hidden_channels, "hidden_channels", 1)
        self.hidden_channels = hidden
        exact_group = len(exact_elements(self.group)) == self.group.order
        if num_layers is None:
            num_layers = 3 if exact_group else 2
        layers = _check_int(num_layers, "num_layers", 1)
        self.num_layers = layers
        if downsampling not in _DOWNSAMPLING:
            raise ValueError(f"downsampling must be one of {_DOWNSAMPLING}, got {downsampling!r}")
        if input_mask not in _INPUT_MASKS:
            raise ValueError(f"input_mask must be one of {_INPUT_MASKS}, got {input_mask!r}")
        if input_mask == "auto":
            input_mask = None if exact_group else "circle"
        self.input_mask = input_mask
        self.downsampling = downsampling
        conv_kw = {
            "kernel_size": kernel_size,
            "group": self.group,
            "kernel_basis": kernel_basis,
            "interpolation": interpolation,
        }
        blocks: list[nn.Module] = []
        if input_mask == "circle":
            blocks.append(InscribedDiskMask())
        for i in range(layers):
            conv_cls = LiftingConv2d if i == 0 else GroupConv2d
            blocks.append(conv_cls(in_channels if i == 0 else hidden, hidden, **conv_kw))
            blocks.append(RegularGroupNorm(self.group, hidden))
            blocks.append(nn.ReLU())
            if downsampling == "centred":
                blocks.append(CentredPool2d(2))
            elif downsampling == "strided":
                blocks.append(_StridedPool2d())
        blocks.append(GroupConv2d(hidden, 1, bias=False, **conv_kw))
        blocks.append(SpatialMean(disk=input_mask == "circle"))
        self.blocks = nn.Sequential(*blocks)

    @property
    def first_conv(self) -> LiftingConv2d:
        return next(m for m in self.blocks if isinstance(m, LiftingConv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, |G|)`` of images ``(B, Cin, H, W)``."""
        check_features(x, self.in_channels, "(B, Cin, H, W)", ref=self.first_conv.weight)
        return self.blocks(x)

    def export(self) -> nn.Sequential:
        """Plain PyTorch (``Conv2d``, ``GroupNorm``, ``ReLU``, pooling) with the same output.

        The filter banks are precomputed and detached; use the result for inference.
        """
        return nn.Sequential(*(_export(m) for m in self.blocks)).train(self.training)


class ScoresToVectors(nn.Module):
    """``v_j = Σ_h s(h) · matrix(h) @ e_j``: scores ``(B, |G|)`` -> vectors ``(B, k, 2)``.

    If the scores are regular-equivariant, ``v(g·x) = matrix(g) @ v(x)``:
    ``Σ_h s(g⁻¹h) M_h e = Σ_h' s(h') M_{g h'} e = M_g Σ_h' s(h') M_h' e``.

    Args:
        group: the finite group of the scores.
        num_vectors: ``k``, using the basis vectors ``e_1 .. e_k`` (1 or 2).
    """

    def __init__(self, group: FiniteGroup, num_vectors: int) -> None:
        super().__init__()
        self.group = check_finite_group(group)
        self.num_vectors = _check_int(num_vectors, "num_vectors", 1)
        if num_vectors > 2:
            raise ValueError(f"num_vectors must be 1 or 2, got {num_vectors}")
        # (|G|, k, 2): row j of element h is M_h e_j (column j of M_h); float64, kept off .to().
        self._basis64 = self.group.matrix(self.group.elements()).transpose(-1, -2)[:, :num_vectors]
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        key = (scores.device, scores.dtype)
        basis = self._cache.get(key)
        if basis is None:
            basis = self._basis64.to(device=scores.device, dtype=scores.dtype)
            self._cache[key] = basis
        # For n >= 2 rotations Σ_h M_h e_j = 0, so centring changes nothing mathematically.
        # Scores that are all tied (a blank or fully symmetric input: equal up to rounding)
        # give exactly zero vectors, and so does a vector that is pure rounding, below
        # rtol·Σ|s - mean s| (e.g. v1 of a 180°-symmetric image, whose pairs of scores cancel):
        # the frame rule then sees a degenerate frame instead of reading a direction out of
        # noise, whatever the scale of the scores. Every test depends only on the multiset of
        # scores and on norms, so the vectors stay equivariant.
        centred = scores - scores.mean(dim=1, keepdim=True)
        v = torch.einsum("bh,hkd->bkd", centred, basis)
        if v.numel():
            _, rtol = default_tie_tolerance(scores.dtype)
            tied = tie_mask(scores).all(dim=1)
            mass = centred.abs().sum(dim=1)
            noise = v.norm(dim=-1) <= rtol * mass[:, None]
            v = torch.where((noise | tied[:, None])[..., None], torch.zeros_like(v), v)
        return v

    def export(self) -> ScoresToVectors:
        """A copy (already plain PyTorch)."""
        return ScoresToVectors(self.group, self.num_vectors)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, num_vectors={self.num_vectors}"


class VectorNetwork(nn.Module):
    """Vectors that rotate with the input, for SO(2) / O(2): ``(B, Cin, H, W) -> (B, k, 2)``.

    A :class:`GroupScoreNetwork` on ``C_n`` (for SO(2)) or ``D_n`` (for O(2)) with
    ``n = n_rotations`` scores every element ``h``; :class:`ScoresToVectors` turns the scores into
    ``v_j = Σ_h s(h) matrix(h) e_j`` (``k = 1`` for SO(2); ``k = 2`` for O(2), which also sees
    reflections). The input is masked to its inscribed disk (and the last map averaged over the
    disk), so a rotated image looks alike to the network. A canonicalizer builds its frame from
    the vectors (e.g. Gram-Schmidt).

    Exactness: ``v(g·x) = matrix(g) @ v(x)`` to float rounding for the exact elements of
    ``C_n``/``D_n`` (90° multiples and axis flips when ``4 | n``); other angles are approximate
    (see the module docstring and the tests for measured errors).

    Args:
        group: ``SO2()``, ``O2()``, ``"SO2"`` or ``"O2"``.
        in_channels: image channels ``Cin``.
        n_rotations: ``n >= 3``; multiples of 4 keep the 90° rotations exact.
        hidden_channels, kernel_size, num_layers, kernel_basis, interpolation: as in
            :class:`GroupScoreNetwork`.
    """

    def __init__(
        self,
        group: Group | str,
        in_channels: int,
        n_rotations: int = 8,
        hidden_channels: int | None = None,
        kernel_size: int = 5,
        num_layers: int = 2,
        kernel_basis: str = "auto",
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if isinstance(group, str):
            group = parse_group(group)
        if not isinstance(group, (SO2, O2)):
            raise ValueError(
                f"VectorNetwork is for the continuous planar groups SO2() and O2(), got {group!r}; "
                "use GroupScoreNetwork for finite groups"
            )
        n = _check_int(n_rotations, "n_rotations", 3)
        self.group = group
        self.finite_group: FiniteGroup = (
            DihedralGroup(n) if isinstance(group, O2) else CyclicGroup(n)
        )
        self.num_vectors = 2 if isinstance(group, O2) else 1
        self.scores = GroupScoreNetwork(
            self.finite_group,
            in_channels,
            hidden_channels=hidden_channels,
            kernel_size=kernel_size,
            num_layers=num_layers,
            input_mask="circle",
            kernel_basis=kernel_basis,
            interpolation=interpolation,
        )
        self.to_vectors = ScoresToVectors(self.finite_group, self.num_vectors)

    @property
    def in_channels(self) -> int:
        return self.scores.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors ``(B, k, 2)`` of images ``(B, Cin, H, W)``."""
        return self.to_vectors(self.scores(x))

    def export(self) -> nn.Sequential:
        """Plain PyTorch modules with the same output (filter banks precomputed, detached)."""
        return nn.Sequential(self.scores.export(), self.to_vectors.export()).train(self.training)


def count_parameters(module: nn.Module) -> int:
    """Number of learnable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
