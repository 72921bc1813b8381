"""RegularAction: the regular representation on G-CNN feature maps."""

from __future__ import annotations

import pytest
import torch

from equify.actions import ImageAction, RegularAction
from equify.groups import SO2, CyclicGroup, DihedralGroup


@pytest.mark.parametrize("g", [CyclicGroup(4), DihedralGroup(4)], ids=str)
@pytest.mark.parametrize("size", [27, 28])
def test_regular_group_law_is_bit_exact_for_all_pairs(g, size: int) -> None:
    act = RegularAction(g)
    x = torch.randn(2, 3 * g.order, size, size)
    for a in range(g.order):
        xa = act.apply(x, a, g)
        for b in range(g.order):
            assert torch.equal(act.apply(xa, b, g), act.apply(x, g.compose(b, a), g)), (a, b)
        assert torch.equal(act.undo(xa, a, g), x)


@pytest.mark.parametrize("g", [CyclicGroup(3), DihedralGroup(3), CyclicGroup(8)], ids=str)
def test_regular_group_law_on_pooled_vectors(g) -> None:
    act = RegularAction(g)
    x = torch.randn(5, 2 * g.order)
    for a in range(g.order):
        for b in range(g.order):
            assert torch.equal(act.apply(act.apply(x, b), a), act.apply(x, g.compose(a, b)))


def test_regular_action_permutes_the_group_axis_by_the_group_law() -> None:
    g = DihedralGroup(4)
    # feature f(p, h) = h for every pixel: after acting by a, slot h holds a^-1 h
    x = torch.arange(g.order, dtype=torch.float32).view(1, g.order, 1, 1).expand(1, g.order, 4, 4)
    for a in range(g.order):
        y = RegularAction(g).apply(x, a)
        expected = g.compose(g.inverse(a), g.elements()).float()
        assert torch.equal(y[0, :, 0, 0], expected)
    # a single field constant over the group axis transforms like an image
    img = torch.randn(2, 1, 6, 6).repeat_interleave(g.order, dim=1)
    for a in range(g.order):
        assert torch.equal(
            RegularAction(g).apply(img, a)[:, :1], ImageAction().apply(img[:, :1], a, g)
        )


def test_batched_elements_and_matrices() -> None:
    g = DihedralGroup(4)
    act = RegularAction(g)
    x = torch.randn(8, 2 * g.order, 7, 7)
    e = g.elements()
    y = act.apply(x, e)
    for i in range(8):
        assert torch.equal(y[i : i + 1], act.apply(x[i : i + 1], i))
    assert torch.equal(act.apply(x, g.matrix(e).float()), y)


def test_regular_bad_input() -> None:
    with pytest.raises(ValueError, match="finite group"):
        RegularAction(SO2())  # type: ignore[arg-type]
    act = RegularAction(CyclicGroup(4))
    with pytest.raises(ValueError, match="divisible by \\|G\\| = 4"):
        act.apply(torch.randn(1, 6, 5, 5), 1)
    with pytest.raises(ValueError, match="for CyclicGroup\\(4\\)"):
        act.apply(torch.randn(1, 8, 5, 5), 1, DihedralGroup(4))
    with pytest.raises(ValueError, match=r"\(B, C·\|G\|, H, W\)"):
        act.apply(torch.randn(8, 5, 5), 1)
