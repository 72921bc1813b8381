"""MaskAction, BoxAction, PointAction, InvariantAction."""

from __future__ import annotations

import math

import pytest
import torch

from equify.actions import BoxAction, ImageAction, InvariantAction, MaskAction, PointAction
from equify.groups import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup

C4, D4 = CyclicGroup(4), DihedralGroup(4)


def render(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W) float images, 1 on the pixels whose centres lie inside each sample's box."""
    ys = torch.arange(h, dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float64)[None, :] + 0.5
    out = []
    for b in boxes[:, 0].double():
        out.append(((xs > b[0]) & (xs < b[2]) & (ys > b[1]) & (ys < b[3])).double())
    return torch.stack(out)[:, None]


def bbox_of(img: torch.Tensor, thr: float = 0.5) -> torch.Tensor:
    """Pixel-edge xyxy box around the pixels above thr, per sample: (B, 4)."""
    out = []
    for m in img[:, 0] > thr:
        rows, cols = m.any(1).nonzero().squeeze(1), m.any(0).nonzero().squeeze(1)
        out.append(torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]))
    return torch.stack(out).double()


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("g", [C4, D4], ids=str)
@pytest.mark.parametrize("size", [27, 28])
@pytest.mark.parametrize("shape", ["BHW", "B1HW"])
def test_mask_group_law_is_bit_exact(g, size: int, shape: str) -> None:
    act = MaskAction()
    m = torch.randint(0, 21, (3, size, size))
    if shape == "B1HW":
        m = m[:, None]
    for a in range(g.order):
        ma = act.apply(m, a, g)
        assert ma.dtype == m.dtype and ma.shape == m.shape
        for b in range(g.order):
            assert torch.equal(act.apply(ma, b, g), act.apply(m, g.compose(b, a), g))


@pytest.mark.parametrize("dtype", [torch.long, torch.uint8, torch.bool, torch.float32])
def test_mask_keeps_dtype_and_labels_at_any_angle(dtype) -> None:
    m = (torch.randint(0, 5, (2, 16, 16)) * 50).to(dtype)
    r = SO2().rotation(torch.tensor(0.5))
    y = MaskAction(fill_value=255 if dtype == torch.uint8 else 0).apply(m, r)
    assert y.dtype == dtype and y.shape == m.shape
    allowed = set(m.unique().tolist()) | ({255} if dtype == torch.uint8 else {0})
    assert set(y.unique().tolist()) <= allowed
    # a corner comes from outside the frame and gets the fill value
    if dtype == torch.uint8:
        assert int(y[0, 0, 0]) == 255


def test_mask_agrees_with_image_action_on_exact_elements() -> None:
    m = torch.randint(0, 3, (2, 1, 10, 10))
    for e in range(8):
        assert torch.equal(MaskAction().apply(m, e, D4), ImageAction().apply(m, e, D4))


def test_mask_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, 1, H, W\)"):
        MaskAction().apply(torch.zeros(2, 3, 4, 4), 1, C4)
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        MaskAction().apply(torch.zeros(4, 4), 1, C4)
    with pytest.raises(TypeError, match="fill_value"):
        MaskAction(fill_value="x")  # type: ignore[arg-type]


# ---------------------------------------------------------------- boxes


def random_boxes(b: int, k: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Integer-valued boxes inside a size x size image, (B, K, 4)."""
    p = torch.randint(0, size + 1, (b, k, 2, 2), generator=gen).double()
    lo, hi = p.min(2).values, p.max(2).values
    return torch.cat([lo, hi], -1)


@pytest.mark.parametrize("g", [C4, D4], ids=str)
@pytest.mark.parametrize("size", [27, 28])
def test_box_group_law_is_bit_exact_for_integer_coordinates(g, size: int) -> None:
    act = BoxAction(size)
    boxes = random_boxes(3, 5, size, torch.Generator().manual_seed(0))
    boxes = torch.cat([boxes, boxes + 0.5], 1).float()  # half-integers are exact too
    for a in range(g.order):
        ba = act.apply(boxes, a, g)
        for b in range(g.order):
            assert torch.equal(act.apply(ba, b, g), act.apply(boxes, g.compose(b, a), g))
        assert torch.equal(act.undo(ba, a, g), boxes)


def test_box_group_law_holds_to_rounding_for_arbitrary_coordinates() -> None:
    act = BoxAction(28)
    boxes = torch.sort(torch.rand(2, 4, 2, 2) * 28, dim=2).values.transpose(2, 3).reshape(2, 4, 4)
    for a in range(8):
        for b in range(8):
            torch.testing.assert_close(
                act.apply(act.apply(boxes, b, D4), a, D4),
                act.apply(boxes, D4.compose(a, b), D4),
                atol=1e-5,
                rtol=0,
            )


@pytest.mark.parametrize("size", [27, 28])
def test_boxes_agree_with_the_image_action_on_a_rendered_rectangle(size: int) -> None:
    gen = torch.Generator().manual_seed(1)
    boxes = random_boxes(4, 1, size - 6, gen) + 3
    boxes[..., 2:] += 2  # non-empty
    img = render(boxes, size, size)
    for e in range(8):
        moved_img = ImageAction().apply(img, e, D4)
        moved_box = BoxAction(size).apply(boxes, e, D4)[:, 0]
        assert torch.equal(bbox_of(moved_img), moved_box), e
    # other angles: the enclosing box of the rotated corners contains the rotated rectangle
    for theta in (0.3, 1.1, 2.5):
        r = SO2().rotation(torch.tensor(theta, dtype=torch.float64))
        moved_img = ImageAction(interpolation="nearest").apply(img, r)
        moved_box = BoxAction(size).apply(boxes, r)[:, 0]
        seen = bbox_of(moved_img)
        assert bool((seen[:, :2] >= moved_box[:, :2] - 1).all())
        assert bool((seen[:, 2:] <= moved_box[:, 2:] + 1).all())
        # and it is tight: the rotated corners reach the (clipped) enclosing box within 2 px
        clipped = BoxAction(size, clip=True).apply(boxes, r)[:, 0]
        assert float((seen - clipped).abs().max()) <= 2.0


def test_box_clip_and_bad_input() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])
    r = SO2().rotation(torch.tensor(math.pi / 4))
    clipped = BoxAction(10, clip=True).apply(boxes, r)
    assert float(clipped.min()) >= 0 and float(clipped.max()) <= 10
    with pytest.raises(ValueError, match=r"\(B, K, 4\)"):
        BoxAction(10).apply(torch.zeros(2, 3, 5), 1, C4)
    with pytest.raises(ValueError, match=r"\(B, K, 4\)"):
        BoxAction(10).apply(torch.zeros(3, 4), 1, C4)
    with pytest.raises(TypeError, match="floating"):
        BoxAction(10).apply(torch.zeros(1, 1, 4, dtype=torch.long), 1, C4)
    with pytest.raises(ValueError, match="square image"):
        BoxAction((10, 12)).apply(boxes, 1, C4)
    with pytest.raises(ValueError, match="image_size"):
        BoxAction(0)
    assert BoxAction((10, 12)).apply(boxes, 2, C4).shape == boxes.shape


# ---------------------------------------------------------------- points


@pytest.mark.parametrize("g", [C4, D4, CyclicGroup(8)], ids=str)
def test_point_group_law(g) -> None:
    act = PointAction()
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    for a in range(g.order):
        for b in range(g.order):
            lhs = act.apply(act.apply(x, b, g), a, g)
            rhs = act.apply(x, g.compose(a, b), g)
            if g.n == 4:
                assert torch.equal(lhs, rhs)
            else:
                torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)


@pytest.mark.parametrize("g", [SO2(), O2(), SO3(), O3()], ids=str)
def test_point_action_with_continuous_groups(g) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 11, g.dim, dtype=torch.float64)
    a, b = (
        g.sample(5, generator=gen, dtype=torch.float64),
        g.sample(5, generator=gen, dtype=torch.float64),
    )
    act = PointAction()
    torch.testing.assert_close(act.apply(act.apply(x, b), a), act.apply(x, a @ b))
    torch.testing.assert_close(act.undo(act.apply(x, a), a), x)
    torch.testing.assert_close(act.apply(x, a).norm(dim=-1), x.norm(dim=-1))  # isometry
    # one vector per sample (B, d)
    torch.testing.assert_close(act.apply(x[:, 0], a), act.apply(x, a)[:, 0])


def test_point_convention_and_bad_input() -> None:
    e1 = torch.tensor([[[1.0, 0.0]]])
    assert torch.equal(PointAction().apply(e1, 1, C4), torch.tensor([[[0.0, 1.0]]]))
    assert torch.equal(PointAction().apply(e1, 4, D4), torch.tensor([[[-1.0, 0.0]]]))
    with pytest.raises(ValueError, match="2x2 matrices on 2-D data, got data with d = 3"):
        PointAction().apply(torch.randn(2, 5, 3), 1, C4)
    with pytest.raises(ValueError, match=r"\(B, N, d\)"):
        PointAction().apply(torch.randn(5), 1, C4)
    with pytest.raises(TypeError, match="floating"):
        PointAction().apply(torch.ones(2, 5, 2, dtype=torch.long), 1, C4)
    with pytest.raises(ValueError, match="determinant"):
        PointAction().apply(torch.randn(2, 5, 3), -torch.eye(3), SO3())


def test_invariant_action_is_the_identity_but_checks_elements() -> None:
    y = torch.randn(4, 10)
    out = InvariantAction().apply(y, torch.tensor([0, 1, 2, 3]), C4)
    assert torch.equal(out, y) and out.data_ptr() != y.data_ptr()  # a copy, never x itself
    with pytest.raises(ValueError, match="2 group elements for a batch of 4"):
        InvariantAction().apply(y, torch.tensor([0, 1]), C4)
