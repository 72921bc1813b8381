"""A tiny vision transformer: patch embedding, learned positional embeddings, encoder, head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from equify.models._checks import check_images, check_positive_int, check_probability

__all__ = ["PatchEmbeddingClassifier"]

_POOLINGS = ("cls", "mean")


def _size_pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 2:
            raise ValueError(f"expected {name} as an int or (H, W), got {value!r}")
        return check_positive_int(value[0], name), check_positive_int(value[1], name)
    side = check_positive_int(value, name)
    return side, side


class PatchEmbeddingClassifier(nn.Module):
    """A small ViT classifier that accepts any image size.

    The image is zero-padded on the right and bottom up to the next multiple of ``patch_size``
    (nothing is padded when ``H`` and ``W`` are multiples already), cut into non-overlapping
    ``patch_size x patch_size`` patches by a strided convolution, and each patch token gets a
    LEARNED positional embedding. The embeddings are learned on the grid of ``image_size``
    (``ceil(image_size / patch_size)`` patches a side); at another grid size they are resized
    bilinearly (``align_corners=False``) to the current grid. A class token (``pooling="cls"``)
    or the mean of the patch tokens (``pooling="mean"``) feeds a LayerNorm and a linear head.

    Positional embeddings, one-sided padding and the patch grid make the model deliberately
    neither rotation- nor reflection-invariant.

    Convention:
        Padding goes to the right and the bottom only (``F.pad(x, (0, pw, 0, ph))``), so a
        ``27 x 27`` input gives the same logits as that input zero-padded to ``28 x 28``.

    Args:
        in_channels: input channels ``C``.
        num_classes: number of output logits ``K``.
        image_size: the size the positional embeddings are learned for, an int or ``(H, W)``.
        patch_size: side of the square patches.
        embed_dim: token width ``D``; a multiple of ``num_heads``.
        depth: number of ``nn.TransformerEncoderLayer`` layers (pre-norm, GELU).
        num_heads: attention heads.
        mlp_ratio: hidden width of the feed-forward block as a multiple of ``D``.
        dropout: dropout probability inside the encoder.
        pooling: ``"cls"`` or ``"mean"``.

    Shape:
        - Input: ``(B, C, H, W)`` floating, any ``H, W >= 1``.
        - Output: ``(B, K)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        image_size: int | Sequence[int] = 28,
        patch_size: int = 4,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.image_size = _size_pair(image_size, "image_size")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.embed_dim = check_positive_int(embed_dim, "embed_dim")
        check_positive_int(depth, "depth")
        check_positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(
                f"expected embed_dim to be a multiple of num_heads, got {embed_dim} and {num_heads}"
            )
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f"expected mlp_ratio to be a positive number, got {mlp_ratio!r}")
        p = check_probability(dropout, "dropout")
        if pooling not in _POOLINGS:
            raise ValueError(f"expected pooling to be one of {_POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.grid = tuple(math.ceil(s / patch_size) for s in self.image_size)

        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *self.grid))
        if pooling == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, embed_dim))
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            num_heads,
            dim_feedforward=round(embed_dim * mlp_ratio),
            dropout=p,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if pooling == "cls":
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)

    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The learned positional embeddings resized to a patch grid.

        Args:
            grid: ``(gh, gw)`` patches.

        Returns:
            ``(1, D, gh, gw)``; the learned parameter itself when ``grid`` is the learned grid.
        """
        if tuple(grid) == self.grid:
            return self.pos_embed
        return F.interpolate(self.pos_embed, size=grid, mode="bilinear", align_corners=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, normalised token features.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, D)``.
        """
        check_images(x, self.in_channels, 1, "PatchEmbeddingClassifier")
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        t = self.patch_embed(x)  # (B, D, gh, gw)
        t = t + self.positional_embedding((t.shape[-2], t.shape[-1]))
        t = t.flatten(2).transpose(1, 2)  # (B, N, D)
        if self.pooling == "cls":
            cls = (self.cls_token + self.cls_pos).expand(t.shape[0], -1, -1)
            t = torch.cat([cls, t], dim=1)
        t = self.norm(self.encoder(t))
        return t[:, 0] if self.pooling == "cls" else t.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: ``(B, C, H, W)`` images.

        Returns:
            ``(B, K)`` logits.
        """
        return self.head(self.forward_features(x))
