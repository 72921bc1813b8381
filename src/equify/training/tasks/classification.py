"""Image classification: class logits, invariant to the group (the default task)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equify.actions import Action, InvariantAction
from equify.analysis import evaluate_oracle, evaluate_orbits, invariance_error
from equify.canonicalization import input_image_action
from equify.data.rotated import RotationSet
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group
from equify.training.bundle import DataBundle, prepare_classification_data
from equify.training.tasks.base import Task, orbit_rotations, pct, register_task

__all__ = ["Classification", "tie_notes"]


def tie_notes(results: dict[str, Any]) -> list[str]:
    """One line per method whose canonicalizer met tied inputs on the upright test set."""
    notes = []
    for name, m in results["methods"].items():
        canon = m.get("canonicalization", {})
        tied = canon.get("tied_samples_upright", 0)
        degenerate = canon.get("degenerate_samples_upright", 0)
        if tied or degenerate:
            passes = canon.get("predictor_passes_per_input_upright", math.nan)
            notes.append(
                f"{name}: {tied} upright test input(s) with tied canonical elements "
                f"({degenerate} with a degenerate frame), averaged over their tie sets; "
                f"{passes:.3f} predictor passes per input"
            )
    return notes


@register_task
class Classification(Task):
    name = "classification"
    order = 0
    summary = "image classification: logits invariant to the group (accuracy)"

    def check(self, cfg: dict[str, Any]) -> None:
        super().check(cfg)
        if cfg["data"]["kwargs"]:
            raise ValueError(
                f"data.kwargs ({cfg['data']['kwargs']!r}) goes to the segmentation loaders; the "
                "classification data sets take data.size, data.fit and the split settings"
            )

    def load_data(self, cfg: dict[str, Any]) -> DataBundle:
        return prepare_classification_data(cfg)

    def check_output(self, out: object, x: torch.Tensor, num_classes: int) -> None:
        # more logits than classes train and evaluate (the extra ones are never the label);
        # fewer would fail inside the cross-entropy
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < num_classes:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"task 'classification' needs a model that returns logits (B, K) with K >= "
                f"{num_classes} classes for images {tuple(x.shape)}, got {got}"
            )

    def output_action(self) -> Action:
        return InvariantAction()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # class indices, or a teacher's probabilities (the cross-entropy to them is the KL
        # divergence up to a constant)
        return F.cross_entropy(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # soft targets (distillation) count their most likely class
        labels = target.argmax(1) if target.is_floating_point() else target
        return (output.argmax(1) == labels).float().mean()

    def augment(self, x, y, rotations: RotationSet, which):
        return rotations.apply(x, which), y

    def evaluate(
        self, model: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        g = parse_group(cfg["adapt"]["group"])
        angles = list(range(0, 360, e["angles_step"]))
        test = data.test
        # one pass per distinct transformation: upright, the orbit and the sweep share theirs
        up, orbit, curve = evaluate_orbits(
            model, test, [[0.0], orbit_rotations(cfg["adapt"]["group"]), angles], e["batch_size"]
        )
        inv_group: Group = g if isinstance(g, FiniteGroup) else parse_group("C4")
        images = test.images[: min(e["invariance_images"], len(test))].to(device)
        return {
            "upright_accuracy": up.accuracy[0],
            "orbit": orbit.to_dict(),
            "angles": curve.to_dict(),
            "invariance_error": invariance_error(model, images, inv_group),
            "invariance_group": str(inv_group),
        }

    def evaluate_oracle(
        self, bare: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        # the orbit as evaluate_orbit makes it; back with the canonicalizers' own image action
        back = input_image_action()
        orbit = evaluate_oracle(
            bare,
            data.test,
            orbit_rotations(cfg["adapt"]["group"]),
            e["batch_size"],
            inverse_action=back,
        )
        angles = evaluate_oracle(
            bare,
            data.test,
            list(range(0, 360, e["angles_step"])),
            e["batch_size"],
            inverse_action=back,
        )
        return {
            "upright_accuracy": angles.accuracy[0],  # 0°: the round trip is the identity
            "orbit": orbit.to_dict(),
            "angles": angles.to_dict(),
            "about": "the pretrained model on g⁻¹·(g·x) for every orbit image g·x: the best any "
            "canonicalizer of this predictor can do on the orbit",
        }

    def format_table(self, results: dict[str, Any]) -> str:
        group = results["group"]
        width = max(13, *(len(n) + 2 for n in results["methods"]))
        head = (
            f"{'method':<{width}}{'upright':>9}{group + ' orbit':>12}{'worst el.':>11}"
            f"{'all angles':>12}{'inv. err':>11}{'identity':>10}{'+params':>9}{'passes':>8}"
            f"{'time x':>8}"
        )
        lines = [head, "-" * len(head)]
        for name, m in results["methods"].items():
            canon = m.get("canonicalization", m.get("symmetrization", {}))
            cost = m["cost"]
            passes = m.get("predictor_passes_per_input", 1.0)
            lines.append(
                f"{name:<{width}}{pct(m['upright_accuracy']):>9}{pct(m['orbit']['mean']):>12}"
                f"{pct(m['orbit']['worst']):>11}{pct(m['angles']['mean']):>12}"
                f"{m['invariance_error']['max_abs']:>11.1e}"
                f"{pct(canon.get('identity_fraction_upright')):>10}"
                f"{100 * cost['extra_params_fraction']:>8.2f}%{passes:>8.2f}"
                f"{cost['time_ratio']:>8.2f}"
            )
        oracle = results.get("oracle")
        if oracle:
            lines.append(
                f"{'oracle':<{width}}{pct(oracle['upright_accuracy']):>9}"
                f"{pct(oracle['orbit']['mean']):>12}{pct(oracle['orbit']['worst']):>11}"
                f"{pct(oracle['angles']['mean']):>12}{'-':>11}{'-':>10}{'-':>9}{'-':>8}{'-':>8}"
            )
        notes = []
        if oracle:
            notes.append(
                "oracle: the pretrained model on g⁻¹·(g·x), every orbit image turned back by its "
                "true inverse (the best a canonicalizer of this predictor can do on the orbit)"
            )
        notes += tie_notes(results)
        learned = results.get("learned_equivariance")
        if learned:
            notes.append("learned equivariance of the returned model (θ: fraction of the circle):")
            for layer, values in learned["selected_model"].items():
                text = f"  {layer:<14} θ = {values['theta']:.3f}"
                if "reflection_probability" in values:
                    text += f"   reflection p = {values['reflection_probability']:.3f}"
                notes.append(text)
        return "\n".join(lines + notes)

    def summarize(self, results: dict[str, Any]) -> str:
        group = results["group"]
        lines = []
        for name, m in results["methods"].items():
            inv = m["invariance_error"]["max_abs"]
            lines.append(
                f"{name}: upright accuracy {100 * m['upright_accuracy']:.2f}%, {group} orbit "
                f"accuracy {100 * m['orbit']['mean']:.2f}% (worst element "
                f"{100 * m['orbit']['worst']:.2f}%), invariance error {inv:.1e}"
            )
        return "\n".join(lines)
