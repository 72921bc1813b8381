"""Partial G-CNN models: exact C4/D4 invariance at θ = 1, baselines, θ state and regulariser."""

from __future__ import annotations

import copy

import pytest
import torch

from equify.models import (
    PartialGCNN,
    ResidualCNN,
    architecture_of,
    create_model,
    full_gcnn,
    load_model,
    ordinary_cnn,
    partial_gcnn,
    save_checkpoint,
)


def _orbit(x: torch.Tensor, flips: bool):
    for k in range(4):
        for fl in (False, True) if flips else (False,):
            y = torch.rot90(x, k, (-2, -1))
            yield torch.flip(y, (-1,)) if fl else y


@pytest.mark.parametrize(("group", "flips"), [("SE2", False), ("E2", True), ("D4", True)])
@pytest.mark.parametrize("size", [28, 29])
def test_theta_1_evaluation_is_exactly_invariant_at_odd_and_even_sizes(group, flips, size):
    torch.manual_seed(0)
    samples = 4 if group in ("SE2", "E2") else None
    model = partial_gcnn(group, samples=samples, width=4, hidden=8).double().eval()
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    y = model(x)
    for z in _orbit(x, flips):
        assert torch.allclose(model(z), y, atol=1e-10, rtol=0)


def test_full_gcnn_stays_invariant_after_training_and_a_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("full_gcnn", group="E2", samples=4, width=4, hidden=8, num_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(4, 1, 13, 13)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    model.eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    loaded = load_model(path).eval()
    clone = copy.deepcopy(model)
    xd = torch.rand(2, 1, 13, 13)
    y = model(xd)
    assert torch.equal(loaded(xd), y) and torch.equal(clone(xd), y)
    for z in _orbit(xd, True):
        assert torch.allclose(loaded(z), y, atol=1e-5)
    assert architecture_of(loaded)["name"] == "full_gcnn"


def test_negative_controls_ordinary_cnn_and_partial_theta():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 17, 17, dtype=torch.float64)
    cnn = ordinary_cnn(width=4).double().eval()
    assert (cnn(torch.rot90(x, 1, (-2, -1))) - cnn(x)).abs().max() > 1e-4
    half = partial_gcnn("SE2", samples=4, width=4, hidden=8, theta=0.5).double().eval()
    assert (half(torch.rot90(x, 1, (-2, -1))) - half(x)).abs().max() > 1e-6


def test_baselines_freeze_what_they_should():
    full = full_gcnn("E2", samples=4, width=4)
    part = partial_gcnn("E2", samples=4, width=4)
    names = [n for n, _ in part.named_parameters()]
    assert any(n.endswith("theta_raw") for n in names)
    assert any(n.endswith("reflection_raw") for n in names)
    assert not any(n.endswith(("theta_raw", "reflection_raw")) for n, _ in full.named_parameters())
    assert set(part.equivariance_state()) == {
        "lift",
        "block1.conv1",
        "block1.conv2",
        "block2.conv1",
        "block2.conv2",
    }
    assert part.equivariance_state()["lift"] == {"theta": 1.0, "reflection_probability": 1.0}
    with pytest.raises(TypeError, match="full_gcnn fixes learn_theta"):
        full_gcnn("SE2", learn_theta=True)
    assert isinstance(ordinary_cnn(), ResidualCNN)
    # equal width: the ordinary CNN has `width` channels where the G-CNNs have `width` fields
    assert ordinary_cnn(width=6).head.in_features == partial_gcnn(width=6).head.in_features


def test_monotonicity_regulariser():
    m = partial_gcnn("SE2", samples=4, width=4, monotonic_weight=2.0)
    assert float(m.regularization_loss().detach()) == 0.0  # all θ = 1
    s = m.samplers()
    s["lift"].set_(theta=0.4)
    s["block1.conv1"].set_(theta=0.7)  # later layer more equivariant than the earlier: penalised
    s["block1.conv2"].set_(theta=0.2)
    s["block2.conv1"].set_(theta=0.2)
    s["block2.conv2"].set_(theta=0.5)
    expected = 2.0 * ((0.7 - 0.4) + 0.0 + 0.0 + (0.5 - 0.2))
    reg = m.regularization_loss()
    assert abs(float(reg.detach()) - expected) < 1e-6
    reg.backward()
    assert m.lift.sampler.theta_raw.grad < 0  # descending the loss raises the earlier θ
    assert float(partial_gcnn("SE2", samples=4).regularization_loss().detach()) == 0.0


def test_bad_input_is_a_clear_error():
    m = partial_gcnn("SE2", samples=4, width=4)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        m(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 4"):
        m(torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"theta in \[0, 1\]"):
        partial_gcnn("SE2", theta=2.0)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        partial_gcnn("SE2", samples=0)
    with pytest.raises(ValueError, match="unknown group"):
        create_model("partial_gcnn", group="SO3")
    with pytest.raises(ValueError, match="monotonic_weight"):
        partial_gcnn("SE2", monotonic_weight=-1.0)


def test_empty_batch_and_batch_of_one_in_training_and_evaluation():
    m = partial_gcnn("E2", samples=2, width=3, hidden=8, num_classes=4)
    for train in (True, False):
        m.train(train)
        for b in (0, 1):
            assert m(torch.rand(b, 1, 12, 12)).shape == (b, 4)


def test_models_are_registered_with_a_consistent_architecture():
    m = create_model("partial_gcnn", group="E2", samples=2, width=3, in_channels=3)
    assert isinstance(m, PartialGCNN) and m.group_name == "E2"
    assert m(torch.rand(1, 3, 9, 9)).shape == (1, 10)


def test_exact_sizes_reads_the_partial_layers_samples():
    from equify.analysis import exact_sizes

    torch.manual_seed(0)
    full = partial_gcnn("SE2", samples=4, width=3, hidden=8).eval()
    for v in exact_sizes(full, "C4", [9, 10], in_channels=1):
        assert v.predicted_exact and v.measured_exact
    for v in exact_sizes(full, "D4", [9], in_channels=1):
        assert not v.predicted_exact and not v.measured_exact
        assert "samples form C4" in v.reason
    half = partial_gcnn("SE2", samples=4, width=3, hidden=8, theta=0.5).eval()
    (v,) = exact_sizes(half, "C4", [9], in_channels=1)
    assert not v.predicted_exact and not v.measured_exact
    assert "θ = 0.500" in v.reason
