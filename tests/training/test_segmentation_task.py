"""The task plug-in: segmentation through the whole training floor (config, module, runner,
report, CLI), label maps mapped back exactly, and classification left as it was."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lightning")
pytest.importorskip("mlxtend")

from equify.analysis import dense_equivariance_error
from equify.cli import main
from equify.data import RotationSet
from equify.groups import group as parse_group
from equify.training import ClassifierModule, load_adapted, load_config
from equify.training.runner import prepare_data, run_pretrain
from equify.training.tasks import Task, get_task, task_names

TINY = [
    "--task",
    "segmentation",
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
    "data.kwargs.n_train=40",
    "--set",
    "data.kwargs.n_test=6",
    "--set",
    "model.kwargs.width=4",
    "--set",
    "model.kwargs.depth=2",
    "--set",
    "evaluate.angles_step=90",
    "--set",
    "evaluate.invariance_images=4",
    "--set",
    "evaluate.timing_batch=4",
]


def test_the_registry_lists_both_tasks_and_refuses_unknown_ones():
    assert task_names() == ("classification", "segmentation", "molecules", "nbody")
    assert isinstance(get_task("Segmentation"), Task)
    with pytest.raises(ValueError, match="valid: classification, segmentation, molecules, nbody"):
        get_task("detection")


def test_a_task_brings_its_defaults_and_the_user_still_wins(tmp_path):
    plain = load_config(None, [])
    assert plain["task"] == "classification" and plain["data"]["name"] == "mnist"
    assert plain["model"]["architecture"] == "small_cnn"
    seg = load_config(None, ["task=segmentation"])
    assert seg["data"]["name"] == "digit-scenes" and seg["model"]["architecture"] == "unet"
    mine = load_config(None, ["task=segmentation", "data.name=nuclei", "model.kwargs.width=8"])
    assert mine["data"]["name"] == "nuclei" and mine["model"]["kwargs"] == {"width": 8}
    path = tmp_path / "seg.yaml"
    path.write_text("task: segmentation\nadapt:\n  group: D4\n")
    from_file = load_config(path)
    assert from_file["model"]["architecture"] == "unet" and from_file["adapt"]["group"] == "D4"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task=segmentation", "data.name=mnist"], "needs a segmentation data set"),
        (["task=segmentation", "adapt.prior=data"], "supports adapt.prior=identity"),
        (["task=detection"], "unknown task"),
        (["task=segmentation", "data.kwargs=3"], "data.kwargs must be a mapping"),
    ],
)
def test_configurations_that_do_not_fit_the_task_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_augmentation_turns_the_label_maps_with_the_images():
    task = get_task("segmentation")
    labels = torch.randint(0, 3, (5, 9, 9))
    images = (labels.float() / 2).unsqueeze(1)
    rs = RotationSet.parse("D4")
    which = torch.tensor([0, 1, 3, 5, 7])
    x, y = task.augment(images, labels, rs, which)
    assert torch.equal((x[:, 0] * 2).round().long(), y)  # still the same pixel -> label map
    assert not torch.equal(y, labels)
    module = ClassifierModule(torch.nn.Conv2d(1, 3, 1), lr_model=1e-3, task="segmentation")
    assert module.task is task
    loss = module.task.loss(torch.zeros(5, 3, 9, 9, requires_grad=True), labels)
    assert loss.shape == () and torch.isclose(loss, torch.log(torch.tensor(3.0)))


def test_a_classifier_cannot_be_pretrained_as_a_segmenter(tmp_path):
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "task=segmentation",
            "model.architecture=small_cnn",
            "data.kwargs.n_train=8",
            "data.kwargs.n_test=2",
            "trainer.accelerator=cpu",
        ],
    )
    with pytest.raises(ValueError, match=r"per-pixel logits .* --model unet"):
        run_pretrain(cfg, prepare_data(cfg))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("group, size", [("C4", 33), ("D4", 32)])
def test_adapt_segmentation_end_to_end(tmp_path, capsys, group, size):
    out = tmp_path / f"seg-{group}"
    code = main(
        [
            "adapt",
            "--output",
            str(out),
            "--group",
            group,
            "--size",
            str(size),
            "--methods",
            "vanilla,augment,canon-prior,equitune",
            *TINY,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "canon-prior" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "segmentation"
    assert results["data"]["image_shape"] == [1, size, size]
    order = parse_group(group).order
    for name in ("canon-prior", "equitune"):
        m = results["methods"][name]
        # exact groups: every orbit element scores the upright mIoU, every label map maps back
        assert m["orbit"]["miou"] == [m["upright_miou"]] * order
        assert m["equivariance_error"]["label_agreement"] == 1.0
        assert m["equivariance_error"]["max_relative"] < 1e-5
    # the bare fine-tuned U-Net is not (its labels may all be background yet: the logits say it)
    assert results["methods"]["vanilla"]["equivariance_error"]["max_relative"] > 1e-3
    oracle = results["oracle"]
    assert oracle["orbit"]["miou"] == pytest.approx(
        [results["methods"]["pretrained"]["upright_miou"]] * order
    )
    assert (out / "segmentation_examples.png").is_file()
    assert (out / "accuracy_vs_angle.png").is_file()
    # the saved model, reloaded without the data: still exactly equivariant, in float64 too
    model = load_adapted(out, "canon-prior")
    images = prepare_data(load_config(out / "config.yaml")).test.images[:3]
    err = dense_equivariance_error(model, images, parse_group(group))
    assert err["label_agreement"] == 1.0 and err["max_relative"] < 1e-5
    err64 = dense_equivariance_error(model.double(), images.double(), parse_group(group))
    assert err64["max_abs"] < 1e-9
    # re-evaluation of the finished run
    assert main(["evaluate", "--output", str(out), "--quiet", "--device", "cpu"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["methods"]["canon-prior"]["upright_miou"] == pytest.approx(
        results["methods"]["canon-prior"]["upright_miou"]
    )


def test_a_user_segmenter_with_another_class_count_is_refused(tmp_path, capsys):
    from equify.models import create_model, save_checkpoint

    net = create_model("unet", in_channels=1, num_classes=3, width=4, depth=2)
    path = save_checkpoint(tmp_path / "unet3.pt", net)
    code = main(["adapt", "--output", str(tmp_path / "r"), "--checkpoint", str(path), *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert "(B, 11, 64, 64)" in err and "got (1, 3, 64, 64)" in err
    assert not (tmp_path / "r" / "config.yaml").exists()  # a failed start leaves nothing


@pytest.mark.filterwarnings("ignore")
def test_c8_runs_and_its_quarter_turns_are_exact(tmp_path):
    out = tmp_path / "seg-C8"
    args = ["adapt", "--output", str(out), "--group", "C8", "--size", "32"]
    assert main([*args, "--methods", "canon-prior", *TINY]) == 0
    m = json.loads((out / "results.json").read_text())["methods"]["canon-prior"]
    assert m["orbit"]["names"] == [f"{45 * k}°" for k in range(8)]
    quarter = [m["orbit"]["miou"][k] for k in (0, 2, 4, 6)]
    assert quarter == [m["upright_miou"]] * 4  # 45° turns interpolate; 90° ones are exact


def test_data_kwargs_reach_the_scene_loader(tmp_path):
    cfg = load_config(
        None,
        ["task=segmentation", "data.kwargs={n_train: 12, n_test: 3, per_scene: [1, 1]}"],
    )
    data = prepare_data(cfg)
    assert len(data.train) + len(data.val) == 12 and len(data.test) == 3
    for masks in (data.train.masks, data.test.masks):
        for m in masks:
            assert len(set(m.unique().tolist()) - {0}) == 1  # one digit per scene


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.kwargs.n_train=5"], "goes to the segmentation loaders"),
        (["task=segmentation", "data.fit=resize"], "data.fit does not apply"),
        (["task=segmentation", "data.test_fraction=0.5"], "data.test_fraction does not apply"),
    ],
)
def test_settings_a_task_would_ignore_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_classification_runs_are_what_they_were(tmp_path):
    from equify.training.runner import _pretrain_fingerprint

    old = tmp_path / "config.yaml"  # a run directory written before tasks existed
    old.write_text("data:\n  name: digits\nadapt:\n  group: C4\n")
    cfg = load_config(old)
    assert cfg["task"] == "classification" and cfg["model"]["architecture"] == "small_cnn"
    data = prepare_data(cfg)
    fingerprint = _pretrain_fingerprint(cfg, data)
    assert "task" not in fingerprint and "kwargs" not in fingerprint["data"]
    assert set(fingerprint) == {"architecture", "kwargs", "data", "max_train", "seed", "pretrain"}


def test_overlapping_tiles_validate_on_their_own_region():
    from types import SimpleNamespace

    from equify.training.tasks.segmentation import _validation_split

    tile = 64
    origins = torch.tensor([(r, c) for r in range(0, 449, 32) for c in range(0, 321, 32)])
    train = type("Tiles", (SimpleNamespace,), {"__len__": lambda self: len(origins)})()
    train.tile_origins, train.image_shape = origins, (1, tile, tile)
    keep, val = _validation_split(train, 0.1, seed=0)
    assert len(val) >= 0.1 * len(origins) and len(keep) > 0
    for v in val.tolist():
        vr, vc = origins[v].tolist()
        for k in keep.tolist():
            kr, kc = origins[k].tolist()
            overlap_rows = kr < vr + tile and vr < kr + tile
            overlap_cols = kc < vc + tile and vc < kc + tile
            assert not (overlap_rows and overlap_cols)  # no shared pixel


@pytest.mark.filterwarnings("ignore")
def test_pretrain_segmentation_alone_then_adapt_reuses_it(tmp_path):
    from equify.models import read_checkpoint

    out = tmp_path / "pre"
    pretrain_args = [a for a in TINY if a != "--epochs" and a != "1"]
    assert main(["pretrain", "--output", str(out), *pretrain_args]) == 0
    meta = read_checkpoint(out / "pretrained.pt").metadata
    assert meta["fingerprint"]["task"] == "segmentation"
    assert meta["fingerprint"]["architecture"] == "unet"
    stamp = (out / "pretrained.pt").stat().st_mtime_ns
    assert main(["adapt", "--output", str(out), "--methods", "canon", *TINY]) == 0
    assert (out / "pretrained.pt").stat().st_mtime_ns == stamp  # reused, not trained again
