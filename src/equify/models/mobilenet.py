"""MobileNetV2 (Sandler et al., CVPR 2018) written in plain torch, ImageNet-compatible.

The layout is the usual ImageNet one: a strided 3x3 stem, 17 inverted-residual blocks with the
expansion / channels / repeats / stride table of the paper, a 1x1 convolution to 1280 channels,
global average pooling, dropout and a linear head. Parameter names follow the widespread layout
(``features.<i>...``, ``classifier.1``), so an ImageNet state dict with that layout — torchvision's
BSD-3 ``mobilenet_v2-b0353104.pth`` among them — loads without any renaming
(:func:`equify.models.load_pretrained_weights`).

The model takes raw ``[0, 1]`` RGB images: the ImageNet normalisation (or none) is part of it,
and grey images (``in_channels=1``) are repeated to three channels before the first convolution,
so the ImageNet stem is used unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from equify.models._checks import check_images, check_positive_int, check_probability

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "InputAdapter", "MobileNetV2", "mobilenet_v2"]

#: Channel means and standard deviations of ImageNet's RGB training images (in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The inverted-residual table of the paper: expansion t, channels c, repeats n, stride s.
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to a multiple of ``divisor``, never more than 10% below it."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


class ConvBNReLU6(nn.Sequential):
    """Convolution (no bias), BatchNorm, ReLU6; ``groups=c_in`` makes it depthwise.

    Shape: ``(B, c_in, H, W)`` → ``(B, c_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion (when ``expansion > 1``), 3x3 depthwise (strided), linear 1x1 projection;
    a residual connection when the shape is kept.

    Shape: ``(B, c_in, H, W)`` → ``(B, c_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(c_in * expansion)
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class InputAdapter(nn.Module):
    """Raw ``[0, 1]`` images to the network's input: grey repeated to RGB, then normalised.

    Args:
        in_channels: 1 (grey, repeated to three channels) or 3.
        mean, std: per-channel statistics of the three-channel input (None: no normalisation).

    Shape: ``(B, in_channels, H, W)`` → ``(B, 3, H, W)``, in the input's dtype and device.
    The statistics are non-persistent buffers: they are not part of the state dict.
    """

    def __init__(
        self,
        in_channels: int,
        mean: tuple[float, float, float] | None = IMAGENET_MEAN,
        std: tuple[float, float, float] | None = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"expected in_channels 1 (grey) or 3 (RGB), got {in_channels!r}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.in_channels = in_channels
        self.normalize = mean is not None
        m = torch.tensor(mean if mean is not None else (0.0,) * 3).view(1, 3, 1, 1)
        s = torch.tensor(std if std is not None else (1.0,) * 3).view(1, 3, 1, 1)
        if (s <= 0).any():
            raise ValueError(f"std must be positive, got {std}")
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if not self.normalize:
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class MobileNetV2(nn.Module):
    """MobileNetV2 classifier on raw ``[0, 1]`` images.

    Args:
        num_classes: size of the head (1000 for the ImageNet weights).
        in_channels: 1 (grey images, repeated to RGB) or 3.
        width_mult: channel multiplier (1.0: the ImageNet model, 3,504,872 parameters).
        dropout: dropout before the head.
        normalization: ``"imagenet"`` (the ImageNet statistics, what the ImageNet weights expect)
            or None (the input is used as it comes, e.g. when the data is normalised outside).

    Shape:
        - Input: ``(B, in_channels, H, W)`` floating, ``H, W >= 1`` (224 for ImageNet).
        - Output: ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        normalization: str | None = "imagenet",
    ) -> None:
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        check_positive_int(in_channels, "in_channels")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)):
            raise TypeError(f"expected width_mult to be a float, got {type(width_mult).__name__}")
        if width_mult <= 0:
            raise ValueError(f"expected width_mult > 0, got {width_mult}")
        check_probability(dropout, "dropout")
        if normalization not in ("imagenet", None):
            raise ValueError(f"normalization must be 'imagenet' or None, got {normalization!r}")
        stats = (IMAGENET_MEAN, IMAGENET_STD) if normalization == "imagenet" else (None, None)
        self.in_channels = in_channels
        #: the model applies the ImageNet statistics itself (raw [0, 1] images in)
        self.normalizes_input = normalization == "imagenet"
        self.input = InputAdapter(in_channels, *stats)
        c = _divisible(32 * width_mult)
        last = _divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(3, c, stride=2)]
        for t, channels, n, s in _BLOCKS:
            out = _divisible(channels * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers.append(ConvBNReLU6(c, last, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-out) convolutions, unit BatchNorm, a small normal head."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        """The final linear layer."""
        return self.classifier[1]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the head: ``(B, in_channels, H, W)`` → ``(B, 1280)``."""
        check_images(x, self.in_channels, 1, "MobileNetV2")
        return self.features(self.input(x)).mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def mobilenet_v2(
    num_classes: int = 1000,
    in_channels: int = 3,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    normalization: str | None = "imagenet",
) -> MobileNetV2:
    """The ImageNet MobileNetV2 layout (see :class:`MobileNetV2`), freshly initialised.

    ``load_pretrained_weights(mobilenet_v2(...), "imagenet")`` gives it the ImageNet weights.
    """
    return MobileNetV2(num_classes, in_channels, width_mult, dropout, normalization)
