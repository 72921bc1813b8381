"""FrameAveraging of packed point sets: masks, vectors, scalars, positions out."""

import copy
import math

import pytest
import torch
from torch import nn

from equify.actions import PointLayout, PointSetAction
from equify.groups import O3, SO3
from equify.symmetrization import FrameAveraging

LAYOUT = PointLayout(vectors=1, scalars=2, mask=True)


class Flat(nn.Module):
    """Not equivariant: reads the raw channels of every point."""

    def __init__(self, c, out, per_point=False):
        super().__init__()
        self.lin = nn.Linear(c, 16, dtype=torch.float64)
        self.head = nn.Linear(16, out, dtype=torch.float64)
        self.per_point = per_point

    def forward(self, x):
        w = x[..., -1:] if x.shape[-1] == LAYOUT.channels else torch.ones_like(x[..., :1])
        h = torch.tanh(self.lin(x)) * w
        if self.per_point:
            return x[..., :3] + self.head(h)
        return self.head(h.sum(1) / w.sum(1))


def _sets(b=5, n=7, pad=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(b, n, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0])
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[:2, n - pad :] = False
    pos = pos * mask[..., None]
    vec = torch.randn(b, n, 1, 3, generator=gen, dtype=torch.float64) * mask[..., None, None]
    sca = torch.randn(b, n, 2, generator=gen, dtype=torch.float64) * mask[..., None]
    return LAYOUT.pack(pos, vec, sca, mask)


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_invariant_with_masks_vectors_and_translations(group):
    g_ = SO3() if group == "SO3" else O3()
    model = FrameAveraging(Flat(LAYOUT.channels, 2), group, layout=LAYOUT).eval()
    x = _sets()
    act = PointSetAction(LAYOUT)
    y = model(x)
    for seed in range(8):
        gen = torch.Generator().manual_seed(seed)
        g = g_.sample(x.shape[0], generator=gen, dtype=torch.float64)
        t = torch.randn(x.shape[0], 3, generator=gen, dtype=torch.float64)
        assert torch.allclose(model(act.translate(act.apply(x, g), t)), y, atol=1e-10)
    bare = Flat(LAYOUT.channels, 2)
    moved = act.apply(
        x, g_.sample(x.shape[0], generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    )
    assert (bare(moved) - bare(x)).abs().max() > 1e-3  # the negative check


def test_padding_does_not_change_the_output():
    model = FrameAveraging(Flat(LAYOUT.channels, 2), "O3", layout=LAYOUT).eval()
    x = _sets(b=3, n=6, pad=0)
    padded = torch.cat([x, torch.zeros(3, 3, LAYOUT.channels, dtype=x.dtype)], dim=1)
    padded[:, 6:, :3] = 5.0  # padding coordinates are ignored, whatever they hold
    assert torch.allclose(model(padded), model(x), atol=1e-12)


def test_positions_are_equivariant_and_survive_deepcopy():
    lay = PointLayout(vectors=1, scalars=1)
    model = FrameAveraging(Flat(lay.channels, 3, per_point=True), "SO3", "positions", layout=lay)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, lay.channels, generator=gen, dtype=torch.float64)
    act, out = PointSetAction(lay), PointSetAction(PointLayout())
    g = SO3().sample(4, generator=gen, dtype=torch.float64)
    t = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    y = model(x)
    want = out.translate(out.apply(y, g), t)
    assert torch.allclose(model(act.translate(act.apply(x, g), t)), want, atol=1e-10)
    assert torch.equal(copy.deepcopy(model)(x), y)


def test_layout_input_is_checked():
    model = FrameAveraging(Flat(LAYOUT.channels, 2), "SO3", layout=LAYOUT)
    with pytest.raises(ValueError, match=r"\(B, N, 9\)"):
        model(torch.zeros(2, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="PointLayout"):
        FrameAveraging(Flat(3, 2), "SO3", layout=PointLayout(dim=2))


def test_the_evaluation_summary_takes_batches_with_widened_frames():
    """A batch with a symmetric top (two equal eigenvalues) weighs more views than one without:
    the summary of both counts every set, and the degenerate one."""
    model = FrameAveraging(Flat(LAYOUT.channels, 2), "SO3", layout=LAYOUT).eval()
    plain = _sets(b=3, n=7, pad=0)
    top = torch.zeros(1, 4, LAYOUT.channels, dtype=torch.float64)
    top[0, :, :3] = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]])  # a square
    top[0, :, -1] = 1.0
    top = torch.cat([top, torch.zeros(1, 3, LAYOUT.channels, dtype=top.dtype)], dim=1)
    results = [model.forward_with_result(b)[1] for b in (plain, top)]
    assert results[0].weights.shape[1] != results[1].weights.shape[1]
    section, summary = type(results[0]).evaluation_summary(results)
    assert section == "symmetrization" and summary["degenerate_samples_upright"] == 1
    assert math.isnan(summary["identity_fraction_upright"])  # plain averaging has no choice
    assert summary["predictor_passes_per_input"] == pytest.approx((3 * 4 + 1 * 32) / 4)
