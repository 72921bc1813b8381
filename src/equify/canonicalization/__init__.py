"""Learned canonicalization: make any predictor equivariant with a small equivariant network.

Kaba et al. (ICML 2023), "Equivariance with learned canonicalization functions"; Mondal et al.
(NeurIPS 2023), "Equivariant adaptation of large pretrained models"; Panigrahi & Mondal (2024).
"""

from equify.canonicalization.base import (
    CanonicalizationResult,
    CanonicalizationStateError,
    Canonicalizer,
    TieSet,
    input_image_action,
)
from equify.canonicalization.continuous import (
    ContinuousCanonicalizer,
    Frames,
    frame_from_vectors,
    frames_from_vectors,
)
from equify.canonicalization.discrete import DiscreteCanonicalizer
from equify.canonicalization.escnn_networks import (
    EscnnScoreNetwork,
    EscnnVectorNetwork,
    ExportedEscnnNetwork,
    escnn_available,
)
from equify.canonicalization.model import EquivariantModel
from equify.canonicalization.networks import GroupScoreNetwork, ScoresToVectors, VectorNetwork
from equify.canonicalization.optimization import (
    EmbeddingNetwork,
    OptimizationCanonicalizer,
    group_contrast_loss,
)
from equify.canonicalization.point_networks import VNCanonicalizationNetwork
from equify.canonicalization.preprocess import ImagePreparation
from equify.canonicalization.priors import DataDrivenPrior, GeodesicPrior, IdentityPrior, Prior

__all__ = [
    "CanonicalizationResult",
    "CanonicalizationStateError",
    "Canonicalizer",
    "ContinuousCanonicalizer",
    "DataDrivenPrior",
    "DiscreteCanonicalizer",
    "EmbeddingNetwork",
    "EquivariantModel",
    "EscnnScoreNetwork",
    "EscnnVectorNetwork",
    "ExportedEscnnNetwork",
    "Frames",
    "GeodesicPrior",
    "GroupScoreNetwork",
    "IdentityPrior",
    "ImagePreparation",
    "OptimizationCanonicalizer",
    "Prior",
    "ScoresToVectors",
    "TieSet",
    "VNCanonicalizationNetwork",
    "VectorNetwork",
    "escnn_available",
    "frame_from_vectors",
    "frames_from_vectors",
    "group_contrast_loss",
    "input_image_action",
]
