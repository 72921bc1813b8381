"""The charged-particle N-body data set (Kipf et al., NRI 2018) in the protocol of EGNN.

Satorras et al. (EGNN, 2021, Table 2) predict where 5 charged particles in free 3-D space are
1,000 integration steps after an observed state (positions, velocities and charges), training on
3,000 trajectories. This module regenerates such data with its own seeded, vectorised numpy
simulator; nothing is downloaded.

Convention:
    * **Initial state.** ``n_particles`` particles per trajectory, charges ``±1`` with probability
      1/2 each, positions ``~ N(0, loc_std²)`` per coordinate, velocities a standard normal
      vector per particle rescaled to the norm ``vel_norm``. Unit masses, no box.
    * **Force.** ``F_i = k Σ_{j≠i} q_i q_j (x_i - x_j) / |x_i - x_j|³`` with
      ``k = interaction_strength``. This is the expression the NRI and EGNN reference simulators
      evaluate; with ``k = 1`` (their value, the default) like charges *repel* and unlike charges
      attract, as in Coulomb's law. ``k = -1`` gives the opposite sign convention
      (``F_i = -Σ_j q_i q_j (x_i - x_j) / r³``, like charges attract). The potential energy is
      ``U = k Σ_{i<j} q_i q_j / |x_i - x_j|`` (``F = -∇U``). Pairwise forces are antisymmetric
      (``F_ij = -F_ji``), so the total momentum is conserved.
    * **Clipping.** Each force *component* is clipped to ``±max_force`` (default ``0.1 / dt``,
      as in NRI). Component-wise clipping is not rotation-equivariant and not momentum
      conserving; it only acts in close encounters (see :attr:`ChargedSimulation.n_clipped` and
      :attr:`ChargedSimulation.n_clipped_between`).
    * **Integration.** Time step ``dt = 0.001``; first ``v += dt F(x)``, then per step
      ``x += dt v`` and ``v += dt F(x)`` (NRI's leapfrog-like scheme, a symplectic Euler).
    * **Frames.** Frame ``f`` is the state after ``f · sample_every`` position updates, recorded
      after the position update and before that step's velocity update, as NRI records; frame 0
      is the initial state (before the first velocity update). Only ``target_frame ·
      sample_every`` steps are simulated (4,000 for the defaults).
    * **EGNN offset.** NRI/EGNN store their frame ``f`` after ``(f + 1) · sample_every`` steps
      (their first stored frame is step 100), so EGNN's "frame 30 -> frame 40" is step 3,100 ->
      4,100; ``input_frame=31, target_frame=41`` reproduces those step indices exactly. The
      defaults here (30 -> 40, steps 3,000 -> 4,000) differ by 100 steps of history, not in the
      1,000-step horizon.
    * **Equivariance.** Without clipping the dynamics are E(3)-equivariant: rotating, reflecting
      or translating the initial state transforms every later state the same way (velocities
      are rotated, not translated).

Example:
    >>> from equify.data import load_nbody
    >>> train, val, test = load_nbody(n_train=8, n_val=4, n_test=4, cache=False)
    >>> train.positions.shape, train.charges.shape
    (torch.Size([8, 5, 3]), torch.Size([8, 5, 1]))
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from equify._validation import check_int
from equify.data.cache import cache_dir
from equify.data.dataset import check_index, check_indices
from equify.data.splits import check_seed, derive_seed

__all__ = [
    "ChargedIntegration",
    "ChargedSimulation",
    "NBodyDataset",
    "NBodySplits",
    "charged_energy",
    "charged_forces",
    "integrate_charged",
    "load_nbody",
    "simulate_charged",
]

logger = logging.getLogger(__name__)

#: Version of the cache file layout; bump it when the simulator's output changes.
_CACHE_FORMAT = 1

#: Keyword arguments of :func:`simulate_charged` that :func:`load_nbody` passes on (``**sim``).
_SIM_KEYS = (
    "input_frame",
    "target_frame",
    "sample_every",
    "dt",
    "interaction_strength",
    "max_force",
    "loc_std",
    "vel_norm",
    "chunk_size",
)

_DEFAULT_CHUNK = 1000


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_positive_float(value: object, name: str, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        kind = "a positive number (inf allowed)" if allow_inf else "a positive, finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return v


def _check_finite_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _resolve_max_force(max_force: object, dt: float) -> float:
    if max_force is None:
        return 0.1 / dt
    return _check_positive_float(max_force, "max_force", allow_inf=True)


def _real_array(value: object, name: str, shape: str) -> np.ndarray:
    """``value`` (a numpy array or tensor of real numbers) as float64; TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"expected {name} as a numpy array or tensor {shape}, got {type(value)}")
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise TypeError(f"expected real {name} {shape}, got dtype {value.dtype}")
    return value.astype(np.float64, copy=False)


def _as_state_array(value: object, name: str, shape: str) -> np.ndarray:
    """``value`` as a finite float64 array of shape ``(T, P, 3)``."""
    arr = _real_array(value, name, shape)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected {name} of shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _as_charges(value: object, n: int, p: int) -> np.ndarray:
    """Charges as float64 ``(T, P)`` from ``(T, P)`` or ``(T, P, 1)``."""
    arr = _real_array(value, "charges", f"({n}, {p})")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != (n, p):
        raise ValueError(f"expected charges of shape ({n}, {p}) or ({n}, {p}, 1), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("charges contain non-finite values")
    return arr


def _check_frames(input_frame: object, target_frame: object, sample_every: object) -> None:
    check_int(input_frame, "input_frame", 0)
    check_int(target_frame, "target_frame", 1)
    check_int(sample_every, "sample_every", 1)
    if target_frame <= input_frame:  # type: ignore[operator]
        raise ValueError(
            f"target_frame must come after input_frame, got input_frame={input_frame}, "
            f"target_frame={target_frame}"
        )


# --------------------------------------------------------------------------------------------
# Physics
# --------------------------------------------------------------------------------------------


class _Pairs:
    """Pair indices ``i < j`` and the incidence matrix that scatters pair forces to particles."""

    def __init__(self, p: int) -> None:
        self.i, self.j = np.triu_indices(p, 1)
        k = len(self.i)
        # incidence[k, i] = +1, incidence[k, j] = -1: F = pair_forces @ incidence.
        self.incidence = np.zeros((k, p))
        self.incidence[np.arange(k), self.i] = 1.0
        self.incidence[np.arange(k), self.j] = -1.0


def _forces_cm(x: np.ndarray, kqq: np.ndarray, pairs: _Pairs) -> np.ndarray:
    """Unclipped forces in coordinate-major layout.

    Args:
        x: positions ``(3, T, P)``.
        kqq: ``k q_i q_j`` per pair, ``(T, K)``.
        pairs: the pair indices of ``P`` particles.

    Returns:
        Forces ``(3, T, P)``.
    """
    d = x[:, :, pairs.i] - x[:, :, pairs.j]  # (3, T, K): x_i - x_j
    r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    d *= kqq / (r2 * np.sqrt(r2))
    return d @ pairs.incidence


def charged_forces(
    positions: np.ndarray | torch.Tensor,
    charges: np.ndarray | torch.Tensor,
    interaction_strength: float = 1.0,
    max_force: float | None = None,
) -> np.ndarray:
    """The pairwise charge forces ``F_i = k Σ_{j≠i} q_i q_j (x_i - x_j) / |x_i - x_j|³``.

    Args:
        positions: ``(T, P, 3)`` particle positions.
        charges: ``(T, P)`` or ``(T, P, 1)`` charges.
        interaction_strength: ``k``; 1 (NRI's value) makes like charges repel.
        max_force: clip each component to ``±max_force``; None (default) does not clip.

    Returns:
        float64 forces ``(T, P, 3)``.
    """
    x = _as_state_array(positions, "positions", "(T, P, 3)")
    n, p, _ = x.shape
    q = _as_charges(charges, n, p)
    k = _check_finite_float(interaction_strength, "interaction_strength")
    pairs = _Pairs(p)
    kqq = k * q[:, pairs.i] * q[:, pairs.j]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = _forces_cm(np.ascontiguousarray(x.transpose(2, 0, 1)), kqq, pairs)
    if max_force is not None:
        m = _check_positive_float(max_force, "max_force", allow_inf=True)
        np.clip(f, -m, m, out=f)
    return np.ascontiguousarray(f.transpose(1, 2, 0))


def charged_energy(
    positions: np.ndarray | torch.Tensor,
    velocities: np.ndarray | torch.Tensor,
    charges: np.ndarray | torch.Tensor,
    interaction_strength: float = 1.0,
) -> np.ndarray:
    """Total energy ``½ Σ |v_i|² + k Σ_{i<j} q_i q_j / |x_i - x_j|`` per trajectory.

    Args:
        positions: ``(T, P, 3)``.
        velocities: ``(T, P, 3)`` (unit masses).
        charges: ``(T, P)`` or ``(T, P, 1)``.
        interaction_strength: ``k``, as in :func:`charged_forces`.

    Returns:
        float64 energies ``(T,)``.
    """
    x = _as_state_array(positions, "positions", "(T, P, 3)")
    v = _as_state_array(velocities, "velocities", "(T, P, 3)")
    if v.shape != x.shape:
        raise ValueError(f"velocities {v.shape} must match positions {x.shape}")
    n, p, _ = x.shape
    q = _as_charges(charges, n, p)
    k = _check_finite_float(interaction_strength, "interaction_strength")
    i, j = np.triu_indices(p, 1)
    r = np.linalg.norm(x[:, i] - x[:, j], axis=-1)
    with np.errstate(divide="ignore"):
        potential = (k * q[:, i] * q[:, j] / r).sum(-1)
    return 0.5 * (v * v).sum((-1, -2)) + potential


class ChargedIntegration(NamedTuple):
    """States recorded by :func:`integrate_charged` (float64 numpy arrays).

    Attributes:
        positions: ``(T, F, P, 3)``, one entry per requested frame, in the order given.
        velocities: ``(T, F, P, 3)``.
        n_clipped: ``(T,)`` int64, force components clipped over all force evaluations.
        clipped_before: ``(T, F)`` int64, force components clipped before each recorded frame
            (in the velocity updates that led to it); ``clipped_before[:, b] -
            clipped_before[:, a]`` counts the clipping between frames ``a`` and ``b``.
        n_force_evaluations: number of force evaluations per trajectory (``n_steps``).
    """

    positions: np.ndarray
    velocities: np.ndarray
    n_clipped: np.ndarray
    clipped_before: np.ndarray
    n_force_evaluations: int


def integrate_charged(
    positions: np.ndarray | torch.Tensor,
    velocities: np.ndarray | torch.Tensor,
    charges: np.ndarray | torch.Tensor,
    frames: Sequence[int],
    *,
    sample_every: int = 100,
    dt: float = 0.001,
    interaction_strength: float = 1.0,
    max_force: float | None = None,
    chunk_size: int = _DEFAULT_CHUNK,
) -> ChargedIntegration:
    """Integrate charged particles from given initial states and record some frames.

    The scheme and the frame convention are those of the module docstring: frame ``f`` is the
    state after ``f · sample_every`` steps, frame 0 the initial state; ``max(frames) ·
    sample_every`` steps are taken. Trajectories are integrated in chunks of ``chunk_size``
    (vectorised over the chunk); the result does not depend on ``chunk_size``.

    Args:
        positions: initial positions ``(T, P, 3)``.
        velocities: initial velocities ``(T, P, 3)``.
        charges: ``(T, P)`` or ``(T, P, 1)``.
        frames: frame indices ``>= 0`` to record (any order, repeats allowed).
        sample_every: steps between frames.
        dt: time step.
        interaction_strength: ``k`` of :func:`charged_forces`.
        max_force: per-component force clip; None means ``0.1 / dt``, ``math.inf`` disables it.
        chunk_size: trajectories integrated at once (bounds the memory).

    Returns:
        A :class:`ChargedIntegration` with ``(T, len(frames), P, 3)`` positions and velocities.

    Raises:
        TypeError: non-numeric arguments.
        ValueError: mismatched shapes, non-finite states or out-of-range parameters.
    """
    x0 = _as_state_array(positions, "positions", "(T, P, 3)")
    v0 = _as_state_array(velocities, "velocities", "(T, P, 3)")
    if v0.shape != x0.shape:
        raise ValueError(f"velocities {v0.shape} must match positions {x0.shape}")
    n, p, _ = x0.shape
    q = _as_charges(charges, n, p)
    if isinstance(frames, str | bytes) or not isinstance(frames, Sequence) or not frames:
        raise TypeError(f"frames must be a non-empty sequence of ints, got {frames!r}")
    frame_list = [check_int(f, "frame", 0) for f in frames]
    check_int(sample_every, "sample_every", 1)
    dt = _check_positive_float(dt, "dt")
    k = _check_finite_float(interaction_strength, "interaction_strength")
    m = _resolve_max_force(max_force, dt)
    check_int(chunk_size, "chunk_size", 1)

    n_steps = max(frame_list) * sample_every
    slots: dict[int, list[int]] = {}
    for slot, f in enumerate(frame_list):
        slots.setdefault(f * sample_every, []).append(slot)
    pairs = _Pairs(p)
    out_x = np.empty((n, len(frame_list), p, 3))
    out_v = np.empty((n, len(frame_list), p, 3))
    n_clipped = np.zeros(n, dtype=np.int64)
    clipped_before = np.zeros((n, len(frame_list)), dtype=np.int64)
    clip = math.isfinite(m)

    def kick(x: np.ndarray, v: np.ndarray, kqq: np.ndarray, clipped: np.ndarray) -> None:
        f = _forces_cm(x, kqq, pairs)
        if clip and (f.max() > m or f.min() < -m):
            clipped += np.count_nonzero(np.abs(f) > m, axis=(0, 2))
            np.clip(f, -m, m, out=f)
        f *= dt
        v += f

    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        x = np.ascontiguousarray(x0[sl].transpose(2, 0, 1))  # (3, t, P)
        v = np.ascontiguousarray(v0[sl].transpose(2, 0, 1))
        kqq = k * q[sl, pairs.i] * q[sl, pairs.j]
        clipped = n_clipped[sl]
        with np.errstate(divide="ignore", invalid="ignore"):
            for step in range(n_steps + 1):
                if step:
                    x += dt * v
                for slot in slots.get(step, ()):
                    out_x[sl, slot] = x.transpose(1, 2, 0)
                    out_v[sl, slot] = v.transpose(1, 2, 0)
                    clipped_before[sl, slot] = clipped
                if step < n_steps:
                    kick(x, v, kqq, clipped)
    if not (np.isfinite(out_x).all() and np.isfinite(out_v).all()):
        raise FloatingPointError(
            "the simulation produced non-finite states (two particles at the same position?)"
        )
    return ChargedIntegration(out_x, out_v, n_clipped, clipped_before, n_steps)


# --------------------------------------------------------------------------------------------
# Simulated data
# --------------------------------------------------------------------------------------------


class ChargedSimulation(NamedTuple):
    """Output of :func:`simulate_charged` (float64 numpy arrays; ``T`` trajectories).

    Attributes:
        positions: ``(T, P, 3)`` positions at ``input_frame``.
        velocities: ``(T, P, 3)`` velocities at ``input_frame``.
        charges: ``(T, P, 1)`` charges ``±1``.
        targets: ``(T, P, 3)`` positions at ``target_frame``.
        target_velocities: ``(T, P, 3)`` velocities at ``target_frame``.
        n_clipped: ``(T,)`` int64, clipped force components over the whole simulation.
        n_clipped_between: ``(T,)`` int64, clipped force components between the input and the
            target frame, i.e. in the map from the inputs to the target; where it is 0 that map
            is exactly E(3)-equivariant (up to rounding).
        n_force_evaluations: force evaluations per trajectory (``target_frame · sample_every``);
            the clipped fraction of one trajectory is ``n_clipped / (n_force_evaluations · 3P)``.
    """

    positions: np.ndarray
    velocities: np.ndarray
    charges: np.ndarray
    targets: np.ndarray
    target_velocities: np.ndarray
    n_clipped: np.ndarray
    n_clipped_between: np.ndarray
    n_force_evaluations: int


def _initial_conditions(
    n: int, p: int, seed: int, loc_std: float, vel_norm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, velocities ``(n, p, 3)`` and charges ``(n, p, 1)`` drawn with ``seed``.

    One ``(n, p, 7)`` standard normal draw, trajectory by trajectory, so the first ``m``
    trajectories of ``n`` are the ``m`` trajectories drawn with the same seed.
    """
    z = np.random.default_rng(seed).standard_normal((n, p, 7))
    x = z[..., 0:3] * loc_std
    direction = z[..., 3:6]
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    v = direction * (vel_norm / np.maximum(norm, np.finfo(np.float64).tiny))
    q = np.where(z[..., 6:7] >= 0, 1.0, -1.0)
    return np.ascontiguousarray(x), np.ascontiguousarray(v), q


def simulate_charged(
    n_trajectories: int,
    n_particles: int = 5,
    seed: int = 0,
    *,
    input_frame: int = 30,
    target_frame: int = 40,
    sample_every: int = 100,
    dt: float = 0.001,
    interaction_strength: float = 1.0,
    max_force: float | None = None,
    loc_std: float = 1.0,
    vel_norm: float = 0.5,
    chunk_size: int = _DEFAULT_CHUNK,
) -> ChargedSimulation:
    """Simulate charged-particle trajectories and return (input state, target) pairs.

    Args:
        n_trajectories: ``T >= 0``.
        n_particles: ``P >= 1`` particles per trajectory.
        seed: seed of the initial states (numpy ``default_rng``); the first ``m`` trajectories
            do not depend on ``n_trajectories``.
        input_frame: frame of the inputs (positions, velocities).
        target_frame: frame of the target positions (``> input_frame``).
        sample_every: steps per frame; ``target_frame · sample_every`` steps are simulated.
        dt: time step.
        interaction_strength: ``k``; 1 as in NRI/EGNN (like charges repel), -1 flips the sign.
        max_force: per-component force clip; None means ``0.1 / dt``, ``math.inf`` disables it.
        loc_std: standard deviation of the initial position coordinates.
        vel_norm: norm of every initial velocity.
        chunk_size: trajectories integrated at once.

    Returns:
        A :class:`ChargedSimulation` of float64 arrays.

    Raises:
        TypeError / ValueError: for arguments of the wrong type or range.
    """
    n = check_int(n_trajectories, "n_trajectories", 0)
    p = check_int(n_particles, "n_particles", 1)
    check_seed(seed)
    _check_frames(input_frame, target_frame, sample_every)
    loc_std = _check_positive_float(loc_std, "loc_std")
    vel_norm = _check_positive_float(vel_norm, "vel_norm")
    x0, v0, q = _initial_conditions(n, p, seed, loc_std, vel_norm)
    start = time.perf_counter()
    run = integrate_charged(
        x0,
        v0,
        q,
        (input_frame, target_frame),
        sample_every=sample_every,
        dt=dt,
        interaction_strength=interaction_strength,
        max_force=max_force,
        chunk_size=chunk_size,
    )
    logger.info(
        "simulated %d charged %d-particle trajectories (%d steps) in %.1f s",
        n,
        p,
        run.n_force_evaluations,
        time.perf_counter() - start,
    )
    return ChargedSimulation(
        positions=run.positions[:, 0],
        velocities=run.velocities[:, 0],
        charges=q,
        targets=run.positions[:, 1],
        target_velocities=run.velocities[:, 1],
        n_clipped=run.n_clipped,
        n_clipped_between=run.clipped_before[:, 1] - run.clipped_before[:, 0],
        n_force_evaluations=run.n_force_evaluations,
    )


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def _as_float_tensor(value: object, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected {name} as a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"expected floating {name}, got dtype {value.dtype}")
    return value.to(torch.float32)


@dataclass(eq=False, repr=False)
class NBodyDataset(Dataset):
    """Charged N-body samples: the state at the input frame and the positions to predict.

    Args:
        positions: ``(T, P, 3)`` positions at the input frame.
        velocities: ``(T, P, 3)`` velocities at the input frame.
        charges: ``(T, P, 1)`` charges.
        targets: ``(T, P, 3)`` positions at the target frame.
        name: a short name, e.g. ``"nbody/train"``.

    Floating tensors (or numpy arrays) of any precision are accepted and stored as float32.

    Items:
        ``dataset[i]`` is ``(positions, velocities, charges, target)`` of shapes ``(P, 3)``,
        ``(P, 3)``, ``(P, 1)``, ``(P, 3)``; a ``DataLoader`` batches them into ``(B, P, ...)``.

    Raises:
        TypeError: a field is not a floating tensor.
        ValueError: the shapes do not agree.
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    charges: torch.Tensor
    targets: torch.Tensor
    name: str = "nbody"

    def __post_init__(self) -> None:
        self.positions = _as_float_tensor(self.positions, "positions")
        self.velocities = _as_float_tensor(self.velocities, "velocities")
        self.charges = _as_float_tensor(self.charges, "charges")
        self.targets = _as_float_tensor(self.targets, "targets")
        if self.positions.dim() != 3 or self.positions.shape[-1] != 3:
            raise ValueError(f"expected positions (T, P, 3), got {tuple(self.positions.shape)}")
        t, p, _ = self.positions.shape
        expected = {
            "velocities": (self.velocities, (t, p, 3)),
            "charges": (self.charges, (t, p, 1)),
            "targets": (self.targets, (t, p, 3)),
        }
        for field, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"expected {field} of shape {shape} to match positions "
                    f"{tuple(self.positions.shape)}, got {tuple(value.shape)}"
                )
        if not isinstance(self.name, str):
            raise TypeError(f"expected name as a str, got {type(self.name).__name__}")

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def __repr__(self) -> str:
        return f"NBodyDataset(name={self.name!r}, n={len(self)}, n_particles={self.n_particles})"

    def __getitem__(
        self, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        i = check_index(index, len(self))
        return self.positions[i], self.velocities[i], self.charges[i], self.targets[i]

    @property
    def n_particles(self) -> int:
        """Particles per trajectory ``P``."""
        return int(self.positions.shape[1])

    def subset(
        self, indices: torch.Tensor | Sequence[int], name: str | None = None
    ) -> NBodyDataset:
        """A new dataset of the samples at ``indices`` (copied).

        Args:
            indices: ``(K,)`` integer indices in ``[-len(self), len(self))``.
            name: the new name (default: this one).

        Raises:
            ValueError: indices not one-dimensional.
            IndexError: an index out of range.
        """
        idx = check_indices(indices, len(self), "trajectories")
        return NBodyDataset(
            self.positions[idx],
            self.velocities[idx],
            self.charges[idx],
            self.targets[idx],
            name if name is not None else self.name,
        )

    @classmethod
    def from_simulation(cls, sim: ChargedSimulation, name: str = "nbody") -> NBodyDataset:
        """The dataset of a :func:`simulate_charged` result."""
        return cls(sim.positions, sim.velocities, sim.charges, sim.targets, name)


class NBodySplits(NamedTuple):
    """The ``(train, val, test)`` splits returned by :func:`load_nbody`."""

    train: NBodyDataset
    val: NBodyDataset
    test: NBodyDataset


# --------------------------------------------------------------------------------------------
# Cached splits
# --------------------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    return cache_dir("nbody")


_ARRAYS = ("positions", "velocities", "charges", "targets")


def _read_cache(path: Path, key: str, n: int, p: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file is unreadable or mismatched."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored_key = str(f["key"][()])
            arrays = {name: np.asarray(f[name]) for name in _ARRAYS}
    except Exception as err:  # any failure to read means the file is corrupt
        logger.warning("unreadable n-body cache %s (%s): simulating again", path, err)
        return None
    shapes = {"charges": (n, p, 1)}
    bad = stored_key != key or any(
        a.shape != shapes.get(name, (n, p, 3)) or a.dtype != np.float32 or not np.isfinite(a).all()
        for name, a in arrays.items()
    )
    if bad:
        logger.warning("n-body cache %s does not hold the requested data: simulating again", path)
        return None
    return arrays


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_nbody(
    n_train: int = 3000,
    n_val: int = 2000,
    n_test: int = 2000,
    n_particles: int = 5,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    cache: bool = True,
    **sim: Any,
) -> NBodySplits:
    """Train, validation and test splits of the charged N-body task (EGNN's protocol).

    Each split is simulated by :func:`simulate_charged` with its own seed, derived from
    ``seed`` and the split's name, so the splits are independent draws (disjoint by
    construction) and a split does not change when another split's size does.

    Caching: every split is stored as ``charged-<split>-<T>x<P>-<hash>.npz`` (float32) in
    ``cache_dir`` (default ``$EQUIFY_CACHE/nbody``, else ``$XDG_CACHE_HOME/equify/nbody``, else
    ``~/.cache/equify/nbody``); the hash covers every parameter that changes the data, and the
    file also stores the parameters and is only used when they match. A file that cannot be
    read, or holds other data, is simulated again with a logged warning and rewritten.

    Args:
        n_train: training trajectories (EGNN: 3,000).
        n_val: validation trajectories (EGNN: 2,000).
        n_test: test trajectories (EGNN: 2,000).
        n_particles: particles per trajectory.
        seed: base seed.
        cache_dir: where to cache; None for the default.
        cache: False to neither read nor write a cache.
        **sim: keyword arguments of :func:`simulate_charged` (``input_frame``,
            ``target_frame``, ``sample_every``, ``dt``, ``interaction_strength``,
            ``max_force``, ``loc_std``, ``vel_norm``, ``chunk_size``).

    Returns:
        :class:`NBodySplits` ``(train, val, test)`` of :class:`NBodyDataset`, named
        ``"nbody/train"`` and so on.

    Raises:
        TypeError: an unknown keyword in ``sim`` or an argument of the wrong type.
        ValueError: an argument out of range.
    """
    unknown = sorted(set(sim) - set(_SIM_KEYS))
    if unknown:
        raise TypeError(f"unknown simulation arguments {unknown}; expected some of {_SIM_KEYS}")
    sizes = {
        "train": check_int(n_train, "n_train", 0),
        "val": check_int(n_val, "n_val", 0),
        "test": check_int(n_test, "n_test", 0),
    }
    p = check_int(n_particles, "n_particles", 1)
    check_seed(seed)
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be a bool, got {type(cache).__name__}")
    params = {
        "input_frame": sim.get("input_frame", 30),
        "target_frame": sim.get("target_frame", 40),
        "sample_every": sim.get("sample_every", 100),
        "dt": _check_positive_float(sim.get("dt", 0.001), "dt"),
        "interaction_strength": _check_finite_float(
            sim.get("interaction_strength", 1.0), "interaction_strength"
        ),
        "loc_std": _check_positive_float(sim.get("loc_std", 1.0), "loc_std"),
        "vel_norm": _check_positive_float(sim.get("vel_norm", 0.5), "vel_norm"),
    }
    _check_frames(params["input_frame"], params["target_frame"], params["sample_every"])
    params["max_force"] = _resolve_max_force(sim.get("max_force"), params["dt"])
    chunk_size = check_int(sim.get("chunk_size", _DEFAULT_CHUNK), "chunk_size", 1)
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        raise TypeError(f"cache_dir must be a path, got {type(cache_dir).__name__}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir()

    splits = {}
    for split, n in sizes.items():
        split_seed = derive_seed(seed, "nbody", split)
        key = json.dumps(
            {
                "format": _CACHE_FORMAT,
                "simulator": "charged",
                "split": split,
                "n_trajectories": n,
                "n_particles": p,
                "seed": seed,
                "split_seed": split_seed,
                **params,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = root / f"charged-{split}-{n}x{p}-{digest}.npz"
        arrays = _read_cache(path, key, n, p) if cache and path.exists() else None
        if arrays is None:
            result = simulate_charged(n, p, split_seed, chunk_size=chunk_size, **params)
            arrays = {name: getattr(result, name).astype(np.float32) for name in _ARRAYS}
            if cache:
                _write_cache(path, key, arrays)
                logger.info("cached the n-body %s split in %s", split, path)
        else:
            logger.info("loaded the n-body %s split from %s", split, path)
        splits[split] = NBodyDataset(**arrays, name=f"nbody/{split}")
    return NBodySplits(splits["train"], splits["val"], splits["test"])
