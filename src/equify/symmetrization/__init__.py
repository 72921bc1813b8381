"""Symmetrization: run an unchanged predictor on transformed copies and combine, equivariantly.

Group averaging (equitune; Basu et al., AAAI 2023), λ-equitune and equizero (Basu et al.,
NeurIPS 2023), equiattention (Vlasenko et al., 2024) for finite groups on any pair of actions,
and frame averaging (Puny et al., ICLR 2022) for point clouds under O(d)/SO(d). Same contract
as :class:`~equify.canonicalization.EquivariantModel`: ``forward``, ``forward_with_result``,
``aux_loss``, ``diagnostics``.
"""

from equify.symmetrization.averaging import GroupAveraging
from equify.symmetrization.base import SymmetrizationResult, Symmetrizer, weighted_sum
from equify.symmetrization.equizero import (
    PROXIES,
    EquiZero,
    entropy_proxy,
    max_probability_proxy,
)
from equify.symmetrization.frames import FrameAveraging, pca_frames
from equify.symmetrization.networks import ViewEncoder
from equify.symmetrization.weighted import NORMALIZATIONS, EquiAttention, LambdaEquitune

__all__ = [
    "NORMALIZATIONS",
    "PROXIES",
    "EquiAttention",
    "EquiZero",
    "FrameAveraging",
    "GroupAveraging",
    "LambdaEquitune",
    "SymmetrizationResult",
    "Symmetrizer",
    "ViewEncoder",
    "entropy_proxy",
    "max_probability_proxy",
    "pca_frames",
    "weighted_sum",
]
