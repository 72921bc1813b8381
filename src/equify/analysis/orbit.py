"""Accuracy on the group orbit of a test set: every test image under every transformation.

This is the papers' "C8-augmented test set" (Mondal et al., 2023) and, with a list of angles,
accuracy against rotation angle for continuous rotations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from equify._state import device_of, eval_mode
from equify.actions import Action, ImageAction, InvariantAction
from equify.actions.image import exact_codes
from equify.data.dataset import ImageDataset
from equify.data.rotated import RotationSet, angle_matrices
from equify.groups import FiniteGroup
from equify.testing import equivariance_error

__all__ = [
    "OrbitEvaluation",
    "evaluate_oracle",
    "evaluate_orbit",
    "evaluate_orbits",
    "invariance_error",
    "rotation_consistency",
]


@dataclass(frozen=True)
class OrbitEvaluation:
    """Accuracy per transformation of the orbit.

    Attributes:
        names: readable name of each transformation (``"90°"``, ``"flip, then 90°"``).
        angles: rotation angle of each transformation in degrees.
        reflections: whether each transformation flips.
        accuracy: accuracy (0..1) on the test set transformed by each transformation.
        count: number of test images.
    """

    names: list[str]
    angles: list[float]
    reflections: list[bool]
    accuracy: list[float]
    count: int

    @property
    def mean(self) -> float:
        """Accuracy over the whole orbit (every image under every transformation)."""
        return sum(self.accuracy) / len(self.accuracy)

    @property
    def worst(self) -> float:
        """Accuracy of the worst transformation."""
        return min(self.accuracy)

    def to_dict(self) -> dict:
        """JSON-ready dictionary including ``mean`` and ``worst``."""
        return {**asdict(self), "mean": self.mean, "worst": self.worst}


def _matrices(rs: RotationSet) -> torch.Tensor:
    if rs.group is not None:
        return rs.group.matrix(rs.indices, dtype=torch.float64)
    return angle_matrices(rs.angles)


def _transform_keys(rs: RotationSet) -> list[tuple]:
    """Keys equal exactly when two transformations give bit-identical images.

    An exact element (a multiple of 90°, a flip) is keyed by its index-permutation code; any
    other by the bytes of its float64 matrix.
    """
    mats = _matrices(rs)
    codes = exact_codes(mats)
    return [
        ("exact", int(c)) if int(c) >= 0 else ("matrix", tuple(m.flatten().tolist()))
        for c, m in zip(codes, mats, strict=True)
    ]


def unique_transformations(
    sets: list[RotationSet],
) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """The distinct transformations of several rotation sets (bit-identical images share one).

    Returns:
        ``(rep, where)``: ``rep[u]`` is ``(set, position)`` of the representative of distinct
        transformation ``u``; ``where[s][k]`` is the ``u`` of position ``k`` of set ``s``.
    """
    unique: dict[tuple, int] = {}
    rep: list[tuple[int, int]] = []
    where: list[list[int]] = []
    for si, rs in enumerate(sets):
        slots = []
        for k, key in enumerate(_transform_keys(rs)):
            if key not in unique:
                unique[key] = len(rep)
                rep.append((si, k))
            slots.append(unique[key])
        where.append(slots)
    return rep, where


def _check_inputs(dataset: object, batch_size: object) -> None:
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"expected an equify ImageDataset, got {type(dataset).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _accuracies(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    batch_size: int,
    transforms: list[Callable[[torch.Tensor], torch.Tensor]],
) -> list[float]:
    """Accuracy of ``model`` on ``dataset`` under each transform of the raw ``[0, 1]`` pixels
    (normalisation after it), in eval mode (the model's mode is restored)."""
    device = device_of(model)
    correct = torch.zeros(len(transforms), dtype=torch.long)
    with eval_mode(model):
        for start in range(0, len(dataset), batch_size):
            raw = dataset.images[start : start + batch_size].to(device)
            labels = dataset.labels[start : start + batch_size].to(device)
            for u, transform in enumerate(transforms):
                logits = model(dataset.normalize(transform(raw)))
                correct[u] += int((logits.argmax(1) == labels).sum())
    return (correct.double() / max(len(dataset), 1)).tolist()


@torch.no_grad()
def evaluate_orbits(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    rotation_sets: list,
    batch_size: int = 256,
    action: Action | None = None,
) -> list[OrbitEvaluation]:
    """:func:`evaluate_orbit` for several sets at once, each transformation evaluated once.

    A transformation that appears in several sets (the identity in all of them, the 90°
    multiples of a C4 orbit in a 15° sweep) gives bit-identical images, so it is run once and
    its accuracy shared: the numbers are those of separate calls, for fewer passes.

    Args:
        model, dataset, batch_size, action: as in :func:`evaluate_orbit`.
        rotation_sets: what :func:`evaluate_orbit` takes as ``rotations``, one per result.

    Returns:
        One :class:`OrbitEvaluation` per entry of ``rotation_sets``.
    """
    _check_inputs(dataset, batch_size)
    sets = [RotationSet.parse(r) for r in rotation_sets]
    rep, where = unique_transformations(sets)
    acc = _accuracies(
        model,
        dataset,
        batch_size,
        [lambda raw, si=si, k=k: sets[si].apply(raw, k, action) for si, k in rep],
    )
    n = len(dataset)
    return [
        OrbitEvaluation(
            names=rs.names(),
            angles=[float(a) for a in rs.angles],
            reflections=[bool(r) for r in rs.reflections],
            accuracy=[acc[u] for u in slots],
            count=n,
        )
        for rs, slots in zip(sets, where, strict=True)
    ]


def evaluate_orbit(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    rotations: RotationSet | FiniteGroup | str | list[float] | range,
    batch_size: int = 256,
    action: Action | None = None,
) -> OrbitEvaluation:
    """Accuracy of a classifier on every transformation of ``rotations`` of ``dataset``.

    The transformations act on the dataset's raw ``[0, 1]`` pixels; the dataset's normalisation
    comes after (as :class:`~equify.data.rotated.RotatedDataset` does).

    Args:
        model: ``(B, C, H, W) -> (B, classes)`` logits; put into eval mode while evaluating.
        dataset: the (upright) test set.
        rotations: a RotationSet, a finite group or its name (``"C8"``), or angles in degrees.
        batch_size: images per forward pass.
        action: the image action (default ``ImageAction()``: zeros fill the corners that non-90°
            rotations bring in).

    Returns:
        An :class:`OrbitEvaluation`.
    """
    return evaluate_orbits(model, dataset, [rotations], batch_size, action)[0]


@torch.no_grad()
def evaluate_oracle(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: ImageDataset,
    rotations: RotationSet | FiniteGroup | str | list[float] | range,
    batch_size: int = 256,
    action: Action | None = None,
    inverse_action: Action | None = None,
) -> OrbitEvaluation:
    """The oracle canonicalizer: ``model(g⁻¹·(g·x))`` for every transformation ``g``.

    Each orbit image is turned back by its true inverse with ``inverse_action`` (give the
    canonicalizer's own: its interpolation and padding), then classified. No canonicalizer can beat
    it on the orbit: its distance to a canonicalized model is that canonicalizer's own error,
    its distance to the upright accuracy is the cost of the pixel grid (exact elements — 90°
    turns, flips — lose nothing; other angles interpolate twice).

    Args:
        model, dataset, rotations, batch_size, action: as in :func:`evaluate_orbit`
            (``action`` makes the orbit images ``g·x``).
        inverse_action: turns them back by ``g⁻¹``: the image action of the canonicalizer
            the oracle stands for (default: ``action``). Canonicalizers turn their inputs with
            :func:`~equify.canonicalization.input_image_action` (bicubic, reflection padding).

    Returns:
        An :class:`OrbitEvaluation` (one accuracy per transformation).
    """
    _check_inputs(dataset, batch_size)
    rs = RotationSet.parse(rotations)
    act = action if action is not None else ImageAction()
    back_act = inverse_action if inverse_action is not None else act
    inverse = _matrices(rs).transpose(-1, -2)  # orthogonal: the inverse is the transpose

    def round_trip(raw: torch.Tensor, k: int) -> torch.Tensor:
        back = inverse[k].to(raw.device).expand(raw.shape[0], 2, 2)
        return back_act.apply(rs.apply(raw, k, act), back)

    acc = _accuracies(
        model, dataset, batch_size, [lambda raw, k=k: round_trip(raw, k) for k in range(len(rs))]
    )
    return OrbitEvaluation(
        names=rs.names(),
        angles=[float(a) for a in rs.angles],
        reflections=[bool(r) for r in rs.reflections],
        accuracy=acc,
        count=len(dataset),
    )


@torch.no_grad()
def rotation_consistency(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    rotations: RotationSet | FiniteGroup | str | list[float] | range,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 64,
    action: Action | None = None,
) -> OrbitEvaluation:
    """How often ``model``'s top-1 on a transformed image equals ``reference``'s top-1 upright.

    No labels are needed: a pretrained classifier's prediction on the upright image is the
    label (the reference defaults to ``model`` itself: its own rotation consistency). The
    identity's entry of a model wrapped around ``reference`` is then the fraction of upright
    images whose prediction the wrapping kept.

    Args:
        model: ``(B, C, H, W) -> (B, classes)`` logits on raw images; evaluated in eval mode.
        images: the upright images ``(N, C, H, W)``, raw ``[0, 1]`` pixels.
        rotations: a RotationSet, a finite group or its name (``"C8"``), or angles in degrees.
        reference: the model whose upright predictions are the labels (default ``model``).
        batch_size, action: as in :func:`evaluate_orbit`.

    Returns:
        An :class:`OrbitEvaluation` whose ``accuracy`` is the consistency per transformation.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images of shape (N, C, H, W), got {got}")
    if len(images) == 0:
        raise ValueError("rotation_consistency needs at least one image, got an empty batch")
    if not images.is_floating_point():
        raise TypeError(f"expected floating images in [0, 1], got dtype {images.dtype}")
    rotations = RotationSet.parse(rotations)  # a bad group or angle list fails before any pass
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    ref = model if reference is None else reference
    device = device_of(ref)
    with eval_mode(ref):
        top1 = [
            ref(images[i : i + batch_size].to(device)).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    labels = torch.cat(top1)
    classes = [str(c) for c in range(int(labels.max()) + 1)]
    dataset = ImageDataset(images, labels, classes, "consistency")
    return evaluate_orbit(model, dataset, rotations, batch_size=batch_size, action=action)


def invariance_error(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    group: FiniteGroup,
    action: Action | None = None,
) -> dict[str, float]:
    """Largest absolute and relative change of a classifier's logits over the group.

    Args:
        model: ``(B, C, H, W) -> (B, classes)``; evaluated in eval mode.
        images: a batch of inputs, as the model takes them (raw pixels for the models of
            ``equify adapt``, which normalise inside).
        group: the group whose elements are applied.
        action: the input action (default ``ImageAction()``).

    Returns:
        ``{"max_abs": ..., "max_relative": ..., "mean_abs": ...}`` over all elements.
    """
    with eval_mode(model):
        rep = equivariance_error(model, images, group, action or ImageAction(), InvariantAction())
    return {
        "max_abs": rep.max_error(),
        "max_relative": rep.max_relative_error(),
        "mean_abs": float(rep.mean_abs.mean()),
    }
