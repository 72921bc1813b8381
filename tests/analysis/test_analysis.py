"""Orbit evaluation, invariance error and cost measurement on models with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify.actions import ImageAction
from equify.analysis import count_parameters, evaluate_orbit, invariance_error, measure_cost
from equify.data import ImageDataset
from equify.groups import CyclicGroup, DihedralGroup


class BrightestQuadrant(nn.Module):
    """Class = the quadrant (0 TL, 1 TR, 2 BR, 3 BL) holding the most light: not invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        q = [
            x[..., :h, :w].sum((1, 2, 3)),
            x[..., :h, w:].sum((1, 2, 3)),
            x[..., h:, w:].sum((1, 2, 3)),
            x[..., h:, :w].sum((1, 2, 3)),
        ]
        return torch.stack(q, 1) + self.dummy


class TotalLight(nn.Module):
    """Logits from rotation-invariant statistics (sum and sum of squares): exactly invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 4, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([x.sum((1, 2, 3)), x.pow(2).sum((1, 2, 3))], 1)
        return self.head(feats.to(self.head.weight.dtype))


def quadrant_data(n: int = 40) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 8, 8, generator=g) * 0.1
    labels = torch.randint(0, 4, (n,), generator=g)
    for i, q in enumerate(labels.tolist()):
        r, c = [(0, 0), (0, 4), (4, 4), (4, 0)][q]
        images[i, 0, r : r + 4, c : c + 4] += 0.8
    return ImageDataset(images, labels, ["tl", "tr", "br", "bl"])


def test_orbit_accuracy_known_answer():
    """Rotating by 90° k times moves the bright quadrant k places: accuracy 1 then 0."""
    data = quadrant_data()
    ev = evaluate_orbit(BrightestQuadrant(), data, CyclicGroup(4), batch_size=7)
    assert ev.accuracy == [1.0, 0.0, 0.0, 0.0]
    assert ev.angles == [0.0, 90.0, 180.0, 270.0]
    assert ev.count == len(data)
    assert ev.mean == pytest.approx(0.25)
    assert ev.worst == 0.0
    d = ev.to_dict()
    assert d["mean"] == pytest.approx(0.25) and len(d["names"]) == 4


def test_orbit_accuracy_d4_matches_where_each_quadrant_goes():
    """Under each D4 element a label stays right exactly when its quadrant is fixed."""
    data = quadrant_data()
    ev = evaluate_orbit(BrightestQuadrant(), data, "D4")
    d4 = DihedralGroup(4)
    assert len(ev.accuracy) == 8 and sum(ev.reflections) == 4
    layout = torch.tensor([[0.0, 1.0], [3.0, 2.0]]).view(1, 1, 2, 2)  # quadrant ids as pixels
    for k in range(8):
        moved = ImageAction().apply(layout, torch.tensor(k), d4)
        fixed = (moved == layout).view(2, 2)
        fixed_ids = {
            int(layout.view(2, 2)[i, j]) for i in range(2) for j in range(2) if fixed[i, j]
        }
        expected = sum(int(lab) in fixed_ids for lab in data.labels) / len(data)
        assert ev.accuracy[k] == pytest.approx(expected)
    assert ev.accuracy[0] == 1.0 and ev.accuracy[2] == 0.0  # identity; 180°


def test_orbit_angles_and_mode_restored():
    data = quadrant_data(10)
    model = TotalLight().float().train()
    modes = []
    model.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    ev = evaluate_orbit(model, data, [0, 45, 90], batch_size=4)
    assert ev.angles == [0.0, 45.0, 90.0]
    assert modes and not any(modes)  # evaluated in eval mode
    assert len(modes) == 3 * 3  # 3 batches x 3 angles
    # an invariant model has the same accuracy at every quarter turn
    assert ev.accuracy[0] == ev.accuracy[2]
    assert model.training  # the caller's mode is restored


def test_orbit_bad_input():
    with pytest.raises(TypeError, match="ImageDataset"):
        evaluate_orbit(BrightestQuadrant(), torch.zeros(3, 1, 8, 8), "C4")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_orbit(BrightestQuadrant(), quadrant_data(4), "C4", batch_size=0)


@pytest.mark.parametrize("group", [CyclicGroup(4), DihedralGroup(4)])
def test_invariance_error_separates_invariant_and_not(group):
    x = torch.rand(6, 1, 9, 9, dtype=torch.float64)
    inv = invariance_error(TotalLight(), x, group)
    assert inv["max_abs"] < 1e-12
    bad = invariance_error(BrightestQuadrant().double(), x, group)
    assert bad["max_abs"] > 0.1 and bad["max_relative"] > 1e-3


def test_count_parameters_counts_shared_once():
    lin = nn.Linear(3, 4)
    shared = nn.Sequential(lin, nn.ReLU(), lin)
    assert count_parameters(lin) == 16
    assert count_parameters(shared) == 16


def test_measure_cost_side_by_side():
    bare = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    wrapped = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), bare)
    wrapped.eval()
    bare.train()  # a child of wrapped, in another mode: both modes must come back
    report = measure_cost(wrapped, bare, torch.rand(8, 1, 8, 8), repeats=3)
    assert report.params_bare == 260
    assert report.params_model == 270
    assert report.extra_params_fraction == pytest.approx(10 / 260)
    assert report.seconds_per_image_model > 0 and report.seconds_per_image_bare > 0
    assert report.time_ratio == pytest.approx(
        report.seconds_per_image_model / report.seconds_per_image_bare
    )
    assert bare.training and not wrapped.training  # modes restored
    assert set(report.to_dict()) >= {"time_ratio", "extra_params_fraction"}
    with pytest.raises(ValueError, match="repeats"):
        measure_cost(wrapped, bare, torch.rand(2, 1, 8, 8), repeats=0)


def test_evaluate_orbits_shares_passes_and_keeps_the_numbers():
    from equify.analysis import evaluate_orbits

    class Counting(BrightestQuadrant):
        calls = 0

        def forward(self, x):
            Counting.calls += 1
            # a score that depends on sub-pixel values, so that any change of input would show
            return super().forward(x) + 1e-3 * x.flatten(1)[:, :4] * torch.arange(4)

    data = quadrant_data(30)
    model = Counting()
    sets = [[0.0], "C8", list(range(0, 360, 15)), "D4"]
    separate = []
    for spec in sets:
        separate.append(evaluate_orbit(model, data, spec, batch_size=30))
    calls_separate, Counting.calls = Counting.calls, 0
    shared = evaluate_orbits(model, data, sets, batch_size=30)
    assert [s.accuracy for s in shared] == [s.accuracy for s in separate]
    assert [s.names for s in shared] == [s.names for s in separate]
    assert calls_separate == 1 + 8 + 24 + 8
    # identity, 45°-steps of C8 within the 15° sweep, and D4's rotations are shared
    assert Counting.calls == 24 + 4


def test_oracle_turns_every_orbit_image_back():
    """The non-invariant quadrant model is perfect on the orbit once each image is turned back
    by its true inverse; exact elements lose nothing, 45° turns interpolate twice."""
    from equify.analysis import evaluate_oracle

    data = quadrant_data()
    model = BrightestQuadrant()
    upright = evaluate_orbit(model, data, [0.0]).accuracy[0]
    for group in (CyclicGroup(4), DihedralGroup(4)):
        oracle = evaluate_oracle(model, data, group, batch_size=7)
        assert oracle.accuracy == [upright] * group.order
        assert evaluate_orbit(model, data, group).worst == 0.0  # the bare model fails there
    c8 = evaluate_oracle(model, data, "C8")
    assert c8.accuracy[::2] == [upright] * 4  # the 90° multiples are exact
    assert all(0.0 <= a <= 1.0 for a in c8.accuracy) and len(c8.names) == 8
    # the round trip at 45° really interpolates: the images differ from the originals
    from equify.data.rotated import angle_matrices

    act = ImageAction()
    there = act.apply(data.images, angle_matrices(torch.full((len(data),), 45.0)))
    back = act.apply(there, angle_matrices(torch.full((len(data),), -45.0)))
    assert (back - data.images).abs().max() > 1e-3

    # orbit images are made with `action`, turned back with `inverse_action` (a canonicalizer's)
    class Recording(ImageAction):
        def __init__(self, **kw) -> None:
            super().__init__(**kw)
            self.calls = 0

        def apply(self, x, g, group=None):
            self.calls += 1
            return super().apply(x, g, group)

    there_act, back_act = Recording(), Recording(padding="reflection")
    mixed = evaluate_oracle(model, data, "C8", action=there_act, inverse_action=back_act)
    assert there_act.calls == back_act.calls == 8  # one batch, every element once each way
    assert mixed.accuracy[::2] == [upright] * 4  # exact elements: padding changes nothing
    same = evaluate_oracle(model, data, "C8", action=ImageAction(padding="reflection"))
    assert (
        evaluate_oracle(
            model, data, "C8", inverse_action=ImageAction(padding="reflection")
        ).accuracy
        == mixed.accuracy
    )
    assert len(same.accuracy) == 8

    with pytest.raises(TypeError, match="ImageDataset"):
        evaluate_oracle(model, data.images, "C4")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_oracle(model, data, "C4", batch_size=0)
