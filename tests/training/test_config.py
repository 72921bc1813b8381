"""Configuration: defaults, YAML files, command-line overrides and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("yaml")
pytest.importorskip("lightning")

from equify.training.config import (
    DEFAULTS,
    apply_overrides,
    load_config,
    parse_override,
    save_config,
)


def test_defaults_validate_and_are_not_mutated():
    cfg = load_config()
    assert cfg == DEFAULTS
    cfg["adapt"]["group"] = "C8"
    assert DEFAULTS["adapt"]["group"] == "C4"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("adapt:\n  group: D4\n  epochs: 3\ndata:\n  name: digits\n")
    cfg = load_config(path, ["adapt.epochs=7", "adapt.methods=vanilla,canon", "data.size=9"])
    assert cfg["adapt"]["group"] == "D4"
    assert cfg["adapt"]["epochs"] == 7  # the override wins over the file
    assert cfg["adapt"]["methods"] == ["vanilla", "canon"]
    assert cfg["data"] == {**DEFAULTS["data"], "name": "digits", "size": 9}


def test_override_values_are_yaml():
    assert parse_override("adapt.prior_weight=0.5") == (["adapt", "prior_weight"], 0.5)
    assert parse_override("trainer.progress_bar=false") == (["trainer", "progress_bar"], False)
    assert parse_override("data.root=") == (["data", "root"], None)
    cfg = apply_overrides(DEFAULTS, ["model.kwargs={width: 8}"])
    assert cfg["model"]["kwargs"] == {"width": 8}


def test_saved_configuration_round_trips(tmp_path):
    cfg = load_config(None, ["adapt.group=C8", "seed=3"])
    path = save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("adapt.grup=C4", r"unknown configuration key 'adapt.grup'.*group"),
        ("nosuch=1", r"unknown configuration key 'nosuch'"),
        ("adapt=3", r"'adapt' must be a mapping"),
        ("adapt.methods=vanilla,finetune", r"unknown method 'finetune'.*canon-prior"),
        ("adapt.methods=[]", r"non-empty"),
        ("adapt.group=C4x", r"C4"),
        ("adapt.canonicalizer=magic", r"unknown canonicalizer 'magic'.*discrete"),
        ("adapt.prior=uniform", r"unknown prior 'uniform'.*identity"),
        ("adapt.norm_stats=adapt", r"unknown adapt.norm_stats 'adapt'.*frozen, update"),
        ("adapt.epochs=0", r"adapt.epochs must be a positive int"),
        ("pretrain.batch_size=0", r"pretrain.batch_size must be a positive int"),
        ("adapt.canonicalizer=continuous", r"continuous needs adapt.group SO2 or O2"),
        ("adapt.group=SO3", r"not supported for images"),
        ("adapt.epochs=1.5", r"epochs must be a positive int"),
        ("pretrain.lr=-1", r"lr must be a positive float"),
        ("adapt.prior_weight=-0.1", r"prior_weight must be >= 0"),
        ("data.val_fraction=1", r"val_fraction must be in \(0, 1\)"),
        ("seed=abc", r"seed must be an int"),
        ("model.kwargs=3", r"model.kwargs"),
    ],
)
def test_bad_configuration_names_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="key.path=value"):
        parse_override("adapt.group")
    with pytest.raises(ValueError, match="empty key"):
        parse_override("=3")
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_canonicalizer_and_group_must_fit():
    assert load_config(None, ["adapt.group=SO2"])["adapt"]["canonicalizer"] == "auto"
    load_config(None, ["adapt.group=O2", "adapt.canonicalizer=continuous"])
    load_config(None, ["adapt.group=D4", "adapt.canonicalizer=optimization"])
    with pytest.raises(ValueError, match="needs a finite group"):
        load_config(None, ["adapt.group=SO2", "adapt.canonicalizer=discrete"])
    with pytest.raises(ValueError, match="prior=data needs a finite group"):
        load_config(None, ["adapt.group=SO2", "adapt.prior=data"])


def test_model_kwargs_overrides_merge(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  kwargs:\n    width: 8\n")
    cfg = load_config(path, ["model.kwargs.depth=3", "model.kwargs.dropout=0.1"])
    assert cfg["model"]["kwargs"] == {"width": 8, "depth": 3, "dropout": 0.1}


def test_model_weights_names_files_and_conflicts(tmp_path, monkeypatch):
    cfg = load_config(overrides=["model.architecture=mobilenet_v2", "model.weights=imagenet"])
    assert cfg["model"]["weights"] == "imagenet"  # a name stays a name, not a path
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=["model.architecture=mobilenet_v2", "model.weights=mine.pth"])
    assert cfg["model"]["weights"] == str(weights)  # a file becomes an absolute path
    with pytest.raises(ValueError, match="known: imagenet"):
        load_config(overrides=["model.architecture=mobilenet_v2", "model.weights=cifar"])
    with pytest.raises(ValueError, match="known: none"):
        load_config(overrides=["model.weights=imagenet"])  # small_cnn has no ImageNet weights
    with pytest.raises(ValueError, match="give one of the two"):
        load_config(overrides=["model.weights=imagenet", f"model.checkpoint={weights}"])


def test_prior_warmup_must_leave_epochs_for_the_task():
    assert load_config(overrides=["adapt.prior_warmup_epochs=2"])["adapt"]["epochs"] == 10
    for bad in ("10", "-1", "1.5", "true", "often"):
        with pytest.raises(ValueError, match="prior_warmup_epochs"):
            load_config(overrides=[f"adapt.prior_warmup_epochs={bad}"])
    for bad in ("2", "-1"):
        with pytest.raises(ValueError, match="prior_warmup_epochs"):
            load_config(overrides=["adapt.epochs=2", f"adapt.prior_warmup_epochs={bad}"])


@pytest.mark.parametrize(
    ("overrides", "epochs"),
    [
        ([], 2),  # the default: a fifth of the 10 adaptation epochs
        (["adapt.epochs=1"], 0),  # short runs get no warm-up (and no error)
        (["adapt.epochs=4"], 0),
        (["adapt.epochs=5"], 1),
        (["adapt.epochs=12"], 2),
        (["adapt.prior_weight=0"], 0),  # nothing to warm up without the prior
        (["adapt.prior_warmup_epochs=3"], 3),
    ],
)
def test_auto_prior_warmup_is_a_fifth_of_the_epochs(overrides, epochs):
    from equify.training.methods.base import prior_warmup_epochs

    cfg = load_config(overrides=overrides)
    assert prior_warmup_epochs(cfg["adapt"]) == epochs


def test_lr_schedule_and_canonicalizer_capacity_are_checked():
    cfg = load_config()
    assert cfg["adapt"]["lr_schedule"] == "auto"
    assert cfg["adapt"]["canonicalizer_layers"] is None
    assert load_config(overrides=["adapt.lr_schedule=constant"])["adapt"]["lr_schedule"] == (
        "constant"
    )
    with pytest.raises(ValueError, match="lr_schedule 'cosine'; valid: auto, constant, onecycle"):
        load_config(overrides=["adapt.lr_schedule=cosine"])
    for key in ("canonicalizer_layers", "canonicalizer_width"):
        assert load_config(overrides=[f"adapt.{key}=4"])["adapt"][key] == 4
        for bad in ("0", "-2", "1.5", "many"):
            with pytest.raises(ValueError, match=key):
                load_config(overrides=[f"adapt.{key}={bad}"])


def test_segmentation_and_point_tasks_keep_their_measured_training_settings():
    for task in ("segmentation", "molecules", "nbody"):
        a = load_config(overrides=[f"task={task}"])["adapt"]
        assert (a["lr_schedule"], a["prior_weight"], a["prior_warmup_epochs"]) == (
            "constant",
            1.0,
            0,
        ), task


def test_a_weights_name_wins_over_a_file_of_that_name_and_paths_need_not_exist(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imagenet").write_bytes(b"")
    cfg = load_config(overrides=["model.architecture=mobilenet_v2", "model.weights=imagenet"])
    assert cfg["model"]["weights"] == "imagenet"
    # a saved run stays loadable when its weights file has moved: pretraining reports it
    cfg = load_config(overrides=["model.architecture=mobilenet_v2", "model.weights=gone/w.pth"])
    assert cfg["model"]["weights"] == "gone/w.pth"
    with pytest.raises(ValueError, match="prior_weight > 0"):
        load_config(overrides=["adapt.prior_warmup_epochs=1", "adapt.prior_weight=0"])


def test_scientific_notation_is_a_number():
    cfg = load_config(overrides=["adapt.lr_canonicalizer=1e-2", "pretrain.lr=5E-4"])
    assert cfg["adapt"]["lr_canonicalizer"] == 0.01 and cfg["pretrain"]["lr"] == 5e-4
    assert load_config(overrides=["output_dir=runs/1e5x"])["output_dir"] == "runs/1e5x"


def test_a_run_saved_before_the_new_keys_loads_as_it_was_trained(tmp_path):
    """A run's config.yaml from before adapt.lr_schedule / canonicalizer_layers existed keeps
    its constant rates and two-block score network (its weights and checkpoints fit)."""
    import yaml

    def saved(**adapt) -> Path:
        cfg = load_config(overrides=[f"adapt.{k}={v}" for k, v in adapt.items()])
        for key in ("lr_schedule", "canonicalizer_layers", "canonicalizer_width"):
            del cfg["adapt"][key]  # as an older equify wrote it
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    a = load_config(saved(group="D4"), saved_run=True)["adapt"]
    assert (a["lr_schedule"], a["canonicalizer_layers"]) == ("constant", 2)
    assert a["canonicalizer_width"] is None
    # no two-block default to restore: the optimization canonicalizer, continuous groups
    for adapt in ({"canonicalizer": "optimization"}, {"group": "SO2"}, {"group": "O2"}):
        a = load_config(saved(**adapt), saved_run=True)["adapt"]
        assert (a["lr_schedule"], a["canonicalizer_layers"]) == ("constant", None)
    # a user's own YAML file without the keys gets today's defaults
    a = load_config(saved(group="D4"))["adapt"]
    assert (a["lr_schedule"], a["canonicalizer_layers"]) == ("auto", None)
    # keys the saved run has are kept as they are
    path = tmp_path / "config.yaml"
    cfg = load_config(overrides=["adapt.lr_schedule=onecycle", "adapt.canonicalizer_layers=4"])
    path.write_text(yaml.safe_dump(cfg))
    a = load_config(path, saved_run=True)["adapt"]
    assert (a["lr_schedule"], a["canonicalizer_layers"]) == ("onecycle", 4)


def test_a_saved_3d_run_gets_no_image_network_depth(tmp_path):
    import yaml

    cfg = load_config(overrides=["data.name=nbody"])
    for key in ("lr_schedule", "canonicalizer_layers", "canonicalizer_width"):
        del cfg["adapt"][key]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    a = load_config(path, saved_run=True)["adapt"]
    assert (a["lr_schedule"], a["canonicalizer_layers"]) == ("constant", None)


def test_auto_schedule_is_one_cycle_for_canonicalization_and_constant_for_the_rest(tmp_path):
    from equify.training.methods import get_method
    from equify.training.methods.base import lr_schedule

    cfg = load_config(overrides=["data.name=digits", "adapt.epochs=1"])
    assert lr_schedule(cfg["adapt"]) == "constant"
    assert lr_schedule(cfg["adapt"], auto="onecycle") == "onecycle"
    from equify.models import SmallCNN
    from equify.training.runner import _method_model, prepare_data

    data = prepare_data(cfg)
    net = SmallCNN(in_channels=1, num_classes=10)
    expected = {
        "vanilla": "constant",
        "augment": "constant",
        "canon": "onecycle",
        "canon-prior": "onecycle",
        "equitune": "constant",
    }
    for method, schedule in expected.items():
        get_method(method)
        _, module = _method_model(method, cfg, net, data)
        assert module.lr_schedule == schedule, method
    for fixed in ("constant", "onecycle"):
        cfg_fixed = load_config(overrides=["data.name=digits", f"adapt.lr_schedule={fixed}"])
        for method in ("vanilla", "canon-prior"):
            assert _method_model(method, cfg_fixed, net, data)[1].lr_schedule == fixed
