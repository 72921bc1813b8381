"""Building models by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify.models import (
    DensePredictor,
    PatchEmbeddingClassifier,
    ResNet,
    SmallCNN,
    architecture_of,
    available_models,
    create_model,
    register_model,
)
from equify.models import registry as registry_module


def test_available_models_lists_the_built_in_names() -> None:
    names = available_models()
    assert names == sorted(names)
    assert {"small_cnn", "resnet18", "resnet34", "resnet50", "vit_tiny", "dense"} <= set(names)


@pytest.mark.parametrize(
    ("name", "cls", "kwargs"),
    [
        ("small_cnn", SmallCNN, {"in_channels": 3, "num_classes": 7}),
        ("resnet18", ResNet, {"in_channels": 3, "num_classes": 7, "base_width": 8}),
        ("resnet50", ResNet, {"in_channels": 3, "num_classes": 7, "base_width": 8}),
        ("vit_tiny", PatchEmbeddingClassifier, {"in_channels": 3, "num_classes": 7, "depth": 1}),
        ("dense", DensePredictor, {"in_channels": 3, "num_classes": 7, "width": 4}),
    ],
)
def test_create_model_builds_and_records_the_architecture(name, cls, kwargs) -> None:
    model = create_model(name, **kwargs)
    assert isinstance(model, cls)
    out = model.eval()(torch.randn(1, 3, 28, 28))
    assert out.shape[1] == 7
    assert architecture_of(model) == {"name": name, "kwargs": kwargs}
    # a copy: editing it does not change the model's record
    architecture_of(model)["kwargs"]["num_classes"] = 3
    assert architecture_of(model)["kwargs"]["num_classes"] == 7


def test_architecture_of_a_plain_module_is_none() -> None:
    assert architecture_of(nn.Linear(2, 2)) is None
    assert architecture_of(SmallCNN()) is None  # built directly, not through the registry


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown model name 'resnet51'") as info:
        create_model("resnet51")
    for name in available_models():
        assert name in str(info.value)
    with pytest.raises(ValueError, match="expected one of"):
        create_model(None)  # type: ignore[arg-type]


def test_bad_kwargs_reach_the_factory() -> None:
    with pytest.raises(TypeError):
        create_model("small_cnn", no_such_argument=1)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("dense", num_classes=0)


def test_register_model(monkeypatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    def tiny(width: int = 3) -> nn.Module:
        return nn.Linear(2, width)

    register_model("tiny", tiny)
    assert "tiny" in available_models()
    model = create_model("tiny", width=5)
    assert model.out_features == 5
    assert architecture_of(model) == {"name": "tiny", "kwargs": {"width": 5}}
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny", tiny)
    register_model("tiny", lambda: nn.Linear(2, 1), overwrite=True)
    assert create_model("tiny").out_features == 1
    with pytest.raises(TypeError, match="callable"):
        register_model("other", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty str"):
        register_model("", tiny)
    register_model("not_a_module", lambda: 3)
    with pytest.raises(TypeError, match="not an nn.Module"):
        create_model("not_a_module")
