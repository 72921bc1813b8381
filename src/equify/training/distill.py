"""Adaptation without labels: train a canonicalizer so that a frozen predictor keeps its own
upright predictions, and becomes invariant.

A pretrained classifier's predictions on upright images are labels for free. The canonicalizer
of an :class:`~equify.canonicalization.EquivariantModel` is trained on unlabelled upright images
with two losses: the prior of Mondal et al. (2023), which keeps upright images upright, and the
cross-entropy of the wrapped model's logits to the frozen teacher's softened probabilities
(distillation; equal to the KL divergence up to a constant). The predictor stays frozen
(weights and BatchNorm statistics), so the adapted model differs from the original only where
the canonicalizer turns an image.

Training uses :class:`~equify.training.ClassifierModule` (probability targets) and a Lightning
Trainer, without checkpoints or loggers.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from equify._state import device_of, eval_mode
from equify.training.module import ClassifierModule, is_wrapper

try:
    import lightning as L
except ImportError as err:  # pragma: no cover - train extra missing
    raise ImportError('training needs PyTorch Lightning: pip install "equify[train]"') from err

__all__ = ["distill_canonicalizer", "soft_targets"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def soft_targets(
    teacher: nn.Module, images: torch.Tensor, temperature: float = 1.0, batch_size: int = 64
) -> torch.Tensor:
    """The teacher's class probabilities ``softmax(logits / temperature)``: ``(N, classes)``.

    Args:
        teacher: ``(B, C, H, W) -> (B, classes)`` logits; evaluated in eval mode (restored).
        images: ``(N, C, H, W)`` inputs as the teacher takes them.
        temperature: softening of the probabilities (> 0).
        batch_size: images per pass (a positive int).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a non-empty (N, C, H, W) batch of images, got {got}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"expected temperature to be a float, got {type(temperature).__name__}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = device_of(teacher)
    with eval_mode(teacher):
        out = [
            torch.softmax(teacher(images[i : i + batch_size].to(device)).float() / temperature, 1)
            for i in range(0, len(images), batch_size)
        ]
    return torch.cat(out).cpu()


def distill_canonicalizer(
    model: nn.Module,
    images: torch.Tensor,
    teacher: nn.Module | None = None,
    val_images: torch.Tensor | None = None,
    *,
    epochs: int = 3,
    batch_size: int = 16,
    lr: float = 2e-3,
    prior_weight: float = 1.0,
    temperature: float = 1.0,
    seed: int = 0,
    accelerator: str = "auto",
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train ``model``'s canonicalizer on unlabelled images, its predictor frozen (in place).

    Args:
        model: an :class:`~equify.canonicalization.EquivariantModel` (any wrapper with the
            ``predictor`` / ``forward_with_result`` / ``aux_loss`` protocol) on raw images.
        images: ``(N, C, H, W)`` upright training images (raw, as ``model`` takes them).
        teacher: whose predictions are the targets; default a frozen copy of ``model.predictor``
            taken before training.
        val_images: held-out upright images; their agreement with the teacher is logged.
        epochs, batch_size, lr: the canonicalizer's training (Adam).
        prior_weight: weight of the canonicalizer's prior (``aux_loss``).
        temperature: softening of the teacher's probabilities only: the targets are
            ``softmax(teacher / T)`` and the wrapped model is trained at temperature 1 against
            them (T = 1, the default, is the KL divergence to the teacher itself).
        seed: seeds the shuffling and the canonicalizer's sampling.
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``).
        progress_bar: show Lightning's progress bar.

    Returns:
        ``{"epochs", "train": {metric: value}, "val": {...}}`` from the last epoch: the
        distillation loss, the prior, the agreement with the teacher (``acc``) and the
        canonicalizer's identity fraction. ``model`` is left in eval mode with its predictor's
        parameters frozen (``requires_grad=False``).

    Raises:
        TypeError: ``model`` is not a canonicalization wrapper.
        ValueError: bad images or settings.
    """
    if not isinstance(model, nn.Module) or not is_wrapper(model):
        raise TypeError(
            "distill_canonicalizer needs an EquivariantModel (a wrapper with predictor, "
            f"forward_with_result and aux_loss), got {type(model).__name__}"
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0 or prior_weight < 0:
        raise ValueError(f"need lr > 0 and prior_weight >= 0, got {lr}, {prior_weight}")
    if teacher is None:
        teacher = copy.deepcopy(model.predictor).eval()
    targets = soft_targets(teacher, images, temperature)
    with torch.no_grad(), eval_mode(model):
        probe = model(images[:1].to(device_of(model)))
    if probe.shape[-1] != targets.shape[1]:
        raise ValueError(
            f"the teacher predicts {targets.shape[1]} classes but the model {probe.shape[-1]}"
        )
    train = DataLoader(
        TensorDataset(images, targets),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    val = None
    if val_images is not None:
        val_targets = soft_targets(teacher, val_images, temperature)
        val = DataLoader(TensorDataset(val_images, val_targets), batch_size=batch_size)
    torch.manual_seed(seed)
    module = ClassifierModule(
        model,
        lr_model=0.0,  # the predictor is frozen: only the canonicalizer learns
        lr_canonicalizer=lr,
        prior_weight=prior_weight,
        method="distill",
        freeze_norm_stats=True,
    )
    module.seed = seed
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, train, val)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    model.eval()
    out: dict[str, Any] = {"epochs": epochs, "train": {}, "val": {}}
    for key, value in metrics.items():
        stage, _, name = key.partition("/")
        if stage in out and name and not name.endswith("_step"):
            out[stage][name.removesuffix("_epoch")] = value
    logger.info("distilled the canonicalizer for %d epochs: %s", epochs, out)
    return out
