"""OptimizationCanonicalizer: any embedding network, exactly invariant for finite groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equify
from equify.actions import ImageAction, InvariantAction
from equify.canonicalization import EquivariantModel, OptimizationCanonicalizer, group_contrast_loss
from equify.testing import assert_equivariant, equivariance_error

from .predictors import FlattenCNN


@pytest.mark.parametrize("group_name", ["C4", "D4"])
@pytest.mark.parametrize("size", [27, 32])
def test_bit_exact_invariance_with_a_non_equivariant_embedding_network(group_name, size) -> None:
    torch.manual_seed(0)
    g = equify.group(group_name)
    can = OptimizationCanonicalizer(g, in_channels=2).eval()
    model = EquivariantModel(FlattenCNN(2, size), can).eval()
    x = torch.randn(5, 2, size, size)
    report = assert_equivariant(model, x, g, ImageAction(), InvariantAction(), exact=True)
    assert report.max_error() == 0.0
    base = can.canonicalize(x)[1].elements
    for e in range(g.order):
        moved = can.canonicalize(ImageAction().apply(x, e, g))[1].elements
        assert torch.equal(moved, g.compose(e, base))


def test_c8_scores_permute_within_interpolation_error() -> None:
    torch.manual_seed(0)
    g = equify.group("C8")
    can = OptimizationCanonicalizer(g, in_channels=1).double().eval()
    from ..actions.helpers import smooth_images

    x = smooth_images(16, 1, 33, 33)
    logits = can.canonicalize(x)[1].logits
    agree = []
    for e in range(g.order):
        moved = can.canonicalize(ImageAction(mask="circle").apply(x, e, g))[1]
        expected = logits[:, g.compose(g.inverse(e), g.elements())]  # s(g x)_h = s(x)_{g^-1 h}
        if e % 2 == 0:  # 90° multiples: exact up to the resize's rounding
            torch.testing.assert_close(moved.logits, expected, atol=1e-6, rtol=0)
        agree.append(float((moved.logits - expected).detach().abs().max()))
    # 45° rotations resample the image: the scores move, but stay close
    assert max(agree) < 0.5


def test_prior_loss_includes_the_group_contrast_and_trains() -> None:
    torch.manual_seed(0)
    can = OptimizationCanonicalizer("C4", in_channels=1, contrast_weight=1.0).train()
    x = torch.randn(16, 1, 16, 16)
    _, res = can.canonicalize(x)
    emb = res.extras["embeddings"]
    assert emb.shape == (16, 4, can.embedding_dim)
    expected = nn.functional.cross_entropy(can.beta * res.logits, torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(can.prior_loss(res), expected + group_contrast_loss(emb))
    opt = torch.optim.Adam(can.parameters(), lr=1e-2)
    for _ in range(40):
        opt.zero_grad()
        can.prior_loss(can.canonicalize(x)[1]).backward()
        opt.step()
    assert can.eval().canonicalize(x)[1].identity_fraction() == 1.0


def test_group_contrast_loss_values() -> None:
    eye = torch.eye(4)[None]  # orthogonal embeddings
    assert float(group_contrast_loss(eye)) == 0.0
    same = torch.ones(2, 4, 3)
    assert float(group_contrast_loss(same)) == pytest.approx(1.0)


def test_optimization_bad_input() -> None:
    with pytest.raises(ValueError, match="embedding_dim"):
        OptimizationCanonicalizer("C4", 1, embedding_dim=0)
    can = OptimizationCanonicalizer("C4", 1, network=nn.Sequential(nn.Flatten(), nn.LazyLinear(7)))
    with pytest.raises(ValueError, match="embedding_dim=7"):
        can(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="ContinuousCanonicalizer"):
        OptimizationCanonicalizer("O2", 1)
    report = equivariance_error(
        OptimizationCanonicalizer("C4", 1).eval(),
        torch.randn(2, 1, 8, 8),
        equify.group("C4"),
        ImageAction(),
        InvariantAction(),
    )
    assert report.max_error() == 0.0  # the canonical image itself is invariant
