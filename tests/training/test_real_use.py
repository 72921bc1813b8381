"""``equify`` under real use: small data, run-directory rules, loading what was adapted, options,
broken checkpoints, interruptions."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

import lightning as L

import equify
from equify.canonicalization import EquivariantModel
from equify.cli import main
from equify.models import save_checkpoint
from equify.models.cnn import SmallCNN
from equify.training import load_config, prepare_data, run_adapt
from equify.training.rundir import RunDirectoryError, RunLock, config_differences

from .helpers import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TINY = [
    "--data",
    "digits",
    "--device",
    "cpu",
    "--quiet",
    "--set",
    "pretrain.epochs=1",
    "--set",
    "adapt.epochs=1",
    "--set",
    "evaluate.angles_step=90",
    "--set",
    "evaluate.invariance_images=8",
    "--set",
    "evaluate.timing_batch=4",
]


def tiny(out: Path, *extra: str) -> dict:
    return tiny_config(
        out,
        "evaluate.angles_step=90",
        "evaluate.invariance_images=8",
        "evaluate.timing_batch=4",
        *extra,
        pretrain_epochs=1,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapted")
    run_adapt(tiny(out, "adapt.methods=[vanilla, canon-prior]", "adapt.group=D4"))
    return out


# ------------------------------------------------------------------ results are never lost
def test_a_tiny_test_split_still_gives_results_and_plots(tmp_path):
    out = tmp_path / "small"
    results = run_adapt(tiny(out, "data.max_test=5", "adapt.methods=[canon]"))
    assert results["data"]["test"] == 5
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["methods"]["canon"]["upright_accuracy"]
        == results["methods"]["canon"]["upright_accuracy"]
    )
    for plot in ("accuracy_vs_angle", "canonical_orientations", "canonicalized_examples"):
        assert (out / f"{plot}.png").is_file(), plot
    assert main(["evaluate", "--output", str(out), "--quiet"]) == 0


def test_a_failing_plot_is_a_warning_not_a_lost_run(tmp_path, monkeypatch, caplog):
    import equify.training.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(report, "_plot_examples", broken)
    out = tmp_path / "r"
    with caplog.at_level(logging.WARNING, logger="equify.training.report"):
        run_adapt(tiny(out, "adapt.methods=[canon]"))
    assert "matplotlib exploded" in caplog.text
    saved = json.loads((out / "results.json").read_text())
    assert "canonicalized_examples" not in saved["files"] and "canon" in saved["methods"]


# ------------------------------------------------------------------ run directories
def test_pretrain_refuses_to_replace_another_runs_model(run_dir, tmp_path, capsys):
    before = (run_dir / "pretrained.pt").read_bytes()
    code = main(["pretrain", "--output", str(run_dir), "--quiet", "--data", "mnist"])
    err = capsys.readouterr().err
    assert code == 2 and str(run_dir) in err and "--overwrite" in err and "data.name" in err
    assert (run_dir / "pretrained.pt").read_bytes() == before
    other = tmp_path / "digits-only"
    assert main(["pretrain", "--output", str(other), *TINY]) == 0
    assert (other / "pretrained.pt").is_file()


def test_adapt_refuses_a_directory_with_another_run_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY]) == 0
    capsys.readouterr()
    code = main(["adapt", "--output", str(out), "--methods", "vanilla", "--group", "C8", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "adapt.group: 'C4' -> 'C8'" in err and "--overwrite" in err
    assert load_config(out / "config.yaml")["adapt"]["group"] == "C4"
    # the same settings again are the same run: allowed
    assert main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY]) == 0
    args = ["adapt", "--output", str(out), "--methods", "canon", "--group", "C8", "--overwrite"]
    assert main([*args, *TINY]) == 0
    assert not (out / "models" / "vanilla.pt").exists()  # the old run's artefacts are gone
    assert load_config(out / "config.yaml")["adapt"]["group"] == "C8"


def test_a_held_lock_stops_a_second_command_and_a_dead_owner_never_blocks(tmp_path, capsys):
    out = tmp_path / "locked"
    with RunLock(out, "equify adapt (the other one)"):
        code = main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY])
        err = capsys.readouterr().err
        assert code == 2 and "in use by another equify process" in err
        assert f"pid {os.getpid()}" in err and "the other one" in err
        assert not (out / "config.yaml").exists()
    # a lock file left by a process that died (kill -9): no flock is held on it
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    sleeper.kill()
    sleeper.wait()
    lock = {
        "pid": sleeper.pid,
        "host": os.uname().nodename,
        "command": "equify adapt",
        "started": time.time(),
    }
    out.mkdir(exist_ok=True)
    (out / ".equify.lock").write_text(json.dumps(lock))
    assert main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY]) == 0
    assert not (out / ".equify.lock").exists()


def test_run_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path / "x", "first"), pytest.raises(RunDirectoryError, match="first"):
        RunLock(tmp_path / "x", "second").__enter__()
    with RunLock(tmp_path / "x", "third"):
        assert (tmp_path / "x" / ".equify.lock").is_file()
    assert not (tmp_path / "x").exists()  # created for a command that wrote nothing


def test_a_second_process_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "shared"
    cmd = [
        sys.executable,
        "-m",
        "equify.cli",
        "adapt",
        "--output",
        str(out),
        "--methods",
        "vanilla",
        *TINY,
    ]
    # the first run trains long enough to be still running when the second one starts
    slow = [*cmd, "--set", "pretrain.epochs=60"]
    first = subprocess.Popen(slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the first run holds the directory
            lock = out / ".equify.lock"
            info = lock.read_text() if lock.exists() else ""
            if f'"pid": {first.pid}' in info:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the first run never took the lock")
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert first.poll() is None, "the first run ended too early for this test"
        assert second.returncode == 2, second.stderr
        assert "in use by another equify process" in second.stderr
        assert "fieldnames" not in second.stderr
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]


def test_config_differences_ignore_where_it_runs_and_how_it_is_evaluated():
    a = tiny(Path("a"))
    b = tiny(
        Path("b"),
        "trainer.progress_bar=true",
        "evaluate.angles_step=45",
        "seed=3",
        "adapt.prior_weight=5",
    )  # 5 equals the default 5.0
    assert config_differences(a, b) == ["seed: 0 -> 3"]


def test_resume_refuses_other_settings_and_keeps_the_run(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY]) == 0
    before = (out / "config.yaml").read_text()
    capsys.readouterr()
    code = main(["adapt", "--output", str(out), "--resume", "--group", "C8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "adapt.group: 'C4' -> 'C8'" in err and "--resume alone" in err
    assert (out / "config.yaml").read_text() == before
    saved = json.loads((out / "results.json").read_text())
    assert main(["adapt", "--output", str(out), "--resume", "--quiet"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["train_seconds"] == saved["train_seconds"]  # kept, not {}


def test_overwrite_removes_only_what_equify_wrote(tmp_path):
    out = tmp_path / "proj"
    (out / "models").mkdir(parents=True)
    (out / "logs").mkdir()
    (out / "models" / "mine.pt").write_text("my own model")
    (out / "logs" / "important.log").write_text("keep me")
    assert main(["adapt", "--output", str(out), "--methods", "vanilla", *TINY]) == 0
    args = ["adapt", "--output", str(out), "--methods", "canon", "--group", "C8", "--overwrite"]
    assert main([*args, *TINY]) == 0
    assert (out / "models" / "mine.pt").read_text() == "my own model"
    assert (out / "logs" / "important.log").read_text() == "keep me"
    assert not (out / "models" / "vanilla.pt").exists()
    assert not (out / "logs" / "vanilla").exists()


def test_a_bad_checkpoint_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(
        [
            "adapt",
            "--output",
            str(out),
            "--checkpoint",
            str(tmp_path / "nosuch.pt"),
            "--quiet",
            "--data",
            "digits",
        ]
    )
    assert code == 2 and "nosuch.pt" in capsys.readouterr().err and not out.exists()


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny(tmp_path / "run", "model.checkpoint=mine.pt", "data.root=imgs")
    assert cfg["model"]["checkpoint"] == str(tmp_path / "mine.pt")
    assert cfg["data"]["root"] == str(tmp_path / "imgs")


def test_evaluate_a_subset_keeps_the_other_results(run_dir):
    before = json.loads((run_dir / "results.json").read_text())
    assert main(["evaluate", "--output", str(run_dir), "--methods", "canon-prior", "--quiet"]) == 0
    after = json.loads((run_dir / "results.json").read_text())
    assert set(after["methods"]) == set(before["methods"])
    assert after["train_seconds"] == before["train_seconds"]
    assert after["data"]["train"] == before["data"]["train"]


# ------------------------------------------------------------------ load what you adapted
def test_load_adapted_returns_the_trained_model(run_dir):
    model = equify.load_adapted(run_dir, "canon-prior")
    assert isinstance(model, EquivariantModel) and not model.training
    cfg = load_config(run_dir / "config.yaml")
    data = prepare_data(cfg)
    with torch.no_grad():
        acc = (model(data.test.images).argmax(1) == data.test.labels).double().mean()
    saved = json.loads((run_dir / "results.json").read_text())
    assert float(acc) == pytest.approx(saved["methods"]["canon-prior"]["upright_accuracy"])
    exported = equify.load_adapted(run_dir, "canon-prior", export=True)
    x = data.test.images[:16]
    torch.testing.assert_close(exported(x), model(x), atol=1e-4, rtol=1e-4)
    equify.assert_equivariant(
        model, x, equify.group("D4"), equify.ImageAction(), equify.InvariantAction()
    )
    vanilla = equify.load_adapted(run_dir, "vanilla")
    assert not isinstance(vanilla, EquivariantModel) and vanilla(x).shape == (16, 10)


def test_load_adapted_says_what_is_missing(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no equify run"):
        equify.load_adapted(tmp_path / "nothing")
    with pytest.raises(ValueError, match="did not train 'canon'"):
        equify.load_adapted(run_dir, "canon")
    with pytest.raises(ValueError, match="unknown method"):
        equify.load_adapted(run_dir, "distill")


# ------------------------------------------------------------------ options mean what they say
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["adapt", "--set", "adapt.freeze_predictor=maybe"], "adapt.freeze_predictor must be"),
        (["adapt", "--set", "data.normalize=1"], "data.normalize must be true or false"),
        (["adapt", "--set", "trainer.progress_bar=yes please"], "trainer.progress_bar"),
        (["adapt", "--methods", "vanilla,vanilla"], "more than once"),
        (["adapt", "--factory", "pkg.mod:build"], "--checkpoint"),
        (["adapt", "--set", "model.factory=pkg.mod:build"], "model.checkpoint"),
        (["adapt", "--set", "data.fit=crop"], "data.fit"),
        (["adapt", "--set", "adapt.group=[C4"], "override"),
        (["adapt", "--resume", "--overwrite"], "--overwrite"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code = main([*argv, "--output", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--epochs", "2"],
        ["pretrain", "--methods", "vanilla"],
        ["pretrain", "--group", "D4"],
        ["evaluate", "--resume"],
    ],
)
def test_each_subcommand_takes_only_its_own_options(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_pretrain_epochs_means_pretraining_epochs(tmp_path):
    out = tmp_path / "p"
    args = ["--data", "digits", "--device", "cpu", "--quiet", "--epochs", "2"]
    assert main(["pretrain", "--output", str(out), *args]) == 0
    ckpt = torch.load(out / "checkpoints" / "pretrain" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 1  # two epochs: 0 and 1


def test_malformed_yaml_names_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapt:\n  group: C4\n  methods: [vanilla, canon\n")
    code = main(["adapt", "--config", str(bad), "--output", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{bad}:4:1: invalid YAML" in err and "Traceback" not in err


def test_a_checkpoint_trained_on_other_data_is_warned_about(tmp_path, caplog):
    from equify.models import create_model
    from equify.training import pretrained_model

    net = create_model("small_cnn", in_channels=1, num_classes=10)
    path = save_checkpoint(tmp_path / "mnist.pt", net, metadata={"data": "mnist"})
    cfg = tiny(tmp_path / "r", f"model.checkpoint={path}")
    with caplog.at_level(logging.WARNING, logger="equify.training.runner"):
        pretrained_model(cfg, prepare_data(cfg), tmp_path / "r")
    assert "trained on 'mnist'" in caplog.text and "'digits'" in caplog.text


def test_mixed_sizes_folder_with_resize(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    gen = torch.Generator().manual_seed(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i, side in enumerate((12, 16, 20, 14, 18, 22)):
            arr = (torch.rand(side, side, generator=gen) * 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    cfg = tiny(tmp_path / "r", "data.name=folder", f"data.root={root}")
    with pytest.raises(ValueError, match="--fit resize"):
        prepare_data(cfg)
    cfg = tiny(
        tmp_path / "r", "data.name=folder", f"data.root={root}", "data.size=16", "data.fit=resize"
    )
    assert prepare_data(cfg).train.image_shape == (3, 16, 16)


def test_max_train_caps_the_validation_split_in_proportion(tmp_path):
    data = prepare_data(tiny(tmp_path, "data.max_train=90"))  # val_fraction 0.1
    assert len(data.train) == 90 and len(data.val) == 10
    data = prepare_data(tiny(tmp_path, "data.max_train=90", "data.max_val=25"))
    assert len(data.val) == 25
    full = prepare_data(tiny(tmp_path))
    assert len(full.val) > 100


# ------------------------------------------------------------------ checkpoints, interruptions
def test_a_truncated_last_checkpoint_falls_back_to_best_or_a_fresh_start(tmp_path, caplog):
    from equify.training import ClassifierModule
    from equify.training.runner import _fit

    cfg = tiny(tmp_path)
    data = prepare_data(cfg)
    ckpt = tmp_path / "ckpt"
    module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
    _fit(module, data, cfg, ckpt, epochs=2, batch_size=256, resume=False)
    last = ckpt / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="equify.training.runner"):
        module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
        _fit(module, data, cfg, ckpt, epochs=3, batch_size=256, resume=True)
    assert "truncated or corrupt; resuming from" in caplog.text
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["epoch"] == 2
    caplog.clear()
    (ckpt / "last.ckpt").write_bytes(b"garbage")
    (ckpt / "best.ckpt").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="equify.training.runner"):
        module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3)
        _fit(module, data, cfg, ckpt, epochs=1, batch_size=256, resume=True)
    assert "afresh" in caplog.text
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["epoch"] == 0


class _InterruptAt(L.Callback):
    def __init__(self, method: str, epoch: int) -> None:
        self.method, self.epoch = method, epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if pl_module.method == self.method and trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def _metrics(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_ctrl_c_exits_130_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    import equify.training.runner as runner

    args = ["--methods", "canon", *TINY, "--set", "adapt.epochs=3"]
    ref = tmp_path / "uninterrupted"
    assert main(["adapt", "--output", str(ref), *args]) == 0
    capsys.readouterr()

    original = runner._trainer

    def patched(*a, **k):
        trainer = original(*a, **k)
        trainer.callbacks.append(_InterruptAt("canon", 2))
        return trainer

    out = tmp_path / "interrupted"
    monkeypatch.setattr(runner, "_trainer", patched)
    code = main(["adapt", "--output", str(out), *args])
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted" in err and f"--output {out}" in err and "--resume" in err
    assert not (out / ".equify.lock").exists()
    monkeypatch.undo()
    assert main(["adapt", "--output", str(out), "--resume", "--quiet"]) == 0
    rows = _metrics(out / "logs" / "canon" / "metrics.csv")
    assert {r["epoch"] for r in rows} == {"0", "1", "2"}  # the rows before the stop are kept
    a = json.loads((ref / "results.json").read_text())["methods"]["canon"]
    b = json.loads((out / "results.json").read_text())["methods"]["canon"]
    assert a["upright_accuracy"] == b["upright_accuracy"]
    assert a["orbit"]["accuracy"] == b["orbit"]["accuracy"]


def test_continuous_groups_report_angles_and_a_near_identity_fraction(tmp_path):
    out = tmp_path / "so2"
    results = run_adapt(tiny(out, "adapt.methods=[canon, canon-prior]", "adapt.group=SO2"))
    for name in ("pretrained", "canon", "canon-prior"):  # every row keeps the real sweep
        assert results["methods"][name]["angles"]["angles"] == [0.0, 90.0, 180.0, 270.0]
    canon = results["methods"]["canon-prior"]["canonicalization"]
    assert canon["identity_tolerance_deg"] == 5.0
    assert 0.0 <= canon["identity_fraction_upright"] <= 1.0
    assert len(canon["angles_upright_deg"]) == results["data"]["test"]
    assert (out / "canonical_orientations.png").is_file()
    assert results["methods"]["pretrained"]["cost"]["time_ratio"] == 1.0


def test_a_data_error_leaves_no_config_behind(tmp_path, capsys):
    out = tmp_path / "nodata"
    code = main(
        [
            "adapt",
            "--output",
            str(out),
            "--quiet",
            "--data",
            "folder",
            "--root",
            str(tmp_path / "missing"),
        ]
    )
    assert code == 2 and not out.exists()
    code = main(
        [
            "adapt",
            "--output",
            str(out),
            "--quiet",
            "--data",
            "digits",
            "--device",
            "nosuchaccelerator",
        ]
    )
    assert code == 2 and not out.exists()
    assert "trainer settings" in capsys.readouterr().err


def test_histogram_labels_by_angle():
    from equify.training.report import element_label

    d4 = equify.group("D4")
    assert [element_label(d4, i) for i in range(8)] == [
        "0°",
        "90°",
        "180°",
        "270°",
        "flip·0°",
        "flip·90°",
        "flip·180°",
        "flip·270°",
    ]
