"""escnn-backed canonicalization networks (optional extra ``escnn``).

These tests skip when escnn is not installed, unless ``EQUIFY_REQUIRE_ESCNN=1`` is set (CI): then
a missing escnn fails the run instead of skipping silently. The tests that check behaviour
without escnn (lazy import, helpful ImportError) always run.

What they prove about escnn's conventions (see the module docstring for the mapping):

* representation level: escnn's element ``i`` of ``C_n``/``D_n`` acts on the plane by equify's
  ``group.matrix(i)``, and escnn's regular representation is :class:`RegularAction`;
* network level: ``scores(ImageAction().apply(x, g)) == RegularAction(G).apply(scores(x), g)`` for
  every element of C4 and D4 at sizes 27, 28, 32, 33, exactly (float64 default tolerance,
  1e-10), and ``v(ImageAction().apply(x, R)) == R @ v(x)`` for the 90° turns and flips of
  SO(2)/O(2); the same checks with the rotation direction or the reflection axis swapped fail.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import ImageAction, PointAction, RegularAction, circle_mask
from equify.groups import O2, SO2, CyclicGroup, DihedralGroup, FiniteGroup, Group
from equify.testing import assert_equivariant, equivariance_error

HAVE_ESCNN = importlib.util.find_spec("escnn") is not None
REQUIRE_ESCNN = os.environ.get("EQUIFY_REQUIRE_ESCNN") == "1"
needs_escnn = pytest.mark.skipif(
    not HAVE_ESCNN and not REQUIRE_ESCNN,
    reason="escnn is not installed (set EQUIFY_REQUIRE_ESCNN=1 to make this an error)",
)

MODULE_FILE = Path(__file__).resolve().parents[2] / "src/equify/canonicalization/escnn_networks.py"
SIZES = [27, 28, 32, 33]
EXACT_IMAGE = ImageAction()
DISK_IMAGE = ImageAction(mask="circle")  # consistent at every angle for disk-masked inputs

# Approximate equivariance (non-90° angles), default networks, seed 0, float64, smooth 41x41
# images masked to the inscribed disk, ImageAction(mask="circle") (bilinear). Measured with this
# file's settings (largest |error| / largest |expected| over the tested elements): C8 0.049,
# D8 0.038, SO2 0.038 (12 random angles), O2 0.153 (12 random elements); other seeds and sizes
# give 0.02-0.3 (see the report). The plain CNNs below score 1.4-2.2 on the same check.
APPROX_RTOL = {"C8": 0.15, "D8": 0.15, "SO2": 0.3, "O2": 0.3}


def test_escnn_is_installed_when_required() -> None:
    if REQUIRE_ESCNN:
        assert HAVE_ESCNN, "EQUIFY_REQUIRE_ESCNN=1 but escnn cannot be imported (find_spec failed)"


# --------------------------------------------------------------------------------------------
# Without escnn
# --------------------------------------------------------------------------------------------


def _block_escnn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "escnn" or m.startswith("escnn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "escnn", None)  # makes `import escnn` raise ImportError


def test_module_imports_without_escnn(monkeypatch: pytest.MonkeyPatch) -> None:
    _block_escnn(monkeypatch)
    spec = importlib.util.spec_from_file_location("_escnn_networks_copy", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not import escnn
    assert "escnn" not in [m for m in sys.modules if sys.modules[m] is not None]
    assert module.escnn_available() is False
    with pytest.raises(ImportError) as err:
        module.EscnnScoreNetwork("C4", 3)
    for hint in ('pip install "equify[escnn]"', "numpy<2", "gfortran", "--no-deps escnn"):
        assert hint in str(err.value)
    with pytest.raises(ImportError, match="equify\\[escnn\\]"):
        module.EscnnVectorNetwork("SO2", 3)


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def build() -> Callable[..., nn.Module]:
    """Build (once per module) a default network; callers set dtype and mode themselves."""
    from equify.canonicalization.escnn_networks import EscnnScoreNetwork, EscnnVectorNetwork

    cache: dict[tuple, nn.Module] = {}

    def get(name: str, **kwargs: object) -> nn.Module:
        key = (name, tuple(sorted(kwargs.items())))
        if key not in cache:
            torch.manual_seed(0)
            cls = EscnnVectorNetwork if name in ("SO2", "O2") else EscnnScoreNetwork
            cache[key] = cls(name, 3, **kwargs)
        return cache[key]

    return get


def _group(name: str) -> Group:
    return {
        "C4": CyclicGroup(4),
        "D4": DihedralGroup(4),
        "C8": CyclicGroup(8),
        "D8": DihedralGroup(8),
        "SO2": SO2(),
        "O2": O2(),
    }[name]


def _grid_matrices(group: Group, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The exact grid symmetries of a continuous group: 90° turns (and flips for O2)."""
    finite = DihedralGroup(4) if group.has_reflections else CyclicGroup(4)
    return finite.matrix(finite.elements(), dtype=dtype)


def _exact_elements(group: FiniteGroup) -> torch.Tensor:
    """Indices of the elements of ``group`` that act on images exactly (90° multiples, flips)."""
    angles = group.angle(group.elements())
    quarter = torch.remainder(angles, math.pi / 2).abs() < 1e-9
    return group.elements()[quarter]


def _smooth_disk_images(batch: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 6, 6, generator=g, dtype=torch.float64)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return torch.where(circle_mask(size, size), x, 0)


class PlainScores(nn.Module):
    """An ordinary CNN with |G| outputs: not equivariant (negative control)."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, outputs, 5, padding=2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(-2, -1))


class PlainVectors(PlainScores):
    """An ordinary CNN with k 2-D vectors as output: not equivariant (negative control)."""

    def __init__(self, k: int) -> None:
        super().__init__(2 * k)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(x.shape[0], self.k, 2)


# --------------------------------------------------------------------------------------------
# Conventions at the representation level
# --------------------------------------------------------------------------------------------


@needs_escnn
@pytest.mark.parametrize("name", ["C4", "D4", "C8", "D8"])
def test_escnn_elements_act_on_the_plane_like_equify_elements(name: str) -> None:
    import numpy as np

    from equify.canonicalization.escnn_networks import require_escnn

    gspaces, _ = require_escnn()
    G = _group(name)
    gs = gspaces.flipRot2dOnR2(G.n) if G.has_reflections else gspaces.rot2dOnR2(G.n)
    escnn_elements = list(gs.fibergroup.elements)
    assert len(escnn_elements) == G.order
    for h in range(G.order):
        # escnn element h (same index!) is equify element h: rotation direction, flip axis, order
        m = torch.as_tensor(np.asarray(gs.basespace_action(escnn_elements[h])))
        torch.testing.assert_close(m, G.matrix(h), atol=1e-12, rtol=0)
    # escnn's regular representation, in escnn's slot order, is equify's RegularAction
    v = torch.randn(1, G.order, dtype=torch.float64)
    action = RegularAction(G)
    for g in range(G.order):
        rho = torch.as_tensor(np.asarray(gs.regular_repr(escnn_elements[g])))
        torch.testing.assert_close(v @ rho.T, action.apply(v, g, G), atol=1e-12, rtol=0)


@needs_escnn
def test_o2_plane_action_is_basespace_action_not_the_fiber_irrep() -> None:
    import numpy as np

    from equify.canonicalization.escnn_networks import require_escnn

    gspaces, _ = require_escnn()
    gs = gspaces.flipRot2dOnR2(-1)
    G = gs.fibergroup
    flip = G.element((1, 0.0))
    quarter = G.element((0, math.pi / 2))
    s = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # equify: torch.flip(x, (-1,))
    torch.testing.assert_close(torch.as_tensor(np.asarray(gs.basespace_action(flip))), s)
    torch.testing.assert_close(
        torch.as_tensor(np.asarray(gs.basespace_action(quarter))), CyclicGroup(4).matrix(1)
    )
    # the fiber's frequency-1 irrep mirrors the other axis: not usable as display vectors
    fiber = torch.as_tensor(np.asarray(G.irrep(1, 1)(flip)))
    assert not torch.allclose(fiber, s)
    torch.testing.assert_close(fiber, -s)
    rot = gspaces.rot2dOnR2(-1)
    theta = 0.3
    torch.testing.assert_close(
        torch.as_tensor(np.asarray(rot.basespace_action(rot.fibergroup.element(theta)))),
        SO2().rotation(torch.tensor(theta, dtype=torch.float64)),
    )


@needs_escnn
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_svd_shim_lets_escnn_pass_np_matrix() -> None:
    """escnn 1.0.11 hands np.matrix to scikit-learn's randomized_svd (QUVA-Lab/escnn#112)."""
    import numpy as np

    from equify.canonicalization.escnn_networks import require_escnn

    require_escnn()
    numerical = importlib.import_module("escnn.group._numerical")
    a = np.matrix([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])
    basis = numerical.null(a, False)  # raises TypeError with recent scikit-learn, unpatched
    assert basis.shape == (2, 1)
    np.testing.assert_allclose(np.asarray(a) @ basis, 0.0, atol=1e-12)


@needs_escnn
@pytest.mark.parametrize("name", ["C4", "D4", "C8"])
def test_score_slots_are_equify_element_order(build, name: str) -> None:
    net = build(name)
    assert net.readout.slots.tolist() == list(range(_group(name).order))


# --------------------------------------------------------------------------------------------
# Exact equivariance: C4, D4 at every size; the 90° elements of C8, D8, SO2, O2
# --------------------------------------------------------------------------------------------


@needs_escnn
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["C4", "D4"])
def test_scores_exactly_equivariant_float64(build, name: str, size: int) -> None:
    G = _group(name)
    net = build(name).double().eval()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    report = assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G))  # 1e-10 + 1e-10 rel
    assert report.max_relative_error() < 1e-13


@needs_escnn
@pytest.mark.parametrize("name", ["C4", "D4"])
def test_scores_exactly_equivariant_float32(build, name: str) -> None:
    G = _group(name)
    net = build(name).float().eval()
    for size in (27, 28):
        x = torch.randn(2, 3, size, size)
        assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G))  # float32: 1e-5 + 1e-5 rel


@needs_escnn
def test_scores_exact_in_training_mode_and_other_options(build) -> None:
    G = DihedralGroup(4)
    # batch statistics of InnerBatchNorm are shared over each field's group channels
    net = build("D4").double().train()
    x = torch.randn(3, 3, 27, 27, dtype=torch.float64)
    assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G))
    net.eval()
    # full resolution, disk mask, no batch norm
    other = build("D4", downsampling="none", mask="circle", batch_norm=False, num_layers=2)
    other = other.double().eval()
    for size in (28, 33):
        x = torch.randn(2, 3, size, size, dtype=torch.float64)
        assert_equivariant(other, x, G, EXACT_IMAGE, RegularAction(G))


@needs_escnn
@pytest.mark.parametrize("name", ["C8", pytest.param("D8", marks=pytest.mark.slow)])
def test_scores_exact_for_grid_elements_of_c8_d8(build, name: str) -> None:
    G = _group(name)
    net = build(name).double().eval()
    x = torch.randn(2, 3, 27, 27, dtype=torch.float64)
    elements = _exact_elements(G)
    assert len(elements) == G.order // 2
    assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G), elements=elements)


@needs_escnn
@pytest.mark.parametrize("size", [27, 28])
@pytest.mark.parametrize("name", ["SO2", "O2"])
def test_vectors_exactly_equivariant_for_grid_symmetries(build, name: str, size: int) -> None:
    G = _group(name)
    net = build(name).double().eval()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    v = net(x)
    assert v.shape == (2, 2 if name == "O2" else 1, 2)
    elements = _grid_matrices(G)
    report = assert_equivariant(net, x, G, EXACT_IMAGE, PointAction(), elements=elements)
    assert report.max_relative_error() < 1e-12
    net.float()
    assert_equivariant(
        net, x.float(), G, EXACT_IMAGE, PointAction(), elements=elements.float(), atol=1e-5
    )


# --------------------------------------------------------------------------------------------
# Negative tests: a plain CNN, and the escnn networks with a wrong convention, fail
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["C4", "D4"])
def test_plain_cnn_fails_the_score_check(name: str) -> None:
    G = _group(name)
    net = PlainScores(G.order).double().eval()
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G))


def test_plain_cnn_fails_the_vector_check() -> None:
    net = PlainVectors(2).double().eval()
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(net, x, O2(), EXACT_IMAGE, PointAction(), elements=_grid_matrices(O2()))


@needs_escnn
@pytest.mark.parametrize("name", ["C4", "D4"])
def test_reversed_rotation_direction_fails(build, name: str) -> None:
    """Mapping escnn's slot h to equify's h⁻¹ (clockwise rotations) is caught by the check."""
    G = _group(name)
    net = build(name).double().eval()
    inverse = G.inverse(G.elements())

    def wrong(x: torch.Tensor) -> torch.Tensor:
        return net(x)[:, inverse]

    x = torch.randn(2, 3, 27, 27, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(wrong, x, G, EXACT_IMAGE, RegularAction(G))


@needs_escnn
def test_other_reflection_axis_fails_for_d4(build) -> None:
    """Reading escnn's flips as up-down flips (axis 0 instead of π/2) is caught by the check."""
    G = DihedralGroup(4)
    net = build("D4").double().eval()
    # r^k s with s up-down equals r^(k+2) s with s left-right: slot n + k <-> n + (k + 2) % n
    swap = torch.tensor([0, 1, 2, 3, 6, 7, 4, 5])

    def wrong(x: torch.Tensor) -> torch.Tensor:
        return net(x)[:, swap]

    x = torch.randn(2, 3, 27, 27, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(wrong, x, G, EXACT_IMAGE, RegularAction(G))


@needs_escnn
def test_fiber_irrep_convention_fails_for_o2_vectors(build) -> None:
    """Vectors read in the fiber irrep's frame (y mirrored) fail for O(2)."""
    net = build("O2").double().eval()
    mirror_y = torch.tensor([1.0, -1.0], dtype=torch.float64)

    def wrong(x: torch.Tensor) -> torch.Tensor:
        return net(x) * mirror_y

    x = torch.randn(2, 3, 27, 27, dtype=torch.float64)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(
            wrong, x, O2(), EXACT_IMAGE, PointAction(), elements=_grid_matrices(O2())
        )


# --------------------------------------------------------------------------------------------
# Approximate equivariance: non-90° rotations
# --------------------------------------------------------------------------------------------


def _approx_report(fn: Callable, name: str) -> object:
    G = _group(name)
    x = _smooth_disk_images(4, 41, seed=1)
    if isinstance(G, FiniteGroup):
        return equivariance_error(fn, x, G, DISK_IMAGE, RegularAction(G))
    return equivariance_error(fn, x, G, DISK_IMAGE, PointAction(), n_samples=12)


@needs_escnn
@pytest.mark.parametrize("name", ["C8", "SO2", "O2", pytest.param("D8", marks=pytest.mark.slow)])
def test_approximately_equivariant_for_other_angles(build, name: str) -> None:
    net = build(name).double().eval()
    rtol = APPROX_RTOL[name]
    report = _approx_report(net, name)
    assert report.max_relative_error() < rtol, str(report)
    plain = PlainScores(8 if name == "C8" else 16) if name in ("C8", "D8") else None
    if plain is None:
        plain = PlainVectors(2 if name == "O2" else 1)
    torch.manual_seed(0)
    assert _approx_report(plain.double().eval(), name).max_relative_error() > 2 * rtol


# --------------------------------------------------------------------------------------------
# dtype, device, gradients, inputs
# --------------------------------------------------------------------------------------------


@needs_escnn
def test_output_follows_input_dtype_and_device(build) -> None:
    net = build("C4").float().eval()
    x64 = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    assert net(x64).dtype == torch.float64
    assert net(x64.float()).dtype == torch.float32
    assert net(x64.half()).dtype == torch.float16
    torch.testing.assert_close(net(x64), net(x64.float()).double())
    assert net(x64).device == x64.device
    vec = build("SO2").float().eval()
    assert vec(x64).dtype == torch.float64
    # float64 masters survive a round trip: float32 again gives float32 bases and exactness
    net.double().float()
    bases = [b for n, b in net.named_buffers() if n.endswith("sampled_basis")]
    assert bases and all(b.dtype == torch.float32 for b in bases)
    assert_equivariant(net, x64.float(), CyclicGroup(4), EXACT_IMAGE, RegularAction(CyclicGroup(4)))


@needs_escnn
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equivariance_and_device_mismatch(build) -> None:
    G = DihedralGroup(4)
    net = build("D4").double().eval().cuda()
    x = torch.randn(2, 3, 27, 27, dtype=torch.float64, device="cuda")
    assert net(x).device.type == "cuda"
    assert_equivariant(net, x, G, EXACT_IMAGE, RegularAction(G))
    with pytest.raises(ValueError, match="move the network"):
        net(x.cpu())
    net.cpu()


@needs_escnn
@pytest.mark.parametrize("name", ["D4", "O2"])
def test_gradients_flow_to_every_parameter_and_the_input(build, name: str) -> None:
    net = build(name).float().train()
    x = torch.randn(2, 3, 27, 27, requires_grad=True)
    x_before = x.detach().clone()
    out = net(x)
    (out**2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        p.grad = None
    torch.testing.assert_close(x.detach(), x_before, atol=0, rtol=0)  # input untouched
    net.eval()


@needs_escnn
def test_bad_arguments_raise() -> None:
    from equify.canonicalization.escnn_networks import EscnnScoreNetwork, EscnnVectorNetwork

    with pytest.raises(ValueError, match="EscnnVectorNetwork"):
        EscnnScoreNetwork(SO2(), 3)
    with pytest.raises(ValueError, match="EscnnScoreNetwork"):
        EscnnVectorNetwork(CyclicGroup(4), 3)
    with pytest.raises(ValueError, match="unknown group"):
        EscnnScoreNetwork("C4x", 3)
    with pytest.raises(TypeError, match="Group"):
        EscnnScoreNetwork(4, 3)
    with pytest.raises(TypeError, match="in_channels"):
        EscnnScoreNetwork("C4", True)
    with pytest.raises(ValueError, match="hidden_channels"):
        EscnnScoreNetwork("C4", 3, hidden_channels=0)
    with pytest.raises(ValueError, match="odd"):
        EscnnScoreNetwork("C4", 3, kernel_size=4)
    with pytest.raises(ValueError, match="downsampling"):
        EscnnScoreNetwork("C4", 3, downsampling="strided")
    with pytest.raises(ValueError, match="mask"):
        EscnnScoreNetwork("C4", 3, mask="square")
    with pytest.raises(ValueError, match="multiple of 4"):
        EscnnVectorNetwork("SO2", 3, grid_size=10)
    with pytest.raises(ValueError, match="max_frequency"):
        EscnnVectorNetwork("SO2", 3, max_frequency=0)


@needs_escnn
def test_bad_inputs_raise(build) -> None:
    net = build("C4").float().eval()
    with pytest.raises(ValueError, match="in_channels=3"):
        net(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.randn(3, 28, 28))
    with pytest.raises(TypeError, match="floating"):
        net(torch.zeros(2, 3, 28, 28, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        net([[1.0]])
    vec = build("SO2").float().eval()
    with pytest.raises(ValueError, match="in_channels=3"):
        vec(torch.randn(2, 4, 28, 28))


# --------------------------------------------------------------------------------------------
# export() and state dicts
# --------------------------------------------------------------------------------------------


@needs_escnn
@pytest.mark.parametrize("name", ["D4", "C8", "O2"])
def test_export_gives_the_same_output_in_plain_pytorch(build, name: str) -> None:
    from equify.canonicalization.escnn_networks import ExportedEscnnNetwork

    net = build(name).double().train()
    exported = net.export()
    assert net.training and not exported.training  # the source keeps its mode; the copy: eval
    net.eval()
    assert isinstance(exported, ExportedEscnnNetwork)
    assert not [m for m in exported.modules() if type(m).__module__.startswith("escnn")]
    x = torch.randn(2, 3, 27, 27, dtype=torch.float64)
    torch.testing.assert_close(exported(x), net(x), atol=1e-12, rtol=1e-12)
    G = _group(name)
    if isinstance(G, FiniteGroup):
        assert_equivariant(
            exported, x, G, EXACT_IMAGE, RegularAction(G), elements=_exact_elements(G)
        )
    else:
        assert_equivariant(exported, x, G, EXACT_IMAGE, PointAction(), elements=_grid_matrices(G))


@needs_escnn
@pytest.mark.parametrize("name", ["C4", "SO2"])
def test_copies_and_pickles_keep_the_output(build, tmp_path: Path, name: str) -> None:
    net = build(name).double().eval()
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    clone = copy.deepcopy(net)
    assert clone.readout is not net.readout and not clone.training
    torch.testing.assert_close(clone(x), net(x), atol=0, rtol=0)
    torch.save(net, tmp_path / "net.pt")  # escnn modules alone cannot be pickled
    loaded = torch.load(tmp_path / "net.pt", weights_only=False)
    assert next(loaded.parameters()).dtype == torch.float64
    torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0)
    torch.save(net.export(), tmp_path / "exported.pt")
    exported = torch.load(tmp_path / "exported.pt", weights_only=False)
    torch.testing.assert_close(exported(x), net(x), atol=1e-12, rtol=1e-12)


@needs_escnn
def test_state_dict_round_trip_in_eval_mode(build) -> None:
    """No stale escnn filter cache: loading weights into an eval-mode network takes effect."""
    from equify.canonicalization.escnn_networks import EscnnScoreNetwork

    source = build("D4").float().eval()
    keys = list(source.state_dict())
    assert not [k for k in keys if k.endswith(("sampled_basis", ".filter", "expanded_bias"))]
    torch.manual_seed(123)
    target = EscnnScoreNetwork("D4", 3).eval()
    x = torch.randn(2, 3, 28, 28)
    assert not torch.allclose(target(x), source(x))
    target.load_state_dict(source.state_dict())
    torch.testing.assert_close(target(x), source(x), atol=0, rtol=0)


# --------------------------------------------------------------------------------------------
# Interplay with the canonicalizers
# --------------------------------------------------------------------------------------------


@needs_escnn
def test_drop_in_network_for_the_discrete_canonicalizer(build) -> None:
    from equify.canonicalization import DiscreteCanonicalizer

    G = DihedralGroup(4)
    canon = DiscreteCanonicalizer(G, in_channels=3, network=build("D4").float()).eval()
    x = torch.randn(4, 3, 33, 33)
    _, base = canon.canonicalize(x)
    for g in range(G.order):
        _, moved = canon.canonicalize(EXACT_IMAGE.apply(x, g, G))
        torch.testing.assert_close(moved.elements, G.compose(g, base.elements))


@needs_escnn
def test_drop_in_network_for_the_continuous_canonicalizer(build) -> None:
    from equify.canonicalization import ContinuousCanonicalizer

    canon = ContinuousCanonicalizer(O2(), in_channels=3, network=build("O2").double()).eval()
    x = torch.randn(2, 3, 33, 33, dtype=torch.float64)
    _, base = canon.canonicalize(x)
    for m in _grid_matrices(O2()):
        _, moved = canon.canonicalize(EXACT_IMAGE.apply(x, m))
        torch.testing.assert_close(moved.elements, m @ base.elements, atol=1e-9, rtol=0)
