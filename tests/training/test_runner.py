"""End to end: pretrain, adapt with every method, evaluate, report, resume; training failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import lightning as L

from equify.canonicalization import EquivariantModel
from equify.models import save_checkpoint
from equify.models.cnn import SmallCNN
from equify.training import (
    ClassifierModule,
    NonFiniteLossError,
    Normalized,
    load_config,
    prepare_data,
    pretrained_model,
    run_adapt,
    run_evaluate,
)
from equify.training.runner import _fit

from .helpers import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(out)
    return cfg, run_adapt(cfg)


def test_adapt_runs_every_method_and_reports(finished_run):
    cfg, results = finished_run
    out = Path(cfg["output_dir"])
    methods = results["methods"]
    assert list(methods) == ["pretrained", "vanilla", "augment", "canon", "canon-prior"]
    for name, m in methods.items():
        assert 0.0 <= m["upright_accuracy"] <= 1.0, name
        assert len(m["orbit"]["accuracy"]) == 4
        assert m["angles"]["angles"] == [float(a) for a in range(0, 360, 45)]
        assert m["cost"]["params_bare"] > 0
    # the canonicalized models are exactly C4-invariant; the pretrained CNN is not
    for name in ("canon", "canon-prior"):
        assert methods[name]["invariance_error"]["max_abs"] <= 1e-5
        canon = methods[name]["canonicalization"]
        assert len(canon["histogram_upright"]) == 4
        assert canon["degenerate_samples_upright"] == 0  # finite groups have no frames
        assert 0 <= canon["tied_samples_upright"] <= sum(canon["histogram_upright"])
        assert canon["predictor_passes_per_input_upright"] >= 1.0
        orbit = methods[name]["orbit"]["accuracy"]
        assert max(orbit) - min(orbit) < 1e-9
        assert methods[name]["cost"]["extra_params_fraction"] > 0
    assert methods["pretrained"]["invariance_error"]["max_abs"] > 1e-3
    # the stand-in pretrained model learned something (10 classes: chance is 10%)
    assert methods["pretrained"]["upright_accuracy"] > 0.5
    for f in (
        "config.yaml",
        "pretrained.pt",
        "results.json",
        "accuracy_vs_angle.png",
        "canonical_orientations.png",
        "canonicalized_examples.png",
        "models/canon-prior.pt",
        "checkpoints/canon-prior/best.ckpt",
        "checkpoints/canon-prior/last.ckpt",
    ):
        assert (out / f).is_file(), f
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["canon-prior"]["upright_accuracy"] == pytest.approx(
        methods["canon-prior"]["upright_accuracy"]
    )
    assert load_config(out / "config.yaml") == cfg
    assert set(results["train_seconds"]) == {"vanilla", "augment", "canon", "canon-prior"}


def test_resume_skips_finished_methods_and_evaluate_reproduces(finished_run):
    cfg, results = finished_run
    again = run_adapt(cfg, resume=True)
    # nothing was trained again; the earlier training times are kept
    assert again["train_seconds"] == results["train_seconds"]
    evaluated = run_evaluate(cfg)
    for name in results["methods"]:
        for r in (again, evaluated):
            assert r["methods"][name]["upright_accuracy"] == pytest.approx(
                results["methods"][name]["upright_accuracy"]
            )
            assert r["methods"][name]["orbit"]["mean"] == pytest.approx(
                results["methods"][name]["orbit"]["mean"]
            )


def test_evaluate_without_a_run_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="equify adapt"):
        run_evaluate(tiny_config(tmp_path / "empty"))


class _NaNAfter(nn.Module):
    """A classifier whose output turns NaN after ``n`` training forward passes."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.net = SmallCNN(in_channels=1, num_classes=10)
        self.n = n
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.n:
                return out * float("nan")
        return out


class _StopAt(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.first_epoch: int | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.first_epoch is None:
            self.first_epoch = trainer.current_epoch
        if trainer.current_epoch == self.epoch:
            raise KeyError("simulated crash")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "adapt.batch_size=256")
    data = prepare_data(cfg)
    steps = math.ceil(len(data.train) / 256)
    model = _NaNAfter(steps + 1)  # fine for epoch 0, NaN in epoch 1
    module = ClassifierModule(model, lr_model=1e-3, method="nan-test")
    ckpt = tmp_path / "ckpt"
    with pytest.raises(
        NonFiniteLossError, match=r"nan-test: the training loss became nan at epoch 1"
    ):
        _fit(module, data, cfg, ckpt, epochs=3, batch_size=256, resume=False)
    last = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_interrupted_training_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, "adapt.batch_size=256")
    data = prepare_data(cfg)
    ckpt = tmp_path / "ckpt"

    def with_callback(cb):
        import equify.training.runner as runner

        original = runner._trainer

        def patched(*args, **kwargs):
            trainer = original(*args, **kwargs)
            trainer.callbacks.append(cb)
            return trainer

        monkeypatch.setattr(runner, "_trainer", patched)

    crash = _StopAt(epoch=1)
    with_callback(crash)
    module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
    with pytest.raises(KeyError, match="simulated crash"):
        _fit(module, data, cfg, ckpt, epochs=3, batch_size=256, resume=False)
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["epoch"] == 0
    assert not list(ckpt.glob("*.tmp*"))  # atomic writes leave no temporary files

    watch = _StopAt(epoch=99)
    monkeypatch.undo()
    with_callback(watch)
    module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
    _fit(module, data, cfg, ckpt, epochs=3, batch_size=256, resume=True)
    assert watch.first_epoch == 1  # continued after the finished epoch, not from scratch
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["epoch"] == 2


@pytest.mark.parametrize("frozen", [True, False])
def test_norm_statistics_frozen_or_updated(tmp_path, frozen):
    cfg = tiny_config(tmp_path)
    data = prepare_data(cfg)
    net = SmallCNN(in_channels=1, num_classes=10)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    before = [bn.running_mean.clone() for bn in bns]
    weights = [bn.weight.detach().clone() for bn in bns]
    module = ClassifierModule(net, lr_model=1e-2, freeze_norm_stats=frozen)
    _fit(module, data, cfg, tmp_path / "ckpt", epochs=1, batch_size=256, resume=False)
    same = [torch.equal(b, bn.running_mean) for b, bn in zip(before, bns, strict=True)]
    assert all(same) if frozen else not any(same)
    # the affine weights train either way
    assert not any(torch.equal(w, bn.weight) for w, bn in zip(weights, bns, strict=True))


def _write_factory(tmp_path: Path, monkeypatch) -> str:
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n\n"
        "def build(in_channels=1, num_classes=10):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models:build"


def test_user_checkpoint_and_factory_are_loaded(tmp_path, monkeypatch):
    factory = _write_factory(tmp_path, monkeypatch)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    cfg = tiny_config(
        tmp_path / "run", f"model.checkpoint={tmp_path / 'mine.pt'}", f"model.factory={factory}"
    )
    data = prepare_data(cfg)
    loaded = pretrained_model(cfg, data, Path(cfg["output_dir"]))
    assert isinstance(loaded, Normalized)
    assert torch.equal(loaded.net[1].weight, net[1].weight)
    x = data.test.images[:4]
    assert torch.allclose(
        loaded(x), net((x - data.mean.view(1, -1, 1, 1)) / data.std.view(1, -1, 1, 1))
    )


def test_checkpoint_of_the_wrong_architecture_names_the_keys(tmp_path, monkeypatch):
    factory = _write_factory(tmp_path, monkeypatch)
    save_checkpoint(tmp_path / "cnn.pt", SmallCNN(in_channels=1, num_classes=10))
    cfg = tiny_config(
        tmp_path / "run", f"model.checkpoint={tmp_path / 'cnn.pt'}", f"model.factory={factory}"
    )
    with pytest.raises(ValueError, match=r"1\.weight"):
        pretrained_model(cfg, prepare_data(cfg), Path(cfg["output_dir"]))


def test_canonicalized_model_is_built_from_the_configuration(tmp_path):
    from equify.training import build_equivariant_model

    for group, canon in (("D4", "discrete"), ("C4", "optimization"), ("SO2", "continuous")):
        cfg = tiny_config(tmp_path, f"adapt.group={group}", f"adapt.canonicalizer={canon}")
        data = prepare_data(cfg)
        net = Normalized(SmallCNN(in_channels=1, num_classes=10), data.mean, data.std)
        model = build_equivariant_model(cfg, net, data, with_prior=True)
        assert isinstance(model, EquivariantModel)
        assert str(model.canonicalizer.group) == group
        logits = model(data.test.images[:3])
        assert logits.shape == (3, 10)


def test_canonicalizer_view_is_configurable_and_keeps_exactness(tmp_path):
    """adapt.canonicalizer_view sets the resolution the canonicalization network sees; for D4
    a shrunk view keeps the wrapped model exactly invariant (float64, every element)."""
    from equify.actions import ImageAction, InvariantAction
    from equify.groups import group as parse_group
    from equify.testing import assert_equivariant
    from equify.training import build_equivariant_model

    cfg = tiny_config(tmp_path, "adapt.group=D4", "adapt.canonicalizer_view=5")
    data = prepare_data(cfg)
    net = Normalized(SmallCNN(in_channels=1, num_classes=10), data.mean, data.std)
    model = build_equivariant_model(cfg, net, data, with_prior=True).double().eval()
    assert model.canonicalizer.preparation.size == 5
    x = data.test.images[:4].double()
    assert model.canonicalizer.preparation(x).shape[-1] == 5  # the view is shrunk
    with torch.no_grad():
        assert_equivariant(
            model, x, parse_group("D4"), ImageAction(), InvariantAction(), atol=1e-10
        )
    with pytest.raises(ValueError, match="canonicalizer_view"):
        tiny_config(tmp_path, "adapt.canonicalizer_view=0")


@pytest.mark.parametrize(("group", "kind"), [("D4", "discrete"), ("SO2", "continuous")])
def test_canonicalizer_capacity_is_configurable_and_keeps_exactness(tmp_path, group, kind):
    """adapt.canonicalizer_layers / canonicalizer_width build the score network; the D4 model
    stays exactly invariant (float64, every element) at any depth and width."""
    from equify.actions import ImageAction, InvariantAction
    from equify.canonicalization import GroupScoreNetwork, VectorNetwork
    from equify.groups import group as parse_group
    from equify.testing import assert_equivariant
    from equify.training import build_equivariant_model

    cfg = tiny_config(
        tmp_path,
        f"adapt.group={group}",
        f"adapt.canonicalizer={kind}",
        "adapt.canonicalizer_layers=1",
        "adapt.canonicalizer_width=3",
    )
    data = prepare_data(cfg)
    net = Normalized(SmallCNN(in_channels=1, num_classes=10), data.mean, data.std)
    model = build_equivariant_model(cfg, net, data, with_prior=True).double().eval()
    scores = model.canonicalizer.network
    if isinstance(scores, VectorNetwork):
        scores = scores.scores
    assert isinstance(scores, GroupScoreNetwork)
    assert (scores.num_layers, scores.hidden_channels) == (1, 3)
    if group == "D4":
        with torch.no_grad():
            assert_equivariant(
                model,
                data.test.images[:4].double(),
                parse_group("D4"),
                ImageAction(),
                InvariantAction(),
                atol=1e-10,
            )
    plain = tiny_config(tmp_path, f"adapt.group={group}")
    default = build_equivariant_model(plain, net, data, with_prior=True)
    expected = 3 if group == "D4" else 2  # exact groups get a third block by default
    got = default.canonicalizer.network
    assert (got.scores if isinstance(got, VectorNetwork) else got).num_layers == expected


def test_a_capacity_without_a_score_network_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="optimization canonicalizer has none"):
        tiny_config(tmp_path, "adapt.canonicalizer=optimization", "adapt.canonicalizer_layers=3")
    with pytest.raises(ValueError, match="vector-neuron network"):
        load_config(overrides=["data.name=nbody", "adapt.canonicalizer_width=4"])
    # the tasks' own defaults never trip it
    for task in ("segmentation", "classification"):
        load_config(overrides=[f"task={task}", "adapt.canonicalizer=optimization"])


def test_pretrained_model_is_reused_only_for_the_same_settings(tmp_path):
    cfg = tiny_config(tmp_path, "pretrain.epochs=1")
    data = prepare_data(cfg)
    first = pretrained_model(cfg, data, tmp_path)
    stamp = (tmp_path / "pretrained.pt").stat().st_mtime_ns
    again = pretrained_model(cfg, data, tmp_path)
    assert (tmp_path / "pretrained.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    assert torch.equal(first.net.head[2].weight, again.net.head[2].weight)
    other = tiny_config(tmp_path, "pretrain.epochs=1", "seed=5")
    retrained = pretrained_model(other, prepare_data(other), tmp_path)
    assert not torch.equal(first.net.head[2].weight, retrained.net.head[2].weight)
    # evaluating a run with settings its pretrained model was not trained with is refused
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match="other settings"):
        run_evaluate(cfg)


def test_half_precision_training_leaves_float32_weights(tmp_path):
    cfg = tiny_config(tmp_path, "trainer.precision=bf16-true")
    data = prepare_data(cfg)
    module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
    _fit(module, data, cfg, tmp_path / "ckpt", epochs=1, batch_size=256, resume=False)
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_report_notes_tied_and_degenerate_inputs():
    from equify.training import format_table

    row = {
        "upright_accuracy": 0.9,
        "orbit": {"mean": 0.9, "worst": 0.9},
        "angles": {"mean": 0.8},
        "invariance_error": {"max_abs": 0.0},
        "cost": {"extra_params_fraction": 0.01, "time_ratio": 1.1},
    }
    tied = dict(
        row,
        canonicalization={
            "identity_fraction_upright": 0.9,
            "tied_samples_upright": 3,
            "degenerate_samples_upright": 1,
            "predictor_passes_per_input_upright": 1.025,
        },
    )
    table = format_table({"group": "SO2", "methods": {"pretrained": row, "canon": tied}})
    assert (
        "canon: 3 upright test input(s) with tied canonical elements (1 with a degenerate" in table
    )
    assert "1.025 predictor passes per input" in table
    assert "pretrained:" not in table


@pytest.mark.filterwarnings("ignore")
def test_pretraining_starts_from_a_weights_file(tmp_path):
    """model.weights with a file (no wheel needed): the pretrained step starts from it, a model
    that normalises its own input gets the raw data, and other weights mean another model."""
    from equify.models import create_model, read_checkpoint

    torch.manual_seed(3)
    source = create_model("mobilenet_v2", num_classes=10, in_channels=1)
    weights = tmp_path / "start.pt"
    torch.save(source.state_dict(), weights)
    run = tmp_path / "run"
    cfg = tiny_config(
        run,
        "model.architecture=mobilenet_v2",
        f"model.weights={weights}",
        "data.size=16",
        "data.fit=resize",
        "pretrain.lr=0.000000000001",  # one epoch that barely moves the weights
        pretrain_epochs=1,
    )
    data = prepare_data(cfg)
    model = pretrained_model(cfg, data, run)
    torch.testing.assert_close(model.net.features[0][0].weight, source.features[0][0].weight)
    meta = read_checkpoint(run / "pretrained.pt").metadata
    assert meta["normalization"] == {"mean": [0.0], "std": [1.0]}  # ImageNet stats are inside
    assert meta["fingerprint"]["weights"] == str(weights)
    other = tmp_path / "other.pt"
    torch.save(create_model("mobilenet_v2", num_classes=10, in_channels=1).state_dict(), other)
    cfg2 = {**cfg, "model": {**cfg["model"], "weights": str(other)}}
    again = pretrained_model(cfg2, data, run)  # other weights: trained anew, not reused
    assert not torch.equal(again.net.features[0][0].weight, model.net.features[0][0].weight)
    with pytest.raises(ValueError, match="neither a known name"):
        pretrained_model({**cfg, "model": {**cfg["model"], "weights": "/no/such.pt"}}, data, run)
