"""eval_mode and device_of: shared helpers of the evaluation code."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equify._state import device_of, eval_mode


def test_eval_mode_restores_the_mode_also_on_errors() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    with eval_mode(net):
        assert not net.training and not net[1].training
    assert net.training and net[1].training
    with pytest.raises(RuntimeError), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training
    net.eval()
    with eval_mode(net):
        pass
    assert not net.training  # an eval model stays in eval
    with eval_mode(torch.sin):  # a plain callable is left alone
        assert torch.sin(torch.zeros(1)).item() == 0.0


def test_device_of() -> None:
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")
    assert device_of(torch.sin) == torch.device("cpu")
