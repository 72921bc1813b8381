"""Group specs: axioms, matrices, sampling, parsing and bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import equify
from equify.groups import O2, O3, SO2, SO3, CyclicGroup, DihedralGroup, FiniteGroup, group

from .conftest import FINITE_GROUP_NAMES


@pytest.mark.parametrize("name", FINITE_GROUP_NAMES)
def test_finite_group_axioms_over_all_pairs_and_triples(name: str) -> None:
    g = group(name)
    e = g.elements()
    table = g.cayley_table()
    assert table.shape == (g.order, g.order)
    # closure: every product is an element, each row and column is a permutation (Latin square)
    assert bool(((table >= 0) & (table < g.order)).all())
    assert torch.equal(table.sort(dim=1).values, e.expand(g.order, -1))
    assert torch.equal(table.sort(dim=0).values, e[:, None].expand(-1, g.order))
    # identity
    assert torch.equal(g.compose(g.identity, e), e)
    assert torch.equal(g.compose(e, g.identity), e)
    # inverses
    inv = g.inverse(e)
    assert torch.equal(g.compose(e, inv), torch.zeros_like(e))
    assert torch.equal(g.compose(inv, e), torch.zeros_like(e))
    # associativity over all triples
    a, b, c = e[:, None, None], e[None, :, None], e[None, None, :]
    assert torch.equal(g.compose(g.compose(a, b), c), g.compose(a, g.compose(b, c)))


@pytest.mark.parametrize("name", FINITE_GROUP_NAMES)
def test_matrix_is_a_homomorphism_into_orthogonal_matrices(name: str) -> None:
    g = group(name)
    e = g.elements()
    m = g.matrix(e)
    assert m.shape == (g.order, 2, 2) and m.dtype == torch.float64
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(m.transpose(-1, -2) @ m, eye.expand_as(m), atol=1e-12, rtol=0)
    det = torch.linalg.det(m)
    assert torch.equal(det < 0, g.is_reflection(e))
    a, b = e[:, None], e[None, :]
    torch.testing.assert_close(
        g.matrix(g.compose(a, b)), g.matrix(a) @ g.matrix(b), atol=1e-12, rtol=0
    )
    assert torch.equal(g.matrix(g.identity), eye)
    # elements are distinct
    assert torch.unique(m.round(decimals=9).reshape(g.order, 4), dim=0).shape[0] == g.order


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_dihedral_convention_reflection_first_then_rotation(n: int) -> None:
    d, c = DihedralGroup(n), CyclicGroup(n)
    s = torch.tensor([[-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    for k in range(n):
        torch.testing.assert_close(d.matrix(k), c.matrix(k), atol=0, rtol=0)
        torch.testing.assert_close(d.matrix(n + k), c.matrix(k) @ s, atol=1e-15, rtol=0)
        assert int(d.compose(k, n)) == n + k  # r^k s: s first, then r^k
        assert math.isclose(float(d.angle(n + k)), 2 * math.pi * k / n)
    assert bool(d.is_reflection(n)) and not bool(d.is_reflection(0))


def test_element_k_of_cn_rotates_counter_clockwise_by_2pi_k_over_n() -> None:
    m = CyclicGroup(8).matrix(1)
    expected = torch.tensor(
        [
            [math.cos(math.pi / 4), -math.sin(math.pi / 4)],
            [math.sin(math.pi / 4), math.cos(math.pi / 4)],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(m, expected, atol=1e-15, rtol=0)
    # (1, 0) goes up (positive y) under a small positive rotation
    assert float((m @ torch.tensor([1.0, 0.0], dtype=torch.float64))[1]) > 0


@pytest.mark.parametrize("name", ["C4", "D4", "C8", "D8"])
def test_multiples_of_90_degrees_have_exact_integer_matrices(name: str) -> None:
    g = group(name)
    quarter = [e for e in range(g.order) if (4 * (e % g.n)) % g.n == 0]
    m = g.matrix(torch.tensor(quarter))
    assert torch.equal(m, m.round())


@pytest.mark.parametrize("name", ["C4", "D4", "C8", "D3"])
def test_from_matrix_round_trip(name: str) -> None:
    g = group(name)
    e = g.elements()
    assert torch.equal(g.from_matrix(g.matrix(e).float()), e)
    with pytest.raises(ValueError, match="not elements"):
        g.from_matrix(SO2().rotation(torch.tensor([0.1], dtype=torch.float64)))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 24),
    dihedral=st.booleans(),
    data=st.data(),
)
def test_finite_group_law_holds_for_random_n(n: int, dihedral: bool, data) -> None:
    g = DihedralGroup(n) if dihedral else CyclicGroup(n)
    a, b = (data.draw(st.integers(0, g.order - 1)) for _ in range(2))
    ab = g.compose(a, b)
    torch.testing.assert_close(g.matrix(ab), g.matrix(a) @ g.matrix(b), atol=1e-12, rtol=0)
    assert int(g.compose(ab, g.inverse(ab))) == 0


@pytest.mark.parametrize("g", [SO2(), O2(), SO3(), O3()], ids=str)
def test_continuous_group_axioms_on_samples(g) -> None:
    gen = torch.Generator().manual_seed(1)
    a, b, c = (g.sample(64, generator=gen, dtype=torch.float64) for _ in range(3))
    eye = g.identity(dtype=torch.float64)
    assert a.shape == (64, g.dim, g.dim)
    torch.testing.assert_close(g.compose(g.compose(a, b), c), g.compose(a, g.compose(b, c)))
    torch.testing.assert_close(g.compose(a, g.inverse(a)), eye.expand_as(a), atol=1e-12, rtol=0)
    torch.testing.assert_close(g.compose(eye, a), a)
    g.validate(g.compose(a, b))  # closure


@pytest.mark.parametrize("g", [SO2(), O2(), SO3(), O3()], ids=str)
def test_sampled_matrices_are_orthogonal_with_the_right_determinant(g) -> None:
    r = g.sample(4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    eye = torch.eye(g.dim, dtype=torch.float64)
    torch.testing.assert_close(r.transpose(-1, -2) @ r, eye.expand_as(r), atol=1e-12, rtol=0)
    det = torch.linalg.det(r)
    torch.testing.assert_close(det.abs(), torch.ones_like(det))
    frac_negative = float((det < 0).double().mean())
    if g.has_reflections:
        assert 0.45 < frac_negative < 0.55  # both components, evenly
        assert torch.equal(g.is_reflection(r), det < 0)
    else:
        assert frac_negative == 0.0


@pytest.mark.parametrize("g", [SO2(), SO3()], ids=str)
def test_samples_follow_the_haar_measure(g) -> None:
    r = g.sample(20000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    # Haar: E[R] = 0, and the rotation angle has the known distribution.
    assert float(r.mean(0).abs().max()) < 0.03
    theta = g.distance_to_identity(r)
    if g.dim == 2:  # uniform angle in [0, π] after abs: mean π/2
        assert abs(float(theta.mean()) - math.pi / 2) < 0.03
    else:  # density (1 - cos θ)/π on [0, π]: mean π/2 + 2/π
        assert abs(float(theta.mean()) - (math.pi / 2 + 2 / math.pi)) < 0.03


def test_sampling_is_reproducible_and_follows_dtype_and_device() -> None:
    a = SO3().sample(5, generator=torch.Generator().manual_seed(7))
    b = SO3().sample(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert SO2().sample(3, dtype=torch.float64).dtype == torch.float64


def test_distance_to_identity() -> None:
    theta = torch.tensor([0.0, 0.5, -1.0, math.pi], dtype=torch.float64)
    r = SO2().rotation(theta)
    torch.testing.assert_close(SO2().distance_to_identity(r), theta.abs())
    # SO(3): rotation about z by θ has geodesic angle θ
    r3 = torch.eye(3, dtype=torch.float64).repeat(4, 1, 1)
    r3[:, :2, :2] = r
    torch.testing.assert_close(SO3().distance_to_identity(r3), theta.abs(), atol=1e-7, rtol=0)
    # a pure reflection has a rotation part equal to the identity
    s = torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))
    assert float(O2().distance_to_identity(s)) == 0.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("C4", CyclicGroup(4)),
        ("c8", CyclicGroup(8)),
        ("D4", DihedralGroup(4)),
        ("d1", DihedralGroup(1)),
        ("SO2", SO2()),
        ("o2", O2()),
        ("SO(3)", SO3()),
        ("O3", O3()),
    ],
)
def test_group_parses_names_case_insensitively(name: str, expected) -> None:
    assert group(name) == expected
    assert equify.group(name) == expected
    assert group(expected) is expected


@pytest.mark.parametrize("bad", ["C0", "D", "Z4", "SO4", "", "C-1", "rot90"])
def test_group_rejects_unknown_names_listing_the_valid_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="'C<n>' or 'D<n>'.*'SO2', 'O2', 'SO3' or 'O3'"):
        group(bad)
    with pytest.raises(TypeError):
        group(4)  # type: ignore[arg-type]


def test_groups_are_immutable_hashable_values_with_readable_repr() -> None:
    assert CyclicGroup(4) == CyclicGroup(4) and CyclicGroup(4) != DihedralGroup(4)
    assert len({CyclicGroup(4), CyclicGroup(4), DihedralGroup(4), SO2(), SO2(), O3()}) == 4
    assert repr(DihedralGroup(8)) == "DihedralGroup(8)" and str(DihedralGroup(8)) == "D8"
    assert repr(SO3()) == "SO3()"
    with pytest.raises(dataclasses.FrozenInstanceError):
        CyclicGroup(4).n = 8  # type: ignore[misc]
    assert isinstance(CyclicGroup(3), FiniteGroup) and CyclicGroup(3).order == 3
    assert DihedralGroup(3).order == 6


def test_finite_group_bad_input() -> None:
    g = CyclicGroup(4)
    with pytest.raises(ValueError, match="n >= 1"):
        CyclicGroup(0)
    with pytest.raises(TypeError, match="int"):
        DihedralGroup(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer tensor"):
        g.compose(torch.tensor([1.0]), 1)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        g.inverse(torch.tensor([4]))
    with pytest.raises(TypeError):
        g.matrix("1")  # type: ignore[arg-type]


def test_continuous_group_bad_input() -> None:
    with pytest.raises(ValueError, match="not orthogonal"):
        SO2().compose(torch.ones(2, 2), torch.eye(2))
    with pytest.raises(ValueError, match="determinant"):
        SO2().inverse(torch.diag(torch.tensor([-1.0, 1.0])))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        SO3().validate(torch.eye(2))
    with pytest.raises(TypeError, match="floating"):
        O2().validate(torch.eye(2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        SO3().sample(-1)
