"""P4 / P4M group-equivariant CNNs and ResNets (Cohen & Welling 2016), built from ``equify.nn``.

Each network lifts the image to regular features of C4 (P4) or D4 (P4M), applies group
convolutions with :class:`~equify.nn.RegularBatchNorm` and ReLU, downsamples, pools over the
group axis (the cosets: max over the orientations of each field) and over the plane, and ends in
a linear head: invariant logits.

Downsampling, the subject of Edixhoven et al. (ICCVw 2023):

* ``downsampling="strided"`` (the usual construction, as in the paper): a stride-2 group
  convolution (kernel 3, padding 1). It is exact only where its sampling grid is centred,
  ``(N + 2·1 − 3) % 2 == 0``, i.e. for odd ``N`` at every stage: a network with two stages is
  exactly invariant for ``N ≡ 1 (mod 4)`` and only approximately otherwise;
* ``downsampling="centred"``: a stride-1 group convolution followed by
  :class:`~equify.nn.CentredPool2d`, exact at every input size.

:func:`equify.analysis.exact_sizes` predicts (and measures) which sizes keep either exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equify.groups import CyclicGroup, DihedralGroup, FiniteGroup
from equify.groups import group as parse_group
from equify.models._checks import check_images, check_positive_int, check_widths
from equify.nn import CentredPool2d, GroupConv2d, GroupPool, LiftingConv2d, RegularBatchNorm

__all__ = ["DOWNSAMPLING", "GroupCNN", "GroupResNet", "p4cnn", "p4mcnn", "p4mresnet", "p4resnet"]

#: How the networks downsample.
DOWNSAMPLING = ("strided", "centred")


def _group(group: FiniteGroup | str) -> FiniteGroup:
    g = parse_group(group) if isinstance(group, str) else group
    if not isinstance(g, FiniteGroup):
        raise ValueError(f"expected a finite group such as 'C4' or 'D4', got {group!r}")
    return g


def _check_downsampling(value: str) -> str:
    if value not in DOWNSAMPLING:
        raise ValueError(f"downsampling must be one of {DOWNSAMPLING}, got {value!r}")
    return value


class _Head(nn.Module):
    """Coset max over the group axis, mean over the plane, linear: invariant logits."""

    def __init__(self, group: FiniteGroup, fields: int, num_classes: int) -> None:
        super().__init__()
        self.pool = GroupPool(group, "max")
        self.linear = nn.Linear(fields, num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(f).mean(dim=(-2, -1)))


def _down(group: FiniteGroup, fields: int, mode: str, kernel_size: int) -> list[nn.Module]:
    if mode == "strided":
        return [GroupConv2d(fields, fields, 3, group, padding=1, stride=2, bias=False)]
    return [
        GroupConv2d(fields, fields, kernel_size, group, bias=False),
        CentredPool2d(2, mode="max"),
    ]


class GroupCNN(nn.Module):
    """A plain group CNN: lifting, ``len(channels)`` stages, coset pooling, linear head.

    Stage ``i`` is a group convolution with ``channels[i]`` fields, batch norm and ReLU; every
    stage but the last is followed by a downsampling step (see the module docstring).

    Args:
        group: ``"C4"`` (P4), ``"D4"`` (P4M) or another finite group (C8 and D8 work too, with
            interpolated kernels and only approximate equivariance).
        in_channels: image channels.
        num_classes: logits.
        channels: fields per stage (each has ``fields·|G|`` channels).
        kernel_size: odd kernel of the lifting and group convolutions.
        downsampling: ``"strided"`` or ``"centred"``.

    Shapes:
        input ``(B, C, H, W)`` with ``H == W`` (90° rotations need square images); output
        ``(B, num_classes)``. ``features(x)`` gives the last regular feature map
        ``(B, channels[-1]·|G|, h, w)`` before pooling.
    """

    def __init__(
        self,
        group: FiniteGroup | str = "C4",
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        channels: Sequence[int] = (8, 16, 32),
        kernel_size: int = 3,
        downsampling: str = "strided",
    ) -> None:
        super().__init__()
        self.group = _group(group)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        widths = check_widths(channels, "channels")
        self.downsampling = _check_downsampling(downsampling)
        g = self.group
        layers: list[nn.Module] = [
            LiftingConv2d(self.in_channels, widths[0], kernel_size, g, bias=False),
            RegularBatchNorm(g, widths[0]),
            nn.ReLU(),
        ]
        for i, w in enumerate(widths):
            if i:
                layers += [
                    GroupConv2d(widths[i - 1], w, kernel_size, g, bias=False),
                    RegularBatchNorm(g, w),
                    nn.ReLU(),
                ]
            if i < len(widths) - 1:
                layers += [*_down(g, w, self.downsampling, kernel_size), RegularBatchNorm(g, w)]
                layers.append(nn.ReLU())
        self.features_net = nn.Sequential(*layers)
        self.head = _Head(g, widths[-1], self.num_classes)
        self.min_size = 2 ** (len(widths) - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last regular feature map ``(B, channels[-1]·|G|, h, w)``."""
        check_images(x, self.in_channels, self.min_size, type(self).__name__)
        return self.features_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Invariant logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        return self.head(self.features(x))


class _GroupBlock(nn.Module):
    """A residual block of group convolutions; the first of a stage may downsample."""

    def __init__(self, group, fields_in: int, fields: int, down: bool, mode: str, k: int):
        super().__init__()
        g = group
        if down and mode == "strided":
            first: list[nn.Module] = [GroupConv2d(fields_in, fields, 3, g, 1, False, stride=2)]
            shortcut: nn.Module = nn.Sequential(
                GroupConv2d(fields_in, fields, 1, g, 0, False, stride=2),
                RegularBatchNorm(g, fields),
            )
        else:
            first = [GroupConv2d(fields_in, fields, k, g, bias=False)]
            if down:
                first.append(CentredPool2d(2, mode="avg"))
            same = fields_in == fields and not down
            shortcut = (
                nn.Identity()
                if same
                else nn.Sequential(
                    GroupConv2d(fields_in, fields, 1, g, 0, False),
                    *([CentredPool2d(2, mode="avg")] if down else []),
                    RegularBatchNorm(g, fields),
                )
            )
        self.main = nn.Sequential(
            *first,
            RegularBatchNorm(g, fields),
            nn.ReLU(),
            GroupConv2d(fields, fields, k, g, bias=False),
            RegularBatchNorm(g, fields),
        )
        self.shortcut = shortcut
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.main(x) + self.shortcut(x))


class GroupResNet(nn.Module):
    """A residual group CNN: lifting, stages of residual blocks, coset pooling, linear head.

    Args:
        group, in_channels, num_classes, kernel_size, downsampling: as in :class:`GroupCNN`
            (a strided block downsamples with a stride-2 3x3 group convolution and a stride-2
            1x1 shortcut, exact only for odd sizes at every stage).
        channels: fields per stage.
        blocks: residual blocks per stage.
    """

    def __init__(
        self,
        group: FiniteGroup | str = "C4",
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        channels: Sequence[int] = (8, 16, 32),
        blocks: int = 1,
        kernel_size: int = 3,
        downsampling: str = "strided",
    ) -> None:
        super().__init__()
        self.group = _group(group)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        widths = check_widths(channels, "channels")
        n_blocks = check_positive_int(blocks, "blocks")
        self.downsampling = _check_downsampling(downsampling)
        g = self.group
        layers: list[nn.Module] = [
            LiftingConv2d(self.in_channels, widths[0], kernel_size, g, bias=False),
            RegularBatchNorm(g, widths[0]),
            nn.ReLU(),
        ]
        fields = widths[0]
        for i, w in enumerate(widths):
            for b in range(n_blocks):
                down = i > 0 and b == 0
                layers.append(_GroupBlock(g, fields, w, down, self.downsampling, kernel_size))
                fields = w
        self.features_net = nn.Sequential(*layers)
        self.head = _Head(g, widths[-1], self.num_classes)
        self.min_size = 2 ** (len(widths) - 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last regular feature map before pooling."""
        check_images(x, self.in_channels, self.min_size, type(self).__name__)
        return self.features_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def p4cnn(**kwargs) -> GroupCNN:
    """:class:`GroupCNN` on C4 (P4)."""
    return GroupCNN(CyclicGroup(4), **kwargs)


def p4mcnn(**kwargs) -> GroupCNN:
    """:class:`GroupCNN` on D4 (P4M)."""
    return GroupCNN(DihedralGroup(4), **kwargs)


def p4resnet(**kwargs) -> GroupResNet:
    """:class:`GroupResNet` on C4 (P4)."""
    return GroupResNet(CyclicGroup(4), **kwargs)


def p4mresnet(**kwargs) -> GroupResNet:
    """:class:`GroupResNet` on D4 (P4M)."""
    return GroupResNet(DihedralGroup(4), **kwargs)
