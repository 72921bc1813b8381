"""equify: make any pretrained PyTorch network equivariant, and prove it."""

from equify.actions import (
    BoxAction,
    ImageAction,
    InvariantAction,
    MaskAction,
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
    "PointAction",
    "RegularAction",
    "assert_equivariant",
    "equivariance_error",
    "group",
]
