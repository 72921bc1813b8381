"""Packed point-set data sets: molecules and particle systems as ``(M, N, C)`` inputs.

:class:`PointSetDataset` holds inputs packed by a :class:`~equify.actions.PointLayout` (positions,
vectors, scalars, padding mask) with their regression targets, in the form the training loop
reads (``images`` and ``labels`` are the names it uses for inputs and targets of every task).
:func:`molecule_point_sets` and :func:`nbody_point_sets` pack QM9 molecules and N-body systems.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from equify.actions import PointLayout

__all__ = [
    "MOLECULE_ELEMENTS",
    "PointSetDataset",
    "molecule_layout",
    "molecule_point_sets",
    "nbody_layout",
    "nbody_point_sets",
]

#: the atomic numbers of QM9's elements (H, C, N, O, F), the order of the one-hot atom types
MOLECULE_ELEMENTS = (1, 6, 7, 8, 9)


@dataclass
class PointSetDataset:
    """Packed point sets and their targets.

    Attributes:
        inputs: ``(M, N, C)`` float32, packed by ``layout``.
        targets: ``(M, P)`` per-set targets (invariant) or ``(M, N, d)`` per-point positions.
        layout: the channels of ``inputs``.
        target_names: a name per target column (``("gap",)``, ``("x", "y", "z")``).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    layout: PointLayout
    target_names: tuple[str, ...]

    def __post_init__(self) -> None:
        self.layout.check(self.inputs, "inputs")
        if not isinstance(self.targets, torch.Tensor) or not self.targets.is_floating_point():
            raise TypeError("targets must be a floating torch.Tensor")
        if self.targets.shape[0] != self.inputs.shape[0]:
            raise ValueError(f"{self.inputs.shape[0]} inputs but {self.targets.shape[0]} targets")
        if self.targets.shape[-1] != len(self.target_names):
            raise ValueError(
                f"targets have {self.targets.shape[-1]} columns but {len(self.target_names)} names"
            )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """The inputs, under the name the training loop reads for every task."""
        return self.inputs

    @property
    def labels(self) -> torch.Tensor:
        """The targets, under the name the training loop reads for every task."""
        return self.targets

    @property
    def num_classes(self) -> int:
        """Outputs per set (or per point): the target columns."""
        return len(self.target_names)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(N, C)``: points per set and channels per point."""
        return (int(self.inputs.shape[1]), int(self.inputs.shape[2]))

    @property
    def in_channels(self) -> int:
        return self.layout.channels

    @property
    def per_point(self) -> bool:
        """True when the targets are per point (``(M, N, d)``)."""
        return self.targets.dim() == 3

    def subset(self, indices: torch.Tensor) -> PointSetDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return PointSetDataset(self.inputs[idx], self.targets[idx], self.layout, self.target_names)


def molecule_layout() -> PointLayout:
    """Atoms: positions (Å), one-hot element over :data:`MOLECULE_ELEMENTS`, padding mask."""
    return PointLayout(dim=3, vectors=0, scalars=len(MOLECULE_ELEMENTS), mask=True)


def molecule_point_sets(molecules) -> PointSetDataset:
    """Pack a :class:`~equify.data.qm9.MoleculeDataset` (positions, one-hot atoms, mask)."""
    lay = molecule_layout()
    inputs = lay.pack(
        molecules.positions.float(),
        scalars=molecules.one_hot(MOLECULE_ELEMENTS).float(),
        mask=molecules.mask,
    )
    return PointSetDataset(inputs, molecules.targets.float(), lay, tuple(molecules.properties))


def nbody_layout() -> PointLayout:
    """Particles: positions, velocities (one vector), charges (one scalar), no padding."""
    return PointLayout(dim=3, vectors=1, scalars=1, mask=False)


def nbody_point_sets(systems) -> PointSetDataset:
    """Pack a :class:`~equify.data.nbody.NBodyDataset`; targets are the future positions."""
    lay = nbody_layout()
    inputs = lay.pack(
        systems.positions.float(),
        vectors=systems.velocities.float()[:, :, None],
        scalars=systems.charges.float(),
    )
    return PointSetDataset(inputs, systems.targets.float(), lay, ("x", "y", "z"))
