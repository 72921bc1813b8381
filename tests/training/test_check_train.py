"""``equify train`` (a P4 CNN from scratch) and ``equify check`` (exact input sizes)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lightning")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from equify.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TRAIN = [
    "--data",
    "digits",
    "--device",
    "cpu",
    "--quiet",
    "--epochs",
    "1",
    "--set",
    "model.kwargs.channels=[4, 6, 8]",
    "--set",
    "evaluate.angles_step=90",
    "--set",
    "evaluate.invariance_images=8",
    "--set",
    "evaluate.timing_batch=4",
]


def test_train_a_p4cnn_then_check_the_run(tmp_path, capsys):
    out = tmp_path / "p4"
    assert main(["train", "--model", "p4cnn", "--size", "9", "--output", str(out), *TRAIN]) == 0
    printed = capsys.readouterr().out
    assert "p4cnn" in printed and "C4 orbit" in printed
    results = json.loads((out / "results.json").read_text())
    m = results["methods"]["p4cnn"]
    assert m["invariance_error"]["max_abs"] <= 1e-4  # 9 = 4·2 + 1: exact
    assert max(m["orbit"]["accuracy"]) - min(m["orbit"]["accuracy"]) < 1e-9
    assert (out / "pretrained.pt").is_file() and (out / "accuracy_vs_angle.png").is_file()
    # check the trained network of the run at sizes around its own
    assert (
        main(
            ["check", "--output", str(out), "--method", "pretrained", "--sizes", "7:13", "--quiet"]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "prediction agrees with the measurement at 7 of 7 sizes" in table
    report = json.loads((out / "check" / "check.json").read_text())
    exact = [v["size"] for v in report["sizes"] if v["predicted_exact"]]
    assert exact == [9, 13] and (out / "check" / "exactness.png").is_file()
    assert report["feature_layer"] == "net.features_net"  # found inside the wrapper
    assert main(["check", "--output", str(out), "--method", "canon", "--quiet"]) == 2
    assert "check one of: pretrained" in capsys.readouterr().err


def test_check_a_registered_model_and_an_adapted_one(tmp_path, capsys):
    code = main(
        [
            "check",
            "--model",
            "p4mcnn",
            "--group",
            "D4",
            "--sizes",
            "24:30",
            "--kwargs",
            '{"channels": [3, 4, 4]}',
            "--report",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "exact     exact" in out and "approx.   approx." in out
    assert "prediction agrees with the measurement at 7 of 7 sizes" in out
    run = tmp_path / "adapted"
    args = [
        "adapt",
        "--output",
        str(run),
        "--data",
        "digits",
        "--methods",
        "canon-prior",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "1",
        "--set",
        "pretrain.epochs=1",
        "--set",
        "evaluate.angles_step=90",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["check", "--output", str(run), "--method", "canon-prior", "--quiet"]) == 0
    out = capsys.readouterr().out
    # only the canonicalizer's layers matter: exact at every size around the data's 8 px
    assert "canonicalization: only the canonicalizer's layers matter" in out
    assert "at 9 of 9 sizes" in out and "approx." not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--group", "C4"], "exactly one model"),
        (["check", "--model", "p4cnn"], "--group is needed"),
        (["check", "--model", "p4cnn", "--group", "C4", "--sizes", "a:b"], "sizes like"),
        (["check", "--model", "p4cnn", "--group", "C4", "--kwargs", "[1]"], "JSON object"),
        (["check", "--model", "vgg", "--group", "C4"], "vgg"),
        (["check", "--model", "p4cnn", "--group", "C4", "--output", "x"], "--method"),
        (["check", "--checkpoint", "/nonexistent.pt", "--group", "C4"], "not found"),
        (["check", "--model", "p4cnn", "--group", "C4", "--sizes", "40:24"], "increasing"),
        (
            ["check", "--model", "p4cnn", "--group", "C4", "--kwargs", '{"in_channels": 3}'],
            "--in-channels",
        ),
        (["check", "--model", "p4cnn", "--group", "C4", "--kwargs", '{"nosuch": 3}'], "do not fit"),
    ],
)
def test_check_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
