"""The method plug-ins: the registry, the symmetrization family in the main job, zero-shot rows,
and a new method added without touching the runner."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

import equify
from equify.symmetrization import EquiAttention, EquiZero, GroupAveraging, LambdaEquitune
from equify.training import load_config, run_adapt, run_evaluate
from equify.training.methods import (
    Method,
    MethodSetup,
    get_method,
    method_names,
    register,
    unregister,
)

from .helpers import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

SYMMETRIZERS = {
    "equitune": GroupAveraging,
    "lambda-equitune": LambdaEquitune,
    "equizero": EquiZero,
    "equiattention": EquiAttention,
}


def tiny(out: Path, *extra: str) -> dict:
    return tiny_config(
        out,
        "evaluate.angles_step=90",
        "evaluate.invariance_images=8",
        "evaluate.timing_batch=4",
        *extra,
        pretrain_epochs=2,
    )


@pytest.fixture(scope="module")
def sym_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sym")
    methods = ",".join(["vanilla", "canon-prior", *SYMMETRIZERS])
    cfg = tiny(out, f"adapt.methods={methods}", "adapt.group=D4", "evaluate.zero_shot=true")
    return out, run_adapt(cfg)


def test_registry():
    assert method_names()[:4] == ("vanilla", "augment", "canon", "canon-prior")
    assert set(SYMMETRIZERS) <= set(method_names())
    with pytest.raises(ValueError, match="valid: vanilla"):
        get_method("distill")
    with pytest.raises(ValueError, match="already registered"):
        register(type(get_method("vanilla")))


def test_symmetrizers_in_the_main_job(sym_run):
    out, results = sym_run
    methods = results["methods"]
    for name in SYMMETRIZERS:
        m = methods[name]
        assert m["predictor_passes_per_input"] == 8.0
        assert m["invariance_error"]["max_abs"] <= 1e-4, name
        assert max(m["orbit"]["accuracy"]) - min(m["orbit"]["accuracy"]) < 1e-9  # exact for D4
        assert 0.0 <= m["upright_accuracy"] <= 1.0
        loaded = equify.load_adapted(out, name)
        assert isinstance(loaded, SYMMETRIZERS[name]) and not loaded.training
    assert methods["canon-prior"]["predictor_passes_per_input"] == pytest.approx(1.0, abs=0.1)
    assert methods["vanilla"]["predictor_passes_per_input"] == 1.0
    assert math.isnan(methods["equitune"]["symmetrization"]["identity_fraction_upright"])
    # the table shows the trade-off: passes per input for every method
    from equify.training import format_table

    table = format_table(results)
    assert "passes" in table and "lambda-equitune" in table


def test_zero_shot_rows_are_untrained_and_invariant(sym_run, capsys):
    out, results = sym_run
    methods = results["methods"]
    for name in ("equitune-zs", "equizero-zs"):
        assert methods[name]["invariance_error"]["max_abs"] <= 1e-4
        assert methods[name]["predictor_passes_per_input"] == 8.0
    # equitune-zs is the pretrained model itself, averaged: its orbit is its upright accuracy
    orbit = methods["equitune-zs"]["orbit"]["accuracy"]
    assert max(orbit) - min(orbit) < 1e-9
    from equify.cli import main

    assert main(["evaluate", "--output", str(out), "--quiet", "--zero-shot"]) == 0
    printed = capsys.readouterr().out
    assert "equizero-zs" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["equitune-zs"]["orbit"] == methods["equitune-zs"]["orbit"]


def test_symmetrization_needs_a_finite_group(tmp_path):
    with pytest.raises(ValueError, match="finite group"):
        tiny(tmp_path, "adapt.methods=[equitune]", "adapt.group=SO2")
    with pytest.raises(ValueError, match="zero_shot"):
        tiny(tmp_path, "adapt.methods=[canon]", "adapt.group=SO2", "evaluate.zero_shot=true")


def test_freeze_predictor_holds_for_symmetrizers(tmp_path):
    out = tmp_path / "frozen"
    cfg = tiny(out, "adapt.methods=[lambda-equitune]", "adapt.freeze_predictor=true")
    run_adapt(cfg)
    model = equify.load_adapted(out, "lambda-equitune")
    from equify.training.runner import _load_pretrained

    pretrained = _load_pretrained(out / "pretrained.pt")
    for (k, a), (_, b) in zip(
        model.predictor.state_dict().items(), pretrained.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_freezing_a_method_without_parameters_is_refused(tmp_path):
    for name in ("equitune", "equizero"):
        with pytest.raises(ValueError, match="would train nothing"):
            tiny(tmp_path, f"adapt.methods=[{name}]", "adapt.freeze_predictor=true")


class _Halves(Method):
    """A method defined in a test: the mean of the predictor on the image and on its 180° turn."""

    name = "test-halves"
    summary = "C2 group averaging, defined outside the library"

    def build(self, cfg, predictor: nn.Module, data, in_channels: int) -> MethodSetup:
        return MethodSetup(GroupAveraging(predictor, "C2"), lr_model=cfg["adapt"]["lr_predictor"])


@pytest.fixture
def halves():
    register(_Halves)
    yield
    unregister(_Halves.name)


def test_a_new_method_needs_no_change_to_the_runner(tmp_path, halves):
    out = tmp_path / "plugin"
    results = run_adapt(tiny(out, "adapt.methods=[test-halves]"))
    m = results["methods"]["test-halves"]
    assert m["predictor_passes_per_input"] == 2.0
    assert m["orbit"]["accuracy"][0] == pytest.approx(m["orbit"]["accuracy"][2])  # C2 ⊂ C4
    run_evaluate(load_config(out / "config.yaml"))
    runner = Path(equify.training.runner.__file__).read_text()
    for name in method_names():
        assert f'"{name}"' not in runner, f"the runner names the method {name!r}"
