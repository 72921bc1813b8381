"""Semantic segmentation: per-pixel class logits that move with the image (mIoU).

The predictor maps ``(B, C, H, W)`` raw images to ``(B, K, H, W)`` logits; the group acts on them
as on images (:class:`~equify.actions.ImageAction`), on the label maps as on masks
(:class:`~equify.actions.MaskAction`). An adapted segmenter is therefore judged on ``g·x``
against ``g·y``: canonicalized, its label maps are exactly equivariant for 90° turns and flips
(at odd and even sizes), so its orbit mIoU equals its upright mIoU.

Data: ``digit-scenes`` / ``fashion-scenes`` (several real MNIST / Fashion-MNIST images on one
canvas, background + one class per digit: a turned 6 reads as a 9) and ``nuclei`` (the real
fluorescence image with 125 labelled nuclei that ships with ``stardist``, tiled, split by
region). ``data.size`` is the canvas (tile) size; ``data.kwargs`` goes to the loader
(``n_train``, ``n_test``, ``per_scene`` for scenes).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from equify._state import device_of, eval_mode
from equify.actions import Action, ImageAction, MaskAction
from equify.analysis import (
    dense_equivariance_error,
    evaluate_segmentation_oracle,
    evaluate_segmentation_orbits,
)
from equify.canonicalization import input_image_action
from equify.data import load_segmentation_splits, segmentation_datasets
from equify.data.rotated import RotationSet
from equify.data.segmentation_loading import canonical_segmentation_name
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group
from equify.training.bundle import DataBundle
from equify.training.tasks.base import (
    CONSTANT_RATE_ADAPT,
    Task,
    orbit_rotations,
    pct,
    register_task,
)
from equify.training.tasks.classification import tie_notes

__all__ = ["Segmentation"]


def _validation_split(train: Any, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train indices, validation indices)``: a seeded random share of the scenes, or for
    overlapping tiles (``tile_origins``) the right-most columns of the training region, with the
    training tiles that overlap them dropped (a validation tile must share no pixel with them)."""
    n = len(train)
    origins = getattr(train, "tile_origins", None)
    if origins is None or n < 2:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        n_val = max(1, round(n * fraction)) if n > 1 else 0
        return order[n_val:], order[:n_val]
    tile = int(train.image_shape[-1])
    cols = origins[:, 1]
    starts = sorted(set(cols.tolist()))
    # the fewest right-most tile columns that hold at least `fraction` of the tiles
    cut = starts[-1]
    for c in reversed(starts):
        cut = c
        if int((cols >= c).sum()) >= fraction * n:
            break
    val = (cols >= cut).nonzero().squeeze(1)
    keep = (cols + tile <= cut).nonzero().squeeze(1)
    return keep, val


@register_task
class Segmentation(Task):
    name = "segmentation"
    order = 1
    summary = "semantic segmentation: per-pixel logits mapped back with the image (mIoU)"
    metric = "mIoU"
    # batches of 16 scenes: a U-Net learns the ten digit classes from many small steps (8
    # epochs of 112 steps: upright mIoU 0.89 on the test scenes; 10 epochs of 28 steps of 64
    # scenes reached 0.18)
    defaults: ClassVar[dict[str, Any]] = {
        "data": {"name": "digit-scenes"},
        "model": {"architecture": "unet"},
        "pretrain": {"epochs": 8, "batch_size": 16},
        "adapt": {
            "batch_size": 16,
            **CONSTANT_RATE_ADAPT,
            "epochs": 5,
            "lr_canonicalizer": 2e-3,
        },
    }

    def check(self, cfg: dict[str, Any]) -> None:
        super().check(cfg)
        try:
            canonical_segmentation_name(cfg["data"]["name"])
        except (TypeError, ValueError):
            raise ValueError(
                f"task 'segmentation' needs a segmentation data set "
                f"({', '.join(segmentation_datasets())}), got data.name {cfg['data']['name']!r}"
            ) from None
        if cfg["adapt"]["prior"] == "data":
            raise ValueError(
                "adapt.prior=data estimates the prior from a classifier's confidence; task "
                "'segmentation' supports adapt.prior=identity"
            )
        from equify.training.config import DEFAULTS  # (config imports the task registry)

        # keys of the classification loaders that the segmentation ones do not read
        for key, why in (
            ("fit", "scenes are drawn at data.size and nuclei tiled at it"),
            (
                "test_fraction",
                "the test scenes are data.kwargs.n_test; nuclei test on the "
                "right quarter of the image",
            ),
        ):
            if cfg["data"][key] != DEFAULTS["data"][key]:
                raise ValueError(
                    f"data.{key} does not apply to task 'segmentation' ({why}); got "
                    f"{cfg['data'][key]!r}"
                )

    def load_data(self, cfg: dict[str, Any]) -> DataBundle:
        d = cfg["data"]
        train, test = load_segmentation_splits(
            d["name"], size=d["size"], seed=cfg["seed"], root=d["root"], **dict(d["kwargs"])
        )
        tr_idx, val_idx = _validation_split(train, d["val_fraction"], cfg["seed"] + 1)
        if d["max_train"] is not None:
            tr_idx = tr_idx[: d["max_train"]]
        if d["max_val"] is not None:
            val_idx = val_idx[: d["max_val"]]
        if d["max_test"] is not None:
            test = test.subset(torch.arange(min(d["max_test"], len(test))))
        train_split = train.subset(tr_idx)
        c = train_split.image_shape[0]
        if d["normalize"] and len(train_split):
            pixels = train_split.images.transpose(0, 1).reshape(c, -1).double()
            mean, std = pixels.mean(1).float(), pixels.std(1).clamp_min(1e-6).float()
        else:
            mean, std = torch.zeros(c), torch.ones(c)
        return DataBundle(
            name=canonical_segmentation_name(d["name"]),
            train=train_split,
            val=train.subset(val_idx),
            test=test,
            mean=mean,
            std=std,
        )

    def check_output(self, out: object, x: torch.Tensor, num_classes: int) -> None:
        want = (num_classes, *x.shape[2:])
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or tuple(out.shape[1:]) != want:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"task 'segmentation' needs a model that returns per-pixel logits "
                f"(B, {num_classes}, {x.shape[2]}, {x.shape[3]}) for images {tuple(x.shape)}, "
                f"got {got} (a dense predictor such as --model unet)"
            )

    def output_action(self) -> Action:
        return ImageAction()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.argmax(1) == target).float().mean()  # pixel accuracy

    def augment(self, x, y, rotations: RotationSet, which):
        masks = rotations.apply(y.unsqueeze(1), which, MaskAction(fill_value=0)).squeeze(1)
        return rotations.apply(x, which), masks

    def _group(self, cfg: dict[str, Any]) -> Group:
        """The group the equivariance error is measured over: the exact part of the configured
        one (its 90° turns and flips: C4 for C8, D4 for D8, C2 for C6; C4 for SO2 / O2), where
        a canonicalized segmenter must be exact; 45° turns interpolate the corners away."""
        g = parse_group(cfg["adapt"]["group"])
        if not isinstance(g, FiniteGroup):
            return parse_group("C4")
        n = math.gcd(g.n, 4) if hasattr(g, "n") else 1
        return parse_group(f"{'D' if bool(g.is_reflection(g.elements()).any()) else 'C'}{n}")

    def evaluate(
        self, model: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        angles = list(range(0, 360, e["angles_step"]))
        test = data.test
        up, orbit, curve = evaluate_segmentation_orbits(
            model,
            test,
            [[0.0], orbit_rotations(cfg["adapt"]["group"]), angles],
            e["batch_size"],
        )
        g = self._group(cfg)
        n = min(e["invariance_images"], len(test))
        error = (
            dense_equivariance_error(model, test.images[:n].to(device), g)
            if n
            else dict.fromkeys(("max_abs", "max_relative", "mean_abs", "label_agreement"), math.nan)
        )
        return {
            "upright_miou": up.miou[0],
            "upright_pixel_accuracy": up.pixel_accuracy[0],
            "upright_iou": [None if v != v else v for v in up.iou[0]],  # NaN: absent class
            "orbit": orbit.to_dict(),
            "angles": curve.to_dict(),
            "equivariance_error": error,
            "equivariance_group": str(g),
        }

    def evaluate_oracle(
        self, bare: nn.Module, data: Any, cfg: dict[str, Any], device: torch.device
    ) -> dict[str, Any]:
        e = cfg["evaluate"]
        back = input_image_action()  # turned back as the canonicalizers turn their inputs
        orbit = evaluate_segmentation_oracle(
            bare,
            data.test,
            orbit_rotations(cfg["adapt"]["group"]),
            e["batch_size"],
            inverse_action=back,
        )
        angles = evaluate_segmentation_oracle(
            bare,
            data.test,
            list(range(0, 360, e["angles_step"])),
            e["batch_size"],
            inverse_action=back,
        )
        return {
            "upright_miou": angles.miou[0],
            "upright_pixel_accuracy": angles.pixel_accuracy[0],
            "orbit": orbit.to_dict(),
            "angles": angles.to_dict(),
            "about": "the pretrained segmenter on g⁻¹·(g·x), its label map carried forward by g: "
            "the best any canonicalizer of this segmenter can do on the orbit",
        }

    def format_table(self, results: dict[str, Any]) -> str:
        group = results["group"]
        width = max(13, *(len(n) + 2 for n in results["methods"]))
        head = (
            f"{'method':<{width}}{'mIoU':>8}{group + ' orbit':>11}{'worst el.':>11}"
            f"{'all angles':>12}{'pix. acc':>10}{'eq. err':>10}{'labels =':>10}"
            f"{'identity':>10}{'+params':>9}{'passes':>8}{'time x':>8}"
        )
        lines = [head, "-" * len(head)]
        for name, m in results["methods"].items():
            canon = m.get("canonicalization", m.get("symmetrization", {}))
            cost, err = m["cost"], m["equivariance_error"]
            lines.append(
                f"{name:<{width}}{pct(m['upright_miou']):>8}{pct(m['orbit']['mean']):>11}"
                f"{pct(m['orbit']['worst']):>11}{pct(m['angles']['mean']):>12}"
                f"{pct(m['orbit']['pixel_accuracy_mean']):>10}{err['max_relative']:>10.1e}"
                f"{pct(err['label_agreement']):>10}"
                f"{pct(canon.get('identity_fraction_upright')):>10}"
                f"{100 * cost['extra_params_fraction']:>8.2f}%"
                f"{m.get('predictor_passes_per_input', 1.0):>8.2f}{cost['time_ratio']:>8.2f}"
            )
        oracle = results.get("oracle")
        if oracle:
            lines.append(
                f"{'oracle':<{width}}{pct(oracle['upright_miou']):>8}"
                f"{pct(oracle['orbit']['mean']):>11}{pct(oracle['orbit']['worst']):>11}"
                f"{pct(oracle['angles']['mean']):>12}"
                f"{pct(oracle['orbit']['pixel_accuracy_mean']):>10}"
                + "".join(f"{'-':>{w}}" for w in (10, 10, 10, 9, 8, 8))
            )
        notes = [
            f"mIoU over the test set (background included); orbit: every test scene under every "
            f"element of {group}; pix. acc: pixel accuracy on the orbit; eq. err: largest relative "
            "change of the logit maps, Φ(g·x) against g·Φ(x); labels =: pixels where the label "
            "map of g·x equals g applied to that of x (both over "
            f"{next(iter(results['methods'].values()))['equivariance_group']}, the exact elements)"
        ]
        if oracle:
            notes.append(
                "oracle: the pretrained segmenter on g⁻¹·(g·x), its labels carried forward by g "
                "(the best a canonicalizer of this segmenter can do on the orbit)"
            )
        return "\n".join(lines + notes + tie_notes(results))

    def summarize(self, results: dict[str, Any]) -> str:
        group = results["group"]
        lines = []
        for name, m in results["methods"].items():
            err = m["equivariance_error"]
            lines.append(
                f"{name}: upright mIoU {100 * m['upright_miou']:.2f}%, {group} orbit mIoU "
                f"{100 * m['orbit']['mean']:.2f}% (worst element {100 * m['orbit']['worst']:.2f}%),"
                f" label maps equivariant on {100 * err['label_agreement']:.2f}% of pixels"
            )
        return "\n".join(lines)

    def plots(self, results: dict[str, Any], models: dict[str, nn.Module], data: Any) -> list:
        return [
            (
                "segmentation_examples",
                lambda path: plot_segmentation_examples(models, data.test, results, path),
            )
        ]


@torch.no_grad()
def plot_segmentation_examples(
    models: dict[str, nn.Module], test: Any, results: dict[str, Any], path: Any, n: int = 3
) -> bool:
    """Rows of test scenes: the input, its turned copy, the true labels of the copy, and the
    label maps every model predicts on the copy (the pretrained model first)."""
    from equify.training.report import pyplot

    n = min(n, len(test))
    if n == 0 or not models:
        return False
    rs = RotationSet.parse(orbit_rotations(results["group"]))
    # the turn by 90° (exact for a canonicalized segmenter), else the first other element
    turns = [
        i
        for i, (a, r) in enumerate(zip(rs.angles.tolist(), rs.reflections.tolist(), strict=True))
        if round(a) == 90 and not r
    ]
    k = turns[0] if turns else min(1, len(rs) - 1)
    images = test.images[:n]
    turned = rs.apply(images, k)
    truth = rs.apply(test.masks[:n].unsqueeze(1), k, MaskAction()).squeeze(1)
    columns: list[tuple[str, torch.Tensor, bool]] = [
        ("input", images, False),
        (f"turned ({rs.names()[k]})", turned, False),
        ("true labels", truth, True),
    ]
    for name, model in models.items():
        with eval_mode(model):
            pred = model(turned.to(device_of(model))).argmax(1).cpu()
        columns.append((name, pred, True))
    plt = pyplot()
    classes = max(int(test.num_classes), 2)
    fig, axes = plt.subplots(n, len(columns), figsize=(1.6 * len(columns), 1.7 * n), squeeze=False)
    for c, (title, values, is_labels) in enumerate(columns):
        for r in range(n):
            ax = axes[r][c]
            if is_labels:
                ax.imshow(values[r], cmap="tab20", vmin=0, vmax=max(classes - 1, 19))
            else:
                ax.imshow(values[r, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][c].set_title(title, fontsize=7)
    fig.suptitle(f"{results['data']['name']}: predicted label maps on a turned scene", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
