"""``equify pretrain`` / ``adapt`` / ``evaluate`` as functions: data, models, training, results.

The run directory (``output_dir``) holds everything a run produces::

    config.yaml              the resolved configuration
    pretrained.pt            the stand-in pretrained predictor (or the user's, re-saved)
    checkpoints/<method>/    Lightning checkpoints: best.ckpt (by validation accuracy), last.ckpt
    models/<method>.pt       the best weights of each adapted model
    results.json, *.png      the report (see :mod:`equify.training.report`)

Checkpoints are written atomically (a temporary file renamed over the target), so an interrupted
run never leaves a corrupt one; ``resume=True`` continues each method from its ``last.ckpt`` and
skips methods that already finished.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from equify.analysis import evaluate_orbit, invariance_error, measure_cost
from equify.canonicalization import (
    CanonicalizationResult,
    ContinuousCanonicalizer,
    DataDrivenPrior,
    DiscreteCanonicalizer,
    EquivariantModel,
    OptimizationCanonicalizer,
)
from equify.data import ImageDataset, RotationSet, load_splits, stratified_split
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group
from equify.models import create_model, load_model, read_checkpoint, save_checkpoint
from equify.models.checkpoint import atomic_torch_save
from equify.training.config import save_config
from equify.training.module import ClassifierModule, Normalized

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
    "build_equivariant_model",
    "evaluate_models",
    "load_adapted",
    "prepare_data",
    "pretrained_model",
    "run_adapt",
    "run_evaluate",
    "run_pretrain",
]

logger = logging.getLogger(__name__)

_SEEDED_SOURCES = ("mnist", "digits", "mnist6-180", "mnist6-m")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes a temporary file and renames it over the target."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, Path(path))


@dataclass
class DataBundle:
    """The splits of one data set, as raw ``[0, 1]`` images (normalisation lives in the model).

    Attributes:
        name: the data set's name.
        train, val, test: ImageDatasets without normalisation attached.
        mean, std: per-channel statistics of the train split (or 0 / 1 without normalisation).
    """

    name: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def in_channels(self) -> int:
        return self.train.image_shape[0]

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
        ds = getattr(self, split)
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(ds.images, ds.labels),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=gen,
        )


def prepare_data(cfg: dict[str, Any]) -> DataBundle:
    """Load the configured data set: seeded train/val/test splits, raw images, train statistics."""
    d = cfg["data"]
    name = d["name"].strip().lower().replace("_", "-")
    splits = load_splits(
        name,
        root=d["root"],
        size=d["size"],
        normalize=bool(d["normalize"]),
        test_fraction=d["test_fraction"] if name in _SEEDED_SOURCES else None,
        seed=cfg["seed"],
    )
    train, test = splits.train, splits.test
    stats = train.normalization
    tr_idx, val_idx = stratified_split(train.labels, d["val_fraction"], seed=cfg["seed"] + 1)
    if d["max_train"] is not None:
        tr_idx = tr_idx[: d["max_train"]]
    if d["max_test"] is not None:
        test = test.subset(torch.arange(min(d["max_test"], len(test))))
    c = train.image_shape[0]
    mean = stats.mean if stats is not None else torch.zeros(c)
    std = stats.std if stats is not None else torch.ones(c)
    raw = dict(normalization=None)
    return DataBundle(
        name=name,
        train=train.subset(tr_idx).with_normalization(**raw),
        val=train.subset(val_idx).with_normalization(**raw),
        test=test.with_normalization(**raw),
        mean=torch.as_tensor(mean, dtype=torch.float32).flatten(),
        std=torch.as_tensor(std, dtype=torch.float32).flatten(),
    )


def _trainer(cfg: dict[str, Any], ckpt_dir: Path, epochs: int, name: str) -> L.Trainer:
    t = cfg["trainer"]
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val/acc",
        mode="max",
        save_last=True,
        save_top_k=1,
        enable_version_counter=False,
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
        callbacks=[checkpoint],
        plugins=[AtomicCheckpointIO()],
        logger=CSVLogger(str(ckpt_dir.parent.parent / "logs"), name=name, version=""),
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )


def _fit(
    module: ClassifierModule,
    data: DataBundle,
    cfg: dict[str, Any],
    ckpt_dir: Path,
    epochs: int,
    batch_size: int,
    resume: bool,
) -> ClassifierModule:
    """Train with Lightning, then load the best checkpoint's weights into ``module``."""
    if not resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # a fresh run never picks up another run's checkpoints
    trainer = _trainer(cfg, ckpt_dir, epochs, module.method)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        logger.info("%s: resuming from %s", module.method, ckpt_path)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    trainer.fit(
        module,
        data.loader("train", batch_size, True, cfg["seed"]),
        data.loader("val", cfg["evaluate"]["batch_size"], False, cfg["seed"]),
        ckpt_path=ckpt_path,
    )
    best = ckpt_dir / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    # "16-true" / "bf16-true" precision leaves the parameters in half precision: evaluation,
    # saved weights and later methods work in float32.
    return module.float()


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
        net = load_model(m["checkpoint"], factory=m["factory"], factory_kwargs=m["kwargs"] or None)
        return Normalized(net, data.mean, data.std)
    path = run_dir / "pretrained.pt"
    wanted = _pretrain_fingerprint(cfg, data)
    if path.is_file():
        if read_checkpoint(path).metadata.get("fingerprint") == wanted:
            logger.info("reusing the pretrained model in %s", path)
            return _load_pretrained(path)
        logger.info("%s was trained with other settings: training anew", path)
        resume = False
    run_pretrain(cfg, data=data, resume=resume)
    return _load_pretrained(path)


def _load_pretrained(path: Path) -> nn.Module:
    norm = read_checkpoint(path).metadata["normalization"]
    return Normalized(load_model(path), torch.tensor(norm["mean"]), torch.tensor(norm["std"]))


def run_pretrain(
    cfg: dict[str, Any], data: DataBundle | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train ``model.architecture`` on upright data and save ``output_dir/pretrained.pt``.

    Returns:
        ``{"path": ..., "seconds": ...}``.
    """
    run_dir = Path(cfg["output_dir"])
    data = data if data is not None else prepare_data(cfg)
    m, p = cfg["model"], cfg["pretrain"]
    kwargs = {"in_channels": data.in_channels, "num_classes": data.num_classes, **m["kwargs"]}
    torch.manual_seed(cfg["seed"])
    net = create_model(m["architecture"], **kwargs)
    module = ClassifierModule(
        Normalized(net, data.mean, data.std), lr_model=p["lr"], method="pretrain"
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
    path = save_checkpoint(
        run_dir / "pretrained.pt",
        net,
        metadata={
            "data": data.name,
            "normalization": {"mean": data.mean.tolist(), "std": data.std.tolist()},
            "pretrain": p,
            "fingerprint": _pretrain_fingerprint(cfg, data),
        },
    )
    return {"path": str(path), "seconds": seconds}


def build_equivariant_model(
    cfg: dict[str, Any], predictor: nn.Module, data: DataBundle, with_prior: bool
) -> EquivariantModel:
    """Wrap ``predictor`` with the configured canonicalizer (prior fitted on training data)."""
    a = cfg["adapt"]
    g = parse_group(a["group"])
    prior: Any = None
    if with_prior:
        prior = "geodesic" if not isinstance(g, FiniteGroup) else "identity"
        if a["prior"] == "data":
            if not isinstance(g, FiniteGroup):
                raise ValueError("adapt.prior=data needs a finite group (C<n> or D<n>)")
            loader = data.loader("train", cfg["evaluate"]["batch_size"], False, cfg["seed"])
            prior = DataDrivenPrior.estimate(predictor, loader, g, beta=a["beta"], max_batches=20)
    torch.manual_seed(cfg["seed"])
    kind = a["canonicalizer"]
    if kind == "continuous" or not isinstance(g, FiniteGroup):
        can = ContinuousCanonicalizer(g, data.in_channels, prior=prior)
    elif kind == "optimization":
        can = OptimizationCanonicalizer(g, data.in_channels, prior=prior)
    else:
        can = DiscreteCanonicalizer(g, data.in_channels, beta=a["beta"], prior=prior)
    return EquivariantModel(predictor, can)


def _method_model(
    method: str, cfg: dict[str, Any], pretrained: nn.Module, data: DataBundle
) -> tuple[nn.Module, ClassifierModule]:
    a = cfg["adapt"]
    # Loaded checkpoints come in eval mode: adaptation trains (and updates BatchNorm statistics).
    predictor = copy.deepcopy(pretrained).train()
    lr_pred = 0.0 if a["freeze_predictor"] else a["lr_predictor"]
    frozen_stats = a["norm_stats"] == "frozen"
    if method in ("vanilla", "augment"):
        augment = RotationSet.parse(_augment_rotations(a["group"])) if method == "augment" else None
        module = ClassifierModule(
            predictor,
            lr_model=a["lr_predictor"],
            augment=augment,
            method=method,
            freeze_norm_stats=frozen_stats,
        )
        return predictor, module
    model = build_equivariant_model(cfg, predictor, data, with_prior=method == "canon-prior")
    # "canon" builds its canonicalizer without a prior: prior_loss() is then only the
    # canonicalizer's own regularizer (the group-contrast loss of the optimization
    # canonicalizer, zero for the others), applied with weight 1.
    weight = a["prior_weight"] if method == "canon-prior" else 1.0
    module = ClassifierModule(
        model,
        lr_model=lr_pred,
        lr_canonicalizer=a["lr_canonicalizer"],
        prior_weight=weight,
        method=method,
        freeze_norm_stats=frozen_stats,
    )
    return model, module


def _augment_rotations(group_name: str) -> Any:
    g = parse_group(group_name)
    if isinstance(g, FiniteGroup):
        return g
    return list(range(0, 360, 15))  # SO(2)/O(2): 15° steps


def load_adapted(cfg: dict[str, Any], method: str, pretrained: nn.Module, data: DataBundle):
    """Rebuild the model of ``method`` and load ``output_dir/models/<method>.pt`` into it."""
    model, _ = _method_model(method, cfg, pretrained, data)
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
    """Upright, orbit and per-angle accuracy, invariance error, canonicalization and cost."""
    e = cfg["evaluate"]
    g = parse_group(cfg["adapt"]["group"])
    device = _device(cfg)
    orbit_set: Any = g if isinstance(g, FiniteGroup) else _augment_rotations(cfg["adapt"]["group"])
    angles = list(range(0, 360, e["angles_step"]))
    test = data.test
    n_inv = min(e["invariance_images"], len(test))
    inv_images = test.images[:n_inv].to(device)
    timing = test.images[: min(e["timing_batch"], len(test))].to(device)
    bare = bare.to(device).eval()
    out: dict[str, Any] = {}
    for name, model in models.items():
        model = model.to(device).eval()
        upright = evaluate_orbit(model, test, [0.0], e["batch_size"]).accuracy[0]
        orbit = evaluate_orbit(model, test, orbit_set, e["batch_size"])
        curve = evaluate_orbit(model, test, angles, e["batch_size"])
        entry: dict[str, Any] = {
            "upright_accuracy": upright,
            "orbit": orbit.to_dict(),
            "angles": curve.to_dict(),
        }
        inv_group: Group = g if isinstance(g, FiniteGroup) else parse_group("C4")
        entry["invariance_error"] = invariance_error(model, inv_images, inv_group)
        entry["invariance_group"] = str(inv_group)
        if isinstance(model, EquivariantModel):
            with torch.no_grad():
                results = [
                    model.forward_with_result(test.images[i : i + e["batch_size"]].to(device))[1]
                    for i in range(0, len(test), e["batch_size"])
                ]
            res = CanonicalizationResult.concatenate(results)
            summary = res.summary()
            entry["canonicalization"] = {
                "identity_fraction_upright": res.identity_fraction(),
                "reflection_fraction_upright": res.reflection_fraction(),
                "tied_samples_upright": summary["tied_samples"],
                "degenerate_samples_upright": summary["degenerate_samples"],
                "predictor_passes_per_input_upright": summary["predictor_passes_per_input"],
            }
            if isinstance(res.group, FiniteGroup):
                entry["canonicalization"]["histogram_upright"] = res.histogram().tolist()
            else:
                entry["canonicalization"]["angles_upright_deg"] = res.angles().tolist()
        entry["cost"] = measure_cost(model, bare, timing, repeats=5).to_dict()
        out[name] = entry
    return out


def run_adapt(cfg: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Pretrain (or load) the predictor, run every configured method, evaluate, save results.

    Returns:
        The results dictionary also written to ``output_dir/results.json``.
    """
    from equify.training.report import write_report

    run_dir = Path(cfg["output_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    started = time.perf_counter()
    data = prepare_data(cfg)
    pretrained = pretrained_model(cfg, data, run_dir, resume=resume)
    models: dict[str, nn.Module] = {"pretrained": pretrained}
    timings: dict[str, float] = {}
    for method in cfg["adapt"]["methods"]:
        path = run_dir / "models" / f"{method}.pt"
        if resume and path.is_file():
            logger.info("%s: already trained, loading %s", method, path)
            models[method] = load_adapted(cfg, method, pretrained, data)
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
        save_checkpoint(path, model.state_dict(), metadata={"method": method})
        models[method] = model.eval()
    evaluation = evaluate_models(models, pretrained, data, cfg)
    results = {
        "config": cfg,
        "data": {
            "name": data.name,
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
            "image_shape": list(data.train.image_shape),
        },
        "group": str(parse_group(cfg["adapt"]["group"])),
        "device": str(_device(cfg)),
        "train_seconds": timings,
        "total_seconds": time.perf_counter() - started,
        "methods": evaluation,
    }
    write_report(results, models, data, run_dir)
    return results


def run_evaluate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate the models of a finished run (``output_dir``) and rewrite its report."""
    from equify.training.report import write_report

    run_dir = Path(cfg["output_dir"])
    data = prepare_data(cfg)
    if not (run_dir / "pretrained.pt").is_file() and cfg["model"]["checkpoint"] is None:
        raise FileNotFoundError(
            f"no pretrained model in {run_dir}: run `equify adapt` (or `equify pretrain`) first"
        )
    if cfg["model"]["checkpoint"] is None:
        saved = read_checkpoint(run_dir / "pretrained.pt").metadata.get("fingerprint")
        if saved != _pretrain_fingerprint(cfg, data):
            raise ValueError(
                f"the pretrained model in {run_dir} was trained with other settings than this "
                "configuration (model, data, seed or pretraining): evaluate with the run's own "
                "config.yaml, or run `equify adapt` again"
            )
    pretrained = pretrained_model(cfg, data, run_dir)
    models: dict[str, nn.Module] = {"pretrained": pretrained}
    for method in cfg["adapt"]["methods"]:
        path = run_dir / "models" / f"{method}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no adapted model for {method!r} at {path}: run adapt first")
        models[method] = load_adapted(cfg, method, pretrained, data)
    evaluation = evaluate_models(models, pretrained, data, cfg)
    results = {
        "config": cfg,
        "data": {"name": data.name, "test": len(data.test)},
        "group": str(parse_group(cfg["adapt"]["group"])),
        "device": str(_device(cfg)),
        "methods": evaluation,
    }
    write_report(results, models, data, run_dir)
    return results
