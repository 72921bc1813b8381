"""`equify train` with a partial G-CNN: θ moves below 1 on MNIST6-180, reported per layer."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lightning")
pytest.importorskip("mlxtend")
pytest.importorskip("matplotlib")

import torch

from equify.cli import main
from equify.models import partial_gcnn
from equify.training.module import ClassifierModule, find_learned_equivariance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def test_a_short_run_on_mnist6_180_moves_theta_below_1_and_reports_it(tmp_path, capsys):
    out = tmp_path / "partial"
    argv = [
        "train",
        "--model",
        "partial_gcnn",
        "--data",
        "mnist6-180",
        "--group",
        "C4",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--output",
        str(out),
        "--set",
        "model.kwargs.samples=4",
        "--set",
        "model.kwargs.width=4",
        "--set",
        "model.kwargs.hidden=8",
        "--set",
        "model.kwargs.monotonic_weight=0.1",
        "--set",
        "data.max_train=192",
        "--set",
        "evaluate.angles_step=90",
        "--set",
        "evaluate.invariance_images=8",
        "--set",
        "evaluate.timing_batch=4",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "learned equivariance" in printed and "block2.conv2" in printed
    results = json.loads((out / "results.json").read_text())
    learned = results["learned_equivariance"]
    history = learned["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(v["theta"] == 1.0 for v in history[0]["layers"].values())  # starts full
    final = [v["theta"] for v in history[-1]["layers"].values()]
    assert min(final) < 1.0 and all(0.0 <= t <= 1.0 for t in final)
    assert set(learned["selected_model"]) == set(history[0]["layers"])
    assert learned["group"] == "SE2"
    assert (out / "learned_equivariance.png").is_file()
    assert "train/regularization" in (out / "logs").rglob("metrics.csv").__next__().read_text()


def test_history_is_kept_in_checkpoints():
    net = partial_gcnn("E2", samples=2, width=3, num_classes=2)
    module = ClassifierModule(net, lr_model=1e-3)
    assert find_learned_equivariance(module.model) is net
    module.on_fit_start()
    module.equivariance_history.append({"epoch": 1, "layers": net.equivariance_state()})
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    again = ClassifierModule(partial_gcnn("E2", samples=2, width=3, num_classes=2), lr_model=1e-3)
    again.on_load_checkpoint(ckpt)
    again.on_fit_start()  # a resumed fit keeps the history instead of restarting it
    assert [h["epoch"] for h in again.equivariance_history] == [0, 1]
    assert again.equivariance_history[0]["layers"]["lift"]["reflection_probability"] == 1.0
    # the network is held by reference, not a second time in the module's state
    assert not [k for k in module.state_dict() if k.startswith("_learned")]
    plain = ClassifierModule(torch.nn.Linear(2, 2), lr_model=1e-3)
    plain.on_fit_start()
    assert plain.equivariance_history == []
