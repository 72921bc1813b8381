"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import pytest
import torch

FINITE_GROUP_NAMES = [f"{k}{n}" for k in "CD" for n in (1, 2, 3, 4, 8)]

# The tests use small tensors: one thread avoids thread thrashing on small (2-core) CI machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def devices() -> list[str]:
    """CPU always; CUDA where a GPU is present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
