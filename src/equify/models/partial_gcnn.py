"""Partial G-CNN classifiers (Romero & Lohit, NeurIPS 2022) and their two baselines.

:class:`PartialGCNN`: a partial lifting convolution, ``blocks`` residual blocks of partial group
convolutions (each convolution samples its own elements, with its own θ and, for E(2), its own
reflection probability), a centred 2x downsampling before every block
(:class:`~equify.nn.CentredPool2d`, exact at every size), a weighted max over the
elements, a mean over the plane and a linear head. A block is
``conv → BN → ReLU → conv → BN`` plus a 1x1 partial group convolution shortcut that lands on the
second convolution's elements, then ReLU.

* ``partial_gcnn``: θ (and p) learned, initialised at 1;
* ``full_gcnn``: θ = 1 and p = 1 frozen, the full (sampled) SE(2) / E(2) G-CNN;
* ``ordinary_cnn``: :class:`ResidualCNN`, the same layout with ordinary convolutions of the same
  width (channels = fields).

Layers with a sampler, in order (``"lift"``, ``"block1.conv1"``, ``"block1.conv2"``, ...), are
listed by :meth:`PartialGCNN.samplers`; :meth:`PartialGCNN.equivariance_state` reports their θ
and p and :meth:`PartialGCNN.regularization_loss` is the optional monotonicity regulariser
``λ Σ_l ReLU(θ_{l+1} - θ_l)`` (later layers no more equivariant than earlier ones).
"""

from __future__ import annotations

import torch
from torch import nn

from equify.groups import FiniteGroup
from equify.models._checks import check_images, check_positive_int
from equify.nn import CentredPool2d
from equify.nn.partial import (
    GroupFeatures,
    PartialBatchNorm,
    PartialGroupConv,
    PartialGroupPool,
    PartialLiftingConv,
    spatial,
)
from equify.nn.sampling import ElementSampler

__all__ = ["PartialGCNN", "ResidualCNN", "full_gcnn", "ordinary_cnn", "partial_gcnn"]


def _relu(x: GroupFeatures) -> GroupFeatures:
    return x.with_tensor(torch.relu(x.tensor))


class _PartialBlock(nn.Module):
    def __init__(self, fields_in: int, fields: int, kernel_size: int, opts: dict) -> None:
        super().__init__()
        self.conv1 = PartialGroupConv(fields_in, fields, kernel_size, bias=False, **opts)
        self.bn1 = PartialBatchNorm(fields)
        self.conv2 = PartialGroupConv(fields, fields, kernel_size, bias=False, **opts)
        self.bn2 = PartialBatchNorm(fields)
        self.shortcut = PartialGroupConv(fields_in, fields, 1, sampler=False, bias=False, **opts)
        self.bn_short = PartialBatchNorm(fields)

    def forward(self, x: GroupFeatures) -> GroupFeatures:
        h = _relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = self.bn_short(self.shortcut(x, h.samples))
        return h.with_tensor(torch.relu(h.tensor + s.tensor))


class PartialGCNN(nn.Module):
    """A residual partial group CNN classifier on SE(2) or E(2).

    Args:
        group: ``"SE2"``, ``"E2"`` (or a fixed finite group, ``"C4"``/``"D4"``: no sampling).
        in_channels: image channels.
        num_classes: logits.
        width: fields of every layer.
        blocks: residual blocks.
        samples: rotations each layer samples per pass (E(2): twice as many elements).
        kernel_size: odd kernel of the lifting and group convolutions.
        learn_theta: learn θ per layer (False: θ frozen at ``theta``).
        learn_reflection: learn the reflection probability per layer (E(2)).
        theta: initial θ (1: full rotations).
        monotonic_weight: λ of the monotonicity regulariser (0: off).
        theta_rate, reflection_rate: how much faster than the weights θ and p learn
            (:class:`~equify.nn.ElementSampler`).
        reflection_estimator: the reflection weight's gradient, ``"relaxed"`` or
            ``"straight_through"`` (:class:`~equify.nn.ElementSampler`).
        pooling: ``"max"`` or ``"mean"`` over the elements at the end.
        hidden, kernel_net, omega_0: the kernel networks' (:class:`~equify.nn.KernelNet`).

    Shapes:
        input ``(B, C, H, W)`` (any size >= ``2^blocks``); output ``(B, num_classes)``.
    """

    def __init__(
        self,
        group: str | FiniteGroup = "SE2",
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        width: int = 12,
        blocks: int = 2,
        samples: int | None = None,
        kernel_size: int = 5,
        learn_theta: bool = True,
        learn_reflection: bool = True,
        theta: float = 1.0,
        monotonic_weight: float = 0.0,
        theta_rate: float = 1.0,
        reflection_rate: float = 100.0,
        reflection_estimator: str = "relaxed",
        pooling: str = "max",
        hidden: int = 32,
        kernel_net: str = "siren",
        omega_0: float = 10.0,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        width = check_positive_int(width, "width")
        n_blocks = check_positive_int(blocks, "blocks")
        if isinstance(monotonic_weight, bool) or not isinstance(monotonic_weight, (int, float)):
            raise TypeError(f"expected monotonic_weight as a number, got {monotonic_weight!r}")
        if monotonic_weight < 0:
            raise ValueError(f"monotonic_weight must be >= 0, got {monotonic_weight}")
        self.monotonic_weight = float(monotonic_weight)
        opts = dict(
            group=group,
            samples=samples,
            theta=theta,
            learn_theta=learn_theta,
            learn_reflection=learn_reflection,
            reflection_probability=1.0,
            theta_rate=theta_rate,
            reflection_rate=reflection_rate,
            reflection_estimator=reflection_estimator,
            hidden=hidden,
            kernel_net=kernel_net,
            omega_0=omega_0,
        )
        self.lift = PartialLiftingConv(self.in_channels, width, kernel_size, bias=False, **opts)
        self.bn = PartialBatchNorm(width)
        self.blocks = nn.ModuleList(
            [_PartialBlock(width, width, kernel_size, opts) for _ in range(n_blocks)]
        )
        self.down = CentredPool2d(2, mode="max")
        self.pool = PartialGroupPool(pooling)
        self.head = nn.Linear(width, self.num_classes)
        self.min_size = 2**n_blocks
        self.group_name = self.lift.sampler.group_name  # type: ignore[union-attr]

    def features(self, x: torch.Tensor) -> GroupFeatures:
        """The last features on the group, before pooling."""
        check_images(x, self.in_channels, self.min_size, type(self).__name__)
        h = _relu(self.bn(self.lift(x)))
        for block in self.blocks:
            h = block(spatial(self.down, h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)``."""
        return self.head(self.pool(self.features(x)).mean(dim=(-2, -1)))

    def samplers(self) -> dict[str, ElementSampler]:
        """The layers' element samplers, in depth order, by name."""
        out: dict[str, ElementSampler] = {"lift": self.lift.sampler}  # type: ignore[dict-item]
        for i, block in enumerate(self.blocks, start=1):
            out[f"block{i}.conv1"] = block.conv1.sampler  # type: ignore[assignment]
            out[f"block{i}.conv2"] = block.conv2.sampler  # type: ignore[assignment]
        return out

    def equivariance_state(self) -> dict[str, dict[str, float]]:
        """``{layer: {"theta": θ, "reflection_probability": p}}`` (p for E(2) only)."""
        return {name: s.summary() for name, s in self.samplers().items()}

    def regularization_loss(self) -> torch.Tensor:
        """``λ Σ_l ReLU(θ_{l+1} - θ_l)`` over the layers in depth order (0 when λ = 0)."""
        thetas = [s.theta for s in self.samplers().values()]
        ref = self.head.weight
        if not self.monotonic_weight or len(thetas) < 2:
            return torch.zeros((), dtype=ref.dtype, device=ref.device)
        t = torch.stack(thetas)
        return self.monotonic_weight * torch.relu(t[1:] - t[:-1]).sum().to(ref.dtype)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.main(x) + x)


class ResidualCNN(nn.Module):
    """The ordinary-CNN baseline: :class:`PartialGCNN`'s layout with plain convolutions.

    Args:
        in_channels, num_classes, width, blocks, kernel_size: as in :class:`PartialGCNN`
            (``width`` channels everywhere).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        width: int = 12,
        blocks: int = 2,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        width = check_positive_int(width, "width")
        n_blocks = check_positive_int(blocks, "blocks")
        k = check_positive_int(kernel_size, "kernel_size")
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_channels, width, k, padding=k // 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        for _ in range(n_blocks):
            layers += [CentredPool2d(2, mode="max"), _ResBlock(width, k)]
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.num_classes)
        self.min_size = 2**n_blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_channels, self.min_size, type(self).__name__)
        return self.head(self.net(x).mean(dim=(-2, -1)))


def partial_gcnn(group: str = "SE2", **kwargs) -> PartialGCNN:
    """:class:`PartialGCNN` with learned θ (and reflection probability), initialised at 1."""
    return PartialGCNN(group, **kwargs)


def full_gcnn(group: str = "SE2", **kwargs) -> PartialGCNN:
    """The full G-CNN baseline: :class:`PartialGCNN` with θ = 1 and p = 1 frozen."""
    for key in ("learn_theta", "learn_reflection", "theta"):
        if key in kwargs:
            raise TypeError(f"full_gcnn fixes {key}; use partial_gcnn to set it")
    return PartialGCNN(group, learn_theta=False, learn_reflection=False, **kwargs)


def ordinary_cnn(**kwargs) -> ResidualCNN:
    """The ordinary-CNN baseline of the same layout and width (:class:`ResidualCNN`)."""
    return ResidualCNN(**kwargs)
