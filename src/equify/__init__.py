"""equify: make any pretrained PyTorch network equivariant, and prove it."""

import os

import torch

from equify.actions import (
    BoxAction,
    ImageAction,
    InvariantAction,
    MaskAction,
    PixelPointAction,
    PointAction,
    RegularAction,
)
from equify.canonicalization import (
    ContinuousCanonicalizer,
    DataDrivenPrior,
    DiscreteCanonicalizer,
    EquivariantModel,
    GeodesicPrior,
    IdentityPrior,
    OptimizationCanonicalizer,
)
from equify.groups import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup, group
from equify.testing import assert_equivariant, equivariance_error

__version__ = "0.1.0"


def load_adapted(
    run_dir: str | os.PathLike, method: str = "canon-prior", export: bool = False
) -> torch.nn.Module:
    """The model ``equify adapt`` trained in ``run_dir`` with ``method`` (``train`` extra).

    See :func:`equify.training.adapted.load_adapted`.
    """
    from equify.training.adapted import load_adapted as _load_adapted

    return _load_adapted(run_dir, method, export=export)


__all__ = [
    "O2",
    "O3",
    "SO2",
    "SO3",
    "BoxAction",
    "ContinuousCanonicalizer",
    "CyclicGroup",
    "DataDrivenPrior",
    "DihedralGroup",
    "DiscreteCanonicalizer",
    "EquivariantModel",
    "GeodesicPrior",
    "IdentityPrior",
    "ImageAction",
    "InvariantAction",
    "MaskAction",
    "OptimizationCanonicalizer",
    "PixelPointAction",
    "PointAction",
    "RegularAction",
    "assert_equivariant",
    "equivariance_error",
    "group",
    "load_adapted",
]
