"""Image transforms of the data layer: per-channel normalisation, resizing, symmetric padding.

No torchvision: everything is ``torch.nn.functional.pad`` / ``interpolate`` on ``(B, C, H, W)``
tensors, following the input's dtype and device and never modifying it in place.

Convention:
    * Normalisation statistics are computed on the train split only (population mean and standard
      deviation per channel over all samples and pixels, in float64) and applied unchanged to the
      test split: ``(x - mean) / std``.
    * :func:`pad_to_size` centres the image: of an odd number of padded rows (columns), the extra
      one goes to the bottom (right). Example: 28 -> 29 adds one row at the bottom and one column
      at the right, so the old pixel ``(i, j)`` keeps its index ``(i, j)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from equify.actions.base import check_tensor

__all__ = [
    "FITS",
    "ChannelStats",
    "channel_stats",
    "fit_to_size",
    "pad_to_size",
    "parse_size",
    "resize_images",
]

logger = logging.getLogger(__name__)

#: The ways :func:`fit_to_size` brings images to a size.
FITS = ("pad", "resize")
_RESIZE_MODES = ("bilinear", "bicubic", "nearest", "area")


def parse_size(size: object) -> tuple[int, int]:
    """``size`` as ``(H, W)``: an int ``s`` means ``(s, s)``.

    Raises:
        TypeError: not an int or a pair of ints.
        ValueError: a size below 1.
    """
    if isinstance(size, bool):
        raise TypeError(f"expected size as an int or (H, W), got {size!r}")
    if isinstance(size, int):
        hw = (size, size)
    elif (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"expected size as an int or a pair (H, W) of ints, got {size!r}")
    if min(hw) < 1:
        raise ValueError(f"expected a size of at least 1 pixel, got {size!r}")
    return hw


def _check_images(x: object) -> torch.Tensor:
    check_tensor(x, "images", (4,), "(B, C, H, W)")
    if not x.is_floating_point():
        raise TypeError(f"expected floating images, got dtype {x.dtype}")
    return x


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation used to normalise images.

    Attributes:
        mean: one value per channel.
        std: one positive value per channel.

    Example:
        >>> stats = ChannelStats(mean=(0.5,), std=(0.25,))
        >>> stats.normalize(torch.full((1, 1, 2, 2), 1.0))[0, 0, 0, 0].item()
        2.0
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) != len(std) or not mean:
            raise ValueError(
                f"expected one mean and one std per channel, got {len(mean)} means and "
                f"{len(std)} stds"
            )
        if any(not s > 0 for s in std):
            raise ValueError(f"expected positive standard deviations, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return len(self.mean)

    def _tensors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            raise ValueError(
                f"expected images of shape (..., {self.channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating images, got dtype {x.dtype}")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return mean, std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` for images ``(..., C, H, W)``; a new tensor of x's dtype."""
        mean, std = self._tensors(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`normalize`: ``x * std + mean``."""
        mean, std = self._tensors(x)
        return x * std + mean


def channel_stats(images: torch.Tensor, eps: float = 1e-8) -> ChannelStats:
    """Per-channel mean and (population) standard deviation of a batch, computed in float64.

    Args:
        images: ``(N, C, H, W)`` floating images (the train split).
        eps: a channel whose std is at most ``eps`` (a constant channel) gets std 1, with a
            logged warning, so that normalising it stays finite.

    Returns:
        :class:`ChannelStats` with ``C`` means and stds.
    """
    x = _check_images(images)
    if x.shape[0] == 0 or x.shape[-1] * x.shape[-2] == 0:
        raise ValueError(f"cannot compute statistics of an empty batch {tuple(x.shape)}")
    mean = torch.zeros(x.shape[1], dtype=torch.float64)
    sq = torch.zeros(x.shape[1], dtype=torch.float64)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    # Chunks keep the float64 copy small for large sets (60k x 28 x 28 is 376 MB in float64).
    for chunk in x.split(4096):
        c = chunk.detach().double()
        mean += c.sum(dim=(0, 2, 3)).cpu()
        sq += (c * c).sum(dim=(0, 2, 3)).cpu()
    mean /= count
    var = (sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    if bool((std <= eps).any()):
        logger.warning("constant channel(s) %s: using std 1", (std <= eps).nonzero().flatten())
        std = torch.where(std <= eps, torch.ones_like(std), std)
    return ChannelStats(tuple(mean.tolist()), tuple(std.tolist()))


def pad_to_size(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Zero-pad images symmetrically to ``size`` (see the module's Convention for odd pads).

    Args:
        images: ``(B, C, H, W)``, any dtype.
        size: target ``(H', W')`` (or an int for a square), each at least the current size.

    Returns:
        ``(B, C, H', W')``, a new tensor (``images`` itself when the size already matches).

    Raises:
        ValueError: a target smaller than the images (use :func:`resize_images`).
    """
    check_tensor(images, "images", (4,), "(B, C, H, W)")
    th, tw = parse_size(size)
    h, w = images.shape[-2:]
    if th < h or tw < w:
        raise ValueError(
            f"cannot pad images of size {h}x{w} to the smaller size {th}x{tw}: "
            "use fit='resize' (resize_images) to shrink them (in the equify command: --fit resize)"
        )
    if (th, tw) == (h, w):
        return images
    dh, dw = th - h, tw - w
    return F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def resize_images(
    images: torch.Tensor,
    size: int | tuple[int, int],
    mode: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize images to ``size`` with ``F.interpolate``.

    Args:
        images: ``(B, C, H, W)`` floating images.
        size: target ``(H', W')`` or an int for a square.
        mode: ``"bilinear"``, ``"bicubic"``, ``"nearest"`` or ``"area"``.
        antialias: low-pass filter when shrinking (bilinear/bicubic only).

    Returns:
        ``(B, C, H', W')`` of the input's dtype (``images`` itself when the size matches).
        Bicubic results are clamped to the input's value range.
    """
    x = _check_images(images)
    hw = parse_size(size)
    if mode not in _RESIZE_MODES:
        raise ValueError(f"mode must be one of {_RESIZE_MODES}, got {mode!r}")
    if tuple(x.shape[-2:]) == hw:
        return x
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1], *hw)
    kwargs = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(x, size=hw, mode=mode, **kwargs, **align)
    if mode == "bicubic":
        out = out.clamp(float(x.min()), float(x.max()))
    return out


def fit_to_size(
    images: torch.Tensor, size: int | tuple[int, int] | None, fit: str = "pad"
) -> torch.Tensor:
    """Bring images to ``size`` by zero-padding (``fit="pad"``) or resizing (``fit="resize"``).

    Args:
        images: ``(B, C, H, W)``.
        size: target size, or None to keep the images as they are.
        fit: ``"pad"`` (:func:`pad_to_size`, exact, only grows) or ``"resize"``
            (:func:`resize_images`, bilinear with antialiasing).

    Returns:
        ``(B, C, H', W')``.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if size is None:
        return images
    if fit == "pad":
        return pad_to_size(images, size)
    return resize_images(images, size)
