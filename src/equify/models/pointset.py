"""An ordinary (not equivariant) transformer over the points of a set: atoms, particles.

It reads the raw packed channels of every point (:class:`~equify.actions.PointLayout`:
coordinates, vectors, scalars, mask) with a linear embedding, so it depends on the orientation
and position of the set like any off-the-shelf model: the kind of predictor that equify's
canonicalization and frame averaging make invariant or equivariant.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PointTransformer"]


class PointTransformer(nn.Module):
    """Self-attention over the points of a set, then a per-set or per-point head.

    Args:
        in_channels: channels per point ``C``.
        num_classes: outputs: per set (``per_point=False``: ``(B, num_classes)``, e.g. molecular
            properties) or per point (``(B, N, num_classes)``, e.g. future positions).
        width: the embedding width.
        depth: transformer layers.
        heads: attention heads (must divide ``width``).
        per_point: one output per point instead of one per set.
        masked: the last input channel is a padding mask (1 real, 0 padding): padding points are
            neither attended to nor pooled, and their per-point outputs are 0.
        residual: add the first ``num_classes`` input channels to the per-point output (with
            ``num_classes = 3``: the network predicts a displacement of the positions).
        dropout: dropout inside the transformer layers.

    Shapes:
        ``(B, N, C)`` -> ``(B, num_classes)`` or ``(B, N, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        depth: int = 3,
        heads: int = 4,
        per_point: bool = False,
        masked: bool = False,
        residual: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if width % heads:
            raise ValueError(f"heads ({heads}) must divide width ({width})")
        if residual and (not per_point or num_classes > in_channels):
            raise ValueError("residual needs per_point=True and num_classes <= in_channels")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.per_point, self.masked, self.residual = bool(per_point), bool(masked), bool(residual)
        self.embed = nn.Sequential(
            nn.Linear(in_channels, width), nn.GELU(), nn.Linear(width, width)
        )
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=2 * width,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(
                f"expected point sets (B, N, {self.in_channels}), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        real = x[..., -1] > 0.5 if self.masked else None
        h = self.encoder(self.embed(x), src_key_padding_mask=None if real is None else ~real)
        h = self.norm(h)
        if self.per_point:
            out = self.head(h)
            if self.residual:
                out = out + x[..., : self.num_classes]
            return out if real is None else out * real[..., None].to(out.dtype)
        if real is None:
            pooled = h.mean(1)
        else:
            w = real[..., None].to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(pooled)
