"""The tasks of ``equify adapt``: one plug-in per kind of prediction (see :mod:`.base`).

Importing this package registers the built-in tasks: ``classification`` (the default) and
``segmentation``, and the 3-D ``molecules`` (QM9) and ``nbody``.
"""

from equify.training.tasks.base import (
    Task,
    get_task,
    orbit_rotations,
    register_task,
    task_for_data,
    task_names,
    task_of,
    unregister_task,
)
from equify.training.tasks.classification import Classification
from equify.training.tasks.points import (
    MoleculeProperties,
    NBodyDynamics,
    PointSetTask,
    TargetScale,
)
from equify.training.tasks.segmentation import Segmentation

__all__ = [
    "Classification",
    "MoleculeProperties",
    "NBodyDynamics",
    "PointSetTask",
    "Segmentation",
    "TargetScale",
    "Task",
    "get_task",
    "orbit_rotations",
    "register_task",
    "task_for_data",
    "task_names",
    "task_of",
    "unregister_task",
]
