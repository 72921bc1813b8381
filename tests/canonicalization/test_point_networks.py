"""VNCanonicalizationNetwork: O(3) equivariance, padding, degenerate clouds, training, errors."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from equify.canonicalization import VNCanonicalizationNetwork
from equify.groups import O3

from ..conftest import devices

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]
SMALL = {"hidden": 8, "layers": 2, "neighbours": 4}


def orthogonal(n: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    q = O3().sample(n, generator=torch.Generator().manual_seed(0), dtype=dtype)
    det = torch.linalg.det(q.double())
    assert (det > 0).any() and (det < 0).any()
    return q


def equivariance_error(net: nn.Module, points: torch.Tensor, **kwargs) -> float:
    """Worst ``|net(x Qᵀ) - net(x) Qᵀ|`` over 16 sampled O(3) elements, relative to ``|net(x)|``."""
    y = net(points, **kwargs)
    worst = 0.0
    for q in orthogonal(dtype=points.dtype).to(points.device):
        err = (net(points @ q.T, **kwargs) - y @ q.T).abs().max() / y.abs().max().clamp_min(1.0)
        worst = max(worst, err.item())
    return worst


def make(dtype: torch.dtype = torch.float64, **kwargs) -> VNCanonicalizationNetwork:
    torch.manual_seed(0)
    options = {**SMALL, **kwargs}
    net = VNCanonicalizationNetwork(**options).to(dtype)
    if net.gate is not None:  # the gate starts at 1: give it weights so the test sees it
        with torch.no_grad():
            net.gate[-1].weight.normal_()
    return net


def padded_batch(dtype: torch.dtype, sizes=(9, 5, 1), extra: int = 0):
    """The same clouds of the given sizes for every ``extra``, padded to ``max(sizes) + extra``.

    Padding rows hold large junk coordinates.
    """
    n = max(sizes)
    gen = torch.Generator().manual_seed(3)
    points = torch.randn(len(sizes), n, 3, generator=gen, dtype=dtype)
    points = torch.cat([points, torch.zeros(len(sizes), extra, 3, dtype=dtype)], 1)
    mask = torch.arange(n + extra)[None, :] < torch.tensor(sizes)[:, None]
    junk = 100 * torch.randn(points.shape, generator=gen, dtype=dtype)
    return torch.where(mask[..., None], points, junk), mask


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(
    "options",
    [
        {"pooling": "max"},
        {"pooling": "mean"},
        {"pooling": "max", "batch_norm": True, "out_vectors": 3},
        {"pooling": "mean", "batch_norm": True, "layers": 3, "scalar_features": 2},
    ],
    ids=["max", "mean", "max-bn", "mean-bn-scalars"],
)
def test_equivariant(options, mode, dtype) -> None:
    net = getattr(make(dtype, **options), mode)()
    points, mask = padded_batch(dtype)
    kwargs = {"mask": mask}
    if options.get("scalar_features"):
        kwargs["scalars"] = torch.randn(*mask.shape, 2, dtype=dtype)
    assert equivariance_error(net, points, **kwargs) < TOL[dtype]
    kwargs = {k: v[:1, :9] for k, v in kwargs.items() if k != "mask"}
    assert equivariance_error(net, points[:1, :9], **kwargs) < TOL[dtype]  # mask=None


def test_plain_linear_on_coordinates_fails_the_check() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 3)

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            return self.linear(points).mean(1, keepdim=True)

    torch.manual_seed(1)
    points = torch.randn(2, 6, 3, dtype=torch.float64)
    assert equivariance_error(Plain().double(), points) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_translation_and_permutation_invariant(dtype) -> None:
    net = make(dtype, batch_norm=True).train()
    points, mask = padded_batch(dtype)
    y = net(points, mask)
    tol = {"atol": 10 * TOL[dtype], "rtol": 10 * TOL[dtype]}
    torch.testing.assert_close(
        net(points + torch.tensor([3.0, -1.0, 2.0], dtype=dtype), mask), y, **tol
    )
    perm = torch.randperm(points.shape[1])
    torch.testing.assert_close(net(points[:, perm], mask[:, perm]), y, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_padding_does_not_change_the_output(mode, dtype) -> None:
    tol = {torch.float32: 1e-6, torch.float64: 1e-12}[dtype]
    for options in ({"batch_norm": True}, {"pooling": "mean", "scalar_features": 3}):
        net = getattr(make(dtype, **options), mode)()
        points, mask = padded_batch(dtype)
        more, more_mask = padded_batch(dtype, extra=4)
        kwargs, more_kwargs = {}, {}
        if net.gate is not None:
            scalars = torch.randn(*more_mask.shape, 3, dtype=dtype)
            more_kwargs = {"scalars": torch.where(more_mask[..., None], scalars, torch.nan)}
            kwargs = {"scalars": scalars[:, : mask.shape[1]]}
        y = net(points, mask, **kwargs)
        more_y = net(more, more_mask, **more_kwargs)
        scale = y.abs().max().clamp_min(1.0)
        assert ((more_y - y).abs().max() / scale).item() < tol
        if mode == "eval" and net.gate is None:  # one cloud alone, unpadded
            alone = net(points[:1, :9])
            assert ((alone - y[:1]).abs().max() / scale).item() < tol
    # padding may hold NaN or inf
    net = make(torch.float64).eval()
    points, mask = padded_batch(torch.float64)
    junk = torch.where(mask[..., None], points, torch.inf)
    torch.testing.assert_close(net(junk, mask), net(points, mask))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_degenerate_clouds_are_finite(mode, dtype) -> None:
    net = getattr(make(dtype, batch_norm=True, out_vectors=3), mode)()
    t = torch.linspace(-1, 1, 7, dtype=dtype)[:, None]
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=dtype)
    axis = axis / axis.norm()
    u, v = torch.tensor([1.0, 2.0, 0.0], dtype=dtype), torch.tensor([0.0, 1.0, -1.0], dtype=dtype)
    grid = torch.stack(torch.meshgrid(t[:, 0], t[:, 0], indexing="ij"), -1).reshape(-1, 2)
    two = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3, dtype=dtype)
    clouds = {
        "single point": torch.tensor([[[0.5, -1.0, 2.0]]], dtype=dtype),
        "repeated points": torch.tensor([[0.5, -1.0, 2.0]], dtype=dtype).expand(1, 6, 3),
        "two points repeated": two[None],
        "collinear": (t * axis)[None],
        "collinear uneven": ((t**2 + 0.3 * t) * axis)[None],
        "planar": (grid[:, :1] * u + grid[:, 1:] * v)[None],
        "origin": torch.zeros(1, 4, 3, dtype=dtype),
    }
    # Train-mode batch norm over one degenerate cloud normalises norms of (near) zero batch
    # variance: rounding is amplified up to 1/sqrt(eps) there. Eval mode stays at rounding.
    tol = 10 * TOL[dtype] if mode == "eval" else {torch.float32: 1e-3, torch.float64: 1e-9}[dtype]
    for name, cloud in clouds.items():
        out = net(cloud)
        assert out.shape == (1, 3, 3) and torch.isfinite(out).all(), name
        assert equivariance_error(net, cloud) < tol, name
        if name in ("single point", "repeated points", "origin"):  # centred: all zero
            assert out.abs().max() == 0, name
        if name.startswith("collinear"):  # rotations about the axis fix the cloud
            off_axis = out - (out @ axis)[..., None] * axis
            assert off_axis.abs().max() < tol * out.abs().max(), name
    # a single real point among padding, and a cloud of one point among bigger ones
    points, mask = padded_batch(dtype, sizes=(1, 1, 6))
    assert torch.isfinite(net(points, mask)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_symmetric_cloud_ties_do_not_break_equivariance(dtype) -> None:
    """Exact and rounding-level ties of distances and max-pool scores, resolved alike for every Q.

    A 3x3x3 lattice (exact ties), and an icosahedron turned by a random rotation first, so its
    ties are ties only up to rounding already in the input.
    """
    axis = torch.arange(3, dtype=torch.float64)
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, 27, 3)
    phi = (1 + 5**0.5) / 2
    corners = torch.tensor(
        [[0.0, a, b * phi] for a in (1, -1) for b in (1, -1)], dtype=torch.float64
    )
    icosahedron = torch.cat([corners, corners[:, [1, 2, 0]], corners[:, [2, 0, 1]]])[None]
    turned = icosahedron @ orthogonal()[0].T
    for name, cloud in (("lattice", lattice + 0.1), ("icosahedron", turned)):
        for pooling in ("max", "mean"):
            net = make(dtype, pooling=pooling, neighbours=5).eval()
            assert equivariance_error(net, cloud.to(dtype)) < TOL[dtype], (name, pooling)


def test_empty_batch_batch_of_one_and_few_points() -> None:
    net = make(torch.float32, out_vectors=3).eval()
    assert net(torch.zeros(0, 5, 3)).shape == (0, 3, 3)
    assert net(torch.zeros(0, 0, 3)).shape == (0, 3, 3)
    assert net(torch.zeros(0, 5, 3), torch.zeros(0, 5, dtype=torch.bool)).shape == (0, 3, 3)
    points = torch.randn(4, 10, 3)
    batch = net(points)
    torch.testing.assert_close(net(points[2:3]), batch[2:3])
    # fewer points than neighbours
    assert torch.isfinite(net(torch.randn(2, 3, 3))).all()
    net.train()
    assert net(torch.zeros(0, 5, 3)).shape == (0, 3, 3)


def test_one_optimizer_step_copy_and_state_dict() -> None:
    net = make(torch.float32, batch_norm=True, scalar_features=2)
    points, mask = padded_batch(torch.float32)
    scalars = torch.randn(*mask.shape, 2)
    target = torch.randn(3, 2, 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    before = net(points, mask, scalars).detach()
    loss = (net(points, mask, scalars) - target).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    for name, p in net.named_parameters():
        if name == "pool.direction.weight":  # the max pool's pick has no gradient
            assert p.grad is None
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().max() > 0, name
    opt.step()
    after = net(points, mask, scalars).detach()
    assert (after - before).abs().max() > 1e-4
    for mode in ("train", "eval"):
        getattr(net, mode)()
        twin = getattr(copy.deepcopy(net), mode)()
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        buffer.seek(0)
        fresh = VNCanonicalizationNetwork(**SMALL, batch_norm=True, scalar_features=2)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        getattr(fresh, mode)()
        # train mode updates the running statistics: compare outputs with copies of the state
        y = net(points, mask, scalars)
        torch.testing.assert_close(twin(points, mask, scalars), y, atol=0, rtol=0)
        torch.testing.assert_close(fresh(points, mask, scalars), y, atol=0, rtol=0)


def test_scalars_gate_the_output() -> None:
    net = make(torch.float64, scalar_features=3).eval()
    points = torch.randn(2, 8, 3, dtype=torch.float64)
    types = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 8)), 3)
    y = net(points, scalars=types)  # integer one-hot features are accepted
    other = net(points, scalars=types.roll(1, dims=1))
    assert (y - other).abs().max() > 1e-6
    assert equivariance_error(net, points, scalars=types) < TOL[torch.float64]


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    n=st.integers(1, 12),
    batch=st.integers(1, 3),
    out_vectors=st.sampled_from([2, 3]),
    dtype=st.sampled_from(DTYPES),
    pooling=st.sampled_from(["max", "mean"]),
    seed=st.integers(0, 2**16),
)
def test_property_equivariant(n, batch, out_vectors, dtype, pooling, seed) -> None:
    torch.manual_seed(seed)
    net = VNCanonicalizationNetwork(out_vectors, pooling=pooling, **SMALL).to(dtype).eval()
    points = torch.randn(batch, n, 3, dtype=dtype)
    mask = torch.rand(batch, n) < 0.8
    mask[:, 0] = True
    assert net(points, mask).shape == (batch, out_vectors, 3)
    assert equivariance_error(net, points, mask=mask) < TOL[dtype]


@pytest.mark.parametrize("device", devices())
def test_device_and_dtype_follow_the_input(device) -> None:
    net = make(torch.float64, batch_norm=True, scalar_features=2).to(device)
    points = torch.randn(2, 7, 3, dtype=torch.float64, device=device)
    mask = torch.ones(2, 7, dtype=torch.bool, device=device)
    scalars = torch.randn(2, 7, 2, device=device)  # float32 scalars are cast
    for mode in ("train", "eval"):
        out = getattr(net, mode)()(points, mask, scalars)
        assert out.device == points.device and out.dtype == torch.float64
        assert equivariance_error(net, points, mask=mask, scalars=scalars) < TOL[torch.float64]


def test_bad_inputs_raise_clear_errors() -> None:
    net = make(torch.float32)
    points = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="last dimension 3"):
        net(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        net(torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating"):
        net(torch.ones(2, 5, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        net([[0.0, 0.0, 0.0]])
    with pytest.raises(TypeError, match="move the network"):
        net(points.double())
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\)"):
        net(points, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.bool"):
        net(points, torch.ones(2, 5))
    bad = points.clone()
    bad[1, 2, 0] = torch.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        net(bad)
    bad[1, 2, 0] = torch.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        net(bad)
    empty = torch.ones(2, 5, dtype=torch.bool)
    empty[1] = False
    with pytest.raises(ValueError, match=r"at least one real point; clouds \[1\]"):
        net(points, empty)
    with pytest.raises(ValueError, match="scalar_features=0"):
        net(points, scalars=torch.randn(2, 5, 1))
    gated = make(torch.float32, scalar_features=2)
    with pytest.raises(ValueError, match=r"scalars must have shape \(B, N, F\) = \(2, 5, 2\)"):
        gated(points, scalars=torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="pass scalars"):
        gated(points)
    with pytest.raises(ValueError, match="scalars hold NaN"):
        gated(points, scalars=torch.full((2, 5, 2), torch.nan))
    with pytest.raises(ValueError, match="pooling must be one of"):
        VNCanonicalizationNetwork(pooling="sum")
    with pytest.raises(ValueError, match="out_vectors must be >= 1"):
        VNCanonicalizationNetwork(out_vectors=0)
    with pytest.raises(TypeError, match="neighbours must be an int"):
        VNCanonicalizationNetwork(neighbours=2.5)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_per_point_vectors_turn_with_the_cloud(dtype, tol) -> None:
    """Velocities join the edges: the output turns with points and vectors together."""
    torch.manual_seed(0)
    net = VNCanonicalizationNetwork(3, hidden=8, layers=2, neighbours=3, vector_features=1)
    net = net.to(dtype).eval()
    gen = torch.Generator().manual_seed(1)
    pts = torch.randn(4, 6, 3, generator=gen, dtype=dtype)
    vel = torch.randn(4, 6, 1, 3, generator=gen, dtype=dtype)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 4:] = False
    out = net(pts, mask, vectors=vel)
    q = O3().sample(16, generator=gen, dtype=dtype)
    for m in q:
        turned = net(pts @ m.T + 3.0, mask, vectors=vel @ m.T)  # vectors do not translate
        assert (turned - out @ m.T).abs().max() <= tol * max(1.0, float(out.abs().max()))
    # the velocities matter, and padding rows of them are ignored
    assert not torch.allclose(net(pts, mask, vectors=torch.zeros_like(vel)), out)
    noisy = vel.clone()
    noisy[0, 4:] = float("nan")
    assert torch.allclose(net(pts, mask, vectors=noisy), out)
    with pytest.raises(ValueError, match=r"\(B, N, V, 3\)"):
        net(pts, mask, vectors=vel[:, :, 0])
    with pytest.raises(ValueError, match="vector_features=V"):
        VNCanonicalizationNetwork(2, hidden=4).to(dtype)(pts, vectors=vel)
    vel[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        net(pts, mask, vectors=vel)
