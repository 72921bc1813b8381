"""Segmentation on the group orbit: mIoU and pixel accuracy of every transformed test image.

A segmenter is judged on ``g·x`` against ``g·y``: the image is transformed by
:class:`~equify.actions.ImageAction`, its label map by :class:`~equify.actions.MaskAction` (the
nearest source pixel; pixels a non-exact rotation brings in from outside are background). An
equivariant segmenter scores the same under every exact element (90° turns, flips) as upright.

Convention:
    The intersection over union of class ``k`` is ``TP / (TP + FP + FN)`` summed over the whole
    test set (not averaged per image); the mIoU averages it over the classes that occur in the
    labels or the predictions of that transformed test set (a class absent from both has no
    IoU). Pixel accuracy counts every pixel, background included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from equify._state import device_of, eval_mode
from equify.actions import Action, ImageAction, MaskAction
from equify.analysis.orbit import _matrices, unique_transformations
from equify.data.rotated import RotationSet
from equify.groups import FiniteGroup
from equify.testing import equivariance_error

__all__ = [
    "SegmentationOrbit",
    "confusion_matrix",
    "dense_equivariance_error",
    "evaluate_segmentation_oracle",
    "evaluate_segmentation_orbits",
    "segmentation_scores",
]


@dataclass(frozen=True)
class SegmentationOrbit:
    """Segmentation scores per transformation of the orbit.

    Attributes:
        names: readable name of each transformation (``"90°"``, ``"flip, then 90°"``).
        angles: rotation angle of each transformation in degrees.
        reflections: whether each transformation flips.
        miou: mean IoU (0..1) on the test set transformed by each transformation.
        pixel_accuracy: fraction of correctly labelled pixels per transformation.
        iou: per-class IoU per transformation (NaN for a class absent from labels and
            predictions).
        count: number of test images.
    """

    names: list[str]
    angles: list[float]
    reflections: list[bool]
    miou: list[float]
    pixel_accuracy: list[float]
    iou: list[list[float]]
    count: int

    @property
    def accuracy(self) -> list[float]:
        """The headline score per transformation (the mIoU), as in ``OrbitEvaluation``."""
        return self.miou

    @property
    def mean(self) -> float:
        """mIoU averaged over the transformations."""
        return sum(self.miou) / len(self.miou)

    @property
    def worst(self) -> float:
        """mIoU of the worst transformation."""
        return min(self.miou)

    def to_dict(self) -> dict:
        """JSON-ready dictionary: the fields, ``accuracy`` (= mIoU), ``mean``, ``worst`` and
        ``pixel_accuracy_mean``."""
        out = asdict(self)
        out["iou"] = [[None if v != v else v for v in row] for row in self.iou]  # NaN -> null
        pa = self.pixel_accuracy
        return {
            **out,
            "accuracy": self.miou,
            "mean": self.mean,
            "worst": self.worst,
            "pixel_accuracy_mean": sum(pa) / len(pa),
        }


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(K, K)`` int64 counts: row = true class, column = predicted class.

    Args:
        pred: integer labels of any shape.
        target: integer labels of the same shape, in ``[0, num_classes)``.
        num_classes: ``K``.
    """
    for name, t in (("predictions", pred), ("labels", target)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
            got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"expected integer {name} (class indices), got {got}")
    if pred.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and labels {tuple(target.shape)} differ in shape"
        )
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] for {num_classes} classes, got values "
            f"in [{int(t.min())}, {int(t.max())}]"
        )
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(
            f"the model predicts classes up to {int(p.max())}, but there are {num_classes}: "
            "its output has more channels than the data set has classes"
        )
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).view(
        num_classes, num_classes
    )


def segmentation_scores(conf: torch.Tensor) -> dict[str, Any]:
    """``{"miou", "pixel_accuracy", "iou"}`` from a confusion matrix (module Convention)."""
    conf = conf.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    present = union > 0
    total = float(conf.sum())
    return {
        "miou": float(iou[present].mean()) if bool(present.any()) else float("nan"),
        "pixel_accuracy": float(tp.sum()) / total if total else float("nan"),
        "iou": iou.tolist(),
    }


def _check(dataset: object, batch_size: object) -> tuple[torch.Tensor, torch.Tensor, int]:
    images, masks = getattr(dataset, "images", None), getattr(dataset, "masks", None)
    if not isinstance(images, torch.Tensor) or not isinstance(masks, torch.Tensor):
        raise TypeError(
            "expected a segmentation dataset with `images` (N, C, H, W) and `masks` (N, H, W) "
            f"tensors (an equify SegmentationDataset), got {type(dataset).__name__}"
        )
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"expected images (N, C, H, W) and masks (N, H, W) of the same N, H, W, got "
            f"{tuple(images.shape)} and {tuple(masks.shape)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    classes = getattr(dataset, "num_classes", None)
    k = int(classes) if classes is not None else int(masks.max()) + 1 if masks.numel() else 1
    return images, masks, k


def _labels(model: Callable, x: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """``argmax`` of the segmenter's logits on ``x``, after checking their shape (any class
    count when ``num_classes`` is None)."""
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[2:] != x.shape[2:]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"a segmenter must return logits (B, K, H, W) for inputs {tuple(x.shape)}, got {got}"
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise ValueError(
            f"the segmenter returns {out.shape[1]} class channels, the data set has "
            f"{num_classes} classes"
        )
    return out.argmax(1)


def _orbit_confusions(
    model: Callable,
    dataset: Any,
    batch_size: int,
    transforms: list[tuple[Callable, Callable, Callable]],
) -> list[torch.Tensor]:
    """One confusion matrix per ``(image transform, mask transform, prediction map)``."""
    images, masks, k = _check(dataset, batch_size)
    device = device_of(model)
    confs = [torch.zeros(k, k, dtype=torch.long) for _ in transforms]
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            raw = images[start : start + batch_size].to(device)
            y = masks[start : start + batch_size].to(device)
            for u, (tx, ty, tp) in enumerate(transforms):
                pred = tp(_labels(model, tx(raw), k))
                confs[u] += confusion_matrix(pred.cpu(), ty(y).cpu(), k)
    return confs


def _orbit(rs: RotationSet, confs: list[torch.Tensor], n: int) -> SegmentationOrbit:
    scores = [segmentation_scores(c) for c in confs]
    return SegmentationOrbit(
        names=rs.names(),
        angles=[float(a) for a in rs.angles],
        reflections=[bool(r) for r in rs.reflections],
        miou=[s["miou"] for s in scores],
        pixel_accuracy=[s["pixel_accuracy"] for s in scores],
        iou=[s["iou"] for s in scores],
        count=n,
    )


@torch.no_grad()
def evaluate_segmentation_orbits(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    rotation_sets: list,
    batch_size: int = 64,
    action: Action | None = None,
) -> list[SegmentationOrbit]:
    """mIoU and pixel accuracy of a segmenter on every transformation of each rotation set.

    A transformation shared by several sets (the identity, the 90° turns of a 15° sweep) is
    evaluated once.

    Args:
        model: ``(B, C, H, W)`` raw images -> ``(B, K, H, W)`` logits; evaluated in eval mode.
        dataset: a :class:`~equify.data.SegmentationDataset` (``images``, ``masks``,
            ``num_classes``), upright.
        rotation_sets: RotationSets, finite groups or their names, or angle lists (degrees).
        batch_size: images per forward pass.
        action: the image action (default ``ImageAction()``: zeros fill the corners).

    Returns:
        One :class:`SegmentationOrbit` per rotation set.
    """
    _check(dataset, batch_size)
    sets = [RotationSet.parse(r) for r in rotation_sets]
    rep, where = unique_transformations(sets)
    masks = MaskAction(fill_value=0)

    def pair(si: int, k: int) -> tuple[Callable, Callable, Callable]:
        rs = sets[si]
        return (
            lambda raw: rs.apply(raw, k, action),
            lambda y: rs.apply(y.unsqueeze(1), k, masks).squeeze(1),
            lambda p: p,
        )

    confs = _orbit_confusions(model, dataset, batch_size, [pair(si, k) for si, k in rep])
    n = len(dataset.images)
    return [_orbit(rs, [confs[u] for u in slots], n) for rs, slots in zip(sets, where, strict=True)]


@torch.no_grad()
def evaluate_segmentation_oracle(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    rotations: Any,
    batch_size: int = 64,
    action: Action | None = None,
    inverse_action: Action | None = None,
) -> SegmentationOrbit:
    """The oracle canonicalizer for a segmenter: ``g·argmax model(g⁻¹·(g·x))`` against ``g·y``.

    Each orbit image (made with ``action``) is turned back by its true inverse (with
    ``inverse_action``, default ``action``: give the canonicalizer's own, e.g.
    :func:`~equify.canonicalization.input_image_action`), segmented upright, and the label map
    carried forward by ``g`` again (as a canonicalized segmenter's output is). Exact elements
    give the upright scores; other angles lose what two interpolations lose.
    """
    _check(dataset, batch_size)
    rs = RotationSet.parse(rotations)
    act = action if action is not None else ImageAction()
    back_act = inverse_action if inverse_action is not None else act
    mats = _matrices(rs)
    masks = MaskAction(fill_value=0)

    def triple(k: int) -> tuple[Callable, Callable, Callable]:
        def back(raw: torch.Tensor) -> torch.Tensor:
            inv = mats[k].T.to(raw.device).expand(raw.shape[0], 2, 2)
            return back_act.apply(rs.apply(raw, k, act), inv)

        def forward_labels(p: torch.Tensor) -> torch.Tensor:
            return masks.apply(p, mats[k].to(p.device).expand(p.shape[0], 2, 2))

        return back, lambda y: rs.apply(y.unsqueeze(1), k, masks).squeeze(1), forward_labels

    confs = _orbit_confusions(model, dataset, batch_size, [triple(k) for k in range(len(rs))])
    return _orbit(rs, confs, len(dataset.images))


def dense_equivariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    group: FiniteGroup,
    action: Action | None = None,
) -> dict[str, float]:
    """How far a segmenter is from equivariance: ``Φ(g·x)`` against ``g·Φ(x)`` over the group.

    Args:
        model: ``(B, C, H, W) -> (B, K, H, W)`` logits; evaluated in eval mode.
        images: ``(B, C, H, W)`` inputs.
        group: the finite group whose every element is applied.
        action: how the group acts on images and on the logit maps (default ``ImageAction()``).

    Returns:
        ``{"max_abs", "max_relative", "mean_abs"}`` of the logits and ``label_agreement``: the
        fraction of pixels (over all elements) where ``argmax Φ(g·x) = g·argmax Φ(x)``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected a non-empty batch of images (B, C, H, W), got {got}")
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"expected a finite group (C<n>, D<n>), got {group!r}")
    act = action if action is not None else ImageAction()
    with eval_mode(model), torch.no_grad():
        rep = equivariance_error(model, images, group, act, act)
        base = _labels(model, images, None)
        agree, total = 0, 0
        for g in group.elements().tolist():
            moved = _labels(model, act.apply(images, g, group), None)
            expected = MaskAction().apply(base, g, group)
            agree += int((moved == expected).sum())
            total += moved.numel()
    return {
        "max_abs": rep.max_error(),
        "max_relative": rep.max_relative_error(),
        "mean_abs": float(rep.mean_abs.mean()),
        "label_agreement": agree / total if total else float("nan"),
    }
