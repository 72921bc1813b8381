"""The Lightning module that pretrains, fine-tunes or adapts a classifier.

One module serves every method: the model is either a plain predictor (pretraining, vanilla and
augmented fine-tuning) or a *wrapper* around one — an
:class:`~equify.canonicalization.EquivariantModel` (canonicalization) or a
:class:`~equify.symmetrization.Symmetrizer` — recognised by its protocol: a ``predictor``
attribute, ``forward_with_result(x) -> (logits, result)``, ``aux_loss(result)`` (the prior, the
group-contrast loss, 0) and ``result.step_metrics()`` (cheap per-batch diagnostics to log). The
module knows no method by name. A network that learns its own equivariance (a
:class:`~equify.models.PartialGCNN`) is recognised the same way, anywhere inside the model:
``regularization_loss()`` is added to the training loss and ``equivariance_state()`` (θ and the
reflection probability per layer) is logged after every epoch and kept, epoch by epoch, in
:attr:`ClassifierModule.equivariance_history` (saved in the checkpoints, so a resumed run keeps
it). Multi-GPU or multi-node training is a Trainer flag (``devices``,
``strategy="ddp"``, ``num_nodes``): wrappers are used through their explicit, stateless form
here, so they are safe under any strategy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from equify.data.rotated import RotationSet
from equify.groups import Group
from equify.training.tasks import Task, get_task

try:
    import lightning as L
except ImportError as err:  # pragma: no cover - train extra missing
    raise ImportError('training needs PyTorch Lightning: pip install "equify[train]"') from err

__all__ = [
    "ClassifierModule",
    "NonFiniteLossError",
    "Normalized",
    "find_learned_equivariance",
    "is_wrapper",
    "one_cycle_factor",
]


def one_cycle_factor(step: int, total: int, warmup: float = 0.3) -> float:
    """The one-cycle multiplier of the base learning rate at optimizer step ``step`` of
    ``total``: a cosine ramp from 1/25 to 1 over the first ``warmup`` of the steps, then a
    cosine anneal to 1/250000 at the last step (the shape of Smith's one-cycle policy, as in
    :class:`torch.optim.lr_scheduler.OneCycleLR`; momentum is not cycled).

    Steps past ``total`` (a resumed run that plans fewer steps than it took) stay at the end
    value; runs of fewer than 5 steps train at the constant base rate, where a cycle would
    spend them at almost nothing.
    """
    if total < 5:
        return 1.0
    start, end = 1 / 25, 1 / 25 / 1e4
    p = min(max(step, 0) / (total - 1), 1.0)
    if p < warmup:
        return start + (1 - start) * (1 - math.cos(math.pi * p / warmup)) / 2
    q = (p - warmup) / (1 - warmup)
    return end + (1 - end) * (1 + math.cos(math.pi * q)) / 2


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class Normalized(nn.Module):
    """``net((x - mean) / std)``: the model takes raw ``[0, 1]`` images.

    Keeping the normalisation inside the model means every transformation (rotations, the
    canonicalizer) acts on raw pixels, whose zero fill is black, as in the rotated test sets.

    Args:
        net: the classifier on normalised inputs.
        mean: per-channel means ``(C,)``.
        std: per-channel standard deviations ``(C,)``.
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` raw images -> the wrapped network's output."""
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))


def is_wrapper(model: nn.Module) -> bool:
    """True for models that wrap a predictor with the wrapper protocol (module docstring)."""
    return all(hasattr(model, a) for a in ("predictor", "forward_with_result", "aux_loss"))


def find_learned_equivariance(model: nn.Module) -> nn.Module | None:
    """The first module inside ``model`` with ``equivariance_state()`` (a partial G-CNN)."""
    for m in model.modules():
        if callable(getattr(m, "equivariance_state", None)):
            return m
    return None


class ClassifierModule(L.LightningModule):
    """Training of a predictor on its task's loss, optionally with augmentation and a prior.

    Batches are ``(images, targets)``. The task (:mod:`equify.training.tasks`) gives the loss,
    the logged score (``<stage>/acc``) and how augmentation moves the targets: for
    classification the targets are class indices ``(B,)``, or class probabilities
    ``(B, classes)`` (a teacher's, for distillation without labels: the cross-entropy to them
    is the KL divergence up to a constant), and the score is the accuracy; for segmentation
    they are label maps ``(B, H, W)``, turned with the images, and the score is the pixel
    accuracy.

    Args:
        model: a predictor, or a wrapper (see the module docstring).
        lr_model: learning rate of the predictor's parameters (0 freezes them).
        lr_canonicalizer: learning rate of the wrapper's own parameters (the canonicalizer, the
            λ network, the attention MLPs).
        prior_weight: weight of the wrapper's ``aux_loss`` (the canonicalizer's prior).
        augment: what the task's ``augment_batch`` samples one transformation per training
            input from (a RotationSet for images, the group for 3-D point sets), or None.
        method: a name for logs and errors.
        freeze_norm_stats: keep the predictor's BatchNorm layers in eval mode while training, so
            they keep the pretrained running statistics (their affine weights still train).
            Early in adaptation the canonicalized inputs are off the pretrained distribution;
            updating the statistics on them costs accuracy.
        aux_only_epochs: the first epochs train on ``prior_weight * aux_loss`` alone (a
            prior-only warm-up: the canonicalizer learns to keep upright images upright before
            the task loss, and with it the predictor, joins). Needs ``prior_weight > 0``.
        task: a :class:`~equify.training.tasks.Task` or its name (default classification).
        lr_schedule: ``"constant"`` (Adam at the given rates) or ``"onecycle"`` (every
            parameter group ramps up to its rate over the first 30% of the steps and anneals
            to ~0 by the last, stepped per batch: :func:`one_cycle_factor`).
    """

    def __init__(
        self,
        model: nn.Module,
        lr_model: float,
        lr_canonicalizer: float = 0.0,
        prior_weight: float = 0.0,
        augment: RotationSet | Group | None = None,
        method: str = "train",
        freeze_norm_stats: bool = False,
        aux_only_epochs: int = 0,
        task: Task | str = "classification",
        lr_schedule: str = "constant",
    ) -> None:
        super().__init__()
        if lr_schedule not in ("constant", "onecycle"):
            raise ValueError(
                f"lr_schedule must be one of ('constant', 'onecycle'), got {lr_schedule!r}"
            )
        self.lr_schedule = lr_schedule
        self.task = task if isinstance(task, Task) else get_task(task)
        self.model = model
        self.lr_model = float(lr_model)
        self.lr_canonicalizer = float(lr_canonicalizer)
        self.prior_weight = float(prior_weight)
        self.augment = augment
        self.method = method
        self.freeze_norm_stats = bool(freeze_norm_stats)
        #: set by the runner: reseeds the global RNG at every epoch start (dropout, augmentation,
        #: Gumbel noise), so that a resumed run continues exactly as an uninterrupted one
        self.seed: int | None = None
        self.equivariant = is_wrapper(model)
        # not a registered child module (it is inside `model` already): a plain reference
        object.__setattr__(self, "_learned", find_learned_equivariance(model))
        #: ``[{"epoch": e, "layers": {layer: {"theta": ..., ...}}}]``: epoch 0 is the start
        self.equivariance_history: list[dict] = []
        if not self.equivariant and self.prior_weight:
            raise ValueError("prior_weight needs a wrapper with an aux_loss (an EquivariantModel)")
        if isinstance(aux_only_epochs, bool) or not isinstance(aux_only_epochs, int):
            raise TypeError(f"aux_only_epochs must be an int, got {aux_only_epochs!r}")
        if aux_only_epochs < 0 or (aux_only_epochs and not self.prior_weight):
            raise ValueError(
                f"aux_only_epochs={aux_only_epochs}: a warm-up needs prior_weight > 0 and a "
                "non-negative number of epochs"
            )
        self.aux_only_epochs = aux_only_epochs
        if self.lr_model == 0:
            for p in self._predictor().parameters():
                p.requires_grad_(False)

    def _freeze_norm_layers(self) -> None:
        if self.freeze_norm_stats:
            for m in self._predictor().modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def on_train_epoch_start(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed * 1_000_003 + 7919 * self.current_epoch + self.global_rank)
        self._freeze_norm_layers()

    def _record_equivariance(self, epoch: int) -> dict[str, dict[str, float]] | None:
        if self._learned is None:
            return None
        state = self._learned.equivariance_state()
        self.equivariance_history = [h for h in self.equivariance_history if h["epoch"] < epoch]
        self.equivariance_history.append({"epoch": epoch, "layers": state})
        return state

    def on_fit_start(self) -> None:
        if not self.equivariance_history:
            self._record_equivariance(0)

    def on_train_epoch_end(self) -> None:
        state = self._record_equivariance(self.current_epoch + 1)
        for layer, values in (state or {}).items():
            for key, value in values.items():
                self.log(f"equivariance/{layer}/{key}", value, on_epoch=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["equify_equivariance_history"] = self.equivariance_history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.equivariance_history = list(checkpoint.get("equify_equivariance_history", []))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._freeze_norm_layers()  # validation may have reset the modes

    def _predictor(self) -> nn.Module:
        return self.model.predictor if self.equivariant else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if stage == "train" and self.augment is not None:
            x, y = self.task.augment_batch(x, y, self.augment)
        if self.equivariant:
            logits, result = self.model.forward_with_result(x)
            task = self.task.loss(logits, y)
            loss = task
            if stage == "train" and self.prior_weight:
                prior = self.model.aux_loss(result)
                # during the warm-up the prior alone trains (the predictor gets no gradient)
                warm = self.current_epoch < self.aux_only_epochs
                # (task * 0 keeps the predictor in the graph: DDP expects every parameter used)
                loss = (task * 0.0 if warm else task) + self.prior_weight * prior
                self.log(
                    "train/prior", prior.detach(), on_epoch=True, on_step=False, sync_dist=True
                )
            for name, value in result.step_metrics().items():
                self.log(
                    f"{stage}/{name}",
                    value,
                    on_epoch=True,
                    on_step=False,
                    prog_bar=stage == "val" and name == "identity_fraction",
                    sync_dist=True,
                )
        else:
            logits = self.model(x)
            loss = task = self.task.loss(logits, y)
        regularizer = getattr(self._learned, "regularization_loss", None)
        if stage == "train" and callable(regularizer):
            reg = regularizer()
            loss = loss + reg
            self.log(
                "train/regularization", reg.detach(), on_epoch=True, on_step=False, sync_dist=True
            )
        if stage == "train" and not math.isfinite(float(loss.detach())):
            raise NonFiniteLossError(
                f"{self.method}: the training loss became {float(loss.detach())} at epoch "
                f"{self.current_epoch}, step {self.global_step}; training stopped. The last "
                "checkpoint written before this step is intact: lower the learning rate and "
                "resume from it."
            )
        acc = self.task.score(logits, y)
        # epoch metrics are averaged over the DDP processes (val/acc chooses the best checkpoint)
        self.log(
            f"{stage}/loss", task.detach(), on_epoch=True, on_step=stage == "train", sync_dist=True
        )
        self.log(f"{stage}/acc", acc, on_epoch=True, on_step=False, prog_bar=True, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        groups = []
        predictor = [p for p in self._predictor().parameters() if p.requires_grad]
        if predictor and self.lr_model > 0:
            groups.append({"params": predictor, "lr": self.lr_model})
        if self.equivariant:
            own = {id(p) for p in self._predictor().parameters()}
            rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in own]
            if rest and self.lr_canonicalizer > 0:
                groups.append({"params": rest, "lr": self.lr_canonicalizer})
        if not groups:
            raise ValueError(f"{self.method}: nothing to train (every learning rate is 0)")
        optimizer = torch.optim.Adam(groups)
        if self.lr_schedule == "constant":
            return optimizer
        # the whole run's steps (all epochs; a resumed run restores the scheduler's position
        # from the checkpoint, and the cycle is recomputed from the steps planned now)
        steps = float(self.trainer.estimated_stepping_batches)
        if not math.isfinite(steps):
            raise ValueError(
                f"{self.method}: lr_schedule='onecycle' needs a finite number of steps "
                "(max_epochs or max_steps); use lr_schedule='constant'"
            )
        total = int(steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: one_cycle_factor(step, total)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
