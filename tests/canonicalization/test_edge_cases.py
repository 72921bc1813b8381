"""Inputs real data brings: symmetric images (ties), blank images (degenerate frames), empty
batches, models copied, exported and saved right after a training step."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import (
    BoxAction,
    ImageAction,
    InvariantAction,
    MaskAction,
    PointAction,
    RegularAction,
)
from equify.canonicalization import (
    ContinuousCanonicalizer,
    DiscreteCanonicalizer,
    EquivariantModel,
    OptimizationCanonicalizer,
    frame_from_vectors,
    frames_from_vectors,
)
from equify.groups import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup
from equify.testing import assert_equivariant, equivariance_error
from equify.ties import default_tie_tolerance, tie_mask

D4 = DihedralGroup(4)
C4 = CyclicGroup(4)
# Every subgroup of D4, by element indices (k: rotation by 90°·k; 4 + k: flip, then rotation).
D4_SUBGROUPS = {
    "C1": [0],
    "C2": [0, 2],
    "C4": [0, 1, 2, 3],
    "D1_flip": [0, 4],
    "D1_diag": [0, 5],
    "D1_flop": [0, 6],
    "D1_anti": [0, 7],
    "D2": [0, 2, 4, 6],
    "D2_diag": [0, 2, 5, 7],
    "D4": list(range(8)),
}
EXACT_GROUPS = [CyclicGroup(2), C4, DihedralGroup(1), DihedralGroup(2), D4]


def symmetrize(x: torch.Tensor, elements: list[int]) -> torch.Tensor:
    """The mean of ``h·x`` over a subgroup of D4: an image that each of its elements fixes."""
    act = ImageAction()
    return torch.stack([act.apply(x, h, D4) for h in elements]).mean(0)


class RampDense(nn.Module):
    """Dense output at any size with a position-dependent term: not equivariant."""

    def __init__(self, channels: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ramp = torch.linspace(-1, 2, w, dtype=x.dtype, device=x.device).expand(h, w)
        ramp = ramp + torch.linspace(0, 1, h, dtype=x.dtype, device=x.device)[:, None] ** 2
        return self.conv(x) * (1 + ramp) + ramp


class RampLogits(RampDense):
    """Logits at any size that weight pixels by position: not invariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).mean(dim=(-2, -1)) * 10


def model_for(group, dense: bool, dtype=torch.float32, size=None) -> EquivariantModel:
    can = DiscreteCanonicalizer(group, 1).to(dtype).eval()
    pred = (RampDense() if dense else RampLogits()).to(dtype)
    return EquivariantModel(pred, can, ImageAction() if dense else InvariantAction()).eval()


# ------------------------------------------------------------------ 1. ties (stabilizers)
@pytest.mark.parametrize("size", [9, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "invariant"])
def test_equivariant_on_every_stabilizer_of_d4(size: int, dtype, dense: bool) -> None:
    gen = torch.Generator().manual_seed(size)
    base = torch.randn(3, 1, size, size, generator=gen, dtype=dtype)
    out_action = ImageAction() if dense else InvariantAction()
    for group in EXACT_GROUPS:
        model = model_for(group, dense, dtype)
        for name, sub in D4_SUBGROUPS.items():
            x = symmetrize(base, sub)
            assert_equivariant(model, x, group, ImageAction(), out_action)
            # a symmetry inside the model's group makes the choice ambiguous: a tie set
            inside = [h for h in sub if h in group_as_d4(group)]
            if len(inside) > 1:
                _, result = model.forward_with_result(x)
                assert bool(result.tied().all()), (group, name)
        const = torch.full((2, 1, size, size), 0.7, dtype=dtype)
        assert_equivariant(model, const, group, ImageAction(), out_action)
        blank = torch.zeros(2, 1, size, size, dtype=dtype)
        assert_equivariant(model, blank, group, ImageAction(), out_action)


def group_as_d4(group) -> list[int]:
    """The D4 indices of the elements of C1/C2/C4/D1/D2/D4 (same matrices)."""
    return D4.from_matrix(group.matrix(group.elements())).tolist()


def test_symmetric_inputs_break_the_plain_argmax_but_not_the_model() -> None:
    """The negative control: the predictor alone, and the primary element alone, are not
    equivariant on a C2-symmetric image; the tie-averaged model is."""
    g = CyclicGroup(2)
    x = symmetrize(torch.randn(2, 1, 12, 12, dtype=torch.float64), D4_SUBGROUPS["C2"])
    model = model_for(g, dense=True, dtype=torch.float64)
    assert_equivariant(model, x, g, ImageAction(), ImageAction())
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(model.predictor, x, g, ImageAction(), ImageAction())

    def primary_only(z: torch.Tensor) -> torch.Tensor:
        z_c, res = model.canonicalizer.canonicalize(z)
        return model.canonicalizer.invert(model.predictor(z_c), ImageAction(), result=res)

    report = equivariance_error(primary_only, x, g, ImageAction(), ImageAction())
    assert report.max_relative_error() > 0.1  # what main did before the tie rule


def test_untied_samples_cost_one_pass_and_tied_ones_one_per_candidate() -> None:
    calls: list[int] = []

    class Counting(RampLogits):
        def forward(self, x):
            calls.append(x.shape[0])
            return super().forward(x)

    can = DiscreteCanonicalizer(D4, 1).eval()
    model = EquivariantModel(Counting(), can).eval()
    x = torch.randn(5, 1, 11, 11)
    _, result = model.forward_with_result(x)
    assert result.ties is None and calls == [5] and result.predictor_passes() == 5
    x[1] = 0.3  # constant: all 8 elements tie
    x[3] = symmetrize(x[3:4], D4_SUBGROUPS["C2"])[0]  # C2-symmetric: a pair ties
    calls.clear()
    _, result = model.forward_with_result(x)
    assert result.tied().tolist() == [False, True, False, True, False]
    assert calls == [5 + 7 + 1] and result.predictor_passes() == 13
    summary = result.summary()
    assert summary["tied_samples"] == 2 and summary["predictor_passes_per_input"] == 13 / 5


def test_tie_mask_rule() -> None:
    s = torch.tensor([[1.0, 1.0, 0.5], [0.0, 0.0, 0.0], [2.0, 1.99995, -3.0]])
    assert tie_mask(s).tolist() == [[True, True, False], [True] * 3, [True, True, False]]
    assert tie_mask(s, 0.0, 0.0).tolist()[2] == [True, False, False]
    nan = torch.tensor([[float("nan"), 1.0]])
    assert tie_mask(nan).sum() == 1  # the argmax is always in the set
    perm = torch.tensor([2, 0, 1])
    assert torch.equal(tie_mask(s[:, perm]), tie_mask(s)[:, perm])  # permutes with the scores
    assert default_tie_tolerance(torch.float64) == (1e-10, 1e-10)
    assert tie_mask(torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(TypeError, match="floating scores"):
        tie_mask(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, n\)"):
        tie_mask(torch.zeros(3))
    with pytest.raises(ValueError, match=">= 0"):
        tie_mask(s, atol=-1.0)
    with pytest.raises(ValueError, match="tie_tolerance"):
        DiscreteCanonicalizer("C4", 1, tie_tolerance=(1e-3,))


def test_optimization_canonicalizer_averages_ties() -> None:
    can = OptimizationCanonicalizer(D4, 1).eval()
    model = EquivariantModel(RampDense(), can, ImageAction()).eval()
    x = symmetrize(torch.randn(3, 1, 12, 12), D4_SUBGROUPS["D1_diag"])
    x[0] = 0.0
    assert_equivariant(model, x, D4, ImageAction(), ImageAction())
    assert bool(model.forward_with_result(x)[1].tied().all())


def test_integer_outputs_keep_the_primary_and_warn(caplog) -> None:
    can = DiscreteCanonicalizer(C4, 1).eval()
    model = EquivariantModel(lambda z: RampDense()(z).argmax(1), can, MaskAction()).eval()
    with caplog.at_level("WARNING", logger="equify.canonicalization.model"):
        out = model(torch.zeros(2, 1, 8, 8))
    assert out.dtype == torch.long and out.shape == (2, 8, 8)
    assert "cannot be averaged" in caplog.text


# ------------------------------------------------------------------ 2. degenerate frames
@pytest.mark.parametrize("group", [SO2(), O2()], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_a_blank_image_never_fails_the_batch(group, dtype) -> None:
    can = ContinuousCanonicalizer(group, 1).to(dtype)
    x = torch.randn(4, 1, 16, 16, dtype=dtype)
    x[2] = 0.0
    _, result = can.canonicalize(x)
    assert result.degenerate.tolist() == [False, False, True, False]
    q = result.elements
    eye = torch.eye(2, dtype=dtype)
    torch.testing.assert_close(q[2], eye)
    torch.testing.assert_close(q.transpose(-1, -2) @ q, eye.expand_as(q), atol=1e-5, rtol=0)
    assert result.summary()["degenerate_samples"] == 1
    # gradients stay finite through the fallback
    pred = RampLogits().to(dtype)
    model = EquivariantModel(pred, can).train()
    loss = model(x).sum() + model.prior_loss()
    loss.backward()
    grads = [p.grad for p in can.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(gr).all()) for gr in grads)


@pytest.mark.parametrize("group", [SO2(), O2()], ids=str)
def test_blank_and_radial_images_are_averaged_over_the_grid(group) -> None:
    """Degenerate samples are averaged over C4 (SO2) / D4 (O2): exact for those elements."""
    can = ContinuousCanonicalizer(group, 1).double().eval()
    model = EquivariantModel(RampDense().double(), can, ImageAction()).eval()
    blank = torch.zeros(2, 1, 15, 15, dtype=torch.float64)
    grid = D4 if group.has_reflections else C4
    mats = grid.matrix(grid.elements())
    assert_equivariant(model, blank, group, ImageAction(), ImageAction(), elements=mats)
    _, result = model.forward_with_result(blank)
    assert result.degenerate.all() and result.predictor_passes() == 2 * grid.order
    with pytest.raises(AssertionError):  # without averaging the identity frame is not
        assert_equivariant(
            lambda z: model.predictor(z), blank, group, ImageAction(), ImageAction(), elements=mats
        )


def test_o2_mirror_symmetric_input_averages_both_handedness() -> None:
    can = ContinuousCanonicalizer(O2(), 1).double().eval()
    model = EquivariantModel(RampDense().double(), can, ImageAction()).eval()
    x = symmetrize(torch.randn(3, 1, 16, 16, dtype=torch.float64), D4_SUBGROUPS["D1_flip"])
    _, result = model.forward_with_result(x)
    assert bool(result.tied().all()) and not bool(result.degenerate.any())
    flips = D4.matrix(torch.tensor([0, 2, 4, 6]))  # the exact elements that keep x's symmetry axis
    assert_equivariant(model, x, O2(), ImageAction(), ImageAction(), elements=flips)


def test_frames_of_zero_and_parallel_vectors() -> None:
    for dtype in (torch.float32, torch.float64):
        z = torch.zeros(1, 2, 2, dtype=dtype)
        torch.testing.assert_close(frame_from_vectors(z, SO2()), torch.eye(2, dtype=dtype)[None])
        f = frames_from_vectors(z, O2())
        assert f.degenerate.tolist() == [True] and f.ambiguous.tolist() == [False]
        par = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]], dtype=dtype)
        f = frames_from_vectors(par, O2())
        assert f.ambiguous.tolist() == [True] and f.degenerate.tolist() == [False]
        torch.testing.assert_close(f.matrices, torch.eye(2, dtype=dtype)[None])  # det +1
    v = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]], dtype=torch.float64)
    for g in (SO3(), O3()):
        f = frames_from_vectors(v, g)
        assert f.degenerate.tolist() == [True]
        torch.testing.assert_close(f.matrices, torch.eye(3, dtype=torch.float64)[None])
    coplanar = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]])
    f = frames_from_vectors(coplanar, O3())
    assert f.ambiguous.tolist() == [True]
    assert float(torch.linalg.det(f.matrices[0])) == pytest.approx(1.0)
    with pytest.raises(TypeError, match="floating frame vectors"):
        frames_from_vectors(torch.zeros(1, 2, 2, dtype=torch.long), O2())


def test_frame_gradients_are_finite_at_zero() -> None:
    v = torch.zeros(3, 2, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        v[1] = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    frame_from_vectors(v, O2()).sum().backward()
    assert bool(torch.isfinite(v.grad).all())


# ------------------------------------------------------------------ 3. empty batches
def test_actions_on_empty_batches() -> None:
    e = torch.zeros(0, dtype=torch.long)
    cases = [
        (ImageAction(), torch.zeros(0, 2, 7, 7)),
        (ImageAction(), torch.zeros(0, 2, 7, 9)),
        (MaskAction(), torch.zeros(0, 7, 7, dtype=torch.long)),
        (RegularAction(C4), torch.zeros(0, 8, 5, 5)),
        (RegularAction(C4), torch.zeros(0, 8)),
        (PointAction(), torch.zeros(0, 6, 2)),
        (BoxAction(8), torch.zeros(0, 3, 4)),
        (InvariantAction(), torch.zeros(0, 10)),
    ]
    for act, x in cases:
        for g in (e, torch.zeros(0, 2, 2, dtype=torch.float64)):
            out = act.apply(x, g, C4)
            assert out.shape == x.shape and out.dtype == x.dtype, act


@pytest.mark.parametrize(
    "make",
    [
        lambda: DiscreteCanonicalizer("D4", 1),
        lambda: DiscreteCanonicalizer("C8", 1),
        lambda: DiscreteCanonicalizer("C4", 1, estimator="gumbel"),
        lambda: OptimizationCanonicalizer("C4", 1),
        lambda: ContinuousCanonicalizer("SO2", 1),
        lambda: ContinuousCanonicalizer("O2", 1),
    ],
    ids=["D4", "C8", "gumbel", "optimization", "SO2", "O2"],
)
def test_canonicalizers_and_models_on_empty_batches(make) -> None:
    can = make()
    x = torch.zeros(0, 1, 12, 12)
    for mode in (True, False):
        can.train(mode)
        model = EquivariantModel(RampDense(), can, ImageAction()).train(mode)
        x_c, result = can.canonicalize(x)
        assert x_c.shape == x.shape and result.batch_size == 0
        y = model(x)
        assert y.shape == (0, 3, 12, 12)
        loss = model.prior_loss()
        assert float(loss) == 0.0  # not NaN: an empty batch adds nothing
        assert result.summary()["tied_samples"] == 0
    finite = can.group if can.group.is_finite else C4
    report = equivariance_error(model.eval(), x, finite, ImageAction(), ImageAction())
    assert report.max_error() == 0.0


# ------------------------------------------------------------------ 4. after a training step
@pytest.mark.parametrize(
    "make",
    [
        lambda: DiscreteCanonicalizer("C4", 1),
        lambda: OptimizationCanonicalizer("D4", 1),
        lambda: ContinuousCanonicalizer("SO2", 1),
    ],
    ids=["discrete", "optimization", "continuous"],
)
def test_copy_export_save_right_after_a_training_step(make) -> None:
    can = make()
    model = EquivariantModel(RampLogits(), can)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(6, 1, 12, 12)
    x[0] = 0.0  # a blank image in the batch, as real data has
    loss = F.cross_entropy(model(x), torch.arange(6) % 3) + model.prior_loss()
    can(x)  # the stateful form too: both keep a result with its autograd graph
    loss = loss + can.prior_loss()
    loss.backward()
    opt.step()
    assert can.last_result is not None and model.last_result is not None
    twin = copy.deepcopy(model)
    copy.deepcopy(can)
    exported = model.export()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    fresh = EquivariantModel(RampLogits(), make())
    fresh.load_state_dict(model.state_dict())
    model.eval()
    ref = model(x)
    for other in (twin, loaded, fresh):
        assert torch.equal(other.eval()(x), ref)
    torch.testing.assert_close(exported(x), ref, atol=1e-5, rtol=1e-5)
    # the copies carry the last result, without its autograd graph
    kept = copy.deepcopy(can).last_result
    assert kept is not None and not kept.elements.requires_grad
    assert all(not t.requires_grad for t in (kept.logits, kept.vectors) if t is not None)
    group = can.group if can.group.is_finite else C4
    assert_equivariant(twin, x, group, ImageAction(), InvariantAction())


# ------------------------------------------------------------------ 5. smaller contracts
def test_checker_accepts_matrices_of_a_finite_group() -> None:
    model = model_for(D4, dense=True)
    x = torch.randn(2, 1, 9, 9)
    by_index = equivariance_error(model, x, D4, ImageAction(), ImageAction())
    by_matrix = equivariance_error(
        model, x, D4, ImageAction(), ImageAction(), elements=D4.matrix(D4.elements())
    )
    assert torch.equal(by_index.elements, by_matrix.elements)
    assert torch.equal(by_index.max_abs, by_matrix.max_abs)
    with pytest.raises(ValueError, match="not elements"):
        equivariance_error(
            model, x, C4, ImageAction(), ImageAction(), elements=D4.matrix(torch.tensor([4]))
        )
    with pytest.raises(ValueError, match=r"\(n, 2, 2\)"):
        equivariance_error(model, x, C4, ImageAction(), ImageAction(), elements=torch.eye(2))


def test_regular_action_validates_its_options() -> None:
    with pytest.raises(ValueError, match="interpolation must be one of"):
        RegularAction(C4, interpolation="cubic")
    with pytest.raises(ValueError, match="padding must be one of"):
        RegularAction(C4, padding="wrap")


def test_actions_never_return_their_input() -> None:
    x = torch.randn(2, 1, 6, 6)
    for act, data in [
        (ImageAction(), x),
        (MaskAction(), x[:, 0]),
        (RegularAction(C4), torch.randn(2, 4, 6, 6)),
        (InvariantAction(), x),
        (PointAction(), torch.randn(2, 5, 2)),
        (BoxAction(6), torch.tensor([[[0.0, 1.0, 2.5, 4.0]], [[1.0, 1.0, 6.0, 2.0]]])),
    ]:
        for g in (0, torch.zeros(2, dtype=torch.long), torch.eye(2, dtype=torch.float64)):
            out = act.apply(data, g, C4)
            assert torch.equal(out, data) and out.data_ptr() != data.data_ptr()


def test_an_in_place_predictor_does_not_write_into_the_callers_input() -> None:
    can = DiscreteCanonicalizer(C4, 1).eval()
    pred = nn.Sequential(nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(64, 3))
    model = EquivariantModel(pred, can).eval()
    x = torch.randn(4, 1, 8, 8)
    before = x.clone()
    model(x)
    assert torch.equal(x, before)


def test_empty_batch_prior_follows_the_model_dtype_and_backpropagates() -> None:
    can = DiscreteCanonicalizer(C4, 1).double().train()
    _, result = can.canonicalize(torch.zeros(0, 1, 8, 8, dtype=torch.float64))
    loss = can.prior_loss(result)
    assert loss.dtype == torch.float64 and float(loss) == 0.0
    loss.backward()  # connected to the (empty) scores: no "does not require grad" error


def test_c1_on_a_one_pixel_image() -> None:
    """One value per normalisation group: the output is the bias, not a crash in group_norm."""
    for batch in (1, 2):
        model = EquivariantModel(RampLogits(), DiscreteCanonicalizer("C1", 1)).eval()
        assert model(torch.randn(batch, 1, 1, 1)).shape == (batch, 3)
        assert model(torch.randn(batch, 1, 2, 2)).shape == (batch, 3)


# ------------------------------------------------------------------ gradients through ties
def explicit_average(model, x, candidates, st=None):
    """Σ_t w_t t·φ(t⁻¹·x + st) over per-sample candidate lists [(elements, weights), ...]."""
    group = model.canonicalizer.group
    act, out = model.canonicalizer.in_action, model.out_action
    rows = []
    for b, (elements, weights) in enumerate(candidates):
        xb = x[b : b + 1]
        acc = 0
        for e, w in zip(elements, weights, strict=True):
            inv = group.inverse(e) if group.is_finite else e.transpose(-1, -2)[None]
            e_b = e if group.is_finite else e[None]
            inp = act.apply(xb, inv, group) + (0 if st is None else st[b : b + 1])
            acc = acc + w * out.apply(model.predictor(inp), e_b, group)
        rows.append(acc)
    return torch.cat(rows)


def test_input_gradients_through_tied_samples_match_the_explicit_average() -> None:
    torch.manual_seed(1)
    model = model_for(C4, dense=True, dtype=torch.float64).train()
    x = symmetrize(torch.randn(3, 1, 10, 10, dtype=torch.float64), D4_SUBGROUPS["C4"])
    x[1] = torch.randn(1, 10, 10, dtype=torch.float64)  # untied
    x.requires_grad_(True)
    y, result = model.forward_with_result(x)
    weights = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    cands = []
    for b in range(3):
        mask = result.ties.sample == b if result.ties is not None else torch.zeros(0)
        if bool(mask.any()):
            cands.append((result.ties.elements[mask].tolist(), result.ties.weights[mask].tolist()))
        else:
            cands.append(([int(result.elements[b])], [1.0]))
    assert len(cands[0][0]) == 4 and len(cands[1][0]) == 1
    # the intended gradient: every pass carries the same straight-through term, x_c - c⁻¹·x
    # (zero in value), and nothing else of the primary's path
    x2 = x.detach().clone().requires_grad_(True)
    can = model.canonicalizer
    x_c, res2 = can.canonicalize(x2)
    st = x_c - can.in_action.apply(x2, C4.inverse(res2.elements), C4)
    ref = explicit_average(model, x2, cands, st)
    torch.testing.assert_close(y, ref)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), x2)
    torch.testing.assert_close(grad, grad_ref, atol=1e-10, rtol=1e-10)


def test_input_gradients_through_frame_ties_match_the_explicit_average() -> None:
    """Both handedness of a mirror-symmetric image (O2) and the C4 fallback of a blank one."""
    torch.manual_seed(2)
    flip = torch.tensor([1.0, -1.0], dtype=torch.float64)
    for group, x in (
        (O2(), symmetrize(torch.randn(2, 1, 12, 12, dtype=torch.float64), D4_SUBGROUPS["D1_diag"])),
        (SO2(), torch.zeros(2, 1, 12, 12, dtype=torch.float64)),
    ):
        can = ContinuousCanonicalizer(group, 1).double().train()
        model = EquivariantModel(RampDense().double(), can, ImageAction()).train()
        x = x.clone().requires_grad_(True)
        y, result = model.forward_with_result(x)
        assert bool(result.tied().all())
        weights = torch.randn_like(y)
        (grad,) = torch.autograd.grad((y * weights).sum(), x)
        x2 = x.detach().clone().requires_grad_(True)
        _, res2 = can.canonicalize(x2)
        q = res2.elements
        if group.has_reflections:
            cands = [([q[b], q[b] * flip], [0.5, 0.5]) for b in range(2)]
        else:  # degenerate: the identity frame, averaged over C4
            mats = C4.matrix(C4.elements(), dtype=torch.float64)
            cands = [(list(mats), [0.25] * 4) for _ in range(2)]
        ref = explicit_average(model, x2, cands)
        torch.testing.assert_close(y, ref)
        (grad_ref,) = torch.autograd.grad((ref * weights).sum(), x2)
        assert bool(grad_ref.abs().max() > 1e-3)
        torch.testing.assert_close(grad, grad_ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_a_half_turn_symmetric_image_is_degenerate_for_so2_at_any_score_scale(scale) -> None:
    """Its first vector is pure rounding: it must be recognised, not read as a direction."""
    can = ContinuousCanonicalizer(SO2(), 1).eval()
    with torch.no_grad():
        for p in can.network.scores.blocks[-2].parameters():
            p.mul_(scale)
    x = symmetrize(torch.randn(4, 1, 16, 16), D4_SUBGROUPS["C2"])
    _, result = can.canonicalize(x)
    assert bool(result.degenerate.all())
    model = EquivariantModel(RampDense(), can, ImageAction()).eval()
    assert_equivariant(
        model, x, SO2(), ImageAction(), ImageAction(), elements=C4.matrix(C4.elements())
    )
