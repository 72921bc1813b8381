"""The per-sample, per-field normalization of regular features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify import CyclicGroup, DihedralGroup, RegularAction, assert_equivariant
from equify.nn import RegularGroupNorm


def _randomise(norm: RegularGroupNorm) -> RegularGroupNorm:
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    return norm


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4), DihedralGroup(1)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equivariant(group, dtype) -> None:
    norm = _randomise(RegularGroupNorm(group, 3)).to(dtype)
    x = 3 * torch.randn(2, 3 * group.order, 9, 9, dtype=dtype) + 1
    assert_equivariant(norm, x, group, RegularAction(group), RegularAction(group))
    vectors = torch.randn(2, 3 * group.order, dtype=dtype)
    assert_equivariant(norm, vectors, group, RegularAction(group), RegularAction(group))


def test_statistics_per_sample_and_field() -> None:
    group = CyclicGroup(4)
    norm = RegularGroupNorm(group, 2, affine=False)
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64) * 4 + 2
    y = norm(x).reshape(3, 2, -1)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 2, dtype=torch.float64))
    ones = torch.ones(3, 2, dtype=torch.float64)
    torch.testing.assert_close(y.var(-1, unbiased=False), ones, atol=1e-5, rtol=0)  # eps
    # a sample's output does not depend on the rest of the batch, in train and eval mode
    norm.train()
    torch.testing.assert_close(norm(x[:1]), norm(x)[:1])


def test_untied_affine_parameters_fail() -> None:
    """nn.GroupNorm with one scale per channel (not per field) breaks the permutation."""
    group = CyclicGroup(4)
    plain = nn.GroupNorm(2, 8).double()
    with torch.no_grad():
        plain.weight.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(plain, x, group, RegularAction(group), RegularAction(group))


def test_export_gradients_and_validation() -> None:
    group = DihedralGroup(4)
    norm = _randomise(RegularGroupNorm(group, 2))
    x = torch.randn(2, 16, 4, 4)
    plain = norm.export()
    assert type(plain) is nn.GroupNorm
    torch.testing.assert_close(plain(x), norm(x), atol=1e-6, rtol=1e-6)
    assert type(RegularGroupNorm(group, 2, affine=False).export()) is nn.GroupNorm
    (norm(x) * torch.randn_like(x)).sum().backward()
    assert norm.weight.grad.abs().sum() > 0 and norm.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected"):
        norm(torch.randn(2, 12, 4, 4))
    with pytest.raises(TypeError, match="floating"):
        norm(torch.ones(2, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="num_fields"):
        RegularGroupNorm(group, 0)
