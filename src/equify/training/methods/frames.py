"""Frame averaging of point sets (``frames``): the PCA frames of Puny et al. (ICLR 2022).

Reuses :class:`~equify.symmetrization.FrameAveraging`: the predictor sees every set in each of
the ``2^d`` (O(3)) or ``2^(d-1)`` (SO(3)) orientations of its principal axes, centred, and the
outputs are averaged after mapping back (invariant properties, or positions turned back and
moved by the centroid). Exact to float rounding for sets whose covariance has distinct
eigenvalues (the rest are flagged; two-fold degenerate ones are widened by in-plane rotations
and only approximately invariant) and training-free; ``adapt.lr_predictor`` fine-tunes the
predictor through the average.
"""

from __future__ import annotations

from torch import nn

from equify.groups import group as parse_group
from equify.symmetrization import FrameAveraging
from equify.training.methods.base import Method, MethodSetup, register
from equify.training.tasks import task_of

__all__ = ["Frames"]


@register
class Frames(Method):
    name = "frames"
    order = 20
    own_parameters = False
    summary = "frame averaging over the PCA frames of 3-D point sets (Puny et al. 2022)"

    def check(self, cfg) -> None:
        super().check(cfg)
        task = task_of(cfg)  # a 3-D task checks the group itself (SO3 or O3)
        if task.image_task:
            g = parse_group(cfg["adapt"]["group"])
            raise ValueError(
                f"method 'frames' averages over the frames of 3-D point sets (tasks molecules, "
                f"nbody with SO3/O3), got task {task.name!r} with adapt.group {g}"
            )

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        task = task_of(cfg)
        out = task.output_action()
        output = "positions" if out.translates else "invariant"
        model = FrameAveraging(
            predictor, cfg["adapt"]["group"], output=output, layout=task.layout()
        )
        return MethodSetup(model, lr_model=cfg["adapt"]["lr_predictor"])
