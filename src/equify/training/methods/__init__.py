"""Adaptation methods as plug-ins: one module per family, a registry by name.

``vanilla``, ``augment`` (:mod:`.finetune`); ``canon``, ``canon-prior``
(:mod:`.canonicalization`); ``equitune``, ``lambda-equitune``, ``equizero``, ``equiattention``
(:mod:`.symmetrization`); ``frames`` for 3-D point sets (:mod:`.frames`).
See :class:`~equify.training.methods.base.Method`.
"""

from equify.training.methods import (  # noqa: F401
    canonicalization,
    finetune,
    frames,
    symmetrization,
)
from equify.training.methods.base import (
    Method,
    MethodSetup,
    get_method,
    method_names,
    register,
    unregister,
)
from equify.training.methods.canonicalization import build_equivariant_model
from equify.training.methods.finetune import augment_rotations

__all__ = [
    "Method",
    "MethodSetup",
    "augment_rotations",
    "build_equivariant_model",
    "get_method",
    "method_names",
    "register",
    "unregister",
]
