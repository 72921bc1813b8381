"""The report of a run: a terminal table, ``results.json`` and PNG plots.

Plots (matplotlib, the ``train`` extra):

* ``accuracy_vs_angle.png``: the task's test score (accuracy, mIoU) against rotation angle,
  every method on one figure;
* ``canonical_orientations.png``: histogram of the elements the canonicalizers choose on the
  upright test set, labelled by angle (``flip·90°`` for the flip followed by 90°); for SO(2) /
  O(2) a histogram of the canonical angles (a good prior puts nearly everything at 0°);
* ``canonicalized_examples.png``: randomly rotated test inputs beside their canonicalized
  versions, for each canonicalization method;
* the task's own (segmentation: ``segmentation_examples.png``, a scene, its turned copy and
  every model's label map of the copy).

The table's columns are the task's (:meth:`equify.training.tasks.Task.format_table`).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equify.canonicalization import EquivariantModel
from equify.data import ImageDataset, RotationSet
from equify.groups import FiniteGroup

__all__ = ["element_label", "format_table", "write_report"]

logger = logging.getLogger(__name__)


def _task(results: dict[str, Any]) -> Any:
    from equify.training.tasks import get_task

    return get_task(results.get("task", "classification"))


def format_table(results: dict[str, Any]) -> str:
    """The results as an aligned text table (scores in %), in the task's columns."""
    return _task(results).format_table(results)


def _plot_learned_equivariance(results: dict[str, Any], path: Path) -> bool:
    """θ (and the reflection probability) of every layer against the training epoch."""
    learned = results.get("learned_equivariance")
    if not learned or not learned.get("history"):
        return False
    history = learned["history"]
    layers = list(history[-1]["layers"])
    keys = [k for k in ("theta", "reflection_probability") if k in history[-1]["layers"][layers[0]]]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, key in zip(axes[0], keys, strict=True):
        for layer in layers:
            ax.plot(
                epochs, [h["layers"][layer][key] for h in history], marker="o", ms=3, label=layer
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("θ (fraction of the circle)" if key == "theta" else "P(keep reflections)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{results['data']['name']}: learned equivariance per layer ({learned['group']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_angles(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for name, m in results["methods"].items():
        ang = m["angles"]["angles"] + [360.0]
        acc = [100 * a for a in m["angles"]["accuracy"]]
        ax.plot(ang, acc + acc[:1], marker="o", ms=3, label=name)
    if results.get("oracle"):
        o = results["oracle"]["angles"]
        acc = [100 * a for a in o["accuracy"]]
        ax.plot(o["angles"] + [360.0], acc + acc[:1], ls="--", color="k", label="oracle")
    ax.set_xlabel("rotation of the test set (degrees, counter-clockwise)")
    ax.set_ylabel(f"test {_task(results).metric} (%)")
    ax.set_xticks(range(0, 361, 45))
    metric = _task(results).metric
    ax.set_title(f"{results['data']['name']}: {metric} against rotation ({results['group']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=5, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def element_label(group: FiniteGroup, index: int) -> str:
    """``"90°"`` for a rotation, ``"flip·90°"`` for ``r^k s`` (the flip, then the rotation)."""
    deg = round(float(group.angle(index)) * 180 / math.pi, 1)
    text = f"{deg:g}°"
    return f"flip·{text}" if bool(group.is_reflection(index)) else text


def _plot_histograms(results: dict[str, Any], path: Path) -> bool:
    from equify.groups import group as parse_group

    items = []
    for name, m in results["methods"].items():
        canon = m.get("canonicalization", {})
        if "histogram_upright" in canon:
            items.append((name, "finite", canon["histogram_upright"]))
        elif canon.get("angles_upright_deg"):
            items.append((name, "angles", canon))
    if not items:
        return False
    g = parse_group(results["group"])
    plt = pyplot()
    fig, axes = plt.subplots(1, len(items), figsize=(4.5 * len(items), 3.2), squeeze=False)
    for ax, (name, kind, data) in zip(axes[0], items, strict=True):
        if kind == "finite":
            labels = [element_label(g, i) for i in range(len(data))]
            ax.bar(range(len(data)), data)
            ax.set_xticks(range(len(data)))
            ax.set_xticklabels(labels, rotation=45 if len(data) > 4 else 0, fontsize=7)
            ax.set_xlabel("chosen element c(x)")
        else:
            angles = data["angles_upright_deg"]
            refl = data.get("reflections_upright") or [False] * len(angles)
            rot = [a for a, r in zip(angles, refl, strict=True) if not r]
            fl = [a for a, r in zip(angles, refl, strict=True) if r]
            bins = list(range(-180, 181, 15))
            ax.hist(
                [rot, fl] if fl else [rot],
                bins=bins,
                stacked=True,
                label=["rotation", "with reflection"] if fl else ["rotation"],
            )
            ax.set_xticks(range(-180, 181, 90))
            ax.set_xlabel("angle of c(x) (degrees)")
            if fl:
                ax.legend(fontsize=7)
        ax.set_ylabel("test images")
        ax.set_title(f"{name}: canonical orientations", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


@torch.no_grad()
def _plot_examples(
    models: dict[str, nn.Module], data: ImageDataset, group_spec: Any, path: Path, n: int = 8
) -> bool:
    canon = {k: m for k, m in models.items() if isinstance(m, EquivariantModel)}
    n = min(n, len(data))
    if not canon or n == 0:
        return False
    plt = pyplot()
    rs = RotationSet.parse(group_spec)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data), generator=gen)[:n]
    which = torch.randint(len(rs), (n,), generator=gen)
    rows = [("rotated input", rs.apply(data.images[idx], which))]
    for name, model in canon.items():
        dev = next(model.parameters()).device
        x_c, _ = model.canonicalizer.canonicalize(rows[0][1].to(dev))
        rows.append((f"{name}: canonicalized", x_c.cpu()))
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.2 * max(n, 2), 1.3 * len(rows)), squeeze=False
    )
    for r, (title, imgs) in enumerate(rows):
        for c in range(n):
            img = imgs[c].clamp(0, 1)
            ax = axes[r][c]
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img[:3].permute(1, 2, 0))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _write_json(results: dict[str, Any], run_dir: Path) -> None:
    tmp = run_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(run_dir / "results.json")


def write_report(
    results: dict[str, Any], models: dict[str, nn.Module], data: Any, run_dir: Path
) -> dict[str, str]:
    """Write ``results.json`` and then the plots into ``run_dir``; returns the files written.

    The results are written first: a plot that fails (odd data, a matplotlib problem) is a
    logged warning and never costs the run its results.
    """
    from equify.groups import group as parse_group

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    files = {"results": str(run_dir / "results.json")}
    results["files"] = files
    _write_json(results, run_dir)
    g = parse_group(results["group"])
    spec = g if isinstance(g, FiniteGroup) else list(range(0, 360, 15))
    task = _task(results)
    images = (
        ("accuracy_vs_angle", lambda p: _plot_angles(results, p)),
        ("canonical_orientations", lambda p: _plot_histograms(results, p)),
        ("canonicalized_examples", lambda p: _plot_examples(models, data.test, spec, p)),
        ("learned_equivariance", lambda p: _plot_learned_equivariance(results, p)),
    )
    plots = (*(images if task.image_task else ()), *task.plots(results, models, data))
    for name, plot in plots:
        path = run_dir / f"{name}.png"
        try:
            if plot(path):
                files[name] = str(path)
        except Exception as err:  # a plot must never lose the run
            logger.warning(
                "could not draw %s (%s: %s); the results are saved", path, type(err).__name__, err
            )
    _write_json(results, run_dir)
    return files
