"""ImageAction: conventions, exact group law, interpolation, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from equify.actions import ImageAction, PointAction, circle_mask, inverse_elements
from equify.actions.image import _interpolate, exact_codes
from equify.groups import O2, SO2, CyclicGroup, DihedralGroup, group

from ..conftest import devices
from .helpers import disk, smooth_images

C4, D4 = CyclicGroup(4), DihedralGroup(4)


@pytest.mark.parametrize("g", [C4, D4], ids=str)
@pytest.mark.parametrize("size", [27, 28])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_group_law_is_bit_exact_for_all_pairs(g, size: int, dtype) -> None:
    act = ImageAction()
    x = torch.randn(3, 2, size, size, dtype=dtype)
    for a in range(g.order):
        xa = act.apply(x, a, g)
        for b in range(g.order):
            assert torch.equal(act.apply(xa, b, g), act.apply(x, g.compose(b, a), g)), (a, b)


def test_c4_element_1_is_rot90_and_the_reflection_is_a_left_right_flip() -> None:
    x = torch.randn(2, 3, 5, 5)
    act = ImageAction()
    assert torch.equal(act.apply(x, 1, C4), torch.rot90(x, 1, (-2, -1)))
    assert torch.equal(act.apply(x, 4, D4), torch.flip(x, (-1,)))
    # D4 element 4 + k: flip first, then rotate by k quarter turns
    for k in range(4):
        assert torch.equal(act.apply(x, 4 + k, D4), torch.rot90(torch.flip(x, (-1,)), k, (-2, -1)))
    # the same elements given as matrices take the same exact path
    assert torch.equal(act.apply(x, D4.matrix(6).float()), act.apply(x, 6, D4))


def test_counter_clockwise_as_displayed_matches_point_action() -> None:
    # A single bright pixel right of the centre moves up on the screen (smaller row index)
    # under a positive rotation, exactly where PointAction sends its display coordinates.
    h = w = 9
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    x[0, 0, 4, 7] = 1.0  # display (u, v) = (3, 0)
    for e in range(8):
        y = ImageAction().apply(x, e, D4)
        i, j = divmod(int(y.flatten().argmax()), w)
        uv = torch.tensor([[[j - (w - 1) / 2, (h - 1) / 2 - i]]], dtype=torch.float64)
        expected = PointAction().apply(torch.tensor([[[3.0, 0.0]]], dtype=torch.float64), e, D4)
        assert torch.equal(uv, expected), e
    up = ImageAction().apply(x, 1, C4)
    assert int(up.flatten().argmax()) == 1 * w + 4  # row 1, centre column: up


@pytest.mark.parametrize("theta", [0.3, 1.0, -2.2])
def test_interpolated_rotation_moves_a_blob_like_point_action(theta: float) -> None:
    h, w = 41, 41
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    u, v = xx - (w - 1) / 2, (h - 1) / 2 - yy
    x = torch.exp(-((u - 10) ** 2 + (v - 4) ** 2) / 4.0)[None, None]
    r = SO2().rotation(torch.tensor(theta, dtype=torch.float64))
    y = ImageAction().apply(x, r)[0, 0]
    centroid = torch.stack([(y * u).sum() / y.sum(), (y * v).sum() / y.sum()])
    expected = r @ torch.tensor([10.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(centroid, expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("name", ["C8", "D8", "C4", "D4"])
def test_identity_is_trivial_and_inverse_undoes_exact_elements(name: str) -> None:
    g = group(name)
    act = ImageAction()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    assert torch.equal(act.apply(x, g.identity, g), x)
    for e in range(g.order):
        if bool(act.is_exact(e, g)):
            assert torch.equal(act.undo(act.apply(x, e, g), e, g), x)
            assert torch.equal(act.apply(act.apply(x, e, g), g.inverse(e), g), x)


def test_batched_elements_equal_per_sample_application_including_mixed_paths() -> None:
    g = CyclicGroup(8)  # odd elements interpolate, even ones are exact
    act = ImageAction()
    x = torch.randn(8, 2, 15, 15)
    e = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    y = act.apply(x, e, g)
    for i in range(8):
        assert torch.equal(y[i : i + 1], act.apply(x[i : i + 1], int(e[i]), g)), i
    assert torch.equal(act.is_exact(e, g), e % 2 == 0)


@pytest.mark.parametrize("size", [27, 28])
def test_interpolated_angles_satisfy_the_law_inside_the_central_disk(size: int) -> None:
    act = ImageAction()
    x = smooth_images(2, 1, size, size)
    inside = disk(size, size, 0.6)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = O2().sample(2, generator=gen, dtype=torch.float64)
        lhs = act.apply(act.apply(x, b), a)
        rhs = act.apply(x, a @ b)
        err = (lhs - rhs)[..., inside].abs().max()
        assert float(err) < 0.03 * float(x.abs().max())
    # the inverse undoes an interpolated rotation inside the disk, within tolerance
    r = SO2().rotation(torch.tensor(0.7, dtype=torch.float64))
    back = act.undo(act.apply(x, r), r)
    assert float((back - x)[..., inside].abs().max()) < 0.03 * float(x.abs().max())


def test_interpolated_path_agrees_with_exact_path_at_quarter_turns() -> None:
    x = torch.randn(2, 3, 11, 11, dtype=torch.float64)
    for e in range(8):
        m = D4.matrix(e).expand(2, 2, 2)
        torch.testing.assert_close(
            _interpolate(x, m, "bilinear", "zeros"),
            ImageAction().apply(x, e, D4),
            atol=1e-9,
            rtol=0,
        )


def test_padding_modes_and_circle_mask() -> None:
    x = torch.ones(1, 1, 21, 21)
    r = SO2().rotation(torch.tensor(math.pi / 4))
    zeros = ImageAction(padding="zeros").apply(x, r)
    border = ImageAction(padding="border").apply(x, r)
    assert float(zeros[0, 0, 0, 0]) == 0.0 and float(border[0, 0, 0, 0]) == 1.0
    masked = ImageAction(mask="circle", padding="border").apply(x, r)
    assert torch.equal(masked[0, 0] != 0, circle_mask(21, 21))
    # the disk is symmetric under every exact element, so masking commutes with them
    y = torch.randn(2, 1, 20, 20)
    m = ImageAction(mask="circle")
    for a in range(8):
        for b in range(8):
            assert torch.equal(m.apply(m.apply(y, b, D4), a, D4), m.apply(y, D4.compose(a, b), D4))


def test_non_square_images_allow_flips_and_half_turns_but_not_quarter_turns() -> None:
    x = torch.randn(2, 1, 6, 9)
    act = ImageAction()
    assert torch.equal(act.apply(x, 2, C4), torch.rot90(x, 2, (-2, -1)))
    assert torch.equal(act.apply(x, 4, D4), torch.flip(x, (-1,)))
    with pytest.raises(ValueError, match="square image.*6 x 9"):
        act.apply(x, 1, C4)
    # interpolated angles keep the frame and work for non-square images
    assert act.apply(x, SO2().rotation(torch.tensor(0.2))).shape == x.shape


def test_exact_codes_classify_all_signed_permutations() -> None:
    codes = exact_codes(D4.matrix(D4.elements()))
    assert torch.equal(codes, torch.arange(8))
    assert int(exact_codes(SO2().rotation(torch.tensor(0.1, dtype=torch.float64)))) == -1


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_the_input_which_is_never_modified(device, dtype) -> None:
    x = torch.randn(3, 2, 12, 12, dtype=dtype, device=device)
    before = x.clone()
    act = ImageAction()
    for g in (torch.tensor([1, 5, 6], device=device), SO2().sample(3, dtype=dtype, device=device)):
        y = act.apply(x, g, D4 if not g.is_floating_point() else None)
        assert y.dtype == dtype and y.device == x.device
    assert torch.equal(x, before)


def test_integer_images_take_the_exact_path_and_refuse_interpolation() -> None:
    x = torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(ImageAction().apply(x, 3, C4), torch.rot90(x, 3, (-2, -1)))
    with pytest.raises(TypeError, match="floating image"):
        ImageAction().apply(x, SO2().rotation(torch.tensor(0.3)))


def test_gradients_flow_through_both_paths() -> None:
    x = torch.randn(4, 1, 9, 9, requires_grad=True)
    y = ImageAction().apply(x, torch.tensor([0, 1, 2, 3]), CyclicGroup(8))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_input_raises_clear_errors() -> None:
    act = ImageAction()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(1, 8, 8\)"):
        act.apply(x[0], 1, C4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        act.apply(x.numpy(), 1, C4)
    with pytest.raises(TypeError, match="finite group"):
        act.apply(x, 1)
    with pytest.raises(TypeError, match="indices, or matrices|orthogonal matrices"):
        act.apply(x, "1", C4)
    with pytest.raises(ValueError, match="3 group elements for a batch of 2"):
        act.apply(x, torch.tensor([0, 1, 2]), C4)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        act.apply(x, 4, C4)
    with pytest.raises(ValueError, match="not orthogonal"):
        act.apply(x, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\(2, 2\)|\(\.\.\., 2, 2\)"):
        act.apply(x, torch.eye(3))
    with pytest.raises(ValueError, match="determinant"):
        act.apply(x, torch.diag(torch.tensor([-1.0, 1.0])), SO2())
    with pytest.raises(ValueError, match="not elements"):
        act.apply(x, SO2().rotation(torch.tensor(0.3)), C4)
    with pytest.raises(ValueError, match="interpolation"):
        ImageAction(interpolation="cubic")
    with pytest.raises(ValueError, match="padding"):
        ImageAction(padding="wrap")
    with pytest.raises(ValueError, match="mask"):
        ImageAction(mask="square")
    with pytest.raises(TypeError, match="finite group"):
        inverse_elements(1)
