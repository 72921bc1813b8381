"""load_splits / load_dataset: names, options, the size and normalisation pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from equify.data import DATASETS, ChannelStats, available_datasets, load_dataset, load_splits


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'") as err:
        load_splits("cifar10")
    for name in DATASETS:
        assert name in str(err.value)
    assert set(available_datasets()) == {
        "mnist",
        "fashion-mnist",
        "digits",
        "folder",
        "mnist6-180",
        "mnist6-m",
        "rotated-mnist",
    }
    with pytest.raises(TypeError, match="dataset name"):
        load_splits(3)


def test_options_and_roots_are_checked() -> None:
    with pytest.raises(TypeError, match="unexpected option.*color.*'digits'"):
        load_splits("digits", color="rgb")
    with pytest.raises(ValueError, match="takes no root"):
        load_splits("digits", root="/tmp")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError, match="fit must be one of"):
        load_splits("digits", fit="crop")
    with pytest.raises(TypeError, match="normalize"):
        load_splits("digits", normalize="yes")


def test_normalisation_statistics_come_from_train_only() -> None:
    train, test = load_splits("digits", normalize=True)
    assert train.normalization is test.normalization
    stats = train.normalization
    raw_train = train.images.double()
    assert stats.mean[0] == pytest.approx(float(raw_train.mean()), abs=1e-9)
    assert stats.std[0] == pytest.approx(float(raw_train.std(unbiased=False)), abs=1e-9)
    # the test split's own statistics differ, and are not used
    assert stats.mean[0] != pytest.approx(float(test.images.double().mean()), abs=1e-6)
    x = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(float(x.double().mean())) < 1e-5
    assert abs(float(x.double().std(unbiased=False)) - 1) < 1e-5
    image, label = test[3]
    assert torch.allclose(image, (test.images[3] - stats.mean[0]) / stats.std[0])
    assert label == int(test.labels[3])
    # the raw images stay in [0, 1]
    assert float(test.images.min()) >= 0 and float(test.images.max()) <= 1


def test_given_statistics_and_load_dataset_test_split() -> None:
    given = ChannelStats((0.1307,), (0.3081,))
    ds = load_dataset("digits", "test", normalize=given)
    assert ds.normalization == given
    ds_norm = load_dataset("digits", "test", normalize=True)
    train = load_dataset("digits", "train", normalize=True)
    assert ds_norm.normalization == train.normalization
    assert len(ds_norm) == 359


@pytest.mark.parametrize(("size", "fit", "shape"), [(9, "pad", (9, 9)), ((5, 7), "resize", (5, 7))])
def test_size_pipeline(size, fit, shape) -> None:
    train, test = load_splits("digits", size=size, fit=fit)
    assert train.image_shape == (1, *shape) and test.image_shape == (1, *shape)
    if fit == "pad":
        raw = load_splits("digits").train
        assert torch.equal(train.images[..., :8, :8], raw.images)
        assert (train.images[..., 8, :] == 0).all()


def test_mnist_to_odd_size_29() -> None:
    train, test = load_splits("mnist", size=29, normalize=True)
    assert train.image_shape == (1, 29, 29) and len(test) == 1000
    img, _ = test[0]
    assert img.shape == (1, 29, 29) and img.dtype == torch.float32


def test_importing_the_data_layer_imports_no_optional_package() -> None:
    code = (
        "import sys, equify.data\n"
        "bad = [m for m in ('sklearn', 'mlxtend', 'PIL') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
