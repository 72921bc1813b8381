"""The tasks of ``equify adapt``: one plug-in per kind of prediction (see :mod:`.base`).

Importing this package registers the built-in tasks: ``classification`` (the default) and
``segmentation``.
"""

from equify.training.tasks.base import (
    Task,
    get_task,
    orbit_rotations,
    register_task,
    task_names,
    task_of,
    unregister_task,
)
from equify.training.tasks.classification import Classification
from equify.training.tasks.segmentation import Segmentation

__all__ = [
    "Classification",
    "Segmentation",
    "Task",
    "get_task",
    "orbit_rotations",
    "register_task",
    "task_names",
    "task_of",
    "unregister_task",
]
