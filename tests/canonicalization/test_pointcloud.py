"""PointCloudCanonicalizer: SO(3)/O(3) + translations of packed point sets, proven."""

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from equify.actions import InvariantAction, PointLayout, PointSetAction
from equify.canonicalization import EquivariantModel
from equify.canonicalization.pointcloud import PointCloudCanonicalizer
from equify.groups import O3, SO3

MOL = PointLayout(scalars=2, mask=True)
NBODY = PointLayout(vectors=1, scalars=1)
POS = PointSetAction(PointLayout())


class Flat(nn.Module):
    """Not equivariant: an MLP on the raw channels of every point, pooled or per point."""

    def __init__(self, c, out, per_point=False, masked=False):
        super().__init__()
        self.lin, self.head = nn.Linear(c, 16), nn.Linear(16, out)
        self.per_point, self.masked = per_point, masked

    def forward(self, x):
        w = x[..., -1:] if self.masked else torch.ones_like(x[..., :1])
        h = torch.tanh(self.lin(x)) * w
        if self.per_point:
            return x[..., :3] + self.head(h)
        return self.head(h.sum(1) / w.sum(1))


def _molecules(b=6, n=8, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, n, 3, generator=gen, dtype=dtype) + 2.0
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 5:] = False
    mask[1:2, 3:] = False
    sca = torch.nn.functional.one_hot(torch.randint(2, (b, n), generator=gen), 2).to(dtype)
    return MOL.pack(pos * mask[..., None], scalars=sca * mask[..., None], mask=mask)


def _wrapped(group, layout=MOL, out=None, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    per_point = out is not None
    pred = Flat(layout.channels, 3 if per_point else 2, per_point, layout.mask).to(dtype)
    can = PointCloudCanonicalizer(group, layout, hidden=8, neighbours=3, layers=2, **kw).to(dtype)
    return EquivariantModel(pred, can, out_action=out or InvariantAction())


def _moved(x, layout, g, t):
    act = PointSetAction(layout)
    return act.translate(act.apply(x, g.to(x.dtype)), t.to(x.dtype))


@pytest.mark.parametrize("group", ["SO3", "O3"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_molecule_outputs_are_invariant_for_every_sample(group, dtype, tol):
    model = _wrapped(group, dtype=dtype).eval()
    x = _molecules(dtype=dtype)
    y = model(x)
    gg = SO3() if group == "SO3" else O3()
    for seed in range(16):
        gen = torch.Generator().manual_seed(seed)
        g = gg.sample(len(x), generator=gen, dtype=torch.float64)
        t = 3 * torch.randn(len(x), 3, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            err = (model(_moved(x, MOL, g, t)) - y).abs().max()
        assert err <= tol * max(1.0, float(y.abs().max())), (seed, float(err))
    # the bare predictor fails the same check
    bare = model.predictor
    g = gg.sample(len(x), generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    assert (bare(_moved(x, MOL, g, torch.zeros(len(x), 3))) - bare(x)).abs().max() > 1e-3


@pytest.mark.parametrize("group", ["SO3", "O3"])
@pytest.mark.parametrize("particles", [3, 5, 11])
def test_predicted_positions_are_equivariant_with_translations(group, particles):
    model = _wrapped(group, NBODY, out=POS).eval()  # any number of particles
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(5, particles, NBODY.channels, generator=gen, dtype=torch.float64)
    x[..., -1] = torch.randint(2, (5, particles), generator=gen).double() * 2 - 1  # charges
    y = model(x)
    gg = SO3() if group == "SO3" else O3()
    for seed in range(16):
        g = gg.sample(5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        t = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed + 50), dtype=x.dtype)
        want = POS.translate(POS.apply(y, g), t)
        assert torch.allclose(model(_moved(x, NBODY, g, t)), want, atol=1e-10)


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_frames_are_orthogonal_with_the_right_determinant(group):
    can = _wrapped(group).canonicalizer
    x_c, res = can.canonicalize(_molecules())
    q = res.elements
    eye = torch.eye(3, dtype=q.dtype).expand_as(q)
    assert torch.allclose(q.transpose(-1, -2) @ q, eye, atol=1e-12)
    det = torch.linalg.det(q)
    if group == "SO3":
        assert torch.allclose(det, torch.ones_like(det), atol=1e-12)
    else:
        assert torch.allclose(det.abs(), torch.ones_like(det), atol=1e-12)
    # the canonical form is centred on the real points
    assert torch.allclose(MOL.centroid(x_c), torch.zeros(len(q), 3, dtype=q.dtype), atol=1e-12)


def test_padding_gives_the_same_output():
    model = _wrapped("SO3").eval()
    x = _molecules(b=3, n=6)
    x[..., -1] = 1.0  # all real
    padded = torch.cat([x, torch.zeros(3, 4, MOL.channels, dtype=x.dtype)], dim=1)
    padded[:, 6:, :3] = 7.0  # whatever padding holds
    assert torch.allclose(model(padded), model(x), atol=1e-10)


def test_degenerate_sets_never_crash_and_are_flagged():
    model = _wrapped("SO3").eval()
    lay = MOL
    one = torch.zeros(1, 4, lay.channels, dtype=torch.float64)
    one[0, 0, :3] = torch.tensor([1.0, 2.0, 3.0])
    one[0, 0, -1] = 1.0  # a single atom
    same = torch.zeros(1, 4, lay.channels, dtype=torch.float64)
    same[0, :, :3] = 1.5
    same[0, :, -1] = 1.0  # repeated points
    line = torch.zeros(1, 4, lay.channels, dtype=torch.float64)
    line[0, :, 0] = torch.arange(4.0)
    line[0, :, -1] = 1.0  # collinear
    plane = torch.zeros(1, 4, lay.channels, dtype=torch.float64)
    plane[0, :, :2] = torch.tensor([[0.0, 0], [1, 0], [0, 2], [1.5, 1]])
    plane[0, :, -1] = 1.0  # planar
    for x in (one, same, line, plane):
        y, res = model.forward_with_result(x)
        assert torch.isfinite(y).all()
        if x is one or x is same:
            assert bool(res.degenerate.all())
    res = model.forward_with_result(torch.cat([one, same]))[1]
    assert res.summary()["degenerate_samples"] == 2


def test_batch_one_empty_batch_and_training_step_round_trips():
    model = _wrapped("O3")
    x = _molecules()
    assert model(x[:1]).shape == (1, 2)
    assert model(x[:0]).shape == (0, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = model(x).pow(2).mean()
    loss.backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in model.canonicalizer.parameters()
    )
    opt.step()
    model.eval()
    y = model(x)
    twin = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = _wrapped("O3", seed=1).eval()
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(twin(x), y) and torch.equal(fresh(x), y)
    g = O3().sample(len(x), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(model(_moved(x, MOL, g, torch.ones(len(x), 3))), y, atol=1e-10)


def test_bad_input_gives_clear_errors():
    model = _wrapped("SO3")
    with pytest.raises(ValueError, match=r"\(B, N, 6\)"):
        model(torch.zeros(2, 4, 3, dtype=torch.float64))
    x = _molecules()
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(x)
    x = _molecules()
    x[2, :, -1] = 0
    with pytest.raises(ValueError, match="no real point"):
        model(x)
    with pytest.raises(ValueError, match="SO3 and O3"):
        PointCloudCanonicalizer("SO2")

    class OneVector(nn.Module):
        def forward(self, points):
            return points[:, :1]

    with pytest.raises(ValueError, match="must return"):
        PointCloudCanonicalizer("SO3", network=OneVector()).canonicalize(torch.randn(2, 3, 3))
    with pytest.raises(TypeError, match="nn.Module"):
        PointCloudCanonicalizer("SO3", network=lambda p: p)


@settings(max_examples=25, deadline=None)
@given(
    group=st.sampled_from(["SO3", "O3"]),
    n=st.integers(2, 9),
    b=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_property_invariance_over_groups_sizes_and_inputs(group, n, b, seed):
    model = _wrapped(group, seed=seed % 7).eval()
    x = _molecules(b=b, n=n, seed=seed)
    x[..., -1] = 1.0
    gg = SO3() if group == "SO3" else O3()
    gen = torch.Generator().manual_seed(seed)
    g = gg.sample(b, generator=gen, dtype=torch.float64)
    t = torch.randn(b, 3, generator=gen, dtype=torch.float64)
    y, res = model.forward_with_result(x)
    y_moved = model(_moved(x, MOL, g, t))
    # two points are collinear: the axis symmetry leaves no frame, and that is flagged
    assert bool(res.degenerate.all()) if n == 2 else not bool(res.degenerate.any())
    ok = ~res.degenerate
    assert torch.allclose(y_moved[ok], y[ok], atol=1e-9)


def test_positions_stay_equivariant_through_the_tie_path():
    """A planar set under O(3): the handedness is ambiguous, both frames are averaged, and the
    averaged positions are moved back by the centroid too."""
    model = _wrapped("O3", NBODY, out=POS).eval()
    gen = torch.Generator().manual_seed(2)
    x = torch.zeros(2, 6, NBODY.channels, dtype=torch.float64)
    x[..., :2] = torch.randn(2, 6, 2, generator=gen, dtype=torch.float64)  # z = 0: planar
    x[..., 3:5] = torch.randn(2, 6, 2, generator=gen, dtype=torch.float64)  # planar velocities
    x[..., -1] = 1.0
    y, res = model.forward_with_result(x)
    assert res.ties is not None and not bool(res.ties.primary.all())
    for seed in range(6):
        g = O3().sample(2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        t = 4 * torch.randn(2, 3, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        want = POS.translate(POS.apply(y, g), t)
        assert torch.allclose(model(_moved(x, NBODY, g, t)), want, atol=1e-9)


def test_pack_refuses_parts_of_the_wrong_shape_or_kind():
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        PointLayout().pack(torch.randn(2, 4, 4))
    with pytest.raises(TypeError, match="bool"):
        MOL.pack(torch.randn(2, 4, 3), scalars=torch.zeros(2, 4, 2), mask=torch.ones(2, 4))
    with pytest.raises(TypeError, match="floating"):
        PointLayout().pack([[0.0, 0.0, 0.0]])
