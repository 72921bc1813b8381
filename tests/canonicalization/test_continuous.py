"""ContinuousCanonicalizer and Gram–Schmidt frames: SO(2), O(2) images; SO(3) point clouds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from equify.actions import ImageAction, InvariantAction, PointAction
from equify.canonicalization import (
    ContinuousCanonicalizer,
    EquivariantModel,
    GeodesicPrior,
    frame_from_vectors,
)
from equify.groups import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant, equivariance_error

from ..actions.helpers import smooth_images
from .predictors import FlattenCNN


@pytest.mark.parametrize("g", [SO2(), O2(), SO3(), O3()], ids=str)
def test_frames_are_orthonormal_and_equivariant(g) -> None:
    gen = torch.Generator().manual_seed(0)
    k = {2: 2, 3: 3}[g.dim]
    v = torch.randn(32, k, g.dim, generator=gen, dtype=torch.float64)
    q = frame_from_vectors(v, g)
    eye = torch.eye(g.dim, dtype=torch.float64)
    torch.testing.assert_close(q.transpose(-1, -2) @ q, eye.expand_as(q), atol=1e-12, rtol=0)
    g.validate(q)  # in the group: det +1 for SO(d)
    m = g.sample(32, generator=gen, dtype=torch.float64)
    moved = frame_from_vectors(PointAction().apply(v, m), g)
    torch.testing.assert_close(moved, m @ q, atol=1e-10, rtol=0)
    if g.has_reflections:
        dets = torch.linalg.det(q)
        assert bool((dets < 0).any()) and bool((dets > 0).any())


def test_frame_bad_input() -> None:
    with pytest.raises(ValueError, match=r"k >= 2"):
        frame_from_vectors(torch.randn(4, 1, 2), O2())
    with pytest.raises(ValueError, match=r"\(B, k, 3\)"):
        frame_from_vectors(torch.randn(4, 2, 2), SO3())


class OrbitVectorNet(nn.Module):
    """v_j = Σ_h f(h⁻¹·x) · matrix(h) e_j over C4 or D4: exactly equivariant to that subgroup."""

    def __init__(self, reflections: bool, channels: int = 1) -> None:
        super().__init__()
        self.group = DihedralGroup(4) if reflections else CyclicGroup(4)
        self.k = 2 if reflections else 1
        self.f = nn.Sequential(
            nn.Conv2d(channels, 4, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, act = self.group, ImageAction()
        s = torch.cat([self.f(act.apply(x, g.inverse(h), g)) for h in range(g.order)], 1)
        m = g.matrix(g.elements(), dtype=x.dtype, device=x.device)  # (|G|, 2, 2)
        cols = m[..., : self.k].transpose(-1, -2)  # (|G|, k, 2): matrix(h) e_j
        return torch.einsum("bh,hkd->bkd", s, cols)


@pytest.mark.parametrize("g", [SO2(), O2()], ids=str)
def test_wrapped_model_is_exactly_invariant_on_the_exact_subgroup(g) -> None:
    torch.manual_seed(0)
    net = OrbitVectorNet(g.has_reflections)
    can = ContinuousCanonicalizer(g, 1, network=net).double().eval()
    model = EquivariantModel(FlattenCNN(1, 21).double(), can).eval()
    x = smooth_images(4, 1, 21, 21)
    sub = net.group
    base = can.canonicalize(x)[1].elements
    for e in range(sub.order):
        moved = can.canonicalize(ImageAction().apply(x, e, sub))[1].elements
        torch.testing.assert_close(moved, sub.matrix(e) @ base, atol=1e-9, rtol=0)
    report = equivariance_error(model, x, sub, ImageAction(), InvariantAction())
    # c(x) is no longer a grid symmetry: Qᵀ·x interpolates, so equality holds to interpolation
    assert report.max_relative_error() < 1e-6


def test_gradients_reach_the_vector_network_through_the_resampling() -> None:
    net = OrbitVectorNet(False)
    can = ContinuousCanonicalizer(SO2(), 1, network=net).train()
    x = smooth_images(4, 1, 17, 17, dtype=torch.float32)
    x_c, res = can.canonicalize(x)
    (FlattenCNN(1, 17)(x_c).sum() + can.prior_loss(res)).backward()
    # (the last bias cancels in Σ_h matrix(h) e_1 = 0, so check the weights)
    weights = [net.f[0].weight, net.f[-1].weight]
    assert all(w.grad is not None and float(w.grad.abs().sum()) > 0 for w in weights)


@pytest.mark.parametrize(("g", "batch"), [(SO2(), 4), (O2(), 2)], ids=["SO2", "O2"])
def test_geodesic_prior_training_drives_the_frames_to_the_identity(g, batch: int) -> None:
    torch.manual_seed(0)
    can = ContinuousCanonicalizer(g, 1, network=OrbitVectorNet(g.has_reflections)).train()
    x = smooth_images(batch, 1, 17, 17, dtype=torch.float32, seed=3)
    start = can.canonicalize(x)[1]
    start_loss = float(can.prior_loss(start).detach())
    opt = torch.optim.Adam(can.parameters(), lr=2e-2)
    for _ in range(100):
        opt.zero_grad()
        can.prior_loss(can.predict(x)).backward()
        opt.step()
    end = can.canonicalize(x)[1]
    # a tiny network cannot make every frame the identity, but the prior pulls them there
    assert float(can.prior_loss(end).detach()) < 0.5 * start_loss
    assert float(end.angles().abs().mean()) < 0.6 * float(start.angles().abs().mean())
    assert end.reflection_fraction() == 0.0


def test_geodesic_prior_values() -> None:
    from equify.canonicalization.base import CanonicalizationResult

    theta = torch.tensor([0.0, math.pi / 2, math.pi], dtype=torch.float64)
    res = CanonicalizationResult(SO2(), SO2().rotation(theta))
    torch.testing.assert_close(GeodesicPrior()(res), (1 - torch.cos(theta)).mean())
    # the vertical flip diag(1, -1) keeps q1 = e1: no rotation, only the full reflection penalty
    s = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))[None]
    v = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64)  # left-handed raw vectors
    res = CanonicalizationResult(O2(), s, vectors=v)
    assert float(GeodesicPrior()(res)) == pytest.approx(1.0)
    # the horizontal flip diag(-1, 1) has q1 = -e1: a half turn away, plus the penalty
    s2 = torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))[None]
    v2 = torch.tensor([[[-1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    res2 = CanonicalizationResult(O2(), s2, vectors=v2)
    assert float(GeodesicPrior()(res2)) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="continuous group"):
        GeodesicPrior()(CanonicalizationResult(CyclicGroup(4), torch.tensor([0])))


class VectorNeurons(nn.Module):
    """SO(3)-equivariant vectors of a point cloud: weighted sums of centred points, weights from
    rotation-invariant features (norms), so v(R·x) = R·v(x) exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x - x.mean(1, keepdim=True)
        w = self.w(c.norm(dim=-1, keepdim=True))  # (B, N, 2)
        return torch.einsum("bnk,bnd->bkd", w, c)


def test_so3_point_cloud_canonicalization_with_a_user_network() -> None:
    torch.manual_seed(0)
    can = ContinuousCanonicalizer(SO3(), network=VectorNeurons().double()).eval()
    pointnet = nn.Sequential(nn.Flatten(), nn.Linear(30, 5)).double()  # order and pose dependent
    model = EquivariantModel(pointnet, can).eval()
    x = torch.randn(4, 10, 3, dtype=torch.float64)
    assert_equivariant(model, x, SO3(), PointAction(), InvariantAction(), n_samples=32)
    with pytest.raises(AssertionError):
        assert_equivariant(pointnet, x, SO3(), PointAction(), InvariantAction())
    # equivariant point outputs map back with PointAction
    eq_model = EquivariantModel(lambda p: p * 2.0 + p.mean(1, keepdim=True), can, PointAction())
    assert_equivariant(eq_model, x, SO3(), PointAction(), PointAction())


def test_continuous_bad_input() -> None:
    with pytest.raises(ValueError, match="DiscreteCanonicalizer"):
        ContinuousCanonicalizer("C4", 3)
    with pytest.raises(ValueError, match="no default network for SO3"):
        ContinuousCanonicalizer("SO3")
    can = ContinuousCanonicalizer(SO2(), 1, network=nn.Sequential(nn.Flatten(), nn.LazyLinear(3)))
    with pytest.raises(ValueError, match=r"\(B, k, d\)"):
        can(torch.randn(2, 1, 8, 8))
    pts = ContinuousCanonicalizer(SO3(), network=VectorNeurons())
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        pts(torch.randn(2, 5, 2))
