"""Arbitrary, deliberately non-equivariant predictors for the canonicalization tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import ImageAction
from equify.groups import FiniteGroup


class FlattenCNN(nn.Module):
    """Conv + flatten + linear head: depends on where things are, so not invariant."""

    def __init__(self, in_channels: int, size: int, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 6, 3, padding=1)
        self.head = nn.Linear(6 * ((size + 1) // 2) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv(x)), 2, ceil_mode=True)
        return self.head(h.flatten(1))


class PatchEmbedding(nn.Module):
    """A tiny ViT-like model: patch embedding, learned positional embeddings, attention, head."""

    def __init__(self, in_channels: int, size: int, patch: int = 4, dim: int = 16) -> None:
        super().__init__()
        self.patch = patch
        n = -(-size // patch)
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, n * n, dim))
        self.attn = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (-x.shape[-1]) % self.patch
        x = F.pad(x, (0, pad, 0, pad))
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.attn(tokens)[:, 0])


class DenseNet(nn.Module):
    """Per-pixel logits with a learned positional bias: not equivariant."""

    def __init__(self, in_channels: int, size: int, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, classes, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(1, classes, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.bias


class OrbitScoreNet(nn.Module):
    """A user-supplied score network: score_h = f(h⁻¹·x) for an ordinary f, regular by design."""

    def __init__(self, group: FiniteGroup, in_channels: int) -> None:
        super().__init__()
        self.group = group
        self.f = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(3),
            nn.Flatten(),
            nn.Linear(36, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act, g = ImageAction(), self.group
        return torch.cat([self.f(act.apply(x, g.inverse(h), g)) for h in range(g.order)], dim=1)
