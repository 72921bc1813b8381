"""ClassifierModule's learning-rate schedules: constant Adam, or one cycle per parameter group."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("lightning")

import lightning as L
from torch.utils.data import DataLoader, TensorDataset

from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.models import SmallCNN
from equify.training import ClassifierModule


class _Rates(L.Callback):
    """The learning rate of every parameter group before each optimizer step."""

    def __init__(self) -> None:
        self.rates: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def _fit(module: ClassifierModule, epochs: int) -> list[list[float]]:
    torch.manual_seed(0)
    x, y = torch.rand(24, 1, 12, 12), torch.randint(0, 10, (24,))
    rates = _Rates()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rates],
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
    return rates.rates


def _wrapped() -> EquivariantModel:
    torch.manual_seed(0)
    return EquivariantModel(
        SmallCNN(in_channels=1, num_classes=10), DiscreteCanonicalizer("C4", in_channels=1)
    )


@pytest.mark.filterwarnings("ignore")
def test_onecycle_ramps_every_group_to_its_own_rate_and_anneals() -> None:
    module = ClassifierModule(
        _wrapped(), lr_model=1e-3, lr_canonicalizer=5e-3, prior_weight=1.0, lr_schedule="onecycle"
    )
    rates = torch.tensor(_fit(module, epochs=2))  # (12 steps, 2 groups)
    assert rates.shape == (12, 2)
    for group, peak in ((0, 1e-3), (1, 5e-3)):
        r = rates[:, group]
        top = int(r.argmax())
        assert 0 < top < len(r) - 1  # up, then down
        assert float(r.max()) == pytest.approx(peak, rel=0.05)
        assert float(r[0]) < peak / 10 and float(r[-1]) < peak / 10
        assert (r[: top + 1].diff() >= 0).all() and (r[top:].diff() <= 0).all()
    # the ratio between the groups holds at every step
    torch.testing.assert_close(rates[:, 1] / rates[:, 0], torch.full((12,), 5.0, dtype=rates.dtype))


@pytest.mark.filterwarnings("ignore")
def test_constant_schedule_keeps_the_rates() -> None:
    module = ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=2e-3)
    assert module.lr_schedule == "constant"  # the module's default (pretraining uses it)
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)
    rates = _fit(module, epochs=1)
    assert {r[0] for r in rates} == {2e-3}


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lr_schedule must be one of \('constant', 'onecycle'\)"):
        ClassifierModule(SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3, lr_schedule="cos")


def test_one_cycle_factor_shape_short_runs_and_overrun() -> None:
    from equify.training.module import one_cycle_factor

    total = 100
    f = [one_cycle_factor(s, total) for s in range(total)]
    assert f[0] == pytest.approx(1 / 25) and max(f) == pytest.approx(1.0, abs=1e-3)
    assert f[-1] == pytest.approx(1 / 25 / 1e4)
    top = f.index(max(f))
    assert 25 <= top <= 35  # the ramp takes the first 30% of the steps
    # a resumed run that takes more steps than it now plans stays at the end value
    assert one_cycle_factor(150, total) == f[-1]
    # fewer than 5 steps: no cycle (it would spend them at almost nothing)
    assert [one_cycle_factor(s, 3) for s in range(3)] == [1.0, 1.0, 1.0]


@pytest.mark.filterwarnings("ignore")
def test_onecycle_refuses_an_endless_run() -> None:
    module = ClassifierModule(
        SmallCNN(in_channels=1, num_classes=10), lr_model=1e-3, lr_schedule="onecycle"
    )
    trainer = L.Trainer(max_epochs=-1, accelerator="cpu", logger=False, enable_progress_bar=False)
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    with pytest.raises(ValueError, match="finite number of steps"):
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
