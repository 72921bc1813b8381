"""Adaptation without labels: rotation consistency and a canonicalizer distilled from the frozen
predictor's own upright predictions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")

import equify
from equify.actions import ImageAction, InvariantAction
from equify.analysis import rotation_consistency
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.models import create_model
from equify.symmetrization import GroupAveraging
from equify.testing import assert_equivariant
from equify.training import ClassifierModule
from equify.training.distill import distill_canonicalizer, soft_targets


def _predictor() -> nn.Module:
    torch.manual_seed(0)
    return create_model("small_cnn", in_channels=3, num_classes=7).eval()


def test_rotation_consistency_of_invariant_and_plain_models() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 7)).eval()  # orientation-bound
    x = torch.rand(12, 3, 16, 16)
    averaged = GroupAveraging(net, "C4").eval()
    ev = rotation_consistency(averaged, x, "C4", reference=averaged)
    assert ev.accuracy == [1.0] * 4 and ev.count == 12  # invariant: always its upright top-1
    own = rotation_consistency(net, x, "C4")
    assert own.accuracy[0] == 1.0  # the identity agrees with itself by definition
    assert min(own.accuracy[1:]) < 1.0  # a plain CNN changes its mind under rotation
    # against another reference, the identity entry is the fraction of kept predictions
    kept = rotation_consistency(averaged, x, "C4", reference=net).accuracy[0]
    with torch.no_grad():
        expected = (averaged(x).argmax(1) == net(x).argmax(1)).float().mean().item()
    assert kept == pytest.approx(expected)
    with pytest.raises(ValueError, match="empty"):
        rotation_consistency(net, torch.rand(0, 3, 8, 8), "C4")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        rotation_consistency(net, torch.rand(3, 8, 8), "C4")
    with pytest.raises(ValueError, match="batch_size"):
        rotation_consistency(net, x, "C4", batch_size=0)


def test_soft_targets_are_the_teachers_probabilities() -> None:
    net = _predictor().train()
    x = torch.rand(5, 3, 16, 16)
    p = soft_targets(net, x, temperature=2.0, batch_size=2)
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(p, torch.softmax(net(x) / 2.0, 1))
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(net, x, temperature=0.0)
    with pytest.raises(ValueError, match="non-empty"):
        soft_targets(net, torch.rand(0, 3, 8, 8))


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_classifier_module_takes_probability_targets() -> None:
    net = _predictor()
    module = ClassifierModule(net, lr_model=1e-3)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)
    loss = module.training_step((x, probs), 0)
    # cross-entropy to the model's own probabilities is their entropy (KL 0)
    expected = -(probs * probs.log()).sum(1).mean()
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("group", ["C4", "D4"])
def test_distillation_trains_only_the_canonicalizer_and_keeps_exactness(group) -> None:
    torch.manual_seed(0)
    g = equify.group(group)
    predictor = _predictor()
    before = copy.deepcopy(predictor.state_dict())
    model = EquivariantModel(predictor, DiscreteCanonicalizer(g, in_channels=3))
    can_before = copy.deepcopy(model.canonicalizer.state_dict())
    images = torch.rand(24, 3, 17, 17)

    def identity_fraction() -> float:
        model.eval()
        with torch.no_grad():
            _, result = model.forward_with_result(images)
        return float((result.elements == 0).float().mean())

    identity_before = identity_fraction()
    out = distill_canonicalizer(
        model, images, val_images=images[:8], epochs=3, batch_size=8, lr=1e-2, accelerator="cpu"
    )
    assert out["epochs"] == 3 and {"loss", "prior", "acc"} <= set(out["train"])
    assert "identity_fraction" in out["val"]
    # the prior taught the canonicalizer to keep these (upright) images upright
    assert identity_fraction() >= identity_before + 0.25
    # the predictor is frozen: weights and BatchNorm statistics unchanged
    for k, v in model.predictor.state_dict().items():
        assert torch.equal(v, before[k]), k
    changed = [
        k for k, v in model.canonicalizer.state_dict().items() if not torch.equal(v, can_before[k])
    ]
    assert changed, "the canonicalizer did not learn"
    # still exactly invariant after training, also after a deepcopy
    model.eval()
    x = torch.rand(3, 3, 17, 17, dtype=torch.float64)
    with torch.no_grad():
        for m in (model, copy.deepcopy(model)):
            assert_equivariant(m.double(), x, g, ImageAction(), InvariantAction(), atol=1e-10)


def test_distillation_rejects_bad_input() -> None:
    net = _predictor()
    with pytest.raises(TypeError, match="EquivariantModel"):
        distill_canonicalizer(net, torch.rand(4, 3, 8, 8))
    model = EquivariantModel(net, DiscreteCanonicalizer("C4", in_channels=3))
    with pytest.raises(ValueError, match="epochs"):
        distill_canonicalizer(model, torch.rand(4, 3, 8, 8), epochs=0)
    with pytest.raises(ValueError, match="lr"):
        distill_canonicalizer(model, torch.rand(4, 3, 8, 8), lr=0.0)
    with pytest.raises(ValueError, match="non-empty"):
        distill_canonicalizer(model, torch.rand(0, 3, 8, 8))


@pytest.mark.filterwarnings(r"ignore:You are trying to `self.log\(\)`")
def test_prior_only_warm_up_trains_the_canonicalizer_alone() -> None:
    torch.manual_seed(0)
    model = EquivariantModel(_predictor(), DiscreteCanonicalizer("C4", in_channels=3))
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    warm = ClassifierModule(
        model, lr_model=1e-3, lr_canonicalizer=1e-3, prior_weight=2.0, aux_only_epochs=1
    )
    loss = warm.training_step((x, y), 0)  # epoch 0 < 1: the warm-up
    _, result = model.forward_with_result(x)
    torch.testing.assert_close(loss, 2.0 * model.aux_loss(result))
    loss.backward()
    # the predictor stays in the graph (DDP needs it) with zero gradients
    assert all(p.grad is None or not p.grad.any() for p in model.predictor.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.canonicalizer.parameters())
    model.zero_grad(set_to_none=True)
    joint = ClassifierModule(model, lr_model=1e-3, lr_canonicalizer=1e-3, prior_weight=2.0)
    joint.training_step((x, y), 0).backward()
    assert any(p.grad is not None for p in model.predictor.parameters())
    with pytest.raises(ValueError, match="warm-up needs prior_weight"):
        ClassifierModule(model, lr_model=1e-3, aux_only_epochs=1)
