"""PointLayout / PointSetAction: packing, turning, translating, checking."""

import pytest
import torch

from equify.actions import PointLayout, PointSetAction
from equify.groups import O3, SO3

FULL = PointLayout(vectors=1, scalars=2, mask=True)


def _sets(b=4, n=6, layout=FULL, dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(b, n, 3, generator=gen, dtype=dtype)
    vec = torch.randn(b, n, layout.vectors, 3, generator=gen, dtype=dtype)
    sca = torch.randn(b, n, layout.scalars, generator=gen, dtype=dtype)
    mask = torch.ones(b, n, dtype=torch.bool)
    if layout.mask:
        mask[0, n - 2 :] = False
        pos[0, n - 2 :] = 0
    return layout.pack(pos, vec if layout.vectors else None, sca, mask if layout.mask else None)


def test_pack_and_accessors_round_trip():
    lay = PointLayout(vectors=2, scalars=3, mask=True)
    assert lay.channels == 3 + 6 + 3 + 1 and lay.geometric == 9
    x = _sets(layout=lay)
    assert torch.equal(
        lay.pack(
            lay.positions(x), lay.vector_features(x), lay.scalar_features(x), lay.point_mask(x)
        ),
        x,
    )


@pytest.mark.parametrize("group", [SO3(), O3()])
def test_apply_turns_positions_and_vectors_only(group):
    lay = PointLayout(vectors=1, scalars=2, mask=True)
    act = PointSetAction(lay)
    x = _sets(layout=lay)
    g = group.sample(x.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = act.apply(x, g)
    assert torch.allclose(lay.positions(y), lay.positions(x) @ g.transpose(-1, -2), atol=1e-12)
    v = lay.vector_features(x)
    want = torch.einsum("bnvj,bij->bnvi", v, g)
    assert torch.allclose(lay.vector_features(y), want, atol=1e-12)
    assert torch.equal(y[..., lay.geometric :], x[..., lay.geometric :])
    # a left action: apply(apply(x, h), g) = apply(x, g h), and undo
    h = group.sample(x.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(act.apply(act.apply(x, h), g), act.apply(x, g @ h), atol=1e-12)
    assert torch.allclose(act.apply(y, g.transpose(-1, -2)), x, atol=1e-12)
    one = act.apply(x, g[0])
    assert torch.allclose(one[1], act.apply(x[1:2], g[0:1])[0], atol=1e-12)


def test_translate_moves_real_positions_only_and_centroid():
    lay = PointLayout(vectors=1, scalars=2, mask=True)
    act = PointSetAction(lay)
    x = _sets(layout=lay)
    t = torch.randn(x.shape[0], 3, dtype=x.dtype)
    y = act.translate(x, t)
    assert torch.equal(y[0, -2:], x[0, -2:])  # padding stays put
    assert torch.allclose(y[0, :4, :3], x[0, :4, :3] + t[0])
    assert torch.equal(y[..., 3:], x[..., 3:])  # vectors, scalars, mask do not move
    assert torch.allclose(lay.centroid(y), lay.centroid(x) + t, atol=1e-12)
    assert torch.allclose(lay.centroid(x)[0], x[0, :4, :3].mean(0))
    assert act.translates and not PointSetAction.__mro__[1].translates


def test_empty_batch_and_float32():
    lay = PointLayout()
    act = PointSetAction(lay)
    x = torch.zeros(0, 5, 3)
    assert act.apply(x, torch.zeros(0, 3, 3)).shape == (0, 5, 3)
    y = act.apply(torch.randn(2, 5, 3), torch.eye(3))
    assert y.dtype == torch.float32


def test_bad_inputs_are_refused():
    lay = PointLayout(scalars=1, mask=True)
    with pytest.raises(ValueError, match=r"\(B, N, 5\)"):
        lay.check(torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="floating"):
        lay.check(torch.zeros(2, 3, 5, dtype=torch.long))
    bad = torch.zeros(2, 3, 5)
    bad[..., -1] = 1
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        lay.check(bad)
    bad[0, 0, 0] = 0
    bad[1, :, -1] = 0
    with pytest.raises(ValueError, match="no real point"):
        lay.check(bad)
    bad[1, :, -1] = 0.5
    with pytest.raises(ValueError, match="only 0 and 1"):
        lay.check(bad)
    with pytest.raises(ValueError, match="int >= 0"):
        PointLayout(vectors=-1)
    with pytest.raises(TypeError, match="PointLayout"):
        PointSetAction("xyz")
    with pytest.raises(ValueError, match="translations"):
        PointSetAction(lay).translate(torch.zeros(2, 3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="needs scalars"):
        lay.pack(torch.zeros(2, 3, 3), mask=torch.ones(2, 3, dtype=torch.bool))
