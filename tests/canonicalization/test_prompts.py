"""Prompts (boxes, points, masks) canonicalized with their image: Φ(g·x, g·p) = g·Φ(x, p)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from equify.actions import BoxAction, ImageAction, MaskAction, PixelPointAction
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.groups import group as parse_group


def _render_boxes(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W): 1 on the pixels whose centres lie in any of a sample's boxes."""
    ys = torch.arange(h, dtype=boxes.dtype, device=boxes.device).view(1, 1, h, 1) + 0.5
    xs = torch.arange(w, dtype=boxes.dtype, device=boxes.device).view(1, 1, 1, w) + 0.5
    b = boxes[..., None, None]
    inside = (xs > b[:, :, 0]) & (xs < b[:, :, 2]) & (ys > b[:, :, 1]) & (ys < b[:, :, 3])
    return inside.any(1, keepdim=True).to(boxes.dtype)


def _render_points(points: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W): 1 on the pixels that hold a point."""
    out = torch.zeros(points.shape[0], 1, h, w, dtype=points.dtype, device=points.device)
    cols = points[..., 0].floor().long().clamp(0, w - 1)
    rows = points[..., 1].floor().long().clamp(0, h - 1)
    for b in range(points.shape[0]):
        out[b, 0, rows[b], cols[b]] = 1
    return out


class PromptedSegmenter(nn.Module):
    """A toy SAM: the image and its prompt rendered as extra channels, through plain
    (non-equivariant) convolutions, to ``(B, 3, H, W)`` logits."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.net = nn.Sequential(
            nn.Conv2d(2, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 3, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kind == "boxes":
            p = _render_boxes(prompt, h, w)
        elif self.kind == "points":
            p = _render_points(prompt, h, w)
        else:
            p = prompt.unsqueeze(1).to(x.dtype)
        return self.net(torch.cat([x, p], 1))


def _prompt(kind: str, b: int, size: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "boxes":
        lo = torch.randint(0, size // 2, (b, 2, 2), generator=gen)
        hi = lo + torch.randint(1, size // 2, (b, 2, 2), generator=gen)
        return torch.cat([lo, hi], -1).double()
    if kind == "points":
        return torch.randint(0, size, (b, 3, 2), generator=gen).double() + 0.5
    return torch.randint(0, 2, (b, size, size), generator=gen)


def _action(kind: str, size: int):
    return {"boxes": BoxAction(size), "points": PixelPointAction(size), "mask": MaskAction()}[kind]


def _model(kind: str, group: str, size: int) -> EquivariantModel:
    torch.manual_seed(0)
    seg = PromptedSegmenter(kind).double()
    can = DiscreteCanonicalizer(group, 1).double()
    return EquivariantModel(seg, can, ImageAction(), prompt_actions=[_action(kind, size)]).eval()


def _max_error(model, x, p, kind, group: str, size: int) -> float:
    g = parse_group(group)
    act, pa = ImageAction(), _action(kind, size)
    y = model(x, p)
    worst = 0.0
    with torch.no_grad():
        for e in range(g.order):
            lhs = model(act.apply(x, e, g), pa.apply(p, e, g))
            worst = max(worst, float((lhs - act.apply(y, e, g)).abs().max()))
    return worst


@pytest.mark.parametrize("kind", ["boxes", "points", "mask"])
@pytest.mark.parametrize("group", ["C4", "D4"])
@pytest.mark.parametrize("size", [11, 12])
def test_prompted_segmenter_is_exactly_equivariant(kind, group, size):
    gen = torch.Generator().manual_seed(size)
    x = torch.rand(3, 1, size, size, generator=gen, dtype=torch.float64)
    p = _prompt(kind, 3, size, gen)
    model = _model(kind, group, size)
    with torch.no_grad():
        assert _max_error(model, x, p, kind, group, size) < 1e-12


@pytest.mark.parametrize("kind", ["boxes", "points", "mask"])
def test_the_bare_prompted_segmenter_fails_the_same_check(kind):
    size = 12
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, size, size, generator=gen, dtype=torch.float64)
    p = _prompt(kind, 3, size, gen)
    torch.manual_seed(0)
    bare = PromptedSegmenter(kind).double().eval()
    with torch.no_grad():
        assert _max_error(bare, x, p, kind, "C4", size) > 1e-3


def test_the_prompt_reaches_the_predictor_in_the_canonical_frame():
    size = 12
    model = _model("boxes", "C4", size)
    seen = {}
    inner = model.predictor.forward

    def spy(x, prompt):
        seen["prompt"] = prompt
        return inner(x, prompt)

    model.predictor.forward = spy
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    boxes = _prompt("boxes", 2, size, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, result = model.forward_with_result(x, boxes)
    g = parse_group("C4")
    expected = BoxAction(size).apply(boxes, g.inverse(result.elements), g)
    torch.testing.assert_close(seen["prompt"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("group", ["C4", "D4"])
def test_symmetric_and_blank_images_with_prompts_stay_equivariant(group):
    size = 10
    model = _model("points", group, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    radial = torch.exp(-((xx - c) ** 2 + (yy - c) ** 2) / 8.0).double()
    x = torch.stack([torch.zeros(size, size), torch.ones(size, size), radial]).unsqueeze(1)
    p = _prompt("points", 3, size, torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, result = model.forward_with_result(x.double(), p)
        assert result.ties is not None and bool((~result.ties.primary).any())  # the tie path ran
        assert _max_error(model, x.double(), p, "points", group, size) < 1e-12


def test_empty_batch_batch_of_one_and_float32():
    size = 9
    model = _model("boxes", "C4", size).float()
    empty = model(torch.zeros(0, 1, size, size), torch.zeros(0, 2, 4))
    assert empty.shape == (0, 3, size, size)
    one = model(torch.rand(1, 1, size, size), torch.tensor([[[1.0, 1.0, 4.0, 5.0]] * 2]))
    assert one.shape == (1, 3, size, size) and one.dtype == torch.float32


def test_equivariant_after_a_training_step_deepcopy_and_save_load():
    size = 12
    model = _model("boxes", "D4", size).train()
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(4, 1, size, size, generator=gen, dtype=torch.float64)
    p = _prompt("boxes", 4, size, gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x, p).square().mean().backward()
    opt.step()
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    loaded = _model("boxes", "D4", size)
    loaded.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    for m in (model, copy.deepcopy(model), loaded):
        with torch.no_grad():
            assert _max_error(m, x, p, "boxes", "D4", size) < 1e-12


def test_bad_prompts_are_refused():
    size = 8
    model = _model("boxes", "C4", size)
    x = torch.rand(2, 1, size, size, dtype=torch.float64)
    with pytest.raises(ValueError, match="takes 1 prompt"):
        model(x)
    with pytest.raises(ValueError, match="one entry per image"):
        model(x, torch.zeros(3, 1, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        model(x, [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"\(B, K, 4\)"):
        model(x, torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"centre of \(8, 8\) images, but the images are \(9, 9\)"):
        model(
            torch.rand(2, 1, 9, 9, dtype=torch.float64), torch.zeros(2, 1, 4, dtype=torch.float64)
        )
    with pytest.raises(TypeError, match="prompt_actions"):
        EquivariantModel(nn.Identity(), DiscreteCanonicalizer("C4", 1), prompt_actions=["boxes"])


@settings(max_examples=15, deadline=None)
@given(
    group=st.sampled_from(["C2", "C4", "D2", "D4"]),
    size=st.integers(5, 13),
    batch=st.integers(1, 3),
    kind=st.sampled_from(["boxes", "points", "mask"]),
    seed=st.integers(0, 2**16),
)
def test_property_equivariant_over_groups_sizes_and_prompts(group, size, batch, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, size, size, generator=gen, dtype=torch.float64)
    p = _prompt(kind, batch, size, gen)
    model = _model(kind, group, size)
    with torch.no_grad():
        assert _max_error(model, x, p, kind, group, size) < 1e-12
