"""Every symmetrizer, every element: equivariance proofs, gradients, costs and bad input."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from equify.actions import ImageAction, InvariantAction, RegularAction
from equify.groups import CyclicGroup, DihedralGroup
from equify.symmetrization import (
    EquiAttention,
    EquiZero,
    GroupAveraging,
    LambdaEquitune,
    max_probability_proxy,
)
from equify.testing import assert_equivariant, equivariance_error

from ..actions.helpers import smooth_images
from ..canonicalization.test_edge_cases import D4_SUBGROUPS, RampDense, RampLogits, symmetrize

C4, D4, C8 = CyclicGroup(4), DihedralGroup(4), CyclicGroup(8)


def make(kind: str, group, dense: bool, dtype=torch.float32, **kw):
    pred = (RampDense() if dense else RampLogits()).to(dtype)
    out = ImageAction() if dense else InvariantAction()
    if kind == "equitune":
        m = GroupAveraging(pred, group, out_action=out, **kw)
    elif kind == "lambda-softmax":
        m = LambdaEquitune(pred, group, in_channels=1, out_action=out, **kw)
    elif kind == "lambda-sum":
        m = LambdaEquitune(pred, group, in_channels=1, out_action=out, normalization="sum", **kw)
    elif kind == "equizero-entropy":
        m = EquiZero(pred, group, out_action=out, **kw)
    elif kind == "equizero-maxprob":
        m = EquiZero(pred, group, proxy="max_prob", out_action=out, **kw)
    elif kind == "equiattention":
        m = EquiAttention(pred, group, in_channels=1, out_action=out, **kw)
    else:
        raise ValueError(kind)
    return m.to(dtype).eval(), out


KINDS = [
    "equitune",
    "lambda-softmax",
    "lambda-sum",
    "equizero-entropy",
    "equizero-maxprob",
    "equiattention",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("group", [C4, D4], ids=str)
@pytest.mark.parametrize("dense", [False, True], ids=["logits", "dense"])
@pytest.mark.parametrize("size", [9, 10])
def test_every_method_is_equivariant_to_every_element(kind, group, dense, size) -> None:
    model, out = make(kind, group, dense)
    x = torch.randn(3, 1, size, size)
    assert_equivariant(model, x, group, ImageAction(), out)
    with pytest.raises(AssertionError):  # the predictor alone is not
        assert_equivariant(model.predictor, x, group, ImageAction(), out)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_exact_to_rounding_and_symmetric_inputs(kind) -> None:
    model, out = make(kind, D4, dense=True, dtype=torch.float64)
    x = torch.randn(4, 1, 11, 11, dtype=torch.float64)
    x[1] = 0.0  # blank
    x[2] = 0.25  # constant
    x[3] = symmetrize(x[3:4], D4_SUBGROUPS["C2"])[0]
    report = assert_equivariant(model, x, D4, ImageAction(), out)
    assert report.max_relative_error() < 1e-12


def test_c8_exact_on_its_grid_elements_and_close_on_the_others() -> None:
    """C8's 45° views interpolate: the 90° elements stay exact, the others are measured."""
    x = smooth_images(3, 1, 33, 33, dtype=torch.float32)
    for kind in ("equitune", "lambda-softmax", "equiattention"):
        model, out = make(kind, C8, dense=False)
        assert_equivariant(model, x, C8, ImageAction(), out, elements=torch.tensor([0, 2, 4, 6]))
        rel = equivariance_error(model, x, C8, ImageAction(), out).max_relative_error()
        bare = equivariance_error(model.predictor, x, C8, ImageAction(), out)
        assert rel < 0.1 < bare.max_relative_error(), (kind, rel)  # documented: < 0.1


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("kind", KINDS)
def test_chunking_changes_nothing(chunk, kind) -> None:
    x = torch.randn(2, 1, 8, 8)
    ref, _ = make(kind, D4, dense=True)
    model = copy.deepcopy(ref)
    model.chunk_size = chunk
    torch.testing.assert_close(model(x), ref(x))


def test_integer_outputs_are_refused_not_zeroed() -> None:
    from equify.actions import MaskAction

    labels = GroupAveraging(lambda z: RampDense()(z).argmax(1), C4, out_action=MaskAction())
    with pytest.raises(TypeError, match="must be floating"):
        labels(torch.randn(2, 1, 8, 8))
    zero = EquiZero(
        lambda z: RampDense()(z).argmax(1),
        C4,
        out_action=MaskAction(),
        proxy=lambda y: y.flatten(1).float().mean(1),
    )
    with pytest.raises(TypeError, match="must be floating"):
        zero(torch.randn(2, 1, 8, 8))


def test_learned_weights_get_gradients() -> None:
    x = torch.randn(4, 1, 8, 8)
    for kind, part in (
        ("lambda-softmax", "weight_net"),
        ("lambda-sum", "weight_net"),
        ("equiattention", "query"),
        ("equiattention", "feature_net"),
    ):
        model, _ = make(kind, C4, dense=False)
        model.train()
        model(x).square().sum().backward()
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert all(g is not None for g in grads) and any(bool(g.abs().sum() > 0) for g in grads)


def test_equizero_straight_through_gradient_is_the_group_mean() -> None:
    model, _ = make("equizero-entropy", C4, dense=False)
    avg = GroupAveraging(model.predictor, C4)
    x = torch.randn(3, 1, 8, 8)
    model.train()
    y = model(x)
    (g_zero,) = torch.autograd.grad(y.sum(), [model.predictor.conv.weight])
    (g_mean,) = torch.autograd.grad(avg(x).sum(), [model.predictor.conv.weight])
    assert bool(g_zero.abs().sum() > 0)
    torch.testing.assert_close(g_zero, g_mean)
    model.eval()
    with torch.no_grad():  # evaluation: the hard choice itself
        hard = model(x)
    _, result = model.forward_with_result(x)
    chosen = result.extras["chosen"]
    raw = torch.stack(
        [model.predictor(ImageAction().apply(x, C4.inverse(h), C4)) for h in range(4)]
    )
    torch.testing.assert_close(hard, raw[chosen, torch.arange(3)])


def test_equizero_max_prob_picks_the_most_confident_view() -> None:
    class Confident(nn.Module):
        """Very confident exactly on upright (corner-bright) views."""

        def forward(self, x):
            corner = x[:, 0, 0, 0]
            return torch.stack([10 * corner, torch.zeros_like(corner)], 1)

    x = torch.zeros(2, 1, 6, 6)
    x[0, 0, 0, 0] = 1.0  # upright: bright top-left corner
    x[1, 0, -1, -1] = 1.0  # rotated by 180°
    model = EquiZero(Confident(), C4, proxy="max_prob").eval()
    _, result = model.forward_with_result(x)
    # the view h⁻¹·x is upright for h = 0 (sample 0) and h = 2 (sample 1)
    assert result.extras["chosen"].tolist() == [0, 2]
    assert bool((max_probability_proxy(torch.tensor([[5.0, 0.0]])) < -0.99).all())


def test_equizero_custom_proxy_and_its_shape_check() -> None:
    model = EquiZero(RampLogits(), C4, proxy=lambda y: y[:, 0]).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    bad = EquiZero(RampLogits(), C4, proxy=lambda y: y)
    with pytest.raises(ValueError, match="one loss per input"):
        bad(torch.randn(2, 1, 8, 8))


def test_feature_level_lambda_equitune() -> None:
    """Backbone features mapped back by g, combined, then an equivariant head."""
    backbone = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())  # any: mapped back
    dense_head = nn.Conv2d(6, 3, 1)  # pointwise: equivariant
    pooled_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    x = torch.randn(2, 1, 9, 9)
    dense = LambdaEquitune(
        backbone, D4, in_channels=1, head=dense_head, out_action=ImageAction()
    ).eval()
    assert_equivariant(dense, x, D4, ImageAction(), ImageAction())
    logits = LambdaEquitune(backbone, D4, in_channels=1, head=pooled_head).eval()
    assert_equivariant(logits, x, D4, ImageAction(), InvariantAction())
    # with a positional (non-equivariant) head the form is not equivariant: the check fails
    positional = LambdaEquitune(
        backbone, D4, in_channels=1, head=RampDense(6), out_action=ImageAction()
    ).eval()
    with pytest.raises(AssertionError):
        assert_equivariant(positional, x, D4, ImageAction(), ImageAction())


def test_regular_representation_outputs() -> None:
    """G-CNN-style features (B, C·|G|) transform by the regular representation."""

    class Scores(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 2 * 8)

        def forward(self, x):
            return self.lin(x.flatten(1))

    model = GroupAveraging(Scores(), D4, out_action=RegularAction(D4)).eval()
    assert_equivariant(model, torch.randn(3, 1, 8, 8), D4, ImageAction(), RegularAction(D4))


@pytest.mark.parametrize("kind", KINDS)
def test_edges_empty_batch_one_copy_save(kind) -> None:
    model, out = make(kind, C4, dense=True)
    assert model(torch.zeros(0, 1, 8, 8)).shape == (0, 3, 8, 8)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 3, 8, 8)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(3, 1, 8, 8)
    model(x).square().mean().backward()
    opt.step()
    twin = copy.deepcopy(model).eval()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False).eval()
    model.eval()
    torch.testing.assert_close(twin(x), model(x))
    torch.testing.assert_close(loaded(x), model(x))
    assert_equivariant(twin, x, C4, ImageAction(), out)
    summary = model.diagnostics()
    assert summary["predictor_passes_per_input"] == 4 and summary["views"] == 4


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        GroupAveraging(RampLogits(), C4, chunk_size=0)
    with pytest.raises(ValueError, match="regular representation of C4"):
        GroupAveraging(RampLogits(), D4, in_action=RegularAction(C4))
    with pytest.raises(ValueError, match="regular representation of C4"):
        GroupAveraging(RampLogits(), D4, out_action=RegularAction(C4))
    with pytest.raises(ValueError, match="finite group"):
        GroupAveraging(RampLogits(), "SO2")
    with pytest.raises(ValueError, match="in_channels"):
        LambdaEquitune(RampLogits(), C4)
    with pytest.raises(ValueError, match="normalization"):
        LambdaEquitune(RampLogits(), C4, in_channels=1, normalization="l1")
    wide = LambdaEquitune(
        RampLogits(), C4, weight_net=nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    )
    with pytest.raises(ValueError, match="one score per view"):
        wide(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="proxy must be one of"):
        EquiZero(RampLogits(), C4, proxy="confidence")
    with pytest.raises(TypeError, match="torch.Tensor"):
        GroupAveraging(RampLogits(), C4)([1, 2])
    broken = GroupAveraging(lambda z: z[:1].flatten(1), C4)
    with pytest.raises(ValueError, match="one output per view"):
        broken(torch.randn(2, 1, 8, 8))
