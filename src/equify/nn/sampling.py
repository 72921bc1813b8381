"""Learnable distributions over the elements of SE(2) and E(2): partial equivariance.

A partial group convolution (Romero & Lohit, NeurIPS 2022) is equivariant to the subset of the
group its output elements are drawn from. :class:`ElementSampler` owns that subset:

* **rotations**: ``samples`` angles from the uniform distribution on ``[-πθ, πθ]``, learned
  through ``θ ∈ [0, 1]``. Training draws them *stratified* with one reparameterised offset
  ``ε ~ U(0, 1)``: ``θ·(-π + 2π(i + ε)/N)``, ``i = 0..N-1`` — sample ``i`` covers the whole
  stratum ``i`` of the interval and the gradient reaches θ through the angles. Evaluation uses
  the fixed, evenly spaced ``θ·(-π + 2πi/N)``: at θ = 1 and N = 4 the multiples of 90°, C4.
  (For θ < 1 these span ``[-πθ, πθ(1 - 2/N)]``, the left ends of the training strata: on the
  circle they coincide with a symmetric grid only at θ = 1.)
* **reflections** (E(2)): the N rotations once plainly and once after the left-right flip
  (``2N`` elements). The flipped half carries a weight ``m ∈ {0, 1}``, drawn in training from a
  Bernoulli with probability ``p`` and always 0/1 in the forward pass; its gradient is a
  straight-through estimator: ``reflection_estimator="relaxed"`` backpropagates the relaxed
  Bernoulli (binary Concrete: logistic noise, temperature τ) sample the hard value was
  thresholded from, ``"straight_through"`` passes ``∂m/∂p = 1`` (Bengio et al. 2013). In
  evaluation ``m = [p ≥ 1/2]``. The relaxed gradient with respect to p carries the factor
  ``1/(p(1-p))`` of the logit and is heavy-tailed near p = 0 and p = 1 (occasional very large
  steps); the straight-through one is bounded. A weight of 0 removes the flipped elements from
  every sum over the group that follows (:class:`~equify.nn.PartialGroupConv`,
  :class:`~equify.nn.PartialGroupPool`; batch statistics still include them).
* **finite groups** ``C_n`` / ``D_n``: the group's own elements, fixed (no θ, no sampling).

θ = 1 (and p = 1) is the full group convolution (sampled). θ and p are stored unconstrained
and used clamped to ``[0, 1]`` with a straight-through gradient, so a value at the boundary
still receives gradients and can come back. Each is stored divided by a *rate*
(``theta_rate``, ``reflection_rate``): an optimizer such as Adam, whose steps have about the
learning rate's size whatever the gradient, then moves the value ``rate`` times faster than the
network's weights. The reflection's default rate is 100: its straight-through gradient is noisy,
and on MNIST6-M (E(2), Adam 1e-3) p hardly left 1 in 6 epochs at rate 1 (0.99) or rate 10
(0.92), while at rate 100 the layers' p fell below 1/2 within two epochs and the network reached
100% test accuracy after 10 (relaxed) or 8 (straight-through) epochs.

Elements are ``(angle, flip)`` pairs meaning ``g = R(angle) F^flip`` with ``F`` the
left-right flip ``(x, y) -> (-x, y)`` in display coordinates (y up, angles counter-clockwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from equify._validation import check_int
from equify.groups import CyclicGroup, DihedralGroup, FiniteGroup
from equify.groups import group as parse_group

__all__ = [
    "PARTIAL_GROUPS",
    "REFLECTION_ESTIMATORS",
    "ElementSampler",
    "GroupSamples",
    "check_unit_interval",
    "snap_trig",
]

#: Gradient estimators of the reflection weight.
REFLECTION_ESTIMATORS = ("relaxed", "straight_through")
#: Rotations sampled per pass when ``samples`` is None (continuous groups).
DEFAULT_SAMPLES = 8
#: Continuous groups a partial layer samples from (finite ``C_n``/``D_n`` names work too).
PARTIAL_GROUPS = ("SE2", "E2")


@dataclass(frozen=True)
class GroupSamples:
    """A sampled subset of the group, with the weights of its elements.

    Attributes:
        angles: ``(N,)`` rotation angles in radians (carry the gradient of θ).
        flips: ``(N,)`` 0. / 1. (1: the element flips left-right before rotating).
        weights: ``(N,)`` in ``[0, 1]``: 0 removes the element from sums over the group
            (carry the gradient of the reflection probability).
    """

    angles: torch.Tensor
    flips: torch.Tensor
    weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.angles.shape[0])

    def to(self, dtype: torch.dtype, device: torch.device) -> GroupSamples:
        """The samples in ``dtype`` on ``device``."""
        return GroupSamples(
            self.angles.to(device=device, dtype=dtype),
            self.flips.to(device=device, dtype=dtype),
            self.weights.to(device=device, dtype=dtype),
        )


def snap_trig(v: torch.Tensor) -> torch.Tensor:
    """Round cosines/sines within rounding of -1, 0 or 1 to exactly that value.

    The tolerance is ``1e-12`` in float64 and ``1e-6`` otherwise (the partial layers compute
    angles in float32 at least). The
    value is replaced, the gradient passes unchanged (straight-through), so multiples of 90°
    turn kernel pixels into kernel pixels exactly while θ keeps its gradient.
    """
    tol = 1e-12 if v.dtype == torch.float64 else 1e-6
    r = torch.round(v.detach())
    close = (v.detach() - r).abs() < tol
    return v + torch.where(close, r - v.detach(), torch.zeros_like(v))


def check_unit_interval(value: object, name: str) -> float:
    """Return ``value`` as a float in ``[0, 1]``; raise TypeError/ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected {name} to be a number in [0, 1], got {type(value).__name__}")
    if not (0.0 <= float(value) <= 1.0) or math.isnan(float(value)):
        raise ValueError(f"expected {name} in [0, 1], got {value}")
    return float(value)


def _clamped(raw: torch.Tensor) -> torch.Tensor:
    """``raw`` clamped to ``[0, 1]`` in value, with the identity's gradient."""
    return raw + (raw.detach().clamp(0.0, 1.0) - raw.detach())


def _parse(group: object) -> str | FiniteGroup:
    if isinstance(group, FiniteGroup):
        return group
    if not isinstance(group, str):
        raise TypeError(f"expected group as a name such as 'SE2', got {type(group).__name__}")
    key = group.strip().upper().replace("(", "").replace(")", "")
    if key in PARTIAL_GROUPS:
        return key
    try:
        g = parse_group(group)
    except (ValueError, TypeError):
        g = None
    if isinstance(g, FiniteGroup):
        return g
    raise ValueError(
        f"unknown group {group!r} for a partial group convolution: expected 'SE2' (rotations), "
        "'E2' (rotations and reflections), or a finite group such as 'C4' or 'D4'"
    )


class ElementSampler(nn.Module):
    """The learnable subset of SE(2) / E(2) one partial layer is equivariant to.

    Args:
        group: ``"SE2"``, ``"E2"``, or a finite group (``"C4"``, ``DihedralGroup(4)``: its
            elements, fixed).
        samples: rotations drawn per forward pass (E(2): ``2·samples`` elements); None: 8 for
            SE(2) / E(2), the rotation count ``n`` of a finite group (which takes no other).
        theta: initial θ in ``[0, 1]`` (the fraction of the circle; 1 = full rotations).
        learn_theta: make θ a parameter (else a fixed buffer).
        reflection_probability: initial probability of keeping the flipped elements (E(2)).
        learn_reflection: make that probability a parameter (E(2)).
        temperature: τ of the relaxed Bernoulli (1 keeps its gradient alive at p = 1).
        reflection_estimator: ``"relaxed"`` or ``"straight_through"`` (module docstring).
        theta_rate: how much faster than the weights θ learns (see the module docstring).
        reflection_rate: the same for the reflection probability.
        stochastic: draw random (stratified) samples in training mode; False uses the
            evaluation samples always.

    Raises:
        ValueError: an unknown group, ``samples <= 0``, θ or p outside ``[0, 1]``, τ <= 0.
    """

    def __init__(
        self,
        group: str | FiniteGroup = "SE2",
        samples: int | None = None,
        *,
        theta: float = 1.0,
        learn_theta: bool = True,
        reflection_probability: float = 1.0,
        learn_reflection: bool = True,
        temperature: float = 1.0,
        reflection_estimator: str = "relaxed",
        theta_rate: float = 1.0,
        reflection_rate: float = 100.0,
        stochastic: bool = True,
    ) -> None:
        super().__init__()
        parsed = _parse(group)
        self.finite: FiniteGroup | None = parsed if isinstance(parsed, FiniteGroup) else None
        if self.finite is not None:
            n = self.finite.n
            if samples is not None and samples != n:
                check_int(samples, "samples", 1)
                raise ValueError(
                    f"a finite group {self.finite} has {n} rotations: pass samples=None or "
                    f"{n}, got {samples}"
                )
            self.samples = n
            self.reflections = isinstance(self.finite, DihedralGroup)
            self.group_name = str(self.finite)
        else:
            self.samples = DEFAULT_SAMPLES if samples is None else check_int(samples, "samples", 1)
            self.reflections = parsed == "E2"
            self.group_name = str(parsed)
        theta = check_unit_interval(theta, "theta")
        p = check_unit_interval(reflection_probability, "reflection_probability")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"expected temperature to be a number, got {temperature!r}")
        if not temperature > 0:
            raise ValueError(f"expected temperature > 0, got {temperature}")
        self.temperature = float(temperature)
        if reflection_estimator not in REFLECTION_ESTIMATORS:
            raise ValueError(
                f"reflection_estimator must be one of {REFLECTION_ESTIMATORS}, got "
                f"{reflection_estimator!r}"
            )
        self.reflection_estimator = reflection_estimator
        self.theta_rate = _check_rate(theta_rate, "theta_rate")
        self.reflection_rate = _check_rate(reflection_rate, "reflection_rate")
        self.stochastic = bool(stochastic) and self.finite is None
        learn_theta = bool(learn_theta) and self.finite is None
        learn_p = bool(learn_reflection) and self.reflections and self.finite is None
        t = torch.tensor(theta / self.theta_rate)
        if learn_theta:
            self.theta_raw = nn.Parameter(t)
        else:
            self.register_buffer("theta_raw", t)
        q = torch.tensor((p if self.reflections else 0.0) / self.reflection_rate)
        if learn_p:
            self.reflection_raw = nn.Parameter(q)
        else:
            self.register_buffer("reflection_raw", q)
        self.learn_theta = learn_theta
        self.learn_reflection = learn_p
        # the rates are saved with the stored values, so a checkpoint loads into a model built
        # with other rates without changing θ or p
        self.register_buffer("theta_scale", torch.tensor(self.theta_rate))
        self.register_buffer("reflection_scale", torch.tensor(self.reflection_rate))

    @torch.no_grad()
    def project_(self) -> None:
        """Bring the stored θ and p back into ``[0, 1]`` (in place).

        Their use is clamped with the identity's gradient; without this projection a loss that
        keeps pushing θ above 1 would grow the stored value with no effect, and θ would need
        as many steps to come back. Called before every training pass.
        """
        for learn, raw, scale in (
            (self.learn_theta, self.theta_raw, self.theta_scale),
            (self.learn_reflection, self.reflection_raw, self.reflection_scale),
        ):
            top = 1.0 / float(scale)
            if learn and not 0.0 <= float(raw.detach()) <= top:  # touch it only when needed
                raw.clamp_(0.0, top)

    @property
    def theta(self) -> torch.Tensor:
        """θ in ``[0, 1]`` (a 0-d tensor, differentiable)."""
        if self.finite is not None:
            return torch.ones((), dtype=self.theta_raw.dtype, device=self.theta_raw.device)
        return _clamped(self.theta_raw * self.theta_scale)

    @property
    def reflection_probability(self) -> torch.Tensor:
        """The probability of keeping the flipped elements (0 for SE(2) and ``C_n``)."""
        ref = self.theta_raw
        if self.finite is not None:
            return torch.full((), float(self.reflections), dtype=ref.dtype, device=ref.device)
        return _clamped(self.reflection_raw * self.reflection_scale)

    @torch.no_grad()
    def set_(self, theta: float | None = None, reflection_probability: float | None = None) -> None:
        """Set θ and/or the reflection probability (values in ``[0, 1]``), in place."""
        if theta is not None:
            value = check_unit_interval(theta, "theta")
            if self.finite is not None and value != 1.0:
                raise ValueError(f"a finite group {self.finite} has θ = 1, got {value}")
            self.theta_raw.fill_(value / float(self.theta_scale))
        if reflection_probability is not None:
            value = check_unit_interval(reflection_probability, "reflection_probability")
            if not self.reflections or self.finite is not None:
                raise ValueError(f"{self.group_name} has no learnable reflection probability")
            self.reflection_raw.fill_(value / float(self.reflection_scale))

    @property
    def size(self) -> int:
        """The number of elements a forward pass returns."""
        return self.samples * (2 if self.reflections else 1)

    def _finite(self) -> GroupSamples:
        g: FiniteGroup = self.finite  # type: ignore[assignment]  # the caller checked
        e = g.elements()
        dev = self.theta_raw.device
        angles = g.angle(e).to(device=dev, dtype=self.theta_raw.dtype)
        flips = g.is_reflection(e).to(device=dev, dtype=self.theta_raw.dtype)
        # D_n lists rotations then reflections, like the E(2) samples
        return GroupSamples(angles, flips, torch.ones_like(angles))

    def forward(self, generator: torch.Generator | None = None) -> GroupSamples:
        """This pass's elements: stratified random in training, evenly spaced in evaluation.

        Args:
            generator: random numbers for the offset and the Bernoulli draw (default: global).

        Returns:
            :class:`GroupSamples` of :attr:`size` elements.
        """
        if self.finite is not None:
            return self._finite()
        if self.training:
            self.project_()
        ref = self.theta_raw
        work = torch.float64 if ref.dtype == torch.float64 else torch.float32
        n = self.samples
        random = self.training and self.stochastic
        i = torch.arange(n, dtype=torch.float64, device=ref.device)
        if random:
            eps = torch.rand((), generator=generator, dtype=torch.float64, device=_dev(generator))
            i = i + eps.to(ref.device)
        base = (-math.pi + 2 * math.pi * i / n).to(work)
        angles = self.theta.to(work) * base
        flips = torch.zeros(n, dtype=work, device=ref.device)
        weights = torch.ones(n, dtype=work, device=ref.device)
        if not self.reflections:
            return GroupSamples(angles, flips, weights)
        keep = self._reflection_weight(random, generator).to(work)
        return GroupSamples(
            torch.cat([angles, angles]),
            torch.cat([flips, torch.ones_like(flips)]),
            torch.cat([weights, keep.expand(n)]),
        )

    def _reflection_weight(self, random: bool, generator: torch.Generator | None) -> torch.Tensor:
        p = self.reflection_probability
        if not self.learn_reflection:
            return (p.detach() >= 0.5).to(p.dtype) if not random else _bernoulli(p, generator)
        if not random:
            hard = (p.detach() >= 0.5).to(p.dtype)
            return hard + (p - p.detach())  # gradient of the expectation in evaluation
        u = torch.rand((), generator=generator, dtype=torch.float64, device=_dev(generator))
        u = u.to(device=p.device, dtype=p.dtype).clamp(1e-6, 1 - 1e-6)
        if self.reflection_estimator == "straight_through":
            hard = (u < p.detach()).to(p.dtype)
            return hard + (p - p.detach())
        noise = torch.log(u) - torch.log1p(-u)
        pc = p + (p.detach().clamp(1e-6, 1 - 1e-6) - p.detach())
        soft = torch.sigmoid((torch.log(pc) - torch.log1p(-pc) + noise) / self.temperature)
        hard = (soft.detach() > 0.5).to(p.dtype)
        return hard + (soft - soft.detach())

    def evaluation_group(self) -> FiniteGroup | None:
        """The finite group the evaluation samples form, or None when they form none.

        ``C_n``/``D_n`` for a finite group; at θ = 1 the N evenly spaced rotations are ``C_N``,
        with the mirrored half kept (p >= 1/2) ``D_N``; at θ < 1 the samples are no group.
        """
        if self.finite is not None:
            return self.finite
        if float(self.theta.detach()) != 1.0:
            return None
        keep = self.reflections and float(self.reflection_probability.detach()) >= 0.5
        return DihedralGroup(self.samples) if keep else CyclicGroup(self.samples)

    def summary(self) -> dict[str, float]:
        """``{"theta": θ, "reflection_probability": p}`` (p only for E(2) / D_n), floats."""
        out = {"theta": float(self.theta.detach())}
        if self.reflections:
            out["reflection_probability"] = float(self.reflection_probability.detach())
        return out

    def extra_repr(self) -> str:
        return (
            f"group={self.group_name}, samples={self.samples}, learn_theta={self.learn_theta}, "
            f"learn_reflection={self.learn_reflection}"
        )


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
    return float(value)


def _dev(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand((), generator=generator, dtype=torch.float64, device=_dev(generator))
    return (u.to(p.device) < p.detach().double()).to(p.dtype)
