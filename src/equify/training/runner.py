"""``equify pretrain`` / ``adapt`` / ``evaluate`` as functions: data, models, training, results.

The run directory (``output_dir``) holds everything a run produces::

    config.yaml              the resolved configuration
    pretrained.pt            the stand-in pretrained predictor (a user's checkpoint stays where
                             it is: model.checkpoint, stored as an absolute path)
    checkpoints/<method>/    Lightning checkpoints: best.ckpt (by validation accuracy), last.ckpt
    models/<method>.pt       the best weights of each adapted model
    results.json, *.png      the report (see :mod:`equify.training.report`)

Checkpoints are written atomically (a temporary file renamed over the target), so an interrupted
run never leaves a corrupt one; ``resume=True`` continues each method from its ``last.ckpt`` and
skips methods that already finished.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import json
import logging
import math
import shutil
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equify.analysis import measure_cost
from equify.groups import group as parse_group
from equify.models import (
    create_model,
    load_model,
    load_pretrained_weights,
    read_checkpoint,
    save_checkpoint,
)
from equify.models.checkpoint import atomic_torch_save
from equify.training.bundle import DataBundle, EpochShuffle
from equify.training.config import save_config
from equify.training.methods import build_equivariant_model, get_method, method_names
from equify.training.methods.base import lr_schedule
from equify.training.module import (
    ClassifierModule,
    find_learned_equivariance,
    is_wrapper,
)
from equify.training.rundir import (
    RunDirectoryError,
    RunLock,
    clear_run,
    config_differences,
    is_rank_zero,
)
from equify.training.tasks import Task, get_task, task_of

try:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.plugins.io import TorchCheckpointIO
except ImportError as err:  # pragma: no cover - train extra missing
    raise ImportError('training needs PyTorch Lightning: pip install "equify[train]"') from err

__all__ = [
    "AtomicCheckpointIO",
    "DataBundle",
    "EpochShuffle",
    "build_equivariant_model",
    "evaluate_models",
    "load_method_model",
    "prepare_data",
    "pretrained_model",
    "run_adapt",
    "run_evaluate",
    "run_pretrain",
    "run_train",
]

logger = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes a temporary file and renames it over the target."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, Path(path))


def prepare_data(cfg: dict[str, Any]) -> DataBundle:
    """The configured task's data: seeded train/val/test splits, raw images, train statistics."""
    task = task_of(cfg)
    task.check(cfg)
    return task.load_data(cfg)


def _trainer(cfg: dict[str, Any], ckpt_dir: Path, epochs: int, name: str) -> L.Trainer:
    t = cfg["trainer"]
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val/acc",
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    # Lightning's save_last only writes when the monitored metric improved: a separate
    # callback without a monitor writes last.ckpt after every epoch, so --resume continues
    # from the last finished epoch, not from the best one.
    last = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, enable_version_counter=False
    )
    return L.Trainer(
        max_epochs=epochs,
        accelerator=t["accelerator"],
        devices=t["devices"],
        strategy=t["strategy"],
        num_nodes=t["num_nodes"],
        precision=t["precision"],
        deterministic=t["deterministic"],
        enable_progress_bar=bool(t["progress_bar"]),
        enable_model_summary=False,
        callbacks=[best, last],
        plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(str(ckpt_dir.parent.parent / "logs"), name=name, version=""),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
        # EpochShuffle splits the training data by rank itself, the same way on every
        # Lightning version; every process validates on the whole validation split
        use_distributed_sampler=False,
    )


class RunInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C); the last finished epoch's checkpoint is kept."""


def _checkpoint_ok(path: Path) -> bool:
    """True when ``path`` is a complete checkpoint archive (every member's CRC checks out)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def _resume_point(ckpt_dir: Path, method: str) -> Path | None:
    """The checkpoint to resume ``method`` from: ``last.ckpt``, else ``best.ckpt``, else none."""
    last, best = ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt"
    if not last.is_file():
        return None
    if _checkpoint_ok(last):
        return last
    if best.is_file() and _checkpoint_ok(best):
        logger.warning(
            "%s: %s is truncated or corrupt; resuming from %s instead (the epochs after the "
            "best one are trained again)",
            method,
            last,
            best,
        )
        return best
    logger.warning(
        "%s: %s is truncated or corrupt and there is no usable best.ckpt: training %s afresh",
        method,
        last,
        method,
    )
    return None


def _read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _merge_metrics(path: Path, earlier: list[dict[str, str]]) -> None:
    """Put the rows of the epochs before a resume back in front of ``metrics.csv``."""
    if not earlier:
        return
    rows = earlier + _read_metrics(path)
    keys = sorted({k for row in rows for k in row})
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _fit(
    module: ClassifierModule,
    data: DataBundle,
    cfg: dict[str, Any],
    ckpt_dir: Path,
    epochs: int,
    batch_size: int,
    resume: bool,
) -> ClassifierModule:
    """Train with Lightning, then load the best checkpoint's weights into ``module``.

    ``batch_size`` is the global batch: under DDP with ``W`` processes each takes
    ``ceil(batch_size / W)`` samples per step, so a run makes the same number of optimizer steps
    with the same learning rate as on one process. Only rank 0 writes checkpoints.
    """
    rank_zero = is_rank_zero()
    if not resume and ckpt_dir.exists() and rank_zero:
        shutil.rmtree(ckpt_dir)  # a fresh run never picks up another run's checkpoints
    trainer = _trainer(cfg, ckpt_dir, epochs, module.method)
    world = max(1, int(trainer.world_size))
    per_rank = math.ceil(batch_size / world)
    if world > 1 and rank_zero:
        logger.info(
            "%s: %d processes, %d samples each per step (global batch %d)",
            module.method,
            world,
            per_rank,
            per_rank * world,
        )
    start = _resume_point(ckpt_dir, module.method) if resume else None
    metrics_file = Path(trainer.logger.log_dir) / "metrics.csv" if trainer.logger else None
    earlier: list[dict[str, str]] = []
    if start is not None:
        logger.info("%s: resuming from %s", module.method, start)
        if metrics_file is not None:
            done = torch.load(start, map_location="cpu", weights_only=False).get("epoch", -1)
            earlier = [
                r for r in _read_metrics(metrics_file) if _as_int(r.get("epoch")) <= int(done)
            ]
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    module.seed = cfg["seed"]
    try:
        trainer.fit(
            module,
            data.loader(
                "train", per_rank, True, cfg["seed"], rank=int(trainer.global_rank), world=world
            ),
            data.loader("val", cfg["evaluate"]["batch_size"], False, cfg["seed"]),
            ckpt_path=str(start) if start is not None else None,
        )
    except SystemExit as err:
        # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if trainer.interrupted:
            raise RunInterrupted(module.method) from err
        raise
    finally:
        if metrics_file is not None and rank_zero:
            _merge_metrics(metrics_file, earlier)
    if trainer.interrupted:  # pragma: no cover - an interrupt Lightning swallowed
        raise RunInterrupted(module.method)
    best = ckpt_dir / "best.ckpt"
    if best.is_file() and _checkpoint_ok(best):
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    elif best.is_file():
        logger.warning(
            "%s: %s is truncated or corrupt: keeping the weights of the last epoch",
            module.method,
            best,
        )
    # "16-true" / "bf16-true" precision leaves the parameters in half precision: evaluation,
    # saved weights and later methods work in float32.
    return module.float()


def _as_int(v: object) -> int:
    try:
        return int(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


def _pretrain_fingerprint(cfg: dict[str, Any], data: DataBundle) -> dict[str, Any]:
    """Everything that determines the stand-in pretrained model (JSON-normalised)."""
    m, d = cfg["model"], cfg["data"]
    fingerprint = {
        "architecture": m["architecture"],
        "kwargs": {"in_channels": data.in_channels, "num_classes": data.num_classes, **m["kwargs"]},
        "data": {k: d[k] for k in ("name", "size", "normalize", "test_fraction", "val_fraction")},
        "max_train": d["max_train"],
        "seed": cfg["seed"],
        "pretrain": cfg["pretrain"],
    }
    # keys added later enter only when set, so that runs made before them still match
    if d["fit"] != "pad":
        fingerprint["data"]["fit"] = d["fit"]
    if d["max_val"] is not None:
        fingerprint["max_val"] = d["max_val"]
    if m.get("weights") is not None:
        fingerprint["weights"] = m["weights"]
    if cfg.get("task", "classification") != "classification":
        fingerprint["task"] = cfg["task"]
    if d.get("kwargs"):
        fingerprint["data"]["kwargs"] = d["kwargs"]
    return json.loads(json.dumps(fingerprint, default=str))


def pretrained_model(
    cfg: dict[str, Any], data: DataBundle, run_dir: Path, resume: bool = False
) -> nn.Module:
    """The predictor to adapt, as a :class:`Normalized` model on raw images.

    A user checkpoint (``model.checkpoint``, with ``model.factory`` for foreign models) is loaded;
    otherwise ``run_dir/pretrained.pt`` is reused if it was trained with the same architecture,
    data, splits, seed and pretraining settings, or a fresh model of ``model.architecture`` is
    trained on the upright training split and saved there (``resume`` continues an interrupted
    pretraining from its last checkpoint).
    """
    m = cfg["model"]
    if m["checkpoint"] is not None:
        _warn_other_data(m["checkpoint"], data.name)
        net = load_model(m["checkpoint"], factory=m["factory"], factory_kwargs=m["kwargs"] or None)
        model = task_of(cfg).wrap_checkpoint(net, data, data.in_channels)
        task_of(cfg).check_model(model, data)  # e.g. a segmenter with another class count
        return model
    path = run_dir / "pretrained.pt"
    wanted = _pretrain_fingerprint(cfg, data)
    if path.is_file():
        if read_checkpoint(path).metadata.get("fingerprint") == wanted:
            logger.info("reusing the pretrained model in %s", path)
            return _load_pretrained(path, task_of(cfg))
        logger.info("%s was trained with other settings: training anew", path)
        resume = False
    return _pretrain(cfg, data, resume)["normalized"]


def _warn_other_data(checkpoint: str, data_name: str) -> None:
    """Warn when a checkpoint's metadata says it was trained on another data set."""
    try:
        trained_on = read_checkpoint(checkpoint).metadata.get("data")
    except (OSError, ValueError):
        return  # load_model reports unreadable files itself
    if isinstance(trained_on, str) and trained_on.lower() != data_name.lower():
        logger.warning(
            "%s was trained on %r (its metadata says so) but this run uses %r: its classes and "
            "input statistics may not match",
            checkpoint,
            trained_on,
            data_name,
        )


def _load_pretrained(path: Path, task: Task | None = None) -> nn.Module:
    """``pretrained.pt`` as the predictor, wrapped as its task wraps it (default: the task its
    fingerprint names)."""
    meta = read_checkpoint(path).metadata
    norm = meta["normalization"]
    if task is None:
        task = get_task((meta.get("fingerprint") or {}).get("task", "classification"))
    return task.wrap_predictor(
        load_model(path), torch.tensor(norm["mean"]), torch.tensor(norm["std"])
    )


def _refuse_other_pretrained(cfg: dict[str, Any], data: DataBundle, run_dir: Path) -> None:
    """Raise unless ``run_dir/pretrained.pt`` is absent or was trained with these settings."""
    path = run_dir / "pretrained.pt"
    if cfg["model"]["checkpoint"] is not None or not path.is_file():
        return
    try:
        saved = read_checkpoint(path).metadata.get("fingerprint")
    except ValueError:
        return  # unreadable: replacing it loses nothing
    wanted = _pretrain_fingerprint(cfg, data)
    if saved != wanted:
        diffs = config_differences(saved or {}, wanted)
        raise RunDirectoryError(
            f"{path} was trained with other settings ({'; '.join(diffs[:4]) or 'unknown'}): "
            f"this command would replace it. Choose another --output, or pass --overwrite to "
            f"replace the run in {run_dir}"
        )


def _refuse_other_run(
    cfg: dict[str, Any], run_dir: Path, keys: set | None, what: str, resume_hint: bool = True
) -> None:
    """Raise when ``run_dir/config.yaml`` describes a run with other settings.

    The ``trainer`` and ``evaluate`` sections may differ (:func:`config_differences`).
    """
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    from equify.training.config import load_config

    try:
        old = load_config(saved, saved_run=True)
    except (ValueError, TypeError):
        old = None
    diffs = ["its config.yaml is unreadable"] if old is None else None
    if old is not None:
        diffs = config_differences(old, cfg, keys)
    if diffs:
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        hint = (
            "continue it with its own settings (--resume alone), choose another --output, or "
            "start afresh with --overwrite"
            if resume_hint
            else "choose another --output, or pass --overwrite to replace it"
        )
        raise RunDirectoryError(
            f"{run_dir} holds another run ({'; '.join(diffs[:4])}{more}): {what} would "
            f"overwrite it. {hint}"
        )


def _pretrain_keys(cfg: dict[str, Any]) -> set[tuple[str, ...]]:
    """The flattened configuration keys that determine the pretrained model."""
    keys = {
        ("seed",),
        ("task",),
        ("model", "architecture"),
        ("model", "kwargs"),
        ("model", "weights"),
    }
    keys |= {("data", k) for k in cfg["data"] if k != "max_test"}
    keys |= {("pretrain", k) for k in cfg["pretrain"]}
    return keys


def run_pretrain(
    cfg: dict[str, Any],
    data: DataBundle | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``model.architecture`` on upright data and save ``output_dir/pretrained.pt``.

    The run directory is locked while it trains; a ``pretrained.pt`` (or a run's
    ``config.yaml``) with other settings is not replaced unless ``overwrite``.

    Returns:
        ``{"path": ..., "seconds": ..., "model": the trained network}``.
    """
    run_dir = Path(cfg["output_dir"])
    with RunLock(run_dir, "equify pretrain"):
        data = data if data is not None else prepare_data(cfg)
        if overwrite:
            if is_rank_zero():
                clear_run(run_dir, _run_methods(run_dir), keep_pretrained=False)
        else:
            _refuse_other_run(
                cfg, run_dir, _pretrain_keys(cfg), "pretraining here", resume_hint=False
            )
            _refuse_other_pretrained(cfg, data, run_dir)
        return _pretrain(cfg, data, resume)


def _run_methods(run_dir: Path) -> tuple[str, ...]:
    """Every method name whose artefacts may lie in ``run_dir`` (saved config and registry)."""
    names = set(method_names())
    saved = run_dir / "config.yaml"
    if saved.is_file():
        with contextlib.suppress(Exception):  # an unreadable config: the registry's names
            names |= set(_yaml_methods(saved))
    return tuple(sorted(names))


def _yaml_methods(path: Path) -> list[str]:
    import yaml

    loaded = yaml.safe_load(path.read_text()) or {}
    methods = (loaded.get("adapt") or {}).get("methods") or []
    if isinstance(methods, str):
        methods = methods.split(",")
    return [str(m).strip() for m in methods if str(m).strip()]


def _pretrain(cfg: dict[str, Any], data: DataBundle, resume: bool) -> dict[str, Any]:
    run_dir = Path(cfg["output_dir"])
    m, p = cfg["model"], cfg["pretrain"]
    kwargs = {"in_channels": data.in_channels, "num_classes": data.num_classes, **m["kwargs"]}
    torch.manual_seed(cfg["seed"])
    net = create_model(m["architecture"], **kwargs)
    if m.get("weights") is not None:
        loaded = load_pretrained_weights(net, m["weights"])
        logger.info(
            "initialised %s from %s (%d tensors%s)",
            m["architecture"],
            loaded["file"],
            loaded["loaded"],
            ", a new head" if loaded["new_head"] else "",
        )
    mean, std = data.mean, data.std
    if getattr(net, "normalizes_input", False):
        # the network applies its own statistics (the ImageNet ones for ImageNet weights):
        # the data's would come on top of them
        logger.info(
            "%s normalises its input itself: the data's statistics are not applied",
            m["architecture"],
        )
        mean, std = torch.zeros_like(mean), torch.ones_like(std)
    task = task_of(cfg)
    task.check_model(task.wrap_predictor(net, mean, std), data)
    module = ClassifierModule(
        task.wrap_predictor(net, mean, std), lr_model=p["lr"], method="pretrain", task=task
    )
    start = time.perf_counter()
    _fit(
        module,
        data,
        cfg,
        run_dir / "checkpoints" / "pretrain",
        p["epochs"],
        p["batch_size"],
        resume,
    )
    seconds = time.perf_counter() - start
    path = run_dir / "pretrained.pt"
    if is_rank_zero():
        save_checkpoint(
            path,
            net,
            metadata={
                "data": data.name,
                "normalization": {"mean": mean.tolist(), "std": std.tolist()},
                "pretrain": p,
                "fingerprint": _pretrain_fingerprint(cfg, data),
            },
        )
    return {
        "path": str(path),
        "seconds": seconds,
        "model": net.eval(),
        "normalized": task.wrap_predictor(net, mean, std).eval(),
        "equivariance_history": module.equivariance_history,
    }


def _method_model(
    method: str,
    cfg: dict[str, Any],
    pretrained: nn.Module,
    data: DataBundle | None,
    in_channels: int | None = None,
) -> tuple[nn.Module, ClassifierModule]:
    """The model of ``method`` (from the registry) and the module that trains it."""
    plugin = get_method(method)
    plugin.check(cfg)
    # Loaded checkpoints come in eval mode: adaptation trains (and updates BatchNorm statistics).
    predictor = copy.deepcopy(pretrained).train()
    channels = data.in_channels if data is not None else in_channels
    if channels is None:
        raise ValueError("_method_model needs data or in_channels")
    setup = plugin.build(cfg, predictor, data, channels)
    module = ClassifierModule(
        setup.model,
        lr_model=setup.lr_model,
        lr_canonicalizer=setup.lr_other,
        prior_weight=setup.aux_weight,
        augment=setup.augment,
        method=method,
        freeze_norm_stats=cfg["adapt"]["norm_stats"] == "frozen",
        aux_only_epochs=setup.aux_only_epochs,
        task=task_of(cfg),
        lr_schedule=setup.lr_schedule or lr_schedule(cfg["adapt"]),
    )
    return setup.model, module


def load_method_model(
    cfg: dict[str, Any], method: str, pretrained: nn.Module, data: DataBundle
) -> nn.Module:
    """Rebuild the model of ``method`` and load ``output_dir/models/<method>.pt`` into it."""
    model, _ = _method_model(method, cfg, pretrained, None, in_channels=data.in_channels)
    path = Path(cfg["output_dir"]) / "models" / f"{method}.pt"
    ckpt = read_checkpoint(path)
    model.load_state_dict(ckpt.state_dict)
    return model.eval()


def _device(cfg: dict[str, Any]) -> torch.device:
    acc = str(cfg["trainer"]["accelerator"])
    if acc != "cpu" and torch.accelerator.is_available():
        return torch.accelerator.current_accelerator()
    return torch.device("cpu")


def evaluate_models(
    models: dict[str, nn.Module], bare: nn.Module, data: DataBundle, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Every model's scores (the task's: upright, orbit, per angle, equivariance error), the
    methods' diagnostics (identity fraction, ties, predictor passes) and the cost."""
    e = cfg["evaluate"]
    task = task_of(cfg)
    device = _device(cfg)
    test = data.test
    timing = test.images[: min(e["timing_batch"], len(test))].to(device)
    bare = bare.to(device).eval()
    out: dict[str, Any] = {}
    for name, model in models.items():
        model = model.to(device).eval()
        entry = task.evaluate(model, data, cfg, device)
        passes = 1.0
        if is_wrapper(model):
            with torch.no_grad():
                results = [
                    model.forward_with_result(test.images[i : i + e["batch_size"]].to(device))[1]
                    for i in range(0, len(test), e["batch_size"])
                ]
            # each family's result type summarises its own batches (the runner knows none)
            section, summary = type(results[0]).evaluation_summary(results)
            entry[section] = summary
            passes = summary["predictor_passes_per_input"]
        entry["predictor_passes_per_input"] = passes
        if model is bare:  # the pretrained model against itself: 1 by definition, not noise
            cost = measure_cost(model, bare, timing, repeats=1, warmup=0)
            cost = dataclasses.replace(cost, seconds_per_image_model=cost.seconds_per_image_bare)
        else:  # interleaved with the bare model, medians of 11 (a loaded machine is noisy)
            cost = measure_cost(model, bare, timing, repeats=11, warmup=2)
        entry["cost"] = cost.to_dict()
        out[name] = entry
    return out


def evaluate_oracle_row(bare: nn.Module, data: DataBundle, cfg: dict[str, Any]) -> dict[str, Any]:
    """The oracle: the pretrained model on every orbit input turned back by its true inverse.

    Same orbit and angle sweep as :func:`evaluate_models`; the orbit inputs are turned back with
    the canonicalizers' own image action (:func:`~equify.canonicalization.input_image_action`).
    No canonicalizer can beat it on the orbit; see :func:`equify.analysis.evaluate_oracle`.
    """
    device = _device(cfg)
    return task_of(cfg).evaluate_oracle(bare.to(device).eval(), data, cfg, device)


def _zero_shot_models(
    cfg: dict[str, Any], pretrained: nn.Module, in_channels: int
) -> dict[str, nn.Module]:
    """``<method>-zs``: every method that works untrained (``Method.zero_shot``: equitune,
    equizero) around the pretrained model, when ``evaluate.zero_shot`` is set (the papers'
    zero-shot setting)."""
    if not cfg["evaluate"]["zero_shot"]:
        return {}
    out = {}
    for name in method_names():
        plugin = get_method(name)
        if plugin.zero_shot:
            setup = plugin.build(cfg, copy.deepcopy(pretrained).eval(), None, in_channels)
            out[f"{name}-zs"] = setup.model.eval()
    return out


def _check_trainer(cfg: dict[str, Any]) -> None:
    """Build (and drop) a Trainer, so that a bad accelerator or strategy fails before any file."""
    t = cfg["trainer"]
    try:
        L.Trainer(
            accelerator=t["accelerator"],
            devices=t["devices"],
            strategy=t["strategy"],
            num_nodes=t["num_nodes"],
            precision=t["precision"],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (ValueError, TypeError, RuntimeError) as err:
        raise ValueError(f"trainer settings: {err}") from err


def run_adapt(
    cfg: dict[str, Any], resume: bool = False, overwrite: bool = False
) -> dict[str, Any] | None:
    """Pretrain (or load) the predictor, run every configured method, evaluate, save results.

    The run directory is locked while the run lasts. A fresh run (no ``resume``) into a
    directory that holds a run with other settings refuses unless ``overwrite``, which clears
    that run's artefacts first.

    Returns:
        The results dictionary also written to ``output_dir/results.json``; None in the worker
        processes of a distributed run (rank > 0), which only train.
    """
    from equify.training.report import write_report

    run_dir = Path(cfg["output_dir"])
    rank_zero = is_rank_zero()
    with RunLock(run_dir, "equify adapt"):
        started = time.perf_counter()
        data = prepare_data(cfg)
        _check_trainer(cfg)
        # a user checkpoint is loaded before anything is written: a bad one leaves no trace
        user = cfg["model"]["checkpoint"] is not None
        pretrained = pretrained_model(cfg, data, run_dir) if user else None
        if rank_zero:
            if resume:
                _refuse_other_run(cfg, run_dir, None, "resuming with these settings")
            elif overwrite:
                clear_run(run_dir, _run_methods(run_dir))
            else:
                _refuse_other_run(cfg, run_dir, None, "a fresh `equify adapt` here")
                _refuse_other_pretrained(cfg, data, run_dir)
            save_config(cfg, run_dir / "config.yaml")
        if pretrained is None:
            pretrained = pretrained_model(cfg, data, run_dir, resume=resume)
        earlier = _read_results(run_dir) if resume else {}
        models: dict[str, nn.Module] = {"pretrained": pretrained}
        timings: dict[str, float] = {}
        for method in cfg["adapt"]["methods"]:
            path = run_dir / "models" / f"{method}.pt"
            if resume and path.is_file():
                logger.info("%s: already trained, loading %s", method, path)
                models[method] = load_method_model(cfg, method, pretrained, data)
                continue
            start = time.perf_counter()
            model, module = _method_model(method, cfg, pretrained, data)
            a = cfg["adapt"]
            _fit(
                module,
                data,
                cfg,
                run_dir / "checkpoints" / method,
                a["epochs"],
                a["batch_size"],
                resume,
            )
            timings[method] = time.perf_counter() - start
            if rank_zero:
                save_checkpoint(
                    path, model.state_dict(), metadata=_model_metadata(cfg, method, data)
                )
            models[method] = model.eval()
        if not rank_zero:
            return None  # rank 0 evaluates on the full test set and writes the report
        models.update(_zero_shot_models(cfg, pretrained, data.in_channels))
        evaluation = evaluate_models(models, pretrained, data, cfg)
        results = {
            "config": cfg,
            "task": task_of(cfg).name,
            "data": _data_summary(data),
            "group": str(parse_group(cfg["adapt"]["group"])),
            "device": str(_device(cfg)),
            # a resumed run keeps the training times of the methods it did not train again
            "train_seconds": {**earlier.get("train_seconds", {}), **timings},
            "total_seconds": time.perf_counter() - started,
            "methods": evaluation,
        }
        if cfg["evaluate"]["oracle"]:
            results["oracle"] = evaluate_oracle_row(pretrained, data, cfg)
        write_report(results, models, data, run_dir)
        return results


def _data_summary(data: DataBundle) -> dict[str, Any]:
    """The ``data`` section of ``results.json``: name, split sizes, image shape."""
    return {
        "name": data.name,
        "train": len(data.train),
        "val": len(data.val),
        "test": len(data.test),
        "image_shape": list(data.train.image_shape),
        # regression targets by name (the 3-D tasks)
        **(
            {"targets": list(data.train.target_names)}
            if hasattr(data.train, "target_names")
            else {}
        ),
    }


def _read_results(run_dir: Path) -> dict[str, Any]:
    """The run's ``results.json``, or ``{}`` when there is none (or it is unreadable)."""
    try:
        loaded = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _model_metadata(cfg: dict[str, Any], method: str, data: DataBundle) -> dict[str, Any]:
    """What ``equify.load_adapted`` needs to rebuild a model without loading the data."""
    return {
        "method": method,
        "task": task_of(cfg).name,
        "data": data.name,
        "in_channels": data.in_channels,
        "num_classes": data.num_classes,
        "image_shape": list(data.train.image_shape),
    }


def run_train(
    cfg: dict[str, Any], resume: bool = False, overwrite: bool = False
) -> dict[str, Any] | None:
    """Train ``model.architecture`` from scratch (e.g. a P4 CNN), evaluate it, report.

    The training is that of the stand-in pretrained model (``pretrain.*`` settings; the network
    is saved as ``pretrained.pt``, so ``equify adapt`` can reuse it); the evaluation and the
    report are those of ``equify adapt``, with the trained model as the only row. The run
    directory is locked and checked like ``adapt``'s.

    Returns:
        The results (also ``results.json``), or None in DDP worker processes.
    """
    from equify.training.report import write_report

    run_dir = Path(cfg["output_dir"])
    rank_zero = is_rank_zero()
    with RunLock(run_dir, "equify train"):
        started = time.perf_counter()
        data = prepare_data(cfg)
        _check_trainer(cfg)
        if rank_zero:
            if resume:
                _refuse_other_run(cfg, run_dir, None, "resuming with these settings")
            elif overwrite:
                clear_run(run_dir, _run_methods(run_dir), keep_pretrained=False)
            else:
                _refuse_other_run(cfg, run_dir, None, "a fresh `equify train` here")
                _refuse_other_pretrained(cfg, data, run_dir)
            save_config(cfg, run_dir / "config.yaml")
        info = _pretrain(cfg, data, resume)
        if not rank_zero:
            return None
        model = info["normalized"]
        name = cfg["model"]["architecture"]
        evaluation = evaluate_models({name: model}, model, data, cfg)
        results = {
            "config": cfg,
            "task": task_of(cfg).name,
            "data": _data_summary(data),
            "group": str(parse_group(cfg["adapt"]["group"])),
            "device": str(_device(cfg)),
            "train_seconds": {name: info["seconds"]},
            "total_seconds": time.perf_counter() - started,
            "methods": evaluation,
        }
        learned = find_learned_equivariance(info["model"])
        if learned is not None:
            results["learned_equivariance"] = {
                "selected_model": learned.equivariance_state(),
                "history": info["equivariance_history"],
                "group": getattr(learned, "group_name", None),
            }
        write_report(results, {name: model}, data, run_dir)
        return results


def run_evaluate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate the models of a finished run (``output_dir``) and rewrite its report."""
    from equify.training.report import write_report

    run_dir = Path(cfg["output_dir"])
    with RunLock(run_dir, "equify evaluate"):
        data = prepare_data(cfg)
        if not (run_dir / "pretrained.pt").is_file() and cfg["model"]["checkpoint"] is None:
            raise FileNotFoundError(
                f"no pretrained model in {run_dir}: run `equify adapt` (or `equify pretrain`) first"
            )
        if cfg["model"]["checkpoint"] is None:
            saved = read_checkpoint(run_dir / "pretrained.pt").metadata.get("fingerprint")
            if saved != _pretrain_fingerprint(cfg, data):
                raise ValueError(
                    f"the pretrained model in {run_dir} was trained with other settings than "
                    "this configuration (model, data, seed or pretraining): evaluate with the "
                    "run's own config.yaml, or run `equify adapt` again"
                )
        pretrained = pretrained_model(cfg, data, run_dir)
        models: dict[str, nn.Module] = {"pretrained": pretrained}
        for method in cfg["adapt"]["methods"]:
            path = run_dir / "models" / f"{method}.pt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"no adapted model for {method!r} at {path}: run adapt first"
                )
            models[method] = load_method_model(cfg, method, pretrained, data)
        models.update(_zero_shot_models(cfg, pretrained, data.in_channels))
        evaluation = evaluate_models(models, pretrained, data, cfg)
        # merge into the run's results: methods not evaluated now and the training record stay
        results = _read_results(run_dir)
        results.setdefault("data", {}).update(name=data.name, test=len(data.test))
        results.update(
            config=results.get("config", cfg),
            task=task_of(cfg).name,
            group=str(parse_group(cfg["adapt"]["group"])),
            device=str(_device(cfg)),
            evaluated_with=cfg["evaluate"],
        )
        results["methods"] = {**results.get("methods", {}), **evaluation}
        if cfg["evaluate"]["oracle"]:
            results["oracle"] = evaluate_oracle_row(pretrained, data, cfg)
        write_report(results, models, data, run_dir)
        return results
