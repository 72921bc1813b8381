"""Verification beyond a single batch: orbit (rotated test set) evaluation, cost measurement,
and which input sizes keep a strided network exactly equivariant."""

from equify.analysis.cost import CostReport, count_parameters, measure_cost
from equify.analysis.dense import (
    SegmentationOrbit,
    confusion_matrix,
    dense_equivariance_error,
    evaluate_segmentation_oracle,
    evaluate_segmentation_orbits,
    segmentation_scores,
)
from equify.analysis.exactness import (
    ExactSizePad,
    LayerCheck,
    SizeVerdict,
    centred_axis,
    exact_sizes,
    nearest_exact_size,
)
from equify.analysis.orbit import (
    OrbitEvaluation,
    evaluate_oracle,
    evaluate_orbit,
    evaluate_orbits,
    invariance_error,
    rotation_consistency,
)

__all__ = [
    "CostReport",
    "ExactSizePad",
    "LayerCheck",
    "OrbitEvaluation",
    "SegmentationOrbit",
    "SizeVerdict",
    "centred_axis",
    "confusion_matrix",
    "count_parameters",
    "dense_equivariance_error",
    "evaluate_oracle",
    "evaluate_orbit",
    "evaluate_orbits",
    "evaluate_segmentation_oracle",
    "evaluate_segmentation_orbits",
    "exact_sizes",
    "invariance_error",
    "measure_cost",
    "nearest_exact_size",
    "rotation_consistency",
    "segmentation_scores",
]
