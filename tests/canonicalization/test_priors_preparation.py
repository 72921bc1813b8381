"""Priors and the canonicalization network's view of the input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equify
from equify.actions import ImageAction
from equify.canonicalization import (
    CanonicalizationResult,
    DataDrivenPrior,
    IdentityPrior,
    ImagePreparation,
)
from equify.groups import CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant


class UprightOnly(nn.Module):
    """A 'pretrained' classifier confident only when the bright quadrant is top-left."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tl = x[..., : h // 2, : w // 2].mean((1, 2, 3))
        return torch.stack([10 * tl, torch.zeros_like(tl)], dim=1)


def quadrant_images(n: int, size: int = 8) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[..., : size // 2, : size // 2] = 1.0
    return x


def test_identity_prior_is_cross_entropy_to_the_identity() -> None:
    logits = torch.randn(5, 8)
    res = CanonicalizationResult(DihedralGroup(4), logits.argmax(1), logits=logits)
    expected = nn.functional.cross_entropy(2.0 * logits, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(IdentityPrior(beta=2.0)(res), expected)


def test_data_driven_prior_from_upright_data_peaks_at_the_identity() -> None:
    x = quadrant_images(12)
    labels = torch.zeros(12, dtype=torch.long)
    prior = DataDrivenPrior.estimate(UprightOnly(), [(x, labels)], CyclicGroup(4), temperature=0.1)
    p = prior.distribution
    assert int(p.argmax()) == 0 and float(p[0]) > 0.99


def test_data_driven_prior_follows_non_upright_training_data() -> None:
    g = CyclicGroup(4)
    x = quadrant_images(12)
    # a third of the training images are stored rotated by 180°: the predictor is confident on
    # them once they are rotated back, i.e. when the canonicalizer picks c(x) = element 2
    x[:4] = ImageAction().apply(x[:4], 2, g)
    prior = DataDrivenPrior.estimate(UprightOnly(), [x], g, temperature=0.1)  # no labels
    expected = torch.tensor([2 / 3, 0, 1 / 3, 0])
    torch.testing.assert_close(prior.distribution, expected, atol=5e-3, rtol=0)
    # KL is zero when the scores' softmax equals p, positive otherwise
    logits = torch.log(prior.distribution.clamp_min(1e-12)).repeat(3, 1)
    res = CanonicalizationResult(g, logits.argmax(1), logits=logits)
    assert float(prior(res)) == pytest.approx(0.0, abs=1e-5)
    res_bad = CanonicalizationResult(g, torch.zeros(3, dtype=torch.long), logits=torch.randn(3, 4))
    assert float(prior(res_bad)) > 0.01


def test_data_driven_prior_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D tensor"):
        DataDrivenPrior(torch.ones(2, 2))
    with pytest.raises(ValueError, match="non-negative"):
        DataDrivenPrior(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite group"):
        DataDrivenPrior.estimate(UprightOnly(), [quadrant_images(2)], equify.group("SO2"))
    with pytest.raises(ValueError, match="no data"):
        DataDrivenPrior.estimate(UprightOnly(), [], CyclicGroup(4))
    prior = DataDrivenPrior(torch.ones(4))
    logits = torch.randn(2, 8)
    with pytest.raises(ValueError, match="4 elements but the scores have 8"):
        prior(CanonicalizationResult(DihedralGroup(4), logits.argmax(1), logits=logits))


@pytest.mark.parametrize("size", [27, 28, 32, 33, 100, 101])
@pytest.mark.parametrize("crop_ratio", [1.0, 0.8])
def test_preparation_commutes_with_the_grid_symmetries(size: int, crop_ratio: float) -> None:
    prep = ImagePreparation(size=16, crop_ratio=crop_ratio, mask="circle").double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    assert_equivariant(prep, x, DihedralGroup(4), ImageAction(), ImageAction())
    h, w = prep(x).shape[-2:]
    assert (h, w) == prep.output_size(size, size) and max(h, w) <= 16


def test_preparation_never_enlarges_and_keeps_aspect() -> None:
    prep = ImagePreparation(size=64)
    assert prep(torch.randn(1, 1, 20, 20)).shape[-2:] == (20, 20)
    assert prep.output_size(128, 256) == (32, 64)
    assert ImagePreparation(size=None, crop_ratio=0.5).output_size(27, 28) == (15, 14)
    with pytest.raises(ValueError, match="size"):
        ImagePreparation(size=0)
    with pytest.raises(ValueError, match="crop_ratio"):
        ImagePreparation(crop_ratio=1.5)
    with pytest.raises(ValueError, match="mask"):
        ImagePreparation(mask="square")
