"""DiscreteCanonicalizer and EquivariantModel: exact invariance/equivariance for C4/D4, more."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import equify
from equify.actions import BoxAction, ImageAction, InvariantAction, MaskAction, RegularAction
from equify.canonicalization import (
    CanonicalizationStateError,
    DiscreteCanonicalizer,
    EquivariantModel,
)
from equify.groups import CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant, equivariance_error

from .predictors import DenseNet, FlattenCNN, OrbitScoreNet, PatchEmbedding

SIZES = [27, 28, 32, 33]


def make(group_name: str, channels: int, network: str) -> DiscreteCanonicalizer:
    g = equify.group(group_name)
    net = OrbitScoreNet(g, channels) if network == "orbit" else None
    return DiscreteCanonicalizer(g, in_channels=channels, network=net).eval()


@pytest.mark.parametrize("network", ["default", "orbit"])
@pytest.mark.parametrize("group_name", ["C4", "D4"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("predictor_kind", ["cnn", "vit"])
def test_wrapped_classifier_is_invariant_to_every_element(
    network: str, group_name: str, size: int, predictor_kind: str
) -> None:
    torch.manual_seed(size)
    predictor = (FlattenCNN(3, size) if predictor_kind == "cnn" else PatchEmbedding(3, size)).eval()
    model = EquivariantModel(predictor, make(group_name, 3, network)).eval()
    x = torch.randn(4, 3, size, size)
    g = equify.group(group_name)
    assert_equivariant(model, x, g, ImageAction(), InvariantAction(), rtol=1e-5, atol=1e-6)
    # in fact bit-exact: the predictor sees the very same canonical image
    report = equivariance_error(model, x, g, ImageAction(), InvariantAction())
    assert report.max_error() == 0.0
    # while the bare predictor is not invariant
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(predictor, x, g, ImageAction(), InvariantAction())


@pytest.mark.parametrize("network", ["default", "orbit"])
@pytest.mark.parametrize("group_name", ["C4", "D4"])
def test_canonical_element_is_equivariant(network: str, group_name: str) -> None:
    can = make(group_name, 2, network)
    g = equify.group(group_name)
    x = torch.randn(6, 2, 29, 29, dtype=torch.float64)
    can = can.double()
    base = can.canonicalize(x)[1].elements
    for e in range(g.order):
        moved = can.canonicalize(ImageAction().apply(x, e, g))[1].elements
        assert torch.equal(moved, g.compose(e, base)), e


@pytest.mark.parametrize("network", ["default", "orbit"])
@pytest.mark.parametrize("group_name", ["C4", "D4"])
@pytest.mark.parametrize("size", [27, 28])
def test_dense_predictor_is_equivariant_and_masks_boxes_invert_exactly(
    network: str, group_name: str, size: int
) -> None:
    g = equify.group(group_name)
    model = EquivariantModel(DenseNet(1, size), make(group_name, 1, network), ImageAction()).eval()
    x = torch.randn(3, 1, size, size)
    assert_equivariant(model, x, g, ImageAction(), ImageAction(), rtol=1e-5, atol=1e-6)
    assert equivariance_error(model, x, g, ImageAction(), ImageAction()).max_error() == 0.0
    with pytest.raises(AssertionError):
        assert_equivariant(model.predictor, x, g, ImageAction(), ImageAction())

    # masks: argmax of the dense logits, mapped back with MaskAction, equals the equivariant output
    can = model.canonicalizer
    x_c, res = can.canonicalize(x)
    logits_c = model.predictor(x_c)
    masks = can.invert(logits_c.argmax(1), MaskAction(), result=res)
    assert torch.equal(masks, model(x).argmax(1))
    # boxes predicted on the canonical image map back exactly, and undo round-trips
    boxes_c = torch.tensor([[[2.0, 3.0, 10.0, 7.0]]]).repeat(3, 1, 1)
    boxes = can.invert(boxes_c, BoxAction(size), result=res)
    back = BoxAction(size).apply(boxes, g.inverse(res.elements), g)
    assert torch.equal(back, boxes_c)
    # and they agree with the masks: render the canonical box, map the image back
    img_c = torch.zeros(3, 1, size, size)
    img_c[:, :, 3:7, 2:10] = 1.0
    img = can.invert(img_c, ImageAction(), result=res)
    for b in range(3):
        rows, cols = img[b, 0].nonzero().unbind(1)
        seen = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]).float()
        assert torch.equal(seen, boxes[b, 0])


def test_regular_feature_outputs_invert_with_regular_action() -> None:
    g = DihedralGroup(4)
    # a predictor producing regular feature maps of D4 (any non-equivariant conv here)
    predictor = nn.Conv2d(1, 2 * g.order, 3, padding=1)
    model = EquivariantModel(predictor, make("D4", 1, "orbit"), RegularAction(g)).eval()
    x = torch.randn(2, 1, 15, 15)
    assert_equivariant(model, x, g, ImageAction(), RegularAction(g), exact=True)


def test_stateful_and_explicit_forms_agree() -> None:
    can = make("D4", 1, "orbit")
    x = torch.randn(5, 1, 12, 12)
    y_explicit, res = can.canonicalize(x)
    y_stateful = can(x)
    assert torch.equal(y_explicit, y_stateful)
    assert torch.equal(can.last_result.elements, res.elements)
    logits = torch.randn(5, 3)
    assert torch.equal(can.invert(logits, InvariantAction()), logits)
    dense = torch.randn(5, 2, 12, 12)
    assert torch.equal(
        can.invert(dense, ImageAction()), can.invert(dense, ImageAction(), result=res)
    )
    # the canonical image is the input transformed by c(x)^-1
    g = can.group
    assert torch.equal(y_explicit, ImageAction().apply(x, g.inverse(res.elements), g))


def test_diagnostics() -> None:
    can = make("C4", 1, "orbit")
    x = torch.randn(16, 1, 10, 10)
    _, res = can.canonicalize(x)
    d = can.diagnostics(res)
    assert sum(d["histogram"]) == 16 and len(d["histogram"]) == 4
    assert d["identity_fraction"] == d["histogram"][0] / 16
    assert set(d["angles_deg"]) <= {0.0, 90.0, 180.0, -90.0}
    assert d["reflection_fraction"] == 0.0


def test_gradients_reach_the_canonicalization_network_through_straight_through() -> None:
    torch.manual_seed(0)
    can = make("C4", 1, "orbit").train()
    predictor = FlattenCNN(1, 12)
    x = torch.randn(8, 1, 12, 12)
    x_c, res = can.canonicalize(x)
    # forward value is exactly the hard choice
    assert torch.equal(
        x_c.detach(), ImageAction().apply(x, can.group.inverse(res.elements), can.group)
    )
    loss = nn.functional.cross_entropy(predictor(x_c), torch.randint(0, 10, (8,)))
    loss.backward()
    grads = [p.grad for p in can.network.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_gumbel_estimator_samples_in_training_and_is_deterministic_in_eval() -> None:
    g = CyclicGroup(4)
    can = DiscreteCanonicalizer(g, 1, network=OrbitScoreNet(g, 1), estimator="gumbel")
    x = torch.randn(64, 1, 10, 10)
    can.train()
    torch.manual_seed(1)
    a = can.canonicalize(x)[1].elements
    b = can.canonicalize(x)[1].elements
    assert not torch.equal(a, b)  # sampled
    can.eval()
    assert torch.equal(can.canonicalize(x)[1].elements, can.canonicalize(x)[1].elements)
    can.train()
    x_c, _res = can.canonicalize(x)
    x_c.pow(2).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in can.network.parameters())


@pytest.mark.parametrize("group_name", ["C4", "D4"])
def test_training_only_the_prior_drives_the_identity_fraction_to_one(group_name: str) -> None:
    torch.manual_seed(0)
    can = make(group_name, 1, "default").train()
    x = torch.randn(32, 1, 16, 16)
    start = can.canonicalize(x)[1].identity_fraction()
    opt = torch.optim.Adam(can.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        can(x)
        loss = can.prior_loss()
        loss.backward()
        opt.step()
    end = can.eval().canonicalize(x)[1].identity_fraction()
    assert end == 1.0 and start < 1.0


def test_bad_input_raises_clear_errors() -> None:
    g = CyclicGroup(4)
    can = DiscreteCanonicalizer(g, in_channels=3, network=OrbitScoreNet(g, 3))
    with pytest.raises(ValueError, match="in_channels=3.*1 channels"):
        can(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        can(torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="floating"):
        can(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    bad_net = DiscreteCanonicalizer(g, 3, network=nn.Sequential(nn.Flatten(), nn.LazyLinear(5)))
    with pytest.raises(ValueError, match=r"\(B, \|G\|\) = \(2, 4\).*\(2, 5\)"):
        bad_net(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="ContinuousCanonicalizer"):
        DiscreteCanonicalizer("SO2", 3)
    with pytest.raises(ValueError, match="unknown group"):
        DiscreteCanonicalizer("Z4", 3)
    fresh = DiscreteCanonicalizer(g, 3, network=OrbitScoreNet(g, 3))
    with pytest.raises(CanonicalizationStateError, match="call the canonicalizer"):
        fresh.invert(torch.randn(2, 10), InvariantAction())
    with pytest.raises(CanonicalizationStateError):
        fresh.prior_loss()
    fresh(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="batch size 3.*2 samples"):
        fresh.invert(torch.randn(3, 10), InvariantAction())
    with pytest.raises(TypeError, match="Action"):
        fresh.invert(torch.randn(2, 10), "invariant")
    with pytest.raises(ValueError, match="estimator"):
        DiscreteCanonicalizer(g, 3, network=OrbitScoreNet(g, 3), estimator="reinforce")
    with pytest.raises(ValueError, match="prior"):
        DiscreteCanonicalizer(g, 3, network=OrbitScoreNet(g, 3), prior="uniform")
    with pytest.raises(TypeError, match="Canonicalizer"):
        EquivariantModel(nn.Identity(), "C4")
