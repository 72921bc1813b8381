"""Normalisation statistics, padding (odd sizes), resizing."""

from __future__ import annotations

import pytest
import torch

from equify.data import ChannelStats, channel_stats, fit_to_size, pad_to_size, resize_images
from equify.data.transforms import parse_size

from ..conftest import devices


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channel_stats_match_torch_mean_and_population_std(dtype) -> None:
    x = (
        torch.rand(50, 3, 7, 5, dtype=dtype)
        * torch.tensor([1.0, 2.0, 0.5], dtype=dtype)[:, None, None]
    )
    stats = channel_stats(x)
    xd = x.double().transpose(0, 1).reshape(3, -1)
    assert stats.channels == 3
    assert torch.allclose(torch.tensor(stats.mean, dtype=torch.float64), xd.mean(1), atol=1e-6)
    assert torch.allclose(
        torch.tensor(stats.std, dtype=torch.float64), xd.std(1, unbiased=False), atol=1e-6
    )
    z = stats.normalize(x)
    assert z.dtype == dtype
    zd = z.double().transpose(0, 1).reshape(3, -1)
    assert torch.allclose(zd.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(zd.std(1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(stats.denormalize(z), x, atol=1e-5)


def test_constant_channel_gets_std_one() -> None:
    x = torch.rand(4, 2, 3, 3)
    x[:, 1] = 0.5
    stats = channel_stats(x)
    assert stats.std[1] == 1.0 and stats.mean[1] == pytest.approx(0.5)
    assert torch.isfinite(stats.normalize(x)).all()


@pytest.mark.parametrize("device", devices())
def test_normalize_follows_device_and_does_not_modify_input(device) -> None:
    stats = ChannelStats((0.5,), (0.25,))
    x = torch.rand(2, 1, 4, 4, device=device)
    before = x.clone()
    y = stats.normalize(x)
    assert y.device == x.device and torch.equal(x, before)
    assert torch.allclose(y, (x - 0.5) / 0.25)


def test_channel_stats_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        ChannelStats((0.0,), (0.0,))
    with pytest.raises(ValueError, match="one mean and one std"):
        ChannelStats((0.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, H, W\)"):
        ChannelStats((0.0,), (1.0,)).normalize(torch.zeros(1, 3, 2, 2))
    with pytest.raises(TypeError, match="floating"):
        channel_stats(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


def test_pad_28_to_29_puts_the_odd_pixel_bottom_right() -> None:
    x = torch.rand(3, 1, 28, 28)
    y = pad_to_size(x, 29)
    assert y.shape == (3, 1, 29, 29)
    assert torch.equal(y[..., :28, :28], x)  # old pixel (i, j) keeps its index
    assert (y[..., 28, :] == 0).all() and (y[..., :, 28] == 0).all()


@pytest.mark.parametrize(
    ("hw", "target", "pads"),
    [
        ((28, 28), (32, 32), (2, 2, 2, 2)),
        ((28, 28), (31, 33), (1, 2, 2, 3)),
        ((5, 6), 7, (1, 1, 0, 1)),
    ],
)
def test_pad_is_symmetric_with_the_extra_pixel_after(hw, target, pads) -> None:
    top, bottom, left, right = pads
    x = torch.rand(2, 2, *hw, dtype=torch.float64) + 1.0  # strictly positive content
    y = pad_to_size(x, target)
    th, tw = parse_size(target)
    assert y.shape == (2, 2, th, tw) and y.dtype == torch.float64
    assert torch.equal(y[..., top : th - bottom, left : tw - right], x)
    assert int((y != 0).sum()) == x.numel()


def test_pad_to_a_smaller_size_raises_and_same_size_is_identity() -> None:
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(ValueError, match="fit='resize'"):
        pad_to_size(x, 27)
    assert pad_to_size(x, 28) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [29, (14, 20), 8])
def test_resize_sizes_and_dtype(size, dtype) -> None:
    x = torch.rand(2, 3, 28, 28, dtype=dtype)
    y = resize_images(x, size)
    assert y.shape == (2, 3, *parse_size(size)) and y.dtype == dtype
    assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6
    # a constant image stays constant
    c = torch.full((1, 1, 28, 28), 0.3, dtype=dtype)
    assert torch.allclose(resize_images(c, size), torch.full_like(resize_images(c, size), 0.3))


def test_fit_to_size_dispatches() -> None:
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(fit_to_size(x, 9, "pad"), pad_to_size(x, 9))
    assert torch.equal(fit_to_size(x, 9, "resize"), resize_images(x, 9))
    assert fit_to_size(x, None) is x
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_to_size(x, 9, "crop")


@pytest.mark.parametrize("bad", [0, (3,), (2, 0), "28", 2.5, True])
def test_bad_sizes_raise(bad) -> None:
    with pytest.raises((TypeError, ValueError), match="size"):
        pad_to_size(torch.zeros(1, 1, 2, 2), bad)
