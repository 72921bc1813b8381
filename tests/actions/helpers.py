"""Helpers for action tests."""

from __future__ import annotations

import torch


def smooth_images(
    b: int, c: int, h: int, w: int, dtype=torch.float64, seed: int = 0
) -> torch.Tensor:
    """Sums of Gaussian blobs: smooth enough for interpolation errors to stay small."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, h, dtype=torch.float64),
        torch.linspace(-1, 1, w, dtype=torch.float64),
        indexing="ij",
    )
    out = torch.zeros(b, c, h, w, dtype=torch.float64)
    for _ in range(4):
        cx, cy = torch.rand(2, b, c, 1, 1, generator=gen, dtype=torch.float64) - 0.5
        amp = torch.randn(b, c, 1, 1, generator=gen, dtype=torch.float64)
        out += amp * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.2)
    return out.to(dtype)


def disk(h: int, w: int, frac: float) -> torch.Tensor:
    """Boolean (H, W): pixel centres within ``frac`` of the inscribed radius."""
    u = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    v = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    return (u[None] ** 2 + v[:, None] ** 2) <= (frac * min(h, w) / 2) ** 2
