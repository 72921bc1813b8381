"""Partial group convolutions: samplers, continuous kernels, exactness at θ = 1, gradients."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equify.nn import (
    ElementSampler,
    GroupFeatures,
    GroupSamples,
    KernelNet,
    PartialBatchNorm,
    PartialGroupConv,
    PartialGroupPool,
    PartialLiftingConv,
    kernel_positions,
)
from equify.nn.sampling import snap_trig


def _transform(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(x, k, (-2, -1))
    return torch.flip(y, (-1,)) if flip else y


def _invariant_net(group: str, samples: int | None, **kw):
    lift = PartialLiftingConv(1, 3, 5, group, samples, **kw)
    conv = PartialGroupConv(3, 3, 3, group, samples, **kw)
    pool = PartialGroupPool("max")

    def f(x):
        return pool(conv(lift(x))).mean(dim=(-2, -1))

    return torch.nn.ModuleList([lift, conv]).double().eval(), f


# ---------------------------------------------------------------- sampler


def test_stratified_samples_cover_every_stratum_evenly():
    n, theta = 5, 0.6
    s = ElementSampler("SE2", n, theta=theta).train()
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([s(gen).angles.detach().double() for _ in range(4000)])  # (D, n)
    width = 2 * math.pi * theta / n
    lo = -math.pi * theta + width * torch.arange(n, dtype=torch.float64)
    offset = (draws - lo) / width  # each sample's position inside its own stratum, in [0, 1)
    assert offset.min() >= -1e-6 and offset.max() <= 1 + 1e-6
    # uniform over the whole stratum (not half of it): mean 1/2, quartiles 1/4 and 3/4
    assert abs(float(offset.mean()) - 0.5) < 0.02
    q = torch.quantile(offset[:, 0], torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64))
    assert torch.allclose(q, torch.tensor([0.05, 0.25, 0.75, 0.95], dtype=torch.float64), atol=0.03)
    # the union covers [-πθ, πθ] evenly: histogram of all samples is flat
    hist = torch.histc(draws.flatten(), bins=10, min=-math.pi * theta, max=math.pi * theta)
    assert (hist / hist.mean() - 1).abs().max() < 0.1


def test_e2_sampler_covers_each_stratum_in_both_halves():
    n = 4
    s = ElementSampler("E2", n, theta=1.0).train()
    gen = torch.Generator().manual_seed(1)
    out = [s(gen) for _ in range(2000)]
    angles = torch.stack([o.angles.detach() for o in out]).double()
    flips = out[0].flips
    assert flips.tolist() == [0.0] * n + [1.0] * n
    width = 2 * math.pi / n
    for half in (slice(0, n), slice(n, 2 * n)):
        off = (angles[:, half] + math.pi - width * torch.arange(n)) / width
        assert off.min() > -1e-6 and off.max() < 1 + 1e-6
        assert float(off.max() - off.min()) > 0.99  # the whole stratum, not half of it
        assert abs(float(off.mean()) - 0.5) < 0.03


def test_evaluation_samples_are_evenly_spaced_multiples_of_90_degrees_at_theta_1():
    s = ElementSampler("SE2", 4).eval()
    a = s().angles.double()
    assert torch.allclose(a, torch.tensor([-math.pi, -math.pi / 2, 0.0, math.pi / 2]).double())
    s2 = ElementSampler("SE2", 6, theta=0.5).eval()
    a2 = s2().angles.double()
    expected = 0.5 * (-math.pi + 2 * math.pi * torch.arange(6).double() / 6)
    assert torch.allclose(a2, expected, atol=1e-6)
    # evaluation is deterministic
    assert torch.equal(s2().angles, s2().angles)


def test_finite_groups_are_fixed_samples():
    s = ElementSampler("D4").train()
    out = s()
    assert len(out) == 8 and out.flips.tolist() == [0.0] * 4 + [1.0] * 4
    assert not list(s.parameters())
    assert torch.equal(out.angles, s().angles)
    with pytest.raises(ValueError, match="4 rotations"):
        ElementSampler("C4", 8)


def test_theta_receives_gradients_in_training_and_evaluation():
    for train in (True, False):
        lift = PartialLiftingConv(1, 2, 5, "SE2", 4).train(train)
        lift(torch.rand(2, 1, 9, 9)).tensor.square().sum().backward()
        g = lift.sampler.theta_raw.grad
        assert g is not None and torch.isfinite(g) and g.abs() > 0


def test_theta_at_the_boundary_still_gets_gradients_and_comes_back():
    s = ElementSampler("SE2", 4, theta=1.0).train()
    with torch.no_grad():
        s.theta_raw.fill_(1.3)  # an optimizer overshot
    assert float(s.theta.detach()) == 1.0
    s().angles.sum().backward()
    assert s.theta_raw.grad is not None and s.theta_raw.grad != 0
    assert float(s.theta_raw.detach()) == 1.0  # projected back: one step inwards moves θ again
    opt = torch.optim.SGD(s.parameters(), lr=0.01)
    s.theta_raw.grad = torch.tensor(1.0)  # a loss that wants less rotation
    opt.step()
    assert float(s.theta.detach()) < 1.0


def test_rates_travel_with_the_state_dict():
    a = ElementSampler("E2", 4, theta=0.6, reflection_probability=0.3, theta_rate=5.0)
    b = ElementSampler("E2", 4, theta_rate=1.0, reflection_rate=7.0)
    b.load_state_dict(a.state_dict())
    assert abs(float(b.theta.detach()) - 0.6) < 1e-6
    assert abs(float(b.reflection_probability.detach()) - 0.3) < 1e-6
    with pytest.raises(ValueError, match="finite"):
        ElementSampler("SE2", 4, theta_rate=float("inf"))
    with pytest.raises(TypeError, match="reflection_rate"):
        ElementSampler("E2", 4, reflection_rate="fast")


@pytest.mark.parametrize("group", ["SE2", "E2"])
def test_any_sample_set_is_carried_along_by_the_group(group):
    """layer(u·x, u·S) = u·layer(x, S) for arbitrary (non-group) sample sets S and u in D4."""
    torch.manual_seed(0)
    lift = PartialLiftingConv(1, 2, 5, group, 3).double()
    conv = PartialGroupConv(2, 2, 3, group, 3).double()
    n = 3
    flips_in = [0.0] * n + ([1.0] * n if group == "E2" else [])
    flips = torch.tensor(flips_in, dtype=torch.float64)
    a_in = torch.rand(len(flips_in), dtype=torch.float64) * 6 - 3
    a_out = torch.rand(len(flips_in), dtype=torch.float64) * 6 - 3
    ones = torch.ones_like(flips)

    def act_on(angles, fl, k, f):  # u = R(kπ/2) F^f acting on elements g = R(a) F^s
        u_angle = k * math.pi / 2
        new = torch.where(torch.tensor(bool(f)), u_angle - angles, u_angle + angles)
        return new, (fl + f) % 2

    x = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    s_in = GroupSamples(a_in, flips, ones)
    s_out = GroupSamples(a_out, flips, ones)
    h = lift(x, s_in)
    y = conv(h, s_out).tensor
    for k in range(4):
        for f in (0, 1) if group == "E2" else (0,):
            ux = _transform(x, k, False)
            if f:  # u = R F: flip first, then rotate
                ux = torch.rot90(torch.flip(x, (-1,)), k, (-2, -1))
            ai, fi = act_on(a_in, flips, k, f)
            ao, fo = act_on(a_out, flips, k, f)
            hu = lift(ux, GroupSamples(ai, fi, ones))
            yu = conv(hu, GroupSamples(ao, fo, ones)).tensor
            expected = torch.rot90(torch.flip(y, (-1,)) if f else y, k, (-2, -1))
            assert torch.allclose(
                hu.tensor,
                torch.rot90(torch.flip(h.tensor, (-1,)) if f else h.tensor, k, (-2, -1)),
                atol=1e-10,
            )
            assert torch.allclose(yu, expected, atol=1e-10)


def test_mixed_precision_autocast_runs():
    lift = PartialLiftingConv(1, 2, 3, "SE2", 4)
    conv = PartialGroupConv(2, 2, 3, "SE2", 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = PartialGroupPool("max")(conv(lift(torch.rand(2, 1, 8, 8))))
    assert y.shape == (2, 2, 8, 8) and torch.isfinite(y.float()).all()


@pytest.mark.parametrize("estimator", ["relaxed", "straight_through"])
def test_reflection_probability_gets_gradients_through_the_straight_through_estimator(estimator):
    torch.manual_seed(0)
    lift = PartialLiftingConv(1, 2, 3, "E2", 4, reflection_estimator=estimator).train()
    conv = PartialGroupConv(2, 2, 3, "E2", 4, reflection_estimator=estimator).train()
    grads = []
    for _ in range(10):
        conv.zero_grad()
        lift.zero_grad()
        h = conv(lift(torch.rand(2, 1, 7, 7)))
        w = h.samples.weights
        assert set(w.detach().tolist()) <= {0.0, 1.0}  # hard 0/1 in the forward pass
        PartialGroupPool("max")(h).square().sum().backward()
        grads.append(float(conv.sampler.reflection_raw.grad))
    assert all(math.isfinite(g) for g in grads) and any(g != 0 for g in grads)
    assert lift.sampler.reflection_raw.grad is not None and lift.sampler.reflection_raw.grad != 0


@pytest.mark.parametrize("estimator", ["relaxed", "straight_through"])
def test_reflection_weight_is_a_bernoulli_draw_with_the_learned_probability(estimator):
    s = ElementSampler("E2", 2, reflection_probability=0.3, reflection_estimator=estimator)
    s.train()
    gen = torch.Generator().manual_seed(3)
    keep = torch.stack([s(gen).weights[2:].detach() for _ in range(4000)])
    assert abs(float(keep[:, 0].mean()) - 0.3) < 0.03
    s.eval()
    assert s().weights[2:].tolist() == [0.0, 0.0]  # p < 1/2: dropped in evaluation
    assert (
        ElementSampler("E2", 2, reflection_probability=0.7).eval()().weights.tolist() == [1.0] * 4
    )


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"theta in \[0, 1\]"):
        ElementSampler("SE2", 4, theta=1.5)
    with pytest.raises(ValueError, match=r"theta in \[0, 1\]"):
        PartialLiftingConv(1, 2, 3, "SE2", 4, theta=-0.1)
    with pytest.raises(ValueError, match="reflection_probability"):
        ElementSampler("E2", 4, reflection_probability=2.0)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        ElementSampler("SE2", 0)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        PartialGroupConv(2, 2, 3, "SE2", -3)
    with pytest.raises(ValueError, match="unknown group 'SE3'"):
        PartialLiftingConv(1, 2, 3, "SE3", 4)
    with pytest.raises(ValueError, match="unknown group"):
        ElementSampler("SO2", 4)
    with pytest.raises(TypeError, match="group as a name"):
        ElementSampler(4, 4)
    with pytest.raises(ValueError, match="odd"):
        PartialLiftingConv(1, 2, 4, "SE2", 4)
    with pytest.raises(TypeError, match="kernel options"):
        PartialLiftingConv(1, 2, 3, "SE2", 4, omega=3)
    with pytest.raises(ValueError, match="reflection_estimator"):
        ElementSampler("E2", 4, reflection_estimator="gumbel")
    with pytest.raises(ValueError, match="theta_rate"):
        ElementSampler("SE2", 4, theta_rate=0)
    with pytest.raises(ValueError, match="temperature"):
        ElementSampler("E2", 4, temperature=0)
    lift = PartialLiftingConv(1, 2, 3, "SE2", 4)
    with pytest.raises(ValueError, match=r"images \(B, 1, H, W\)"):
        lift(torch.rand(2, 3, 8, 8))
    with pytest.raises(TypeError, match="model.to"):
        lift(torch.rand(2, 1, 8, 8, dtype=torch.float64))
    conv = PartialGroupConv(2, 2, 3, "SE2", 4)
    with pytest.raises(TypeError, match="GroupFeatures"):
        conv(torch.rand(2, 2, 4, 8, 8))
    with pytest.raises(ValueError, match="N=4"):
        conv(GroupFeatures(torch.rand(2, 2, 3, 8, 8), lift.sampler()))
    shortcut = PartialGroupConv(2, 2, 1, "SE2", 4, sampler=False)
    with pytest.raises(ValueError, match="pass the output samples"):
        shortcut(lift(torch.rand(1, 1, 8, 8)).with_tensor(torch.rand(1, 2, 4, 8, 8)))
    with pytest.raises(ValueError, match="kernel net kind"):
        KernelNet(2, 3, 4, kind="relu")
    with pytest.raises(ValueError, match="reduction"):
        PartialGroupPool("sum")


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    ("group", "samples", "flips"),
    [("SE2", 4, False), ("E2", 4, True), ("C4", None, False), ("D4", None, True)],
)
@pytest.mark.parametrize("size", [9, 10])
def test_theta_1_with_90_degree_samples_is_exactly_invariant(group, samples, flips, size):
    torch.manual_seed(0)
    _, f = _invariant_net(group, samples)
    x = torch.randn(3, 1, size, size, dtype=torch.float64)
    y = f(x)
    for k in range(4):
        for fl in (False, True) if flips else (False,):
            assert torch.allclose(f(_transform(x, k, fl)), y, atol=1e-12, rtol=0)


def test_float32_is_exact_to_rounding():
    torch.manual_seed(0)
    lift = PartialLiftingConv(1, 3, 5, "E2", 4).eval()
    conv = PartialGroupConv(3, 3, 5, "E2", 4).eval()
    pool = PartialGroupPool("max")
    x = torch.randn(4, 1, 11, 11)
    y = pool(conv(lift(x))).mean((-2, -1))
    for k in range(4):
        for fl in (False, True):
            z = pool(conv(lift(_transform(x, k, fl)))).mean((-2, -1))
            assert torch.allclose(z, y, atol=1e-5 * float(y.detach().abs().max()), rtol=0)


def test_lifting_is_equivariant_on_the_feature_map_not_only_invariant():
    torch.manual_seed(1)
    lift = PartialLiftingConv(1, 2, 5, "C4").double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    f = lift(x).tensor  # (1, 2, 4, H, W), elements 0°, 90°, 180°, 270°
    g = lift(torch.rot90(x, 1, (-2, -1))).tensor
    # rotating the input rotates every map and shifts the element axis by one
    expected = torch.rot90(torch.roll(f, 1, dims=2), 1, (-2, -1))
    assert torch.allclose(g, expected, atol=1e-12)


def test_negative_controls_fail_the_same_check():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 9, 9, dtype=torch.float64)
    # partial θ: not invariant to 90° turns
    _, f = _invariant_net("SE2", 4, theta=0.5)
    assert (f(_transform(x, 1, False)) - f(x)).abs().max() > 1e-3
    # SE(2) is not reflection invariant
    _, g = _invariant_net("SE2", 4)
    assert (g(_transform(x, 0, True)) - g(x)).abs().max() > 1e-3
    # E(2) with the reflection dropped (p < 1/2) neither
    _, h = _invariant_net("E2", 4, reflection_probability=0.2)
    assert (h(_transform(x, 0, True)) - h(x)).abs().max() > 1e-3
    assert torch.allclose(h(_transform(x, 1, False)), h(x), atol=1e-12)  # rotations kept


def test_other_angles_are_approximately_equivariant_with_many_samples():
    """At 45° and 8 samples the error is interpolation-sized (documented, not exact)."""
    from equify.actions import ImageAction
    from equify.groups import CyclicGroup

    torch.manual_seed(0)
    _, f = _invariant_net("SE2", 8)
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    blob = torch.exp(-(((xx - 13) ** 2) / 8 + ((yy - 8) ** 2) / 3)).double()[None, None]
    rotated = ImageAction().apply(blob, 1, CyclicGroup(8))
    rel = (f(rotated) - f(blob)).abs().max() / f(blob).abs().max()
    assert rel < 0.15


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    group=st.sampled_from(["SE2", "E2", "C4", "D4", "C2", "D2"]),
    size=st.integers(5, 12),
    kernel=st.sampled_from([1, 3, 5]),
    batch=st.integers(0, 3),
    k=st.integers(0, 3),
    flip=st.booleans(),
)
def test_property_invariance_over_groups_sizes_and_inputs(group, size, kernel, batch, k, flip):
    torch.manual_seed(size * 7 + kernel)
    samples = 4 if group in ("SE2", "E2") else None
    lift = PartialLiftingConv(1, 2, kernel, group, samples).double().eval()
    conv = PartialGroupConv(2, 2, kernel, group, samples).double().eval()

    def f(x):
        return PartialGroupPool("mean")(conv(lift(x))).mean((-2, -1))

    x = torch.randn(batch, 1, size, size, dtype=torch.float64)
    in_group = {"SE2": (4, False), "E2": (4, True), "C4": (4, False), "D4": (4, True)}
    in_group.update({"C2": (2, False), "D2": (2, True)})
    n, refl = in_group[group]
    if k % (4 // n) or (flip and not refl):
        return  # not an element of this group
    y = f(_transform(x, k, flip))
    assert y.shape == (batch, 2)
    assert torch.allclose(y, f(x), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- inputs real data brings


def test_constant_blank_and_symmetric_images():
    torch.manual_seed(0)
    _, f = _invariant_net("E2", 4)
    blank = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    const = torch.full((1, 1, 9, 9), 0.7, dtype=torch.float64)
    sym = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    sym = sym + torch.rot90(sym, 1, (-2, -1))
    sym = sym + torch.rot90(sym, 2, (-2, -1))  # C4-symmetric
    for x in (blank, const, sym):
        y = f(x)
        assert torch.isfinite(y).all()
        for k in range(4):
            assert torch.allclose(f(_transform(x, k, True)), y, atol=1e-12)


def test_empty_batch_batch_of_one_and_batch_norm():
    lift = PartialLiftingConv(1, 2, 3, "E2", 4).train()
    bn = PartialBatchNorm(2).train()
    for b in (0, 1):
        h = bn(lift(torch.rand(b, 1, 6, 6)))
        assert h.tensor.shape == (b, 2, 8, 6, 6)
        out = PartialGroupPool("max")(h)
        assert out.shape == (b, 2, 6, 6)


def test_deepcopy_and_state_dict_after_a_training_step_keep_the_function():
    """The full E(2) layers (θ, p frozen at 1) stay exactly invariant after a training step."""
    torch.manual_seed(0)
    frozen = dict(learn_theta=False, learn_reflection=False)
    mods, f = _invariant_net("E2", 4, **frozen)
    mods.train()
    opt = torch.optim.SGD(mods.parameters(), lr=0.1)
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    f(x).square().sum().backward()
    opt.step()
    mods.eval()
    y = f(x)
    clone = copy.deepcopy(mods)
    buf = io.BytesIO()
    torch.save(mods.state_dict(), buf)
    buf.seek(0)
    fresh, g = _invariant_net("E2", 4, **frozen)
    fresh.load_state_dict(torch.load(buf))

    def h(x, m):
        return PartialGroupPool("max")(m[1](m[0](x))).mean((-2, -1))

    assert torch.equal(h(x, clone), y)
    assert torch.equal(g(x), y)
    for k in range(4):
        for fl in (False, True):
            assert torch.allclose(f(_transform(x, k, fl)), y, atol=1e-12)
            assert torch.allclose(g(_transform(x, k, fl)), y, atol=1e-12)


def test_kernel_positions_and_snap():
    pos, mask = kernel_positions(5)
    assert pos.abs().max() == 1.0
    rotated = torch.stack([-pos[:, 1], pos[:, 0]], dim=-1)  # 90° maps pixels onto pixels
    assert {tuple(p) for p in rotated.tolist()} == {tuple(p) for p in pos.tolist()}
    assert int(mask.sum()) == 21 and int(kernel_positions(5, circular=False)[1].sum()) == 25
    v = torch.tensor([math.cos(math.pi / 2), 0.3, -0.9999999999999], dtype=torch.float64)
    v.requires_grad_(True)
    s = snap_trig(v)
    assert s.tolist()[:2] == [0.0, 0.3]
    s.sum().backward()
    assert v.grad.tolist() == [1.0, 1.0, 1.0]


def test_kernel_net_kinds_and_shapes():
    for kind in ("siren", "mlp"):
        net = KernelNet(4, 6, 10, kind=kind, hidden=8)
        assert net(torch.rand(7, 4)).shape == (7, 6)
    with pytest.raises(ValueError, match=r"\(P, 4\)"):
        KernelNet(4, 6, 10)(torch.rand(7, 3))


def test_group_samples_weights_drop_elements_from_sums():
    """An element of weight 0 changes nothing downstream, whatever its features."""
    torch.manual_seed(0)
    conv = PartialGroupConv(2, 2, 3, "E2", 2, stochastic=False).eval()
    lift = PartialLiftingConv(1, 2, 3, "E2", 2, reflection_probability=0.0).eval()
    h = lift(torch.rand(1, 1, 6, 6))
    assert h.samples.weights.tolist() == [1.0, 1.0, 0.0, 0.0]
    noisy = h.tensor.clone()
    noisy[:, :, 2:] = torch.randn_like(noisy[:, :, 2:]) * 100
    assert torch.allclose(conv(h).tensor, conv(h.with_tensor(noisy)).tensor)
    pooled = PartialGroupPool("max")
    assert torch.allclose(pooled(h), pooled(h.with_tensor(noisy)))
    assert isinstance(h.samples, GroupSamples)
