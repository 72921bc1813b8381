"""The charged N-body simulator, its cached splits and the random-rotation views of 3-D sets."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import equify.data.nbody as nbody
from equify.data import (
    NBodyDataset,
    charged_energy,
    charged_forces,
    integrate_charged,
    load_nbody,
    random_rotations,
    rotate_sets,
    simulate_charged,
)
from equify.data.splits import derive_seed

# Short trajectories keep the tests fast: 2 frames of 50 steps.
FAST = {"input_frame": 1, "target_frame": 2, "sample_every": 50}


def _initial(n: int, seed: int, loc_std: float = 1.0):
    return nbody._initial_conditions(n, 5, seed, loc_std, 0.5)


# --------------------------------------------------------------------------------------------
# simulate_charged: protocol, shapes, seeds
# --------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_step_count() -> None:
    sim = simulate_charged(3, seed=1)
    for name in ("positions", "velocities", "targets", "target_velocities"):
        arr = getattr(sim, name)
        assert arr.shape == (3, 5, 3) and arr.dtype == np.float64
    assert sim.charges.shape == (3, 5, 1)
    assert sim.n_clipped.shape == (3,) and sim.n_clipped.dtype == np.int64
    assert sim.n_force_evaluations == 4000  # target_frame 40 x 100 steps, not 5,000
    assert sim.n_clipped_between.shape == (3,)
    assert (sim.n_clipped_between >= 0).all() and (sim.n_clipped_between <= sim.n_clipped).all()


def test_deterministic_per_seed_and_seeds_differ() -> None:
    a = simulate_charged(4, seed=3, **FAST)
    b = simulate_charged(4, seed=3, **FAST)
    c = simulate_charged(4, seed=4, **FAST)
    for name in ("positions", "velocities", "charges", "targets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.positions, c.positions)


def test_prefix_and_chunking_do_not_change_trajectories() -> None:
    full = simulate_charged(6, seed=2, **FAST)
    prefix = simulate_charged(3, seed=2, **FAST)
    chunked = simulate_charged(6, seed=2, chunk_size=4, **FAST)
    np.testing.assert_allclose(prefix.targets, full.targets[:3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.targets, full.targets, rtol=0, atol=1e-12)


def test_initial_state_charges_and_velocity_norms() -> None:
    sim = simulate_charged(400, seed=0, input_frame=0, target_frame=1, sample_every=1)
    assert set(np.unique(sim.charges).tolist()) == {-1.0, 1.0}
    assert 0.45 < (sim.charges > 0).mean() < 0.55
    np.testing.assert_allclose(np.linalg.norm(sim.velocities, axis=-1), 0.5, rtol=1e-12)
    assert abs(sim.positions.mean()) < 0.05 and abs(sim.positions.std() - 1.0) < 0.05
    big = simulate_charged(20, seed=0, input_frame=0, target_frame=1, sample_every=1, loc_std=3.0)
    assert big.positions.std() > 2.0


def test_target_is_the_state_target_frame_steps_later() -> None:
    x0, v0, q = _initial(3, seed=5)
    run = integrate_charged(x0, v0, q, (0, 2, 3), sample_every=50)
    sim = simulate_charged(3, seed=5, input_frame=2, target_frame=3, sample_every=50)
    np.testing.assert_array_equal(run.positions[:, 0], x0)
    np.testing.assert_array_equal(run.velocities[:, 0], v0)
    np.testing.assert_allclose(sim.positions, run.positions[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sim.targets, run.positions[:, 2], rtol=0, atol=1e-12)
    assert run.n_force_evaluations == 150
    np.testing.assert_array_equal(
        sim.n_clipped_between, run.clipped_before[:, 2] - run.clipped_before[:, 1]
    )
    assert (np.diff(run.clipped_before, axis=1) >= 0).all()


def test_integration_scheme_matches_a_direct_loop() -> None:
    """First ``v += dt F(x0)``, then ``x += dt v; v += dt F(x)``; frames before the kick."""
    x0, v0, q = _initial(2, seed=6)
    dt, m = 1e-3, 100.0
    x, v = x0.copy(), v0.copy()
    v += dt * charged_forces(x, q, max_force=m)
    for step in range(1, 31):
        x += dt * v
        if step == 30:
            break
        v += dt * charged_forces(x, q, max_force=m)
    run = integrate_charged(x0, v0, q, (3,), sample_every=10)
    np.testing.assert_allclose(run.positions[:, 0], x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(run.velocities[:, 0], v, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------


def test_forces_match_the_pairwise_formula() -> None:
    rng = np.random.default_rng(0)
    x, q = rng.standard_normal((2, 4, 3)), rng.choice([-1.0, 1.0], size=(2, 4, 1))
    expected = np.zeros_like(x)
    for t in range(2):
        for i in range(4):
            for j in range(4):
                if i != j:
                    d = x[t, i] - x[t, j]
                    expected[t, i] += 0.7 * q[t, i, 0] * q[t, j, 0] * d / np.linalg.norm(d) ** 3
    np.testing.assert_allclose(charged_forces(x, q, 0.7), expected, rtol=1e-12, atol=1e-14)
    clipped = charged_forces(x, q, 0.7, max_force=0.05)
    np.testing.assert_allclose(clipped, np.clip(expected, -0.05, 0.05), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("k", "sign"), [(1.0, 1.0), (-1.0, -1.0)])
def test_like_charges_repel_for_positive_strength(k: float, sign: float) -> None:
    x = np.array([[[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]])
    f = charged_forces(x, np.ones((1, 2, 1)), k)
    # k = 1: the force on particle 0 points away from particle 1 (repulsion).
    np.testing.assert_allclose(f[0, 0], [-sign, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(f[0, 1], [sign, 0.0, 0.0], atol=1e-15)
    unlike = charged_forces(x, np.array([[[1.0], [-1.0]]]), k)
    np.testing.assert_allclose(unlike, -f, atol=1e-15)


def test_free_particles_move_at_constant_velocity() -> None:
    sim = simulate_charged(4, seed=1, interaction_strength=0.0, input_frame=2, target_frame=12)
    # 1,000 steps of dt = 0.001: one time unit.
    np.testing.assert_allclose(sim.targets, sim.positions + sim.velocities, atol=1e-12)
    np.testing.assert_array_equal(sim.target_velocities, sim.velocities)


def _unclipped(seed: int, n: int = 8, frames=(0, 5, 10)):
    """Initial states (well separated) and a 1,000-step run; keep the unclipped trajectories."""
    x0, v0, q = _initial(n, seed, loc_std=2.0)
    run = integrate_charged(x0, v0, q, frames, sample_every=100)
    keep = run.n_clipped == 0
    assert keep.sum() >= 4, "the fixture should have unclipped trajectories"
    return x0[keep], v0[keep], q[keep], run


@pytest.mark.parametrize("group", ["SO3", "O3"])
def test_simulation_is_rotation_equivariant(group: str) -> None:
    x0, v0, q, _ = _unclipped(seed=11)
    run = integrate_charged(x0, v0, q, (0, 5, 10), sample_every=100)
    r = random_rotations(len(x0), group=group, seed=3, dtype=torch.float64)
    xr, vr = (t.numpy() for t in rotate_sets(r, torch.from_numpy(x0), torch.from_numpy(v0)))
    rot = integrate_charged(xr, vr, q, (0, 5, 10), sample_every=100)
    assert (rot.n_clipped == 0).all()
    for f in range(3):
        want_x = rotate_sets(r, torch.from_numpy(run.positions[:, f])).numpy()
        want_v = rotate_sets(r, torch.from_numpy(run.velocities[:, f])).numpy()
        np.testing.assert_allclose(rot.positions[:, f], want_x, rtol=0, atol=1e-9)
        np.testing.assert_allclose(rot.velocities[:, f], want_v, rtol=0, atol=1e-9)


def test_simulation_is_translation_equivariant() -> None:
    x0, v0, q, run = _unclipped(seed=12)
    run = integrate_charged(x0, v0, q, (0, 5, 10), sample_every=100)
    shift = np.array([0.3, -1.2, 2.5])
    moved = integrate_charged(x0 + shift, v0, q, (0, 5, 10), sample_every=100)
    np.testing.assert_allclose(moved.positions, run.positions + shift, rtol=0, atol=1e-9)
    np.testing.assert_allclose(moved.velocities, run.velocities, rtol=0, atol=1e-9)


def test_momentum_is_conserved_without_clipping_and_energy_nearly() -> None:
    x0, v0, q, _ = _unclipped(seed=13)
    run = integrate_charged(x0, v0, q, (0, 5, 10), sample_every=100)
    momentum = run.velocities.sum(axis=2)  # (T, F, 3), unit masses
    np.testing.assert_allclose(momentum, momentum[:, :1].repeat(3, axis=1), rtol=0, atol=1e-12)
    e_start = charged_energy(run.positions[:, 1], run.velocities[:, 1], q)
    e_end = charged_energy(run.positions[:, 2], run.velocities[:, 2], q)
    assert np.abs(e_end - e_start).max() < 1e-2 * np.abs(e_start).max()


def test_clipping_is_counted_and_bounds_the_forces() -> None:
    # Two like charges very close: |F| = 1 / 0.01^2 = 1e4 > max_force = 100 on the x component.
    x0 = np.array([[[-0.005, 0.0, 0.0], [0.005, 0.0, 0.0]]])
    v0 = np.zeros_like(x0)
    q = np.ones((1, 2, 1))
    run = integrate_charged(x0, v0, q, (0, 1), sample_every=1)
    assert run.n_clipped[0] == 2  # one x component per particle
    assert run.clipped_before.tolist() == [[0, 2]]  # frame 0 precedes the first kick
    np.testing.assert_allclose(run.velocities[0, 1, :, 0], [-0.1, 0.1])  # dt * max_force
    free = integrate_charged(x0, v0, q, (1,), sample_every=1, max_force=math.inf)
    assert free.n_clipped[0] == 0
    np.testing.assert_allclose(free.velocities[0, 0, :, 0], [-10.0, 10.0])


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"n_trajectories": -1}, ValueError),
        ({"n_trajectories": 2.0}, TypeError),
        ({"n_trajectories": 2, "n_particles": 0}, ValueError),
        ({"n_trajectories": 2, "seed": -1}, ValueError),
        ({"n_trajectories": 2, "input_frame": 5, "target_frame": 5}, ValueError),
        ({"n_trajectories": 2, "input_frame": -1}, ValueError),
        ({"n_trajectories": 2, "sample_every": 0}, ValueError),
        ({"n_trajectories": 2, "dt": 0.0}, ValueError),
        ({"n_trajectories": 2, "dt": "0.1"}, TypeError),
        ({"n_trajectories": 2, "max_force": -1.0}, ValueError),
        ({"n_trajectories": 2, "interaction_strength": math.nan}, ValueError),
        ({"n_trajectories": 2, "loc_std": 0.0}, ValueError),
        ({"n_trajectories": 2, "vel_norm": -0.5}, ValueError),
        ({"n_trajectories": 2, "chunk_size": 0}, ValueError),
    ],
)
def test_simulate_rejects_bad_arguments(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        simulate_charged(**kwargs)


def test_integrate_rejects_bad_states() -> None:
    x0, v0, q = _initial(2, seed=0)
    with pytest.raises(ValueError, match="velocities"):
        integrate_charged(x0, v0[:1], q, (1,))
    with pytest.raises(ValueError, match="positions"):
        integrate_charged(x0[..., :2], v0[..., :2], q, (1,))
    with pytest.raises(ValueError, match="charges"):
        integrate_charged(x0, v0, q[:, :3], (1,))
    with pytest.raises(ValueError, match="non-finite"):
        integrate_charged(np.full_like(x0, np.nan), v0, q, (1,))
    with pytest.raises(TypeError):
        integrate_charged(x0, v0, q, ())
    with pytest.raises(TypeError):
        integrate_charged(x0.tolist(), v0, q, (1,))


# --------------------------------------------------------------------------------------------
# NBodyDataset
# --------------------------------------------------------------------------------------------


def _dataset(n: int = 4) -> NBodyDataset:
    return NBodyDataset.from_simulation(simulate_charged(n, seed=0, **FAST), name="toy")


def test_dataset_fields_items_subset_and_loader() -> None:
    ds = _dataset()
    assert len(ds) == 4 and ds.n_particles == 5 and "toy" in repr(ds)
    for t in (ds.positions, ds.velocities, ds.targets):
        assert t.dtype == torch.float32 and t.shape == (4, 5, 3)
    assert ds.charges.shape == (4, 5, 1) and ds.charges.dtype == torch.float32
    x, v, q, y = ds[1]
    assert x.shape == v.shape == y.shape == (5, 3) and q.shape == (5, 1)
    sub = ds.subset([3, -4], name="sub")
    assert len(sub) == 2 and sub.name == "sub"
    torch.testing.assert_close(sub.positions[0], ds.positions[3])
    torch.testing.assert_close(sub.positions[1], ds.positions[0])
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert [tuple(b.shape) for b in batch] == [(3, 5, 3), (3, 5, 3), (3, 5, 1), (3, 5, 3)]
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(IndexError):
        ds.subset([4])
    with pytest.raises(ValueError):
        ds.subset([[0]])


def test_dataset_validates_its_fields() -> None:
    x = torch.zeros(2, 5, 3)
    q = torch.ones(2, 5, 1)
    with pytest.raises(ValueError, match="charges"):
        NBodyDataset(x, x, torch.ones(2, 5), x)
    with pytest.raises(ValueError, match="targets"):
        NBodyDataset(x, x, q, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="velocities"):
        NBodyDataset(x, torch.zeros(3, 5, 3), q, x)
    with pytest.raises(ValueError, match="positions"):
        NBodyDataset(torch.zeros(2, 5, 2), x, q, x)
    with pytest.raises(TypeError):
        NBodyDataset(x.long(), x, q, x)
    with pytest.raises(TypeError):
        NBodyDataset([[0.0]], x, q, x)
    ds = NBodyDataset(x.double(), x, q, x)
    assert ds.positions.dtype == torch.float32


# --------------------------------------------------------------------------------------------
# load_nbody: splits and cache
# --------------------------------------------------------------------------------------------


def test_splits_are_seeded_sized_and_disjoint(tmp_path) -> None:
    train, val, test = load_nbody(5, 3, 2, seed=7, cache_dir=tmp_path, **FAST)
    assert (len(train), len(val), len(test)) == (5, 3, 2)
    assert train.name == "nbody/train" and test.name == "nbody/test"
    direct = simulate_charged(3, seed=derive_seed(7, "nbody", "val"), **FAST)
    torch.testing.assert_close(val.targets, torch.from_numpy(direct.targets).float())
    starts = torch.cat([train.positions, val.positions, test.positions]).reshape(10, -1)
    assert torch.cdist(starts, starts).add(torch.eye(10) * 1e9).min() > 1e-3
    other = load_nbody(5, 3, 2, seed=8, cache_dir=tmp_path, **FAST)
    assert not torch.allclose(other.train.positions, train.positions)


def test_cache_round_trip_and_reuse(tmp_path, monkeypatch) -> None:
    first = load_nbody(4, 2, 2, cache_dir=tmp_path, **FAST)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 3 and not list(tmp_path.glob("*.tmp"))

    def no_simulation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(nbody, "simulate_charged", no_simulation)
    second = load_nbody(4, 2, 2, cache_dir=tmp_path, **FAST)
    for a, b in zip(first, second, strict=True):
        for name in ("positions", "velocities", "charges", "targets"):
            torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    with pytest.raises(AssertionError, match="cache"):  # another parameter, another file
        load_nbody(4, 2, 2, cache_dir=tmp_path, dt=0.002, **FAST)


def test_corrupted_cache_is_simulated_again(tmp_path, caplog) -> None:
    first = load_nbody(3, 1, 1, cache_dir=tmp_path, **FAST)
    train_file = next(tmp_path.glob("charged-train-*.npz"))
    train_file.write_bytes(b"not a zip file")
    with caplog.at_level(logging.WARNING, logger="equify.data.nbody"):
        again = load_nbody(3, 1, 1, cache_dir=tmp_path, **FAST)
    assert any("simulating again" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(again.train.targets, first.train.targets)
    # the file was rewritten and now loads silently
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="equify.data.nbody"):
        load_nbody(3, 1, 1, cache_dir=tmp_path, **FAST)
    assert not caplog.records


def test_cache_with_the_wrong_contents_is_simulated_again(tmp_path, caplog) -> None:
    first = load_nbody(3, 1, 1, cache_dir=tmp_path, **FAST)
    train_file = next(tmp_path.glob("charged-train-*.npz"))
    with np.load(train_file) as f:
        arrays = dict(f)
    arrays["targets"] = arrays["targets"][:2]
    np.savez(train_file, **arrays)
    with caplog.at_level(logging.WARNING, logger="equify.data.nbody"):
        again = load_nbody(3, 1, 1, cache_dir=tmp_path, **FAST)
    assert any("does not hold" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(again.train.targets, first.train.targets)


def test_default_cache_dir_and_no_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EQUIFY_CACHE", str(tmp_path / "root"))
    load_nbody(2, 1, 1, **FAST)
    assert len(list((tmp_path / "root" / "nbody").glob("*.npz"))) == 3
    monkeypatch.delenv("EQUIFY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_nbody(2, 1, 1, **FAST)
    assert len(list((tmp_path / "xdg" / "equify" / "nbody").glob("*.npz"))) == 3
    monkeypatch.setenv("EQUIFY_CACHE", str(tmp_path / "elsewhere"))
    load_nbody(2, 1, 1, cache=False, **FAST)
    assert not (tmp_path / "elsewhere").exists()


def test_load_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(TypeError, match="unknown"):
        load_nbody(2, 1, 1, cache_dir=tmp_path, n_steps=10)
    with pytest.raises(ValueError):
        load_nbody(-1, 1, 1, cache_dir=tmp_path)
    with pytest.raises(ValueError):
        load_nbody(2, 1, 1, cache_dir=tmp_path, input_frame=3, target_frame=2)
    with pytest.raises(TypeError):
        load_nbody(2, 1, 1, cache_dir=3)
    with pytest.raises(TypeError):
        load_nbody(2, 1, 1, cache="yes")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# rotated_sets
# --------------------------------------------------------------------------------------------


def test_random_rotations_are_seeded_orthogonal_rotations() -> None:
    r = random_rotations(64, seed=5)
    assert r.shape == (64, 3, 3) and r.dtype == torch.float32
    eye = torch.eye(3).expand(64, 3, 3)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(random_rotations(64, seed=5), r, rtol=0, atol=0)
    assert not torch.allclose(random_rotations(64, seed=6), r)
    r64 = random_rotations(3, seed=5, dtype=torch.float64)
    assert r64.dtype == torch.float64
    assert random_rotations(0).shape == (0, 3, 3)


def test_random_o3_has_both_determinants() -> None:
    r = random_rotations(64, group="O3", seed=1, dtype=torch.float64)
    det = torch.linalg.det(r)
    torch.testing.assert_close(det.abs(), torch.ones(64, dtype=torch.float64))
    assert (det > 0).any() and (det < 0).any()
    torch.testing.assert_close(
        r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    )


def test_random_rotations_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        random_rotations(2, group="SO2")
    with pytest.raises(ValueError):
        random_rotations(2, group="C4")
    with pytest.raises(ValueError):
        random_rotations(-1)
    with pytest.raises(TypeError):
        random_rotations(2, dtype=torch.long)
    with pytest.raises(ValueError):
        random_rotations(2, seed=-3)


def test_rotate_sets_applies_one_matrix_per_sample() -> None:
    r = random_rotations(4, group="O3", seed=2)
    x, v = torch.randn(4, 6, 3), torch.randn(4, 6, 3, dtype=torch.float64)
    xr, vr = rotate_sets(r, x, v)
    torch.testing.assert_close(xr, torch.einsum("bij,bnj->bni", r, x))
    assert vr.dtype == torch.float64
    torch.testing.assert_close(vr, torch.einsum("bij,bnj->bni", r.double(), v))
    single = rotate_sets(r, x)
    assert isinstance(single, torch.Tensor)
    torch.testing.assert_close(single, xr)
    back = rotate_sets(r.transpose(-1, -2).contiguous(), xr)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    grid = torch.randn(4, 2, 3, 3)  # (B, ..., 3) works too
    torch.testing.assert_close(rotate_sets(r, grid)[:, 1], rotate_sets(r, grid[:, 1]))


def test_rotate_sets_rejects_bad_input() -> None:
    r = random_rotations(2)
    with pytest.raises(ValueError, match="at least one"):
        rotate_sets(r)
    with pytest.raises(ValueError, match="match"):
        rotate_sets(r, torch.zeros(3, 5, 3))
    with pytest.raises(ValueError):
        rotate_sets(r, torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_sets(2 * r, torch.zeros(2, 5, 3))
    with pytest.raises(ValueError):
        rotate_sets(r[0], torch.zeros(2, 5, 3))
    with pytest.raises(TypeError):
        rotate_sets(r, torch.zeros(2, 5, 3, dtype=torch.long))
    with pytest.raises(TypeError):
        rotate_sets(r, np.zeros((2, 5, 3)))
