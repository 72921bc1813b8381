"""3-D point sets under SO(3) / O(3): molecular properties (QM9) and N-body dynamics.

Inputs are packed point sets (:class:`~equify.actions.PointLayout`). Two tasks share this
module:

* ``molecules``: regression of QM9 properties (the HOMO–LUMO gap by default), invariant to
  rotations, reflections (O(3)) and translations; the loss is the L1 error, the headline score
  the mean absolute error (MAE) in the property's unit (eV for the gap).
* ``nbody``: the positions of charged particles 1,000 steps ahead, equivariant
  (``Φ(Q·x + t) = Q·Φ(x) + t``); the loss and the score are the mean squared error (MSE) per
  coordinate, as Satorras et al. (2021) report it.

Both are measured on the test sets as they come (upright) and with every test set turned by its
own seeded Haar-random element of the group; the equivariance error applies random elements and
translations. The oracle turns each rotated input back by the true inverse before the pretrained
model sees it (equal to upright up to float rounding: there is no grid in 3-D).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from equify._state import eval_mode
from equify.actions import Action, InvariantAction, PointLayout, PointSetAction
from equify.groups import ContinuousGroup
from equify.groups import group as parse_group
from equify.training.bundle import DataBundle
from equify.training.tasks.base import CONSTANT_RATE_ADAPT, Task, register_task

__all__ = ["MoleculeProperties", "NBodyDynamics", "PointSetTask", "TargetScale"]

_POINT_METHODS = ["vanilla", "augment", "canon", "canon-prior", "frames"]
_SYMMETRIZATION = "averages over a finite group of image transformations; use frames"


class TargetScale(nn.Module):
    """``net(x)·std + mean``: the predictor learns standardised targets, returns real units.

    Args:
        net: the network on packed point sets.
        mean, std: ``(P,)`` statistics of the training targets (0 and 1 leave outputs as they
            are: per-point positions).
    """

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` point sets -> ``(B, P)`` targets in their units (or per point)."""
        y = self.net(x)
        return y * self.std.to(y.dtype) + self.mean.to(y.dtype)


def _batched(model: nn.Module, x: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    out = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch].to(device)).double().cpu())
    if not out:
        return torch.zeros(0)
    return torch.cat(out)


def _fraction(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def test_rotations(group: ContinuousGroup, n: int, seed: int) -> torch.Tensor:
    """``(n, 3, 3)`` float64 Haar-random elements, one per test set, seeded."""
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    return group.sample(n, generator=gen, dtype=torch.float64)


class PointSetTask(Task):
    """What the two 3-D tasks share: packed inputs, group sampling, the evaluation."""

    image_task = False
    unsupported_methods: ClassVar[dict[str, str]] = {
        "equitune": _SYMMETRIZATION,
        "lambda-equitune": _SYMMETRIZATION,
        "equizero": _SYMMETRIZATION,
        "equiattention": _SYMMETRIZATION,
    }
    #: the name of the headline error in tables ("MAE", "MSE")
    error_name: ClassVar[str] = "MAE"
    #: data.kwargs of the loader and their defaults
    data_defaults: ClassVar[dict[str, Any]] = {}
    #: further data.kwargs the loader accepts (no default here)
    extra_kwargs: ClassVar[tuple[str, ...]] = ()

    def check(self, cfg: dict[str, Any]) -> None:
        super().check(cfg)
        g = parse_group(cfg["adapt"]["group"])
        if not isinstance(g, ContinuousGroup) or g.dim != 3:
            raise ValueError(
                f"task {self.name!r} acts with SO3 or O3 (rotations, reflections and "
                f"translations of 3-D sets), got adapt.group {g}"
            )
        if cfg["adapt"]["canonicalizer"] not in ("auto", "continuous"):
            raise ValueError(
                f"task {self.name!r} canonicalizes with the vector-neuron network "
                f"(adapt.canonicalizer=auto), got {cfg['adapt']['canonicalizer']!r}"
            )
        if cfg["adapt"]["prior"] == "data":
            raise ValueError("adapt.prior=data needs a finite group; 3-D tasks use the geodesic")
        sized = [k for k in ("canonicalizer_layers", "canonicalizer_width") if cfg["adapt"][k]]
        if sized:
            raise ValueError(
                f"adapt.{', adapt.'.join(sized)} set the image canonicalizers' score network; "
                f"task {self.name!r} uses the vector-neuron network"
            )
        d = cfg["data"]
        if str(d["name"]).strip().lower() not in self.data_names:
            raise ValueError(
                f"task {self.name!r} reads data {', '.join(self.data_names)}, got {d['name']!r}"
            )
        ignored = [k for k in ("size", "max_train", "max_val", "max_test") if d[k] is not None]
        if ignored:
            raise ValueError(
                f"data.{', data.'.join(ignored)} would be ignored by task {self.name!r}: its "
                "split sizes are data.kwargs.n_train, n_val and n_test"
            )
        kw = {**self.data_defaults, **d["kwargs"]}
        unknown = set(d["kwargs"]) - set(self.data_defaults) - set(self.extra_kwargs)
        if unknown:
            raise ValueError(
                f"unknown data.kwargs {sorted(unknown)} for {self.data_names[0]}; valid: "
                f"{', '.join([*self.data_defaults, *self.extra_kwargs])}"
            )
        for key, least in (("n_train", 2), ("n_val", 1), ("n_test", 1)):
            v = kw[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"data.kwargs.{key} must be an int >= {least}, got {v!r}")

    def layout(self) -> PointLayout:
        raise NotImplementedError

    def input_action(self) -> PointSetAction:
        return PointSetAction(self.layout())

    def wrap_predictor(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
        return TargetScale(net, mean, std)

    def wrap_checkpoint(self, net: nn.Module, data: Any | None, in_channels: int) -> nn.Module:
        # a user's model predicts in the targets' units: no scaling
        return TargetScale(net, torch.zeros(1), torch.ones(1))

    def augmentation(self, cfg: dict[str, Any]) -> Any:
        return parse_group(cfg["adapt"]["group"])

    def augment_batch(self, x, y, rotations):
        """Every set turned by its own Haar-random element of the group (global RNG)."""
        g = rotations.sample(x.shape[0], dtype=torch.float64).to(x.device)
        return self.augment(x, y, rotations, g)

    def augment(self, x, y, rotations, which):
        """Turn a batch by ``which``: ``(B, 3, 3)`` elements of the group ``rotations``."""
        return self._turn(x, y, which)

    def _turn(self, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor):
        """Turn inputs (and per-point targets) about the origin by ``g`` ``(B, 3, 3)``."""
        x_g = self.input_action().apply(x, g.to(x.dtype))
        return x_g, self.output_action().apply(y, g.to(y.dtype))

    def make_canonicalizer(self, cfg: dict[str, Any], prior: Any) -> Any:
        from equify.canonicalization.pointcloud import PointCloudCanonicalizer

        return PointCloudCanonicalizer(cfg["adapt"]["group"], self.layout(), prior=prior)

    # ------------------------------------------------------------------ evaluation
    def _errors(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def _rotated_test(self, data: Any, cfg: dict[str, Any]):
        """The test inputs and targets as they come, their rotated copies and the elements."""
        test = data.test
        x, y = test.inputs, test.targets.double()
        rot = test_rotations(parse_group(cfg["adapt"]["group"]), len(test), cfg["seed"])
        x_r, y_r = self._turn(x, y, rot)
        return x, y, x_r, y_r, rot

    def evaluate(
        self, model: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        x, y, x_r, y_r, _ = self._rotated_test(data, cfg)
        up = self._errors(_batched(model, x, e["batch_size"], device), y)
        turned = self._errors(_batched(model, x_r, e["batch_size"], device), y_r)
        return {
            "upright": up,
            "rotated": turned,
            "equivariance_error": self.equivariance_error(model, data, cfg, device),
        }

    def equivariance_error(
        self, model: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, float]:
        """``|Φ(g·x + t) − g·Φ(x) − t|`` over test sets, random ``g`` and translations ``t``
        (``N(0, 1)`` per coordinate; invariant outputs do not move)."""
        e = cfg["evaluate"]
        g = parse_group(cfg["adapt"]["group"])
        x = data.test.inputs[: min(e["invariance_images"], len(data.test))]
        gen = torch.Generator().manual_seed(int(cfg["seed"]) + 4242)
        rot = g.sample(len(x), generator=gen, dtype=torch.float64)
        t = torch.randn(len(x), 3, generator=gen, dtype=torch.float64)
        act, out = self.input_action(), self.output_action()
        moved = act.translate(act.apply(x, rot.to(x.dtype)), t.to(x.dtype))
        y = _batched(model, x, e["batch_size"], device)
        y_moved = _batched(model, moved, e["batch_size"], device)
        expect = out.translate(out.apply(y, rot), t)
        diff = (y_moved - expect).abs()
        scale = expect.abs().amax().clamp_min(1e-12)
        return {
            "max_abs": float(diff.amax()) if diff.numel() else math.nan,
            "mean_abs": float(diff.mean()) if diff.numel() else math.nan,
            "max_rel": float(diff.amax() / scale) if diff.numel() else math.nan,
            "sets": len(x),
        }

    def evaluate_oracle(
        self, bare: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        x, y, x_r, _, rot = self._rotated_test(data, cfg)
        back, _ = self._turn(x_r, y, rot.transpose(-1, -2))
        pred = _batched(bare, back, e["batch_size"], device)
        return {
            "upright": self._errors(_batched(bare, x, e["batch_size"], device), y),
            "rotated": self._errors(pred, y),
            "about": "the pretrained model on g⁻¹·(g·x) for every rotated test set g·x: the best "
            "any canonicalizer of this predictor can do",
        }

    # ------------------------------------------------------------------ report
    def _headline(self, errors: dict[str, Any]) -> float:
        return float(errors["error"])

    def format_table(self, results: dict[str, Any]) -> str:
        group = results["group"]
        name = self.error_name
        width = max(13, *(len(n) + 2 for n in results["methods"]))
        head = (
            f"{'method':<{width}}{name + ' upright':>14}{name + ' ' + group:>12}"
            f"{'equiv. err':>12}{'identity':>10}{'degen.':>8}{'+params':>9}{'passes':>8}"
            f"{'time x':>8}"
        )
        lines = [head, "-" * len(head)]
        for method, m in results["methods"].items():
            canon = m.get("canonicalization", m.get("symmetrization", {}))
            cost = m["cost"]
            ident = canon.get("identity_fraction_upright")
            degen = canon.get("degenerate_samples_upright", canon.get("degenerate_samples", 0))
            lines.append(
                f"{method:<{width}}{self._headline(m['upright']):>14.5f}"
                f"{self._headline(m['rotated']):>12.5f}"
                f"{m['equivariance_error']['max_abs']:>12.1e}"
                f"{_fraction(ident):>10}{degen:>8}"
                f"{100 * cost['extra_params_fraction']:>8.2f}%"
                f"{m.get('predictor_passes_per_input', 1.0):>8.2f}{cost['time_ratio']:>8.2f}"
            )
        oracle = results.get("oracle")
        if oracle:
            lines.append(
                f"{'oracle':<{width}}{self._headline(oracle['upright']):>14.5f}"
                f"{self._headline(oracle['rotated']):>12.5f}{'-':>12}{'-':>10}{'-':>8}{'-':>9}"
                f"{'-':>8}{'-':>8}"
            )
        notes = [
            f"{name} in {self.unit_note(results)}; {group}: every test set turned by its own "
            "random element; equiv. err: max |Φ(g·x + t) − g·Φ(x) − t| over random g and t"
        ]
        return "\n".join(lines + notes)

    def unit_note(self, results: dict[str, Any]) -> str:
        return "the targets' units"

    def summarize(self, results: dict[str, Any]) -> str:
        group, name = results["group"], self.error_name
        return "\n".join(
            f"{method}: {name} {self._headline(m['upright']):.5f} upright, "
            f"{self._headline(m['rotated']):.5f} on {group}-rotated sets, equivariance error "
            f"{m['equivariance_error']['max_abs']:.1e}"
            for method, m in results["methods"].items()
        )


@register_task
class MoleculeProperties(PointSetTask):
    name = "molecules"
    order = 20
    summary = "QM9 molecular properties: invariant regression under SO3/O3 + translations (MAE)"
    metric = "MAE"
    data_names = ("qm9",)
    defaults: ClassVar[dict[str, Any]] = {
        "data": {"name": "qm9", "normalize": False},
        "model": {"architecture": "point_transformer", "kwargs": {"masked": True}},
        "pretrain": {"epochs": 20, "batch_size": 128, "lr": 1e-3},
        "adapt": {
            "group": "SO3",
            "methods": list(_POINT_METHODS),
            "batch_size": 128,
            "epochs": 5,
            "lr_predictor": 2e-4,
            "lr_canonicalizer": 1e-3,
            **CONSTANT_RATE_ADAPT,
        },
    }
    #: data.kwargs of QM9 and their defaults
    data_defaults: ClassVar[dict[str, Any]] = {
        "properties": ["gap"],
        "n_train": 20000,
        "n_val": 2000,
        "n_test": 5000,
    }

    def layout(self) -> PointLayout:
        from equify.data.pointsets import molecule_layout

        return molecule_layout()

    def check(self, cfg: dict[str, Any]) -> None:
        super().check(cfg)
        props = {**self.data_defaults, **cfg["data"]["kwargs"]}["properties"]
        props = [props] if isinstance(props, str) else props
        if not isinstance(props, list) or len(props) != 1:
            raise ValueError(
                "data.kwargs.properties: one QM9 property per run (one model per property, as "
                f"the QM9 literature trains them; the loss and the MAE are in its unit), got "
                f"{props!r}"
            )

    def load_data(self, cfg: dict[str, Any]) -> DataBundle:
        from equify.data.pointsets import molecule_point_sets
        from equify.data.qm9 import qm9_splits

        d = cfg["data"]
        kw = {**self.data_defaults, **d["kwargs"]}
        props = kw["properties"]
        props = [props] if isinstance(props, str) else list(props)
        train, val, test = (
            molecule_point_sets(s)
            for s in qm9_splits(
                kw["n_train"],
                kw["n_val"],
                kw["n_test"],
                properties=tuple(props),
                seed=cfg["seed"],
                root=d["root"],
            )
        )
        return DataBundle(
            "qm9",
            train,
            val,
            test,
            mean=train.targets.mean(0),
            std=train.targets.std(0).clamp_min(1e-8),
        )

    def check_output(self, out: object, x: torch.Tensor, num_classes: int) -> None:
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != num_classes:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"task 'molecules' needs a model that returns (B, {num_classes}) properties "
                f"for point sets {tuple(x.shape)}, got {got}"
            )

    def output_action(self) -> Action:
        return InvariantAction()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # higher is better for the checkpoint choice: the negative MAE
        return -(output - target).abs().mean()

    def _errors(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        mae = (pred - target).abs().mean(0)
        return {"error": float(mae.mean()), "mae": mae.tolist()}

    def unit_note(self, results: dict[str, Any]) -> str:
        from equify.data.qm9 import QM9_PROPERTIES

        props = results["data"].get("targets", [])
        return ", ".join(f"{p}: {QM9_PROPERTIES[p][2]}" for p in props) or "the targets' units"


@register_task
class NBodyDynamics(PointSetTask):
    name = "nbody"
    order = 21
    summary = "charged N-body: positions 1,000 steps ahead, E(3)-equivariant (MSE)"
    metric = "MSE"
    error_name = "MSE"
    data_names = ("nbody",)
    defaults: ClassVar[dict[str, Any]] = {
        "data": {"name": "nbody", "normalize": False},
        "model": {
            "architecture": "point_transformer",
            "kwargs": {"per_point": True, "residual": True},
        },
        "pretrain": {"epochs": 60, "batch_size": 100, "lr": 1e-3},
        "adapt": {
            "group": "SO3",
            "methods": list(_POINT_METHODS),
            "batch_size": 100,
            "epochs": 20,
            "lr_predictor": 2e-4,
            "lr_canonicalizer": 1e-3,
            **CONSTANT_RATE_ADAPT,
        },
    }
    data_defaults: ClassVar[dict[str, Any]] = {
        "n_train": 3000,
        "n_val": 2000,
        "n_test": 2000,
        "n_particles": 5,
    }
    #: simulator settings (``equify.data.simulate_charged``): EGNN's exact steps are frames 31 -> 41
    extra_kwargs: ClassVar[tuple[str, ...]] = (
        "input_frame",
        "target_frame",
        "sample_every",
        "dt",
        "interaction_strength",
        "loc_std",
        "vel_norm",
    )

    def layout(self) -> PointLayout:
        from equify.data.pointsets import nbody_layout

        return nbody_layout()

    def load_data(self, cfg: dict[str, Any]) -> DataBundle:
        from equify.data.nbody import load_nbody
        from equify.data.pointsets import nbody_point_sets

        kw = {**self.data_defaults, **cfg["data"]["kwargs"]}
        train, val, test = (nbody_point_sets(s) for s in load_nbody(seed=cfg["seed"], **kw))
        # positions are predicted as they are: no target scaling (it would break translation)
        return DataBundle("nbody", train, val, test, mean=torch.zeros(1), std=torch.ones(1))

    def check_output(self, out: object, x: torch.Tensor, num_classes: int) -> None:
        want = (x.shape[0], x.shape[1], 3)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"task 'nbody' needs a model that returns positions {want} for systems "
                f"{tuple(x.shape)}, got {got}"
            )

    def output_action(self) -> Action:
        return PointSetAction(PointLayout())

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -F.mse_loss(output, target)

    def _errors(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        return {"error": float(((pred - target) ** 2).mean())}

    def unit_note(self, results: dict[str, Any]) -> str:
        return "squared length units per coordinate (as Satorras et al. 2021)"
