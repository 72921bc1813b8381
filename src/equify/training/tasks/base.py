"""The :class:`Task` plug-in: what a run predicts, and how it is trained, measured and reported.

A task says which data it needs (a :class:`~equify.training.bundle.DataBundle` of its own
targets), how the group acts on the predictor's output (class logits are invariant, dense maps
move with the image), the loss and the per-batch score the training loop logs (``val/acc``
chooses the best checkpoint), how a transformation of the training images carries over to their
targets (augmentation), and what the report measures and draws. The runner, the Lightning
module and the methods look tasks up by name (:func:`get_task`) and know none of them; adding
one is adding a module with a registered subclass and its tests.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from equify._state import device_of, eval_mode
from equify.actions import Action
from equify.data.rotated import RotationSet
from equify.groups import FiniteGroup
from equify.groups import group as parse_group

__all__ = [
    "CONSTANT_RATE_ADAPT",
    "Task",
    "get_task",
    "orbit_rotations",
    "pct",
    "register_task",
    "task_for_data",
    "task_names",
    "task_of",
    "unregister_task",
]

_REGISTRY: dict[str, Task] = {}

#: ``adapt`` settings of the image-classification defaults before the canonicalizer ablation
#: (``benchmarks/upright_gap.py``): Adam at constant rates, prior weight 1, no prior-only
#: warm-up. The segmentation and 3-D tasks keep them in their own defaults, which their
#: benchmarks were measured with (the ablation measured image classification only).
CONSTANT_RATE_ADAPT: dict[str, Any] = {
    "lr_schedule": "constant",
    "prior_weight": 1.0,
    "prior_warmup_epochs": 0,
}


def pct(v: float | None) -> str:
    """A score in % for the tables, six wide; ``-`` for a missing or NaN score."""
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"


def orbit_rotations(group_name: str) -> Any:
    """The transformations of the orbit test set and of augmentation: the finite group, or
    15° steps for SO(2) / O(2)."""
    g = parse_group(group_name)
    return g if isinstance(g, FiniteGroup) else list(range(0, 360, 15))


class Task(ABC):
    """One kind of prediction (a registered singleton per name)."""

    #: the name in the configuration (``task``) and on the command line (``--task``)
    name: ClassVar[str]
    #: a one-line description for ``--help`` and the README
    summary: ClassVar[str]
    #: configuration values that differ from the global defaults for this task (a nested
    #: mapping merged over :data:`~equify.training.config.DEFAULTS` before the YAML file and
    #: the overrides), e.g. the data set and the architecture
    defaults: ClassVar[dict[str, Any]] = {}
    #: the headline score's name in tables and plots
    metric: ClassVar[str] = "accuracy"
    #: position in listings
    order: ClassVar[int] = 100
    #: methods this task cannot run (with the reason), checked with the configuration
    unsupported_methods: ClassVar[dict[str, str]] = {}
    #: True for tasks on images (C<n>, D<n>, SO2, O2; the report's image plots)
    image_task: ClassVar[bool] = True
    #: data set names that select this task when the configuration names no task
    data_names: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ configuration, data
    def check(self, cfg: dict[str, Any]) -> None:
        """Raise ValueError when the configuration does not fit this task."""
        for m in cfg["adapt"]["methods"]:
            if m in self.unsupported_methods:
                raise ValueError(
                    f"method {m!r} does not support task {self.name!r}: "
                    f"{self.unsupported_methods[m]}"
                )

    @abstractmethod
    def load_data(self, cfg: dict[str, Any]) -> Any:
        """The configured splits as a :class:`~equify.training.bundle.DataBundle`."""

    def check_model(self, model: nn.Module, data: Any) -> None:
        """Raise ValueError when ``model``'s output on a training image does not fit the task."""
        if len(data.train) == 0:
            return
        x = data.train.images[:1]
        with torch.no_grad(), eval_mode(model):
            out = model(x.to(device_of(model)))
        self.check_output(out, x, data.num_classes)

    @abstractmethod
    def check_output(self, out: object, x: torch.Tensor, num_classes: int) -> None:
        """Raise ValueError unless ``out`` is this task's output for the inputs ``x``."""

    # ------------------------------------------------------------------ training
    def wrap_predictor(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        """The predictor as the methods see it, from the network and the bundle's statistics
        (images: :class:`~equify.training.module.Normalized`, raw ``[0, 1]`` pixels in)."""
        from equify.training.module import Normalized

        return Normalized(net, mean, std)

    def wrap_checkpoint(self, net: nn.Module, data: Any | None, in_channels: int) -> nn.Module:
        """A user's checkpoint as the predictor (``model.checkpoint``): images are normalised
        with the data's statistics (zero and one when rebuilding without data: the saved state
        dict brings them)."""
        if data is None:
            return self.wrap_predictor(net, torch.zeros(in_channels), torch.ones(in_channels))
        return self.wrap_predictor(net, data.mean, data.std)

    def augmentation(self, cfg: dict[str, Any]) -> Any:
        """What ``augment`` samples from: the orbit's transformations (a RotationSet)."""
        return RotationSet.parse(orbit_rotations(cfg["adapt"]["group"]))

    def augment_batch(self, x: torch.Tensor, y: torch.Tensor, rotations: Any):
        """A training batch with one random transformation per input (global RNG)."""
        which = torch.randint(len(rotations), (x.shape[0],))
        return self.augment(x, y, rotations, which)

    def make_canonicalizer(self, cfg: dict[str, Any], prior: Any) -> Any:
        """The canonicalizer of ``canon`` / ``canon-prior``, or None for the image ones."""
        return None

    @abstractmethod
    def output_action(self) -> Action:
        """How the group acts on the predictor's output (for the methods' wrappers)."""

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a scalar)."""

    @abstractmethod
    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The per-batch score logged as ``<stage>/acc`` (accuracy, pixel accuracy)."""

    @abstractmethod
    def augment(
        self, x: torch.Tensor, y: torch.Tensor, rotations: RotationSet, which: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform a training batch by the ``which``-th transformations: images and targets."""

    # ------------------------------------------------------------------ evaluation, report
    @abstractmethod
    def evaluate(
        self, model: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        """The task's scores of one model: upright, on the orbit, against the angle, and its
        equivariance error; the runner adds the methods' diagnostics and the cost."""

    @abstractmethod
    def evaluate_oracle(
        self, bare: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        """The oracle row: the pretrained model on every orbit input turned back exactly."""

    @abstractmethod
    def format_table(self, results: dict[str, Any]) -> str:
        """The results as an aligned text table."""

    @abstractmethod
    def summarize(self, results: dict[str, Any]) -> str:
        """One line per model: its headline scores (the command line's closing summary)."""

    def plots(self, results: dict[str, Any], models: dict[str, nn.Module], data: Any) -> list:
        """Task-specific plots: ``[(file stem, draw(path) -> bool)]`` (besides the common ones)."""
        return []


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: add one instance of ``cls`` to the registry under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a task named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_task(name: str) -> None:
    """Remove the task ``name`` from the registry (for tests and reloaded plug-ins)."""
    _REGISTRY.pop(name, None)


def get_task(name: object) -> Task:
    """The registered task ``name``; ValueError listing the valid ones otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"task must be a name ({', '.join(task_names())}), got {name!r}")
    try:
        return _REGISTRY[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(task_names())}") from None


def task_of(cfg: dict[str, Any]) -> Task:
    """The task of a configuration (``cfg["task"]``; classification when absent)."""
    return get_task(cfg.get("task", "classification"))


def task_for_data(name: object) -> str | None:
    """The task whose ``data_names`` hold ``name`` (``qm9`` -> ``molecules``), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    for task in _REGISTRY.values():
        if key in task.data_names:
            return task.name
    return None


def task_names() -> tuple[str, ...]:
    """Every registered task's name."""
    return tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n)))
