"""PixelPointAction: prompt points in pixel coordinates move with the image."""

from __future__ import annotations

import math

import pytest
import torch

from equify.actions import ImageAction, PixelPointAction
from equify.groups import CyclicGroup, DihedralGroup

C4, D4, C8 = CyclicGroup(4), DihedralGroup(4), CyclicGroup(8)


@pytest.mark.parametrize("g", [C4, D4], ids=str)
@pytest.mark.parametrize("h, w", [(7, 7), (8, 8), (5, 9)])
def test_a_pixel_centre_goes_where_the_image_sends_that_pixel(g, h, w):
    act = PixelPointAction((h, w))
    for e in range(g.order):
        if h != w and bool(g.angle(e) % math.pi):  # odd quarter turns need a square image
            continue
        for i, j in [(0, 0), (h - 1, 1), (2, w - 1), (h // 2, w // 2)]:
            img = torch.zeros(1, 1, h, w, dtype=torch.float64)
            img[0, 0, i, j] = 1
            moved = ImageAction().apply(img, e, g)
            hi, hj = (moved[0, 0] == 1).nonzero()[0].tolist()
            pt = torch.tensor([[[j + 0.5, i + 0.5]]], dtype=torch.float64)
            assert act.apply(pt, e, g)[0, 0].tolist() == [hj + 0.5, hi + 0.5]


@pytest.mark.parametrize("g", [C4, D4, C8], ids=str)
def test_group_law_and_inverse(g):
    act = PixelPointAction(16)
    x = torch.rand(3, 5, 2, dtype=torch.float64) * 16
    for a in range(g.order):
        for b in range(g.order):
            left = act.apply(act.apply(x, b, g), a, g)
            right = act.apply(x, int(g.compose(a, b)), g)
            torch.testing.assert_close(left, right, rtol=0, atol=1e-12)
        back = act.apply(act.apply(x, a, g), int(g.inverse(a)), g)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-12)


def test_exact_for_half_pixel_coordinates_and_per_sample_elements():
    act = PixelPointAction(10)
    x = torch.randint(0, 21, (8, 4, 2)).double() / 2
    out = act.apply(x, torch.arange(8), D4)
    for b in range(8):
        assert torch.equal(out[b : b + 1], act.apply(x[b : b + 1], b, D4))
    assert torch.equal(out, out.mul(2).round().div(2))  # still on the half-pixel grid


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.zeros(2, 3), ValueError, r"\(B, N, 2\)"),
        (torch.zeros(2, 3, 3), ValueError, r"\(B, N, 2\)"),
        (torch.zeros(2, 3, 2, dtype=torch.long), TypeError, "floating"),
    ],
)
def test_bad_points_are_refused(x, error, message):
    with pytest.raises(error, match=message):
        PixelPointAction(8).apply(x, 1, C4)


def test_bad_sizes_and_non_square_quarter_turns_are_refused():
    with pytest.raises(ValueError, match="image_size"):
        PixelPointAction(0)
    with pytest.raises(ValueError, match="square"):
        PixelPointAction((4, 6)).apply(torch.zeros(1, 1, 2), 1, C4)
