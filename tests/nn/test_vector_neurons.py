"""Vector-neuron layers: O(3) equivariance, masks, degenerate inputs and validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from equify.groups import O3
from equify.nn import (
    VNBatchNorm,
    VNInvariant,
    VNLeakyReLU,
    VNLinear,
    VNMaxPool,
    VNMeanPool,
    knn_edge_features,
    knn_indices,
)

from ..conftest import devices

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
DTYPES = [torch.float32, torch.float64]


def orthogonal(n: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, 3, 3)`` sampled O(3) elements, rotations and reflections both present."""
    q = O3().sample(n, generator=torch.Generator().manual_seed(0), dtype=dtype)
    det = torch.linalg.det(q.double())
    assert (det > 0).any() and (det < 0).any()
    return q


def equivariance_error(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, invariant: bool = False
) -> float:
    """Worst ``|f(x Qᵀ) - f(x) Qᵀ|`` (or ``|f(x Qᵀ) - f(x)|``) over 16 Q, relative to ``|f(x)|``."""
    y = f(x)
    worst = 0.0
    for q in orthogonal(dtype=x.dtype).to(x.device):
        expected = y if invariant else y @ q.T
        err = (f(x @ q.T) - expected).abs().max() / y.abs().max().clamp_min(1.0)
        worst = max(worst, err.item())
    return worst


def randomise_norm(norm: VNBatchNorm) -> VNBatchNorm:
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
        norm.running_mean.uniform_(0.5, 1.5)
        norm.running_var.uniform_(0.5, 2.0)
    return norm


def layer_cases() -> list[tuple[str, Callable[[], nn.Module]]]:
    return [
        ("linear", lambda: VNLinear(4, 5)),
        ("leaky", lambda: VNLeakyReLU(4)),
        ("leaky-shared", lambda: VNLeakyReLU(4, negative_slope=0.0, share_direction=True)),
        ("batchnorm", lambda: randomise_norm(VNBatchNorm(4))),
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(("name", "make"), layer_cases(), ids=[c[0] for c in layer_cases()])
@pytest.mark.parametrize("shape", [(3, 7, 4, 3), (6, 4, 3)], ids=["points", "clouds"])
def test_channel_layers_equivariant(name, make, shape, mode, dtype) -> None:
    layer = getattr(make().to(dtype), mode)()
    x = torch.randn(*shape, dtype=dtype)
    err = equivariance_error(layer, x)
    assert err < TOL[dtype], f"{name}: {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_masked_batchnorm_equivariant(mode, dtype) -> None:
    norm = getattr(randomise_norm(VNBatchNorm(4)).to(dtype), mode)()
    x = torch.randn(3, 7, 4, 3, dtype=dtype)
    mask = torch.rand(3, 7) > 0.3
    assert equivariance_error(lambda v: norm(v, mask), x) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("pool", ["max", "mean"])
def test_pools_equivariant_and_permutation_invariant(pool, dtype) -> None:
    layer = (VNMaxPool(4) if pool == "max" else VNMeanPool()).to(dtype)
    x = torch.randn(3, 9, 4, 3, dtype=dtype)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    assert equivariance_error(lambda v: layer(v, mask), x) < TOL[dtype]
    assert equivariance_error(layer, x) < TOL[dtype]
    perm = torch.randperm(9)
    torch.testing.assert_close(layer(x[:, perm], mask[:, perm]), layer(x, mask))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_invariant_readout(dtype) -> None:
    layer = VNInvariant(4, n_vectors=3).to(dtype)
    x = torch.randn(2, 5, 4, 3, dtype=dtype)
    out = layer(x)
    assert out.shape == (2, 5, 12) and layer.out_features == 12
    assert equivariance_error(layer, x, invariant=True) < TOL[dtype]
    u = layer.frame(x)
    torch.testing.assert_close(out[..., 1 * 3 + 2], (x[..., 1, :] * u[..., 2, :]).sum(-1))
    # not trivially constant
    assert (out - layer(torch.randn_like(x))).abs().max() > 1e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_knn_edge_features_equivariant(dtype) -> None:
    points = torch.randn(3, 10, 3, dtype=dtype)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 1:] = False
    assert equivariance_error(lambda p: knn_edge_features(p, mask, 4)[0], points) < TOL[dtype]


def test_plain_linear_on_coordinates_fails_the_check() -> None:
    torch.manual_seed(1)
    plain = nn.Linear(3, 3).double()
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    assert equivariance_error(plain, x) > 1e-2
    # the same check on a vector neuron passes
    assert equivariance_error(VNLinear(7, 2).double(), x) < TOL[torch.float64]


def test_linear_mixes_channels() -> None:
    layer = VNLinear(3, 2)
    x = torch.randn(4, 3, 3)
    expected = torch.einsum("oc,bcd->bod", layer.weight, x)
    torch.testing.assert_close(layer(x), expected)
    assert layer(torch.zeros(4, 3, 3)).abs().max() == 0


def test_leaky_relu_formula_zero_and_gradients() -> None:
    torch.manual_seed(2)
    relu = VNLeakyReLU(5, negative_slope=0.0).double()
    x = torch.randn(64, 5, 3, dtype=torch.float64)
    y = relu(x)
    k = relu.direction(x)
    dot = (x * k).sum(-1)
    # where <v, k> < 0 the output is orthogonal to k (slope 0), elsewhere unchanged
    out_dot = (y * k).sum(-1)
    neg = dot < 0
    assert neg.any() and (~neg).any()
    assert out_dot[neg].abs().max() < 1e-5
    torch.testing.assert_close(y[~neg], x[~neg])
    # leaky: a fraction of the component along k is kept
    leaky = VNLeakyReLU(5, negative_slope=0.2).double()
    leaky.direction.weight.data.copy_(relu.direction.weight.data)
    removed = (x - leaky(x))[neg]
    kn = k[neg] / k[neg].norm(dim=-1, keepdim=True)
    proj = (x[neg] * kn).sum(-1, keepdim=True) * kn
    torch.testing.assert_close(removed, 0.8 * proj, atol=1e-4, rtol=1e-4)
    # zero input: exactly zero output, finite gradients
    z = torch.zeros(2, 5, 3, dtype=torch.float64, requires_grad=True)
    out = leaky(z)
    assert out.abs().max() == 0
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in leaky.parameters())


def test_batchnorm_statistics_mask_and_zero_vectors() -> None:
    norm = VNBatchNorm(3, norm_eps=1e-9).double()
    x = 2 * torch.randn(4, 6, 3, 3, dtype=torch.float64)
    mask = torch.rand(4, 6) > 0.4
    y = norm(x, mask)
    # padding outputs zero; padding does not enter the statistics
    assert y[~mask].abs().max() == 0
    torch.testing.assert_close(y[mask], VNBatchNorm(3, norm_eps=1e-9).double()(x[mask]))
    # signed normalised norm along each vector: mean 0, variance 1 over the real entries
    signed = (y[mask] * x[mask]).sum(-1) / x[mask].norm(dim=-1)
    torch.testing.assert_close(signed.mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(
        signed.var(0, unbiased=False), torch.ones(3, dtype=x.dtype), atol=1e-4, rtol=0
    )
    # padding values (even inf) never matter
    garbage = torch.where(mask[..., None, None], x, torch.full_like(x, float("inf")))
    torch.testing.assert_close(norm(garbage, mask), y)
    # zero vectors stay exactly zero, with finite gradients, in train and eval mode
    z = x.clone()
    z[0, 0] = 0
    z.requires_grad_(True)
    for mode in ("train", "eval"):
        getattr(norm, mode)()
        out = norm(z)
        assert out[0, 0].abs().max() == 0 and torch.isfinite(out).all()
        (out * torch.randn_like(out)).sum().backward()
        assert torch.isfinite(z.grad).all()


def test_batchnorm_keeps_near_zero_vectors_short() -> None:
    """Rounding noise on a vector that should be 0 is not blown up to full length."""
    x = torch.randn(16, 2, 3, dtype=torch.float64)
    x[0] = 1e-12 * torch.randn(2, 3, dtype=torch.float64)
    for mode in ("train", "eval"):
        norm = getattr(VNBatchNorm(2).double(), mode)()
        y = norm(x)
        assert y[0].norm(dim=-1).max() < 1e-9 and y[1:].norm(dim=-1).max() > 0.1
        # default relative floor: ordinary vectors are rescaled almost exactly by bn(|v|)/|v|
        plain = VNBatchNorm(2, norm_eps=1e-9).double().train(mode == "train")
        torch.testing.assert_close(y[1:], plain(x)[1:], atol=1e-2, rtol=1e-2)


def test_batchnorm_running_statistics() -> None:
    norm = VNBatchNorm(2, momentum=0.5).double()
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    norm(x)
    n = x.norm(dim=-1)
    torch.testing.assert_close(norm.running_mean, 0.5 * n.mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(norm.running_var, 0.5 + 0.5 * n.var(0), atol=1e-6, rtol=0)
    # no real entry: zeros out, statistics unchanged (also for an empty batch)
    before = norm.running_mean.clone(), norm.running_var.clone()
    out = norm(x, torch.zeros(8, dtype=torch.bool))
    assert out.abs().max() == 0
    assert norm(x[:0]).shape == (0, 2, 3)
    torch.testing.assert_close((norm.running_mean, norm.running_var), before)
    # a single entry: no NaN
    assert torch.isfinite(norm(x[:1])).all()
    norm.eval()
    torch.testing.assert_close(norm(x[:3]), torch.cat([norm(x[i : i + 1]) for i in range(3)]))


def test_max_pool_picks_the_best_real_point() -> None:
    pool = VNMaxPool(3).double()
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    score = (x * pool.direction(x)).sum(-1)
    expected = torch.gather(x, 1, score.argmax(1)[:, None, :, None].expand(2, 1, 3, 3))[:, 0]
    torch.testing.assert_close(pool(x), expected)
    # huge padding vectors are never picked; an all-padding cloud gives zeros
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1] = False
    padded = torch.where(mask[..., None, None], x, 1e6 * x)
    out = pool(padded, mask)
    assert out[1].abs().max() == 0
    torch.testing.assert_close(out[:1], pool(x[:1, :3]))
    # repeated points / exact ties: no NaN, one of the tied vectors
    same = x[:, :1].expand(2, 6, 3, 3).contiguous()
    torch.testing.assert_close(pool(same), x[:, 0])


def test_mean_pool_masked() -> None:
    x = torch.randn(2, 5, 3, 3)
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    out = VNMeanPool()(torch.where(mask[..., None, None], x, torch.nan), mask)
    torch.testing.assert_close(out[0], x[0, :2].mean(0))
    torch.testing.assert_close(out[1], x[1].mean(0))
    assert VNMeanPool()(x, torch.zeros(2, 5, dtype=torch.bool)).abs().max() == 0


def test_knn_neighbours_match_brute_force() -> None:
    points = torch.randn(2, 12, 3, dtype=torch.float64)
    index, valid = knn_indices(points, None, 4)
    assert valid.all()
    d = torch.cdist(points, points) + torch.eye(12, dtype=torch.float64) * 1e9
    expected = d.topk(4, largest=False).indices
    assert torch.equal(index.sort(-1).values, expected.sort(-1).values)
    edges, edge_mask = knn_edge_features(points, None, 4)
    assert edges.shape == (2, 12, 4, 2, 3) and edge_mask.all()
    nb = torch.stack([points[b, index[b]] for b in range(2)])
    torch.testing.assert_close(edges[..., 0, :], nb - points[:, :, None])
    torch.testing.assert_close(edges[..., 1, :], points[:, :, None].expand(2, 12, 4, 3))


def test_knn_few_points_padding_and_single_point() -> None:
    points = torch.randn(1, 4, 3, dtype=torch.float64)
    edges, valid = knn_edge_features(points, None, 6)
    assert valid.sum(-1).tolist() == [[3, 3, 3, 3]]  # the 3 others, the rest masked
    assert edges[~valid].abs().max() == 0
    # padding rows with any coordinates (even NaN/inf) change nothing
    padded = torch.cat([points, torch.tensor([[[torch.nan, 0, 1], [torch.inf, 5, 5]]])], 1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    e2, v2 = knn_edge_features(padded, mask, 6)
    torch.testing.assert_close(e2[:, :4], edges)
    assert torch.equal(v2[:, :4], valid) and not v2[:, 4:].any() and e2[:, 4:].abs().max() == 0
    # a point alone in its cloud is its own neighbour: edge [0, x_i]
    single, sv = knn_edge_features(padded, torch.tensor([[False, True] + [False] * 4]), 3)
    assert sv[0, 1].tolist() == [True, False, False]
    torch.testing.assert_close(single[0, 1, 0, 1], points[0, 1])
    assert single[0, 1, 0, 0].abs().max() == 0
    # empty inputs
    e0, v0 = knn_edge_features(torch.zeros(0, 5, 3), None, 2)
    assert e0.shape == (0, 5, 2, 2, 3) and v0.shape == (0, 5, 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_knn_ties_resolve_alike_under_o3(dtype) -> None:
    """A 3x3x3 lattice has many exactly tied distances; rounding must not decide them."""
    axis = torch.arange(3, dtype=dtype) - 1.0
    lattice = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, 27, 3)
    # repeated points too
    cloud = torch.cat([lattice, lattice[:, :3]], 1)
    index, _ = knn_indices(cloud, None, 5)
    for q in orthogonal(dtype=dtype):
        assert torch.equal(knn_indices(cloud @ q.T, None, 5)[0], index)
    assert equivariance_error(lambda p: knn_edge_features(p, None, 5)[0], cloud) < TOL[dtype]
    # the max pool resolves its ties alike too
    pool = VNMaxPool(2).to(dtype)
    feats = torch.stack([cloud, 2 * cloud], dim=2)  # (1, 30, 2, 3)
    assert equivariance_error(pool, feats) < TOL[dtype]


@pytest.mark.parametrize("device", devices())
def test_device_and_dtype_follow_the_input(device) -> None:
    x = torch.randn(2, 5, 4, 3, device=device, dtype=torch.float64)
    mask = torch.ones(2, 5, dtype=torch.bool, device=device)
    for layer in (VNLinear(4, 4), VNLeakyReLU(4), VNBatchNorm(4), VNInvariant(4)):
        out = layer.to(device=device, dtype=torch.float64)(x)
        assert out.device == x.device and out.dtype == x.dtype
    assert VNMaxPool(4).to(device, torch.float64)(x, mask).device == x.device
    edges, _ = knn_edge_features(x[:, :, 0], mask, 3)
    assert edges.device == x.device and edges.dtype == x.dtype


def test_validation_errors() -> None:
    x = torch.randn(2, 5, 4, 3)
    with pytest.raises(ValueError, match="last dimension 3"):
        VNLinear(4, 2)(torch.randn(2, 5, 4, 2))
    with pytest.raises(ValueError, match="expected 4 vector channels"):
        VNLeakyReLU(4)(torch.randn(2, 5, 3, 3))
    with pytest.raises(TypeError, match="floating"):
        VNLinear(4, 2)(torch.ones(2, 4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        VNLinear(4, 2)([[0.0, 0.0, 0.0]])
    with pytest.raises(TypeError, match="move the module"):
        VNLinear(4, 2)(x.double())
    with pytest.raises(TypeError, match="torch.bool"):
        VNBatchNorm(4)(x, torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 5\)"):
        VNMaxPool(4)(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, N, C, 3\)"):
        VNMaxPool(4)(torch.randn(5, 4, 3))
    with pytest.raises(ValueError, match=r"points must have shape \(B, N, 3\)"):
        knn_edge_features(torch.randn(2, 5, 2), None, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_edge_features(torch.randn(2, 5, 3), None, 0)
    with pytest.raises(ValueError, match="channels must be >= 1"):
        VNLeakyReLU(0)
    with pytest.raises(ValueError, match="negative_slope"):
        VNLeakyReLU(3, negative_slope=1.0)
    with pytest.raises(TypeError, match="share_direction"):
        VNLeakyReLU(3, share_direction=1)
    with pytest.raises(ValueError, match="momentum"):
        VNBatchNorm(3, momentum=2.0)
    with pytest.raises(ValueError, match="eps"):
        VNLeakyReLU(3, eps=0.0)
