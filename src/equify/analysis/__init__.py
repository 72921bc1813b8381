"""Verification beyond a single batch: orbit (rotated test set) evaluation and cost measurement."""

from equify.analysis.cost import CostReport, count_parameters, measure_cost
from equify.analysis.orbit import (
    OrbitEvaluation,
    evaluate_orbit,
    evaluate_orbits,
    invariance_error,
)

__all__ = [
    "CostReport",
    "OrbitEvaluation",
    "count_parameters",
    "evaluate_orbit",
    "evaluate_orbits",
    "invariance_error",
    "measure_cost",
]
