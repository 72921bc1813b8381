"""ResNets (He et al. 2016) written from scratch: basic and bottleneck residual blocks.

The layout follows the usual ImageNet ResNet: a stem, four stages of residual blocks with
``base_width * (1, 2, 4, 8)`` channels (times 4 for bottlenecks), global average pooling and a
linear head. ``resnet50(num_classes=1000, in_channels=3)`` has the standard 25,557,032
parameters. Downsampling happens in the 3x3 convolution of a bottleneck (the "v1.5" variant).

Parameter names follow the widespread layout ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` (blocks
with ``conv1``/``bn1``/``conv2``/``bn2``/[``conv3``/``bn3``] and a ``downsample`` 1x1 conv + BN),
``fc``; so the state dict of a ResNet with that layout, torchvision's included, loads into the
model of the same depth and ``num_classes`` without any renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from equify.models._checks import check_images, check_positive_int, check_widths

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50"]


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """None (identity shortcut), or a strided 1x1 conv + BN when the shape changes."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 conv/BN layers with a residual connection (ResNet-18/34).

    Args:
        c_in: input channels.
        width: output channels (``expansion = 1``).
        stride: stride of the first convolution (2 halves ``H`` and ``W``, rounding up).

    Shape:
        - Input: ``(B, c_in, H, W)``.
        - Output: ``(B, width, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(c_in, width, 3, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50).

    Args:
        c_in: input channels.
        width: channels of the 3x3 convolution; the output has ``4 * width``.
        stride: stride of the 3x3 convolution.

    Shape:
        - Input: ``(B, c_in, H, W)``.
        - Output: ``(B, 4 * width, ceil(H / stride), ceil(W / stride))``.
    """

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = _conv(c_in, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, c_out, 1)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The three conv/BN layers (ReLU between them) plus the shortcut, then ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)

    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch."""
        return self.bn3


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(nn.Module):
    """A residual network classifier.

    Args:
        block: ``"basic"`` (:class:`BasicBlock`) or ``"bottleneck"`` (:class:`Bottleneck`).
        layers: number of blocks in each stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: number of output logits ``K``.
        in_channels: input channels ``C``.
        small_input: False: the ImageNet stem, a 7x7 stride-2 conv + BN + ReLU + 3x3 stride-2
            max pool (total stride 4 before the stages, for 224x224 inputs). True: a 3x3
            stride-1 conv + BN + ReLU without pooling (for 28x28 or 32x32 inputs).
        base_width: channels of the stem and the first stage (64 for the standard nets; a
            smaller value gives a lighter net for tests).
        zero_init_residual: start the last BN of each block at zero, so every block starts as
            the identity (Goyal et al. 2017).

    Stage ``i`` (0-based) has ``base_width * 2**i`` block width and stride 2 except the first.
    Global average pooling makes the net work at any input size (at least 1 pixel after the
    stem and three stride-2 stages), but it is not rotation-invariant: its 3x3 and 7x7
    filters, strides and zero padding are not symmetric.

    Shape:
        - Input: ``(B, C, H, W)`` floating.
        - Output: ``(B, K)`` logits.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        small_input: bool = False,
        base_width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"expected block to be one of {sorted(_BLOCKS)}, got {block!r}")
        if not isinstance(small_input, bool):
            raise TypeError(f"expected small_input to be a bool, got {type(small_input).__name__}")
        block_cls = _BLOCKS[block]
        self.layers = check_widths(layers, "layers")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.base_width = check_positive_int(base_width, "base_width")
        self.small_input = small_input
        if small_input:
            self.conv1 = _conv(self.in_channels, base_width, 3)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = _conv(self.in_channels, base_width, 7, stride=2)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        c_in = base_width
        self.stage_names: list[str] = []
        for i, n_blocks in enumerate(self.layers):
            width = base_width * 2**i
            blocks: list[nn.Module] = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_cls(c_in, width, stride))
                c_in = width * block_cls.expansion
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, self.num_classes)
        self.num_features = c_in
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the head.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, num_features)`` (2048 for ResNet-50, 512 for ResNet-18 at ``base_width=64``).
        """
        check_images(x, self.in_channels, 1, type(self).__name__)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, K)`` logits.
        """
        return self.fc(self.forward_features(x))


def resnet18(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18: basic blocks ``(2, 2, 2, 2)``; 11,689,512 parameters at the defaults.

    See :class:`ResNet` for the arguments.
    """
    return ResNet(
        "basic",
        (2, 2, 2, 2),
        num_classes,
        in_channels,
        small_input=small_input,
        base_width=base_width,
        zero_init_residual=zero_init_residual,
    )


def resnet34(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-34: basic blocks ``(3, 4, 6, 3)``; 21,797,672 parameters at the defaults.

    See :class:`ResNet` for the arguments.
    """
    return ResNet(
        "basic",
        (3, 4, 6, 3),
        num_classes,
        in_channels,
        small_input=small_input,
        base_width=base_width,
        zero_init_residual=zero_init_residual,
    )


def resnet50(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-50: bottleneck blocks ``(3, 4, 6, 3)``; 25,557,032 parameters at the defaults.

    See :class:`ResNet` for the arguments.
    """
    return ResNet(
        "bottleneck",
        (3, 4, 6, 3),
        num_classes,
        in_channels,
        small_input=small_input,
        base_width=base_width,
        zero_init_residual=zero_init_residual,
    )
