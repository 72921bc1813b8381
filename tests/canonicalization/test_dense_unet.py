"""A canonicalized U-Net: label maps exactly equivariant at odd and even sizes, on the inputs
real data brings (blank, constant, symmetric scenes, batch 1, empty batches, float64), after a
training step, a deepcopy and a save/load; the bare U-Net fails the same check."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equify.actions import ImageAction, MaskAction
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.groups import group as parse_group
from equify.models import UNet
from equify.testing import equivariance_error


def _model(group: str, dtype=torch.float64) -> EquivariantModel:
    torch.manual_seed(0)
    unet = UNet(1, 4, width=4, depth=2)
    can = DiscreteCanonicalizer(group, 1)
    return EquivariantModel(unet, can, ImageAction()).to(dtype).eval()


def _errors(model, x: torch.Tensor, group: str) -> tuple[float, float]:
    """(largest logit error, fraction of label pixels that do not map back) over the group."""
    g = parse_group(group)
    with torch.no_grad():
        rep = equivariance_error(model, x, g, ImageAction(), ImageAction())
        labels = model(x).argmax(1)
        wrong = 0
        for e in range(g.order):
            moved = model(ImageAction().apply(x, e, g)).argmax(1)
            wrong += int((moved != MaskAction().apply(labels, e, g)).sum())
    return rep.max_error(), wrong / (labels.numel() * g.order)


@pytest.mark.parametrize("group", ["C4", "D4"])
@pytest.mark.parametrize("size", [15, 16, 33])
def test_label_maps_are_exactly_equivariant(group, size):
    x = torch.rand(3, 1, size, size, dtype=torch.float64)
    err, wrong = _errors(_model(group), x, group)
    assert err < 1e-10 and wrong == 0.0


def test_the_bare_unet_fails_the_same_check():
    torch.manual_seed(0)
    bare = UNet(1, 4, width=4, depth=2).double().eval()
    err, _ = _errors(bare, torch.rand(3, 1, 16, 16, dtype=torch.float64), "C4")
    assert err > 1e-3  # (an untrained U-Net's labels may all be one class: the logits tell)


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_blank_constant_and_symmetric_scenes(group):
    size = 17
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    ring = (((xx - c) ** 2 + (yy - c) ** 2).sqrt() - 5).abs().lt(1.5).double()
    cross = ((xx - c).abs().lt(1) | (yy - c).abs().lt(1)).double()
    x = torch.stack([torch.zeros(size, size), torch.full((size, size), 0.7), ring, cross])
    err, wrong = _errors(_model(group), x.unsqueeze(1).double(), group)
    assert err < 1e-10 and wrong == 0.0


def test_batch_of_one_empty_batch_and_float32():
    model = _model("C4", torch.float32)
    assert model(torch.zeros(0, 1, 12, 12)).shape == (0, 4, 12, 12)
    err, wrong = _errors(model, torch.rand(1, 1, 13, 13), "C4")
    assert err < 1e-4 and wrong == 0.0


def test_after_a_training_step_deepcopy_and_save_load():
    model = _model("D4").train()
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 4, (4, 16, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out, result = model.forward_with_result(x)
    (torch.nn.functional.cross_entropy(out, y) + model.prior_loss(result)).backward()
    opt.step()
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    loaded = _model("D4")
    loaded.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    for m in (model, copy.deepcopy(model), loaded, model.export()):
        err, wrong = _errors(m, x, "D4")
        assert err < 1e-10 and wrong == 0.0


@settings(max_examples=12, deadline=None)
@given(
    group=st.sampled_from(["C2", "C4", "D1", "D2", "D4"]),
    h=st.integers(4, 21),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_property_exact_over_groups_sizes_and_inputs(group, h, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, h, h, generator=gen, dtype=torch.float64)
    err, wrong = _errors(_model(group), x, group)
    assert err < 1e-10 and wrong == 0.0
