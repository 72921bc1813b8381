"""Actions of group elements on data: one class per kind of data.

See :mod:`equify.actions.base` for the forms group elements may take.
"""

from equify.actions.base import (
    Action,
    ElementBatch,
    InvariantAction,
    inverse_elements,
    resolve_elements,
)
from equify.actions.boxes import BoxAction
from equify.actions.image import ImageAction, circle_mask
from equify.actions.mask import MaskAction
from equify.actions.points import PixelPointAction, PointAction
from equify.actions.pointsets import PointLayout, PointSetAction
from equify.actions.regular import RegularAction

__all__ = [
    "Action",
    "BoxAction",
    "ElementBatch",
    "ImageAction",
    "InvariantAction",
    "MaskAction",
    "PixelPointAction",
    "PointAction",
    "PointLayout",
    "PointSetAction",
    "RegularAction",
    "circle_mask",
    "inverse_elements",
    "resolve_elements",
]
