"""Rotated and reflected views of image datasets, for orbit evaluation and augmentation.

One mechanism underneath: a group element (finite-group index + group) or a rotation angle
(degrees, turned into an SO(2) matrix) is handed to an :class:`~equify.actions.ImageAction`.
:class:`RotationSet` names a finite, ordered list of such transformations; :func:`rotate_batch`
and :func:`orbit_batch` apply it to tensors inside evaluation loops; :class:`RotatedDataset`
wraps a dataset.

Convention:
    * Angles are in degrees, counter-clockwise as displayed (the foundation's convention); a
      finite group's element ``k`` has the angle ``360 k / n`` and, for ``D_n`` elements
      ``n..2n-1``, the left-right flip first (``reflection=True``).
    * Multiples of 90° and flips are exact index permutations (bit-identical to ``torch.rot90`` /
      ``torch.flip``), also when given as angles; every other angle interpolates with the action's
      settings (default ``ImageAction()``: bilinear, zeros padding).
    * On an :class:`~equify.data.dataset.ImageDataset` the transform acts on the raw ``[0, 1]``
      pixels and the dataset's normalisation comes after it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from equify.actions import Action, ImageAction
from equify.actions.base import check_tensor
from equify.data.dataset import ImageDataset
from equify.data.splits import check_seed, derive_seed
from equify.groups import SO2, FiniteGroup, Group
from equify.groups import group as parse_group

__all__ = [
    "MODES",
    "RotatedDataset",
    "RotationSet",
    "angle_matrices",
    "orbit_batch",
    "rotate_batch",
]

#: Modes of :class:`RotatedDataset`.
MODES = ("all", "random")


def angle_matrices(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(*angles.shape, 2, 2)`` (float64) for angles in degrees."""
    return SO2().rotation(torch.deg2rad(angles.double()))


def _transform(
    images: torch.Tensor,
    action: Action,
    *,
    group: FiniteGroup | None = None,
    indices: torch.Tensor | int | None = None,
    angles: torch.Tensor | None = None,
) -> torch.Tensor:
    """The one mechanism: act on ``(B, C, H, W)`` by group indices or by angles in degrees."""
    if group is not None:
        if isinstance(indices, torch.Tensor):
            indices = indices.to(images.device)
        return action.apply(images, indices, group)
    if angles is None:
        raise TypeError("_transform needs group indices or angles")
    return action.apply(images, angle_matrices(angles).to(images.device))


def _check_action(action: object) -> Action:
    if action is None:
        return ImageAction()
    if not isinstance(action, Action):
        raise TypeError(
            f"expected action to be an equify Action (e.g. ImageAction()), got "
            f"{type(action).__name__}"
        )
    return action


def _as_angles(angles: object) -> torch.Tensor:
    if isinstance(angles, torch.Tensor):
        t = angles.detach().cpu()
    elif isinstance(angles, np.ndarray | Iterable) and not isinstance(angles, str | bytes):
        values = list(angles) if not isinstance(angles, np.ndarray) else angles.tolist()
        if any(isinstance(a, bool) or not isinstance(a, numbers.Real) for a in values):
            raise TypeError(f"expected angles in degrees as numbers, got {angles!r}")
        t = torch.tensor(values, dtype=torch.float64)
    else:
        raise TypeError(
            f"expected angles in degrees as a list, range or tensor, got {type(angles).__name__}"
        )
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"expected a non-empty 1-D list of angles, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"expected real angles in degrees, got dtype {t.dtype}")
    t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError("angles must be finite")
    return t


class RotationSet:
    """An ordered, finite list of planar transformations: a finite group or a list of angles.

    Args:
        group: a finite group (``CyclicGroup``/``DihedralGroup``) or its name (``"C8"``).
        angles: rotation angles in degrees (e.g. ``range(0, 360, 15)``), used when ``group`` is
            None.

    Attributes:
        group: the finite group, or None for angles.
        indices: LongTensor ``(K,)`` of the group's element indices (None for angles).
        angles: float64 ``(K,)``, rotation angle of each transformation in degrees.
        reflections: bool ``(K,)``, True where the transformation flips (``D_n`` only).

    Example:
        >>> rs = RotationSet(group="D4")
        >>> len(rs), rs.angles[5].item(), bool(rs.reflections[5])
        (8, 90.0, True)
    """

    def __init__(
        self,
        group: FiniteGroup | str | None = None,
        angles: Iterable[float] | torch.Tensor | None = None,
    ) -> None:
        if (group is None) == (angles is None):
            raise ValueError("give exactly one of group (e.g. 'C8') and angles (in degrees)")
        if group is not None:
            g = parse_group(group)
            if not isinstance(g, FiniteGroup):
                raise ValueError(
                    f"RotationSet needs a finite group (C<n> or D<n>), got {g!r}; for rotations "
                    "of SO(2) give angles in degrees, e.g. angles=range(0, 360, 15)"
                )
            self.group: FiniteGroup | None = g
            self.indices: torch.Tensor | None = g.elements()
            self.angles = torch.rad2deg(g.angle(self.indices))
            self.reflections = g.is_reflection(self.indices)
        else:
            self.group = None
            self.indices = None
            self.angles = _as_angles(angles)
            self.reflections = torch.zeros(self.angles.numel(), dtype=torch.bool)

    @classmethod
    def parse(cls, spec: object) -> RotationSet:
        """A RotationSet from itself, a finite group or its name, or a list of angles (degrees)."""
        if isinstance(spec, RotationSet):
            return spec
        if isinstance(spec, Group | str):
            return cls(group=spec)
        return cls(angles=spec)

    def __len__(self) -> int:
        return int(self.angles.numel())

    def _which(self, which: object, batch: int) -> torch.Tensor:
        if isinstance(which, bool):
            raise TypeError("expected element positions as an int or a LongTensor, got a bool")
        if isinstance(which, int):
            w = torch.tensor(which)
        elif isinstance(which, torch.Tensor) and not (
            which.is_floating_point() or which.is_complex() or which.dtype == torch.bool
        ):
            w = which.detach().cpu().long()
        else:
            raise TypeError(
                f"expected element positions as an int or a LongTensor, got {type(which).__name__}"
            )
        if w.dim() > 1 or (w.dim() == 1 and w.numel() != batch):
            raise ValueError(
                f"expected one position or ({batch},) positions for a batch of {batch}, got shape "
                f"{tuple(w.shape)}"
            )
        if w.numel() and (int(w.min()) < 0 or int(w.max()) >= len(self)):
            raise ValueError(
                f"element positions must lie in [0, {len(self) - 1}], got values in "
                f"[{int(w.min())}, {int(w.max())}]"
            )
        return w

    def apply(self, images: torch.Tensor, which: int | torch.Tensor, action: Action | None = None):
        """Transform ``(B, C, H, W)`` images by the ``which``-th transformation(s).

        Args:
            images: ``(B, C, H, W)``.
            which: one position in ``[0, len(self))`` for the whole batch, or a LongTensor
                ``(B,)`` of positions, one per image.
            action: the image action (default ``ImageAction()``).

        Returns:
            ``(B, C, H, W)`` of the input's dtype and device; ``images`` is not modified.
        """
        check_tensor(images, "images", (4,), "(B, C, H, W)")
        act = _check_action(action)
        w = self._which(which, images.shape[0])
        if self.group is not None:
            idx = self.indices[w]
            return _transform(images, act, group=self.group, indices=idx if w.dim() else int(idx))
        return _transform(images, act, angles=self.angles[w])

    def info(self, k: int) -> dict[str, int | float | bool]:
        """``{"element": k, "angle": degrees, "reflection": flag}`` of the k-th transformation."""
        return {
            "element": int(k),
            "angle": float(self.angles[k]),
            "reflection": bool(self.reflections[k]),
        }

    def names(self) -> list[str]:
        """Readable names, e.g. ``"90°"`` or ``"flip, then 90°"``."""
        return [
            (f"flip, then {a:g}°" if r else f"{a:g}°")
            for a, r in zip(self.angles.tolist(), self.reflections.tolist(), strict=True)
        ]

    def __repr__(self) -> str:
        if self.group is not None:
            return f"RotationSet(group={self.group!r})"
        return f"RotationSet(angles={self.angles.tolist()})"


def rotate_batch(
    images: torch.Tensor,
    rotations: RotationSet | FiniteGroup | str | Sequence[float] | torch.Tensor,
    which: int | torch.Tensor,
    action: Action | None = None,
) -> torch.Tensor:
    """Transform a batch by one element of ``rotations`` or by one element per image.

    Args:
        images: ``(B, C, H, W)``.
        rotations: a :class:`RotationSet`, a finite group or its name (``"C8"``), or angles in
            degrees.
        which: a position in ``rotations`` (int) or a LongTensor ``(B,)`` of positions.
        action: the image action (default ``ImageAction()``).

    Returns:
        ``(B, C, H, W)``.

    Example:
        >>> x = torch.rand(2, 1, 5, 5)
        >>> torch.equal(rotate_batch(x, "C4", 1), torch.rot90(x, 1, (-2, -1)))
        True
    """
    return RotationSet.parse(rotations).apply(images, which, action)


def orbit_batch(
    images: torch.Tensor,
    rotations: RotationSet | FiniteGroup | str | Sequence[float] | torch.Tensor,
    action: Action | None = None,
) -> torch.Tensor:
    """Every transformation of ``rotations`` applied to the whole batch.

    Args:
        images: ``(B, C, H, W)``.
        rotations: as in :func:`rotate_batch`.
        action: the image action (default ``ImageAction()``).

    Returns:
        ``(K, B, C, H, W)`` with ``K = len(rotations)``: entry ``k`` is the batch transformed by
        the k-th transformation.
    """
    rs = RotationSet.parse(rotations)
    return torch.stack([rs.apply(images, k, action) for k in range(len(rs))])


class RotatedDataset(Dataset):
    """A dataset seen under rotations (and reflections): the orbit of every image, or one draw.

    Args:
        base: an :class:`ImageDataset`, or any map-style dataset whose items start with
            ``(image (C, H, W), label)``.
        group: a finite group (``CyclicGroup``, ``DihedralGroup``) or its name (``"C8"``), or
            ``"SO2"``/``SO2()`` for rotations by angles.
        angles: rotation angles in degrees (``range(0, 360, 15)``); with ``group`` None or SO(2).
        mode: ``"all"`` enumerates every transformation of every image (length
            ``len(base) * K``, image-major: item ``i`` is image ``i // K`` under transformation
            ``i % K``); ``"random"`` draws one per image (length ``len(base)``): a uniform group
            element, a uniform angle from ``angles``, or, for SO(2) without ``angles``, a uniform
            angle in ``[0, 360)``. The draws are fixed at construction from ``seed``: item ``i``
            is the same on every access and every run.
        action: the image action (default ``ImageAction()``: bilinear, zeros padding).
        seed: seed of the random mode.

    Items:
        ``(image, label, info)``: ``image`` ``(C, H, W)`` transformed (then normalised, for an
        ImageDataset with normalisation), ``label`` an int, ``info`` a dict with ``"element"``
        (int: the position of the transformation in :attr:`rotations`, i.e. the group element
        index or the index into ``angles``; -1 for continuous random angles), ``"angle"`` (float,
        degrees, counter-clockwise) and ``"reflection"`` (bool). A ``DataLoader`` collates
        ``info`` into a dict of ``(B,)`` tensors, ready for per-element / per-angle accuracy.
        The same per-item values are available for the whole dataset as :attr:`labels`,
        :attr:`elements`, :attr:`angles` and :attr:`reflections`.

    Raises:
        ValueError: no group and no angles, both a finite group and angles, ``"all"`` without a
            finite list, a group that is neither finite nor SO(2), an unknown mode.
    """

    def __init__(
        self,
        base: Dataset,
        group: Group | str | None = None,
        angles: Iterable[float] | torch.Tensor | None = None,
        mode: str = "all",
        action: Action | None = None,
        seed: int = 0,
    ) -> None:
        if not hasattr(base, "__getitem__") or not hasattr(base, "__len__"):
            raise TypeError(f"expected a map-style dataset as base, got {type(base).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        check_seed(seed)
        self.base = base
        self.mode = mode
        self.action = _check_action(action)
        self.seed = seed
        g = parse_group(group) if group is not None else None
        if g is not None and not isinstance(g, FiniteGroup | SO2):
            raise ValueError(
                f"RotatedDataset supports finite groups (C<n>, D<n>) and SO2, got {g!r}"
            )
        if isinstance(g, FiniteGroup):
            if angles is not None:
                raise ValueError(f"give either a finite group ({g}) or angles, not both")
            self.rotations: RotationSet | None = RotationSet(group=g)
        elif angles is not None:
            self.rotations = RotationSet(angles=angles)
        elif g is not None:  # SO2 without angles
            if mode == "all":
                raise ValueError(
                    "mode 'all' enumerates a finite list: give angles in degrees (e.g. "
                    "angles=range(0, 360, 15)) or a finite group, or use mode='random' for "
                    "uniform angles"
                )
            self.rotations = None
        else:
            raise ValueError(
                "give a finite group (e.g. group='C8'), angles in degrees (e.g. "
                "angles=range(0, 360, 15)), or group='SO2' with mode='random'"
            )
        n = len(base)
        gen = torch.Generator().manual_seed(derive_seed(seed, "RotatedDataset"))
        if mode == "all":
            k = len(self.rotations)
            self._base_index = torch.arange(n).repeat_interleave(k)
            self._element = torch.arange(k).repeat(n)
        else:
            self._base_index = torch.arange(n)
            if self.rotations is not None:
                self._element = torch.randint(len(self.rotations), (n,), generator=gen)
            else:
                self._element = torch.full((n,), -1, dtype=torch.long)
                self._random_angles = torch.rand(n, generator=gen, dtype=torch.float64) * 360.0
        self._labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self._base_index.numel())

    @property
    def num_elements(self) -> int | None:
        """Number ``K`` of transformations in the finite list, None for continuous angles."""
        return None if self.rotations is None else len(self.rotations)

    @property
    def base_indices(self) -> torch.Tensor:
        """LongTensor ``(len,)``: the base image of each item."""
        return self._base_index

    @property
    def elements(self) -> torch.Tensor:
        """LongTensor ``(len,)``: the transformation position of each item (-1: random angle)."""
        return self._element

    @property
    def angles(self) -> torch.Tensor:
        """float64 ``(len,)``: the rotation angle of each item in degrees."""
        if self.rotations is None:
            return self._random_angles
        return self.rotations.angles[self._element]

    @property
    def reflections(self) -> torch.Tensor:
        """bool ``(len,)``: True where the item is flipped."""
        if self.rotations is None:
            return torch.zeros(len(self), dtype=torch.bool)
        return self.rotations.reflections[self._element]

    @property
    def labels(self) -> torch.Tensor:
        """LongTensor ``(len,)``: the label of each item (reads the base once if it is not an
        ImageDataset)."""
        if self._labels is None:
            if isinstance(self.base, ImageDataset):
                base_labels = self.base.labels
            else:
                base_labels = torch.tensor(
                    [int(self.base[j][1]) for j in range(len(self.base))], dtype=torch.long
                )
            self._labels = base_labels[self._base_index]
        return self._labels

    def _positions(self, indices: Sequence[int]) -> torch.Tensor:
        n = len(self)
        out = []
        for i in indices:
            if isinstance(i, torch.Tensor) and i.dim() == 0:
                i = int(i)
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"expected int indices, got {type(i).__name__}")
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for a dataset of {n} items")
            out.append(i % n)
        return torch.tensor(out, dtype=torch.long)

    def _raw(self, base_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw images ``(B, C, H, W)`` and labels ``(B,)`` of base items."""
        if isinstance(self.base, ImageDataset):
            idx = base_idx.to(self.base.images.device)
            return self.base.images.index_select(0, idx), self.base.labels[base_idx]
        items = [self.base[int(j)] for j in base_idx]
        images = torch.stack([it[0] for it in items])
        labels = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
        return images, labels

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int, dict]]:
        """A batch of items, transformed together (``DataLoader`` calls this when present)."""
        pos = self._positions(indices)
        if len(pos) == 0:
            return []
        base_idx = self._base_index[pos]
        elements = self._element[pos]
        images, labels = self._raw(base_idx)
        if self.rotations is not None:
            out = self.rotations.apply(images, elements, self.action)
            angles = self.rotations.angles[elements]
            refl = self.rotations.reflections[elements]
        else:
            angles = self._random_angles[pos]
            out = _transform(images, self.action, angles=angles)
            refl = torch.zeros(len(pos), dtype=torch.bool)
        if isinstance(self.base, ImageDataset):
            out = self.base.normalize(out)
        return [
            (
                out[b],
                int(labels[b]),
                {
                    "element": int(elements[b]),
                    "angle": float(angles[b]),
                    "reflection": bool(refl[b]),
                },
            )
            for b in range(len(pos))
        ]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, dict]:
        return self.__getitems__([index])[0]

    def __repr__(self) -> str:
        what = repr(self.rotations) if self.rotations is not None else "uniform angles"
        return f"RotatedDataset({len(self)} items, {what}, mode={self.mode!r})"
