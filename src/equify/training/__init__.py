"""Adaptation of pretrained models (PyTorch Lightning), checkpoints, evaluation and reports.

Needs the ``train`` extra (lightning, pyyaml, matplotlib) and the ``data`` extra for the
built-in data sets: ``pip install "equify[train,data]"``.
"""

from equify.training.adapted import load_adapted
from equify.training.config import DEFAULTS, METHODS, load_config, save_config
from equify.training.module import ClassifierModule, NonFiniteLossError, Normalized
from equify.training.report import format_table, write_report
from equify.training.runner import (
    AtomicCheckpointIO,
    DataBundle,
    build_equivariant_model,
    evaluate_models,
    prepare_data,
    pretrained_model,
    run_adapt,
    run_evaluate,
    run_pretrain,
    run_train,
)
from equify.training.tasks import Task, get_task, task_names

__all__ = [
    "DEFAULTS",
    "METHODS",
    "AtomicCheckpointIO",
    "ClassifierModule",
    "DataBundle",
    "NonFiniteLossError",
    "Normalized",
    "Task",
    "build_equivariant_model",
    "evaluate_models",
    "format_table",
    "get_task",
    "load_adapted",
    "load_config",
    "prepare_data",
    "pretrained_model",
    "run_adapt",
    "run_evaluate",
    "run_pretrain",
    "run_train",
    "save_config",
    "task_names",
    "write_report",
]
