"""What equivariance costs: extra parameters and time per image against the bare predictor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["CostReport", "count_parameters", "measure_cost"]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``; each shared tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@dataclass(frozen=True)
class CostReport:
    """Side-by-side cost of a wrapped model and its bare predictor (same inputs, same run).

    Attributes:
        params_model: parameters of the wrapped model.
        params_bare: parameters of the bare predictor.
        seconds_per_image_model: median forward time per image of the wrapped model.
        seconds_per_image_bare: median forward time per image of the bare predictor.
    """

    params_model: int
    params_bare: int
    seconds_per_image_model: float
    seconds_per_image_bare: float

    @property
    def extra_params_fraction(self) -> float:
        """``params_model / params_bare - 1``."""
        return self.params_model / self.params_bare - 1.0

    @property
    def time_ratio(self) -> float:
        """``time(model) / time(bare)``."""
        return self.seconds_per_image_model / self.seconds_per_image_bare

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "extra_params_fraction": self.extra_params_fraction,
            "time_ratio": self.time_ratio,
        }


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


@torch.no_grad()
def measure_cost(
    model: nn.Module,
    bare: nn.Module,
    example: torch.Tensor,
    repeats: int = 5,
    warmup: int = 1,
) -> CostReport:
    """Time both models on the same batch, interleaved, and count their parameters.

    Args:
        model: the wrapped (equivariant) model.
        bare: the bare predictor it wraps.
        example: a batch ``(B, ...)`` on the models' device.
        repeats: timed runs of each model (the median is reported).
        warmup: untimed runs of each model first.

    Returns:
        A :class:`CostReport` (per-image times: the batch time divided by ``B``).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    modes = (model.training, bare.training)
    model.eval()
    bare.eval()

    def sync() -> None:  # wait for the device that holds the batch, not the current one
        if example.is_cuda:
            torch.cuda.synchronize(example.device)

    def run(m: nn.Module) -> Callable[[], None]:
        def go() -> None:
            m(example)
            sync()

        return go

    try:
        for _ in range(warmup):
            run(model)()
            run(bare)()
        t_model, t_bare = [], []
        for _ in range(repeats):  # interleaved, so both see the same machine load
            t_model.append(_median_seconds(run(model), 1))
            t_bare.append(_median_seconds(run(bare), 1))
    finally:
        model.train(modes[0])
        bare.train(modes[1])
    t_model.sort()
    t_bare.sort()
    b = example.shape[0]
    return CostReport(
        params_model=count_parameters(model),
        params_bare=count_parameters(bare),
        seconds_per_image_model=t_model[len(t_model) // 2] / b,
        seconds_per_image_bare=t_bare[len(t_bare) // 2] / b,
    )
