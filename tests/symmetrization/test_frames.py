"""Frame averaging of point clouds: O(3)/SO(3)/O(2)/SO(2) invariance and equivariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify.actions import InvariantAction, PointAction
from equify.groups import O2, O3, SO2, SO3
from equify.symmetrization import FrameAveraging, pca_frames
from equify.testing import assert_equivariant, equivariance_error


class PointMLP(nn.Module):
    """Flatten the (ordered) points: as far from equivariant as a point net gets."""

    def __init__(self, n: int, d: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n * d, 32), nn.Tanh(), nn.Linear(32, out))

    def forward(self, x):
        return self.net(x)


class PointVectors(PointMLP):
    """Predicts M vectors in d dimensions: (B, M, d)."""

    def __init__(self, n: int, d: int, m: int = 2) -> None:
        super().__init__(n, d, m * d)
        self.m, self.d = m, d

    def forward(self, x):
        return super().forward(x).view(-1, self.m, self.d)


def clouds(b: int, n: int, d: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scale = torch.tensor([3.0, 1.5, 0.5][:d])  # distinct spectrum
    return torch.randn(b, n, d, generator=gen) * scale + 2.0


@pytest.mark.parametrize("group", [O3(), SO3(), O2(), SO2()], ids=str)
def test_invariant_logits(group) -> None:
    d = group.dim
    x = clouds(4, 12, d)
    model = FrameAveraging(PointMLP(12, d, 5), group).eval()
    report = assert_equivariant(model, x, group, PointAction(), InvariantAction(), n_samples=24)
    assert report.max_error() < 1e-5
    bare = equivariance_error(model.predictor, x, group, PointAction(), InvariantAction())
    assert bare.max_error() > 1e-2  # the predictor alone is not invariant


@pytest.mark.parametrize("group", [O3(), SO3()], ids=str)
def test_equivariant_vectors_and_positions(group) -> None:
    x = clouds(3, 10, 3)
    vec = FrameAveraging(PointVectors(10, 3), group, output="vectors").eval()
    assert_equivariant(
        vec, x, group, PointAction(), PointAction(), n_samples=24, atol=1e-5, rtol=1e-5
    )
    pos = FrameAveraging(PointVectors(10, 3), group, output="positions").eval()
    t = torch.tensor([5.0, -3.0, 1.0])
    torch.testing.assert_close(pos(x + t), pos(x) + t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vec(x + t), vec(x), atol=1e-5, rtol=1e-5)


def test_translation_invariance_and_its_opt_out() -> None:
    x = clouds(2, 8, 3)
    model = FrameAveraging(PointMLP(8, 3, 4), "O3").eval()
    torch.testing.assert_close(model(x + 10.0), model(x), atol=1e-5, rtol=1e-5)
    fixed = FrameAveraging(PointMLP(8, 3, 4), "O3", translation=False).eval()
    assert (fixed(x + 10.0) - fixed(x)).abs().max() > 1e-3


def test_so3_frames_are_rotations_and_o3_has_both_handedness() -> None:
    x = clouds(5, 9, 3)
    frames, c, degenerate = pca_frames(x, SO3())
    assert frames.shape == (5, 4, 3, 3) and not bool(degenerate.any())
    dets = torch.linalg.det(frames)
    torch.testing.assert_close(dets, torch.ones_like(dets))
    frames, _, _ = pca_frames(x, O3())
    assert frames.shape == (5, 8, 3, 3)
    assert bool((torch.linalg.det(frames) < 0).any())
    torch.testing.assert_close(c, x.double().mean(1))


def test_so3_is_not_reflection_invariant_for_a_chiral_predictor() -> None:
    x = clouds(3, 10, 3)
    model = FrameAveraging(PointMLP(10, 3, 4), "SO3").eval()
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    assert (model(x @ mirror) - model(x)).abs().max() > 1e-3


def test_planar_cloud_is_fine_and_a_symmetric_one_is_flagged() -> None:
    planar = clouds(2, 10, 3)
    planar[..., 2] = 0.0  # a zero eigenvalue, the others distinct: not degenerate
    model = FrameAveraging(PointMLP(10, 3, 4), "O3").eval()
    assert_equivariant(model, planar, O3(), PointAction(), InvariantAction(), n_samples=16)
    _, result = model.forward_with_result(planar)
    assert model.diagnostics(result)["degenerate_samples"] == 0
    # a square in a plane: two equal eigenvalues, an undefined in-plane direction
    square = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]])
    square = torch.cat([square, 0.5 * square]).unsqueeze(0)
    model = FrameAveraging(PointMLP(8, 3, 4), "O3").eval()
    y, result = model.forward_with_result(square)
    assert bool(result.extras["degenerate"].all()) and bool(torch.isfinite(y).all())
    assert result.weights.shape[1] == 8 * 8  # widened by 8 in-plane rotations
    # approximately invariant: far below the bare predictor's error
    fa = equivariance_error(model, square, O3(), PointAction(), InvariantAction(), n_samples=16)
    bare = equivariance_error(
        model.predictor, square, O3(), PointAction(), InvariantAction(), n_samples=16
    )
    assert fa.max_error() < 0.25 * bare.max_error()


def test_stochastic_frame_averaging_is_one_pass_in_training() -> None:
    calls = []

    class Count(PointMLP):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    model = FrameAveraging(Count(8, 3, 4), "O3", stochastic=True)
    x = clouds(3, 8, 3)
    model.train()
    _, result = model.forward_with_result(x)
    assert calls == [3] and result.passes == 1.0
    calls.clear()
    model.eval()
    model(x)
    assert calls == [24]
    calls.clear()
    model.chunk_size = 3
    model(x)
    assert calls == [9, 9, 6]


def test_float64_and_bad_input() -> None:
    x = clouds(2, 6, 3).double()
    model = FrameAveraging(PointMLP(6, 3, 2).double(), "O3").eval()
    report = assert_equivariant(model, x, O3(), PointAction(), InvariantAction())
    assert report.max_error() < 1e-10
    with pytest.raises(ValueError, match=r"\(B, N >= 1, 3\)"):
        model(torch.randn(2, 6, 2))
    with pytest.raises(ValueError, match="FrameAveraging handles"):
        FrameAveraging(PointMLP(6, 3, 2), "C4")
    with pytest.raises(ValueError, match="output must be one of"):
        FrameAveraging(PointMLP(6, 3, 2), "O3", output="scalars")
    with pytest.raises(ValueError, match="chunk_size"):
        FrameAveraging(PointMLP(6, 3, 2), "O3", chunk_size=0)
    with pytest.raises(ValueError, match=r"\(B, 3\) or \(B, M, 3\)"):
        FrameAveraging(PointMLP(6, 3, 2), "O3", output="vectors")(clouds(2, 6, 3))


@pytest.mark.parametrize("group", [O2(), SO2()], ids=str)
@pytest.mark.parametrize("n", [1, 2, 7])
def test_planar_vectors_and_tiny_clouds(group, n) -> None:
    x = clouds(3, n, 2)
    vec = FrameAveraging(PointVectors(n, 2), group, output="vectors").eval()
    assert_equivariant(
        vec, x, group, PointAction(), PointAction(), n_samples=16, atol=1e-5, rtol=1e-5
    )
    inv = FrameAveraging(PointMLP(n, 2, 3), group).eval()
    assert_equivariant(inv, x, group, PointAction(), InvariantAction(), n_samples=16)


def test_input_gradients_flow_through_the_centroid() -> None:
    x = clouds(2, 6, 3).double().requires_grad_(True)
    model = FrameAveraging(PointMLP(6, 3, 2).double(), "O3").eval()
    model(x).sum().backward()
    # a translation-invariant output: its gradients over the points of a cloud sum to zero
    torch.testing.assert_close(
        x.grad.sum(1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-10, rtol=0
    )
    pos = FrameAveraging(PointVectors(6, 3).double(), "O3", output="positions").eval()
    x.grad = None
    pos(x)[:, 0, 0].sum().backward()
    # a translation by t moves every output position by t: d out / d (shift) = 1
    torch.testing.assert_close(
        x.grad[..., 0].sum(1), torch.ones(2, dtype=torch.float64), atol=1e-10, rtol=0
    )


def test_only_degenerate_samples_pay_for_the_widened_frame() -> None:
    calls = []

    class Count(PointMLP):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    square = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]]).repeat(2, 1)
    square[4:] *= 0.5
    x = torch.cat([clouds(3, 8, 3), square[None]])
    model = FrameAveraging(Count(8, 3, 4), "O3").eval()
    y, result = model.forward_with_result(x)
    assert sorted(calls) == [3 * 8, 1 * 64]  # 3 clouds x 8 frames, the square x 64
    assert result.passes == pytest.approx((3 * 8 + 64) / 4)
    # the others are unchanged by the square's company
    alone = FrameAveraging(Count(8, 3, 4), "O3").eval()
    alone.predictor = model.predictor
    torch.testing.assert_close(y[:3], alone(x[:3]))
