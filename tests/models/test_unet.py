"""The small U-Net: any input size, dtype and batch; registry; gradients; bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from equify.models import UNet, architecture_of, available_models, create_model

from ..conftest import devices


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels=1, num_classes=3, width=4, depth=3).eval()


@pytest.mark.parametrize("hw", [(64, 64), (33, 33), (17, 23), (1, 1), (8, 5), (9, 16)])
def test_output_has_the_input_size(model, hw) -> None:
    with torch.no_grad():
        out = model(torch.rand(2, 1, *hw))
    assert out.shape == (2, 3, *hw)
    assert bool(torch.isfinite(out).all())


def test_padding_is_cropped_back_not_resampled(model) -> None:
    """An odd input gives the same logits as its zero-padded version, cropped."""
    x = torch.rand(1, 1, 13, 21)
    padded = F.pad(x, (0, 3, 0, 3))  # 16 x 24, multiples of 8
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :13, :21])


def test_batch_one_empty_batch_and_float64(model) -> None:
    with torch.no_grad():
        assert model(torch.rand(1, 1, 20, 20)).shape == (1, 3, 20, 20)
        assert model(torch.rand(0, 1, 20, 20)).shape == (0, 3, 20, 20)
    m64 = UNet(num_classes=2, width=4, depth=2).double().eval()
    with torch.no_grad():
        out = m64(torch.rand(2, 1, 11, 11, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (2, 2, 11, 11)


@pytest.mark.parametrize("device", devices())
def test_follows_the_input_device(device) -> None:
    m = UNet(in_channels=3, num_classes=4, width=4, depth=2).to(device).eval()
    with torch.no_grad():
        out = m(torch.rand(2, 3, 10, 12, device=device))
    assert out.device.type == device and out.shape == (2, 4, 10, 12)


def test_training_step_reaches_the_first_conv() -> None:
    torch.manual_seed(0)
    m = UNet(in_channels=1, num_classes=3, width=4, depth=2).train()
    x = torch.rand(2, 1, 15, 18)
    target = torch.randint(0, 3, (2, 15, 18))
    loss = F.cross_entropy(m(x), target)
    loss.backward()
    first = m.encoders[0][0].weight
    assert first.grad is not None and float(first.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in m.parameters())


def test_depth_zero_and_widths() -> None:
    m = UNet(in_channels=2, num_classes=5, width=3, depth=0).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 2, 7, 3)).shape == (1, 5, 7, 3)
    assert len(m.ups) == 0 and len(m.encoders) == 1
    deep = UNet(width=4, depth=3)
    widths = [block[0].out_channels for block in deep.encoders]
    assert widths == [4, 8, 16, 32]


def test_registry_creates_the_unet() -> None:
    assert "unet" in available_models()
    m = create_model("unet", in_channels=1, num_classes=11)
    assert isinstance(m, UNet) and m.num_classes == 11 and m.width == 16 and m.depth == 3
    assert architecture_of(m) == {"name": "unet", "kwargs": {"in_channels": 1, "num_classes": 11}}
    with torch.no_grad():
        assert m.eval()(torch.rand(1, 1, 29, 29)).shape == (1, 11, 29, 29)


def test_bad_inputs(model) -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 1"):
        model(torch.rand(1, 1, 0, 16))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"in_channels": 0}, ValueError),
        ({"num_classes": 0}, ValueError),
        ({"width": 2.0}, TypeError),
        ({"depth": -1}, ValueError),
        ({"depth": 9}, ValueError),
        ({"depth": True}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error) -> None:
    with pytest.raises(error):
        UNet(**kwargs)
