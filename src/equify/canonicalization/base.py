"""The :class:`Canonicalizer` interface and the :class:`CanonicalizationResult` it returns.

Convention:
    A canonicalizer predicts one group element ``c(x)`` per sample with ``c(g·x) = g·c(x)``.
    The predictor sees ``c(x)⁻¹·x``; its output ``y`` is mapped back with ``c(x)·y``. Then
    ``Φ(x) = c(x)·φ(c(x)⁻¹·x)`` is equivariant whatever ``φ`` is:
    ``Φ(g·x) = g·c(x)·φ(c(x)⁻¹·g⁻¹·g·x) = g·Φ(x)``.

Two ways to call it:

* explicit, no hidden state: ``x_c, result = canonicalizer.canonicalize(x)`` then
  ``canonicalizer.invert(y, out_action, result=result)`` and
  ``canonicalizer.prior_loss(result)``;
* stateful sugar: ``x_c = canonicalizer(x)`` keeps the result of that call in
  ``canonicalizer.last_result``; ``invert(y, out_action)`` and ``prior_loss()`` without a result
  use it. It is safe when each ``forward`` is followed by its own ``invert``/``prior_loss`` in the
  same process before the next ``forward`` — the usual training step, also under
  DistributedDataParallel, where every process owns its replica. It is not safe when calls
  interleave (two batches in flight, re-entrant use from another thread, ``nn.DataParallel``
  replicas whose state is discarded): use the explicit form there. The stored result keeps the
  autograd graph of the scores until the next call; ``copy.deepcopy``, pickling
  (``torch.save(module)``) and ``export()`` keep a detached copy of it, so they work right
  after a training step.

Ties and degenerate frames:
    ``c(x)`` is not unique when ``x`` has a symmetry (scores tie) or when the frame vectors of a
    continuous group vanish or are parallel. The result then lists, in ``ties``, every candidate
    element of those samples with its weight; :class:`~equify.canonicalization.EquivariantModel`
    averages the mapped-back outputs over them (frame averaging over the tie set, see
    :mod:`equify.ties`), which keeps ``Φ`` exactly equivariant. Samples without ties cost one
    predictor pass; a tied sample costs one pass per candidate. ``invert`` alone maps back by the
    primary element ``elements`` only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch

from equify._state import DetachedLastResult
from equify.actions import Action, ImageAction
from equify.groups import ContinuousGroup, FiniteGroup, Group

__all__ = [
    "CanonicalizationResult",
    "CanonicalizationStateError",
    "Canonicalizer",
    "DetachedLastResult",
    "TieSet",
    "input_image_action",
]


def input_image_action() -> ImageAction:
    """How canonicalizers (and the symmetrizers of ``equify adapt``) turn the predictor's input
    images unless told otherwise: bicubic, reflection padding. Exact for 90° multiples and
    flips (index permutations, no interpolation); other angles reflect the image at its border
    instead of bringing in black corners. The oracle of ``equify adapt`` turns orbit images
    back with it too.

    Bicubic rather than bilinear: turning Fashion-MNIST's C8 orbit back by 45° with bicubic
    interpolation kept 2–3 points more of the pretrained model's accuracy, for the oracle and
    for a trained canonicalization + prior alike (``benchmarks/upright_gap.py
    --image-actions``); the padding moved them by up to 1 point, in no consistent order.
    """
    return ImageAction(interpolation="bicubic", padding="reflection")


class CanonicalizationStateError(RuntimeError):
    """``invert``/``prior_loss`` were called without a result and before any ``forward``."""


def _detach(v: Any) -> Any:
    return v.detach() if isinstance(v, torch.Tensor) else v


@dataclass(frozen=True)
class TieSet:
    """Every candidate element of the samples whose canonical element is ambiguous.

    Only samples with two or more candidates appear; each has exactly one ``primary`` entry,
    the element in :attr:`CanonicalizationResult.elements`.

    Attributes:
        sample: ``(M,)`` LongTensor, the batch index of each candidate's sample.
        elements: ``(M,)`` LongTensor of indices (finite groups) or ``(M, d, d)`` matrices.
        weights: ``(M,)`` float64 weights; they sum to 1 over the candidates of a sample.
        primary: ``(M,)`` bool, True for the candidate equal to the sample's chosen element.
    """

    sample: torch.Tensor
    elements: torch.Tensor
    weights: torch.Tensor
    primary: torch.Tensor

    def __len__(self) -> int:
        return int(self.sample.shape[0])

    def detach(self) -> TieSet:
        """The same tie set without autograd history."""
        return TieSet(
            *(t.detach() for t in (self.sample, self.elements, self.weights, self.primary))
        )

    @staticmethod
    def from_mask(mask: torch.Tensor, chosen: torch.Tensor) -> TieSet | None:
        """Tie set of a finite group from a ``(B, |G|)`` boolean tie mask and ``(B,)`` choices.

        Returns None when no row has more than one True entry.
        """
        counts = mask.sum(dim=1)
        rows = counts > 1
        if not bool(rows.any()):
            return None
        sub = mask & rows[:, None]
        sample, elements = sub.nonzero(as_tuple=True)
        weights = 1.0 / counts[sample].double()
        return TieSet(sample, elements, weights, elements == chosen[sample])


@dataclass
class CanonicalizationResult:
    """What a canonicalizer chose for one batch.

    Attributes:
        group: the group the elements belong to.
        elements: the chosen ``c(x)``: a LongTensor ``(B,)`` of indices for finite groups, or
            orthogonal matrices ``(B, d, d)`` (differentiable) for continuous groups.
        logits: ``(B, |G|)`` scores of every element (finite groups), with gradients; None
            otherwise.
        vectors: ``(B, k, d)`` vectors the frame was built from (continuous groups), else None.
        extras: method-specific tensors (e.g. ``"embeddings"`` ``(B, |G|, D)``).
        ties: the candidates of the samples whose ``c(x)`` is ambiguous (a :class:`TieSet`), or
            None when every choice is unique.
        degenerate: ``(B,)`` bool, True where a continuous group's frame was undefined (a zero
            first vector; for SO(3)/O(3) also a second vector parallel to the first) and the
            documented fallback was used; None for finite groups.
    """

    group: Group
    elements: torch.Tensor
    logits: torch.Tensor | None = None
    vectors: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    ties: TieSet | None = None
    degenerate: torch.Tensor | None = None

    def tied(self) -> torch.Tensor:
        """Boolean ``(B,)``: True for the samples with several candidate elements."""
        out = torch.zeros(self.batch_size, dtype=torch.bool, device=self.elements.device)
        if self.ties is not None:
            out[self.ties.sample.to(out.device)] = True
        return out

    def predictor_passes(self) -> int:
        """Predictor passes :class:`EquivariantModel` needs for this batch (``B`` + extra ties)."""
        extra = 0 if self.ties is None else int((~self.ties.primary).sum())
        return self.batch_size + extra

    def detach(self) -> CanonicalizationResult:
        """A copy without autograd history (safe to deep-copy, pickle or keep)."""
        return CanonicalizationResult(
            self.group,
            self.elements.detach(),
            logits=_detach(self.logits),
            vectors=_detach(self.vectors),
            extras={k: _detach(v) for k, v in self.extras.items()},
            ties=None if self.ties is None else self.ties.detach(),
            degenerate=_detach(self.degenerate),
        )

    @staticmethod
    def concatenate(results: list[CanonicalizationResult]) -> CanonicalizationResult:
        """One detached result for several batches (elements, logits, vectors, ties, flags).

        ``extras`` are dropped. Raises ValueError for an empty list or mixed groups.
        """
        if not results:
            raise ValueError("expected at least one CanonicalizationResult to concatenate")
        group = results[0].group
        if any(r.group != group for r in results):
            raise ValueError("cannot concatenate results of different groups")

        def cat(name: str) -> torch.Tensor | None:
            parts = [getattr(r, name) for r in results]
            if any(p is None for p in parts):
                return None
            return torch.cat([p.detach() for p in parts])

        ties, offset = [], 0
        for r in results:
            if r.ties is not None:
                t = r.ties.detach()
                ties.append(TieSet(t.sample + offset, t.elements, t.weights, t.primary))
            offset += r.batch_size
        tie_set = (
            TieSet(*(torch.cat([getattr(t, f) for t in ties]) for f in TieSet.__dataclass_fields__))
            if ties
            else None
        )
        return CanonicalizationResult(
            group,
            cat("elements"),
            logits=cat("logits"),
            vectors=cat("vectors"),
            ties=tie_set,
            degenerate=cat("degenerate"),
        )

    @property
    def batch_size(self) -> int:
        """Number of samples ``B``."""
        return int(self.elements.shape[0])

    def matrices(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The chosen elements as orthogonal matrices ``(B, d, d)``."""
        if isinstance(self.group, FiniteGroup):
            return self.group.matrix(self.elements, dtype=dtype)
        return self.elements.to(dtype)

    def is_identity(self, atol: float = 1e-4) -> torch.Tensor:
        """Boolean ``(B,)``: True where ``c(x)`` is the identity (within ``atol`` for matrices)."""
        if isinstance(self.group, FiniteGroup):
            return self.elements == self.group.identity
        eye = torch.eye(self.group.dim, dtype=self.elements.dtype, device=self.elements.device)
        return (self.elements.detach() - eye).abs().amax(dim=(-1, -2)) <= atol

    def identity_fraction(self) -> float:
        """Fraction of samples mapped to the identity element."""
        return float(self.is_identity().double().mean()) if self.batch_size else math.nan

    def histogram(self) -> torch.Tensor:
        """Counts of chosen elements, LongTensor ``(|G|,)`` (finite groups only)."""
        if not isinstance(self.group, FiniteGroup):
            raise ValueError(
                f"a histogram of chosen elements needs a finite group, got {self.group!r}; "
                "use angles() for continuous groups"
            )
        return torch.bincount(self.elements.detach().cpu(), minlength=self.group.order)

    def angles(self) -> torch.Tensor:
        """Rotation angle of every chosen element in degrees, float64 ``(B,)``, in (-180, 180].

        For reflections this is the angle of the rotation part (``r^k`` of ``r^k s``).
        """
        if isinstance(self.group, FiniteGroup):
            deg = self.group.angle(self.elements.detach().cpu()) * (180.0 / math.pi)
            return torch.where(deg > 180.0, deg - 360.0, deg)
        m = self.elements.detach().double().cpu()
        if self.group.dim != 2:
            # validated in the frames' own dtype: float32 frames are orthogonal to ~1e-7 only
            angle = self.group.distance_to_identity(self.elements.detach().cpu())
            return torch.rad2deg(angle.double())
        refl = torch.linalg.det(m) < 0
        col = torch.tensor([-1.0, 1.0], dtype=torch.float64)
        rot = torch.where(refl[:, None, None], m * col, m)
        return torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))

    def reflection_fraction(self) -> float:
        """Fraction of samples whose element is a reflection."""
        if isinstance(self.group, FiniteGroup):
            refl = self.group.is_reflection(self.elements.detach().cpu())
        else:
            refl = torch.linalg.det(self.elements.detach().double()) < 0
        return float(refl.double().mean()) if self.batch_size else math.nan

    #: For SO(2)/O(2), a canonical frame within this angle of the identity counts as upright in
    #: :meth:`evaluation_summary`.
    IDENTITY_DEGREES = 5.0

    @staticmethod
    def evaluation_summary(
        results: list[CanonicalizationResult],
    ) -> tuple[str, dict[str, Any]]:
        """``("canonicalization", summary)`` of the results of a test set's batches.

        The summary holds the identity and reflection fractions, tied and degenerate samples,
        predictor passes per input, and the histogram of elements (finite groups) or the angles
        and the fraction within ``IDENTITY_DEGREES`` of the identity (continuous groups).
        """
        res = CanonicalizationResult.concatenate(results)
        summary = res.summary()
        out: dict[str, Any] = {
            "identity_fraction_upright": res.identity_fraction(),
            "reflection_fraction_upright": res.reflection_fraction(),
            "tied_samples_upright": summary["tied_samples"],
            "degenerate_samples_upright": summary["degenerate_samples"],
            "predictor_passes_per_input_upright": summary["predictor_passes_per_input"],
            "predictor_passes_per_input": summary["predictor_passes_per_input"],
        }
        if isinstance(res.group, FiniteGroup):
            out["histogram_upright"] = res.histogram().tolist()
        else:
            # no element is exactly the identity: count frames within a small angle of it
            tol = CanonicalizationResult.IDENTITY_DEGREES
            angles = res.angles()
            refl = torch.linalg.det(res.elements.detach().double().cpu()) < 0
            near = (angles.abs() <= tol) & ~refl
            out.update(
                identity_fraction_upright=float(near.double().mean()) if len(near) else math.nan,
                identity_tolerance_deg=tol,
                angles_upright_deg=angles.tolist(),
                reflections_upright=refl.tolist(),
            )
        return "canonicalization", out

    def step_metrics(self) -> dict[str, float]:
        """Cheap per-batch numbers to log while training: the identity fraction."""
        return {"identity_fraction": self.identity_fraction()} if self.batch_size else {}

    def summary(self) -> dict[str, Any]:
        """Diagnostics as plain Python values (JSON-ready)."""
        out: dict[str, Any] = {
            "batch_size": self.batch_size,
            "identity_fraction": self.identity_fraction(),
            "reflection_fraction": self.reflection_fraction(),
            "angles_deg": [round(a, 4) for a in self.angles().tolist()],
        }
        if isinstance(self.group, FiniteGroup):
            out["histogram"] = self.histogram().tolist()
        out["tied_samples"] = int(self.tied().sum())
        out["degenerate_samples"] = int(self.degenerate.sum()) if self.degenerate is not None else 0
        out["predictor_passes_per_input"] = (
            self.predictor_passes() / self.batch_size if self.batch_size else math.nan
        )
        return out


def check_images(x: object, in_channels: int | None, name: str = "input") -> torch.Tensor:
    """Validate a floating image batch ``(B, C, H, W)`` with the expected channel count."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected the {name} as a torch.Tensor (B, C, H, W), got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise ValueError(f"expected the {name} of shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating {name}, got dtype {x.dtype}")
    if in_channels is not None and x.shape[1] != in_channels:
        raise ValueError(
            f"this canonicalizer was built for in_channels={in_channels}, got an {name} with "
            f"{x.shape[1]} channels (shape {tuple(x.shape)})"
        )
    return x


def _zero_like(result: CanonicalizationResult) -> torch.Tensor:
    """A scalar 0 in the dtype of the scores (or frames), connected to their graph if any."""
    for t in (result.logits, result.vectors, result.elements):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            return t.sum() * 0
    return torch.zeros((), device=result.elements.device)


class Canonicalizer(DetachedLastResult, ABC):
    """Base class: predicts ``c(x)``, canonicalizes inputs, inverts outputs.

    Subclasses implement :meth:`predict` (the network part) and :meth:`transform_input`.

    Args:
        group: the group (a :class:`~equify.groups.Group` or a name such as ``"C8"``).
        in_action: how the group acts on the predictor's input.
    """

    def __init__(self, group: Group, in_action: Action) -> None:
        super().__init__()
        if not isinstance(in_action, Action):
            raise TypeError(f"expected in_action to be an equify Action, got {in_action!r}")
        self.group = group
        self.in_action = in_action
        self.last_result: CanonicalizationResult | None = None

    # ------------------------------------------------------------------ to implement
    @abstractmethod
    def predict(self, x: torch.Tensor) -> CanonicalizationResult:
        """Choose ``c(x)`` for a batch ``x`` (validated)."""

    @abstractmethod
    def transform_input(self, x: torch.Tensor, result: CanonicalizationResult) -> torch.Tensor:
        """``c(x)⁻¹·x``, differentiable with respect to the canonicalization network."""

    def prior_loss(self, result: CanonicalizationResult | None = None) -> torch.Tensor:
        """Scalar regularization that keeps ``c(x)`` where the pretrained predictor works.

        The canonicalizer's ``prior`` (a callable on the result, if the subclass set one) on
        ``result`` (default: the last forward call's); 0 without prior and for an empty batch.
        """
        result = self._result(result, "prior_loss")
        prior = getattr(self, "prior", None)
        if prior is None or result.batch_size == 0:  # an empty batch adds nothing, not NaN
            return _zero_like(result)
        return prior(result)

    def validate_input(self, x: object) -> torch.Tensor:
        """Raise TypeError/ValueError for inputs this canonicalizer cannot handle."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
        return x

    # ------------------------------------------------------------------ public API
    def canonicalize(self, x: torch.Tensor) -> tuple[torch.Tensor, CanonicalizationResult]:
        """Explicit form: return ``(c(x)⁻¹·x, result)`` and keep no state.

        Args:
            x: the input batch, e.g. ``(B, C, H, W)`` images.

        Returns:
            The canonicalized batch (same shape, dtype and device as ``x``) and the result.
        """
        x = self.validate_input(x)
        result = self.predict(x)
        return self.transform_input(x, result), result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stateful form: canonicalize ``x`` and remember the result in ``last_result``."""
        x_c, result = self.canonicalize(x)
        self.last_result = result
        return x_c

    def _result(self, result: CanonicalizationResult | None, what: str) -> CanonicalizationResult:
        if result is not None:
            if not isinstance(result, CanonicalizationResult):
                raise TypeError(f"expected a CanonicalizationResult, got {type(result).__name__}")
            return result
        if self.last_result is None:
            raise CanonicalizationStateError(
                f"{what}() needs a canonicalization: call the canonicalizer on a batch first, or "
                "pass result= from canonicalize()"
            )
        return self.last_result

    def invert(
        self, y: torch.Tensor, out_action: Action, result: CanonicalizationResult | None = None
    ) -> torch.Tensor:
        """Map the predictor's output back: ``c(x)·y``.

        Args:
            y: the predictor's output on ``c(x)⁻¹·x``; its first dimension is the batch.
            out_action: how the group acts on ``y`` (``InvariantAction()`` for logits,
                ``ImageAction()`` for dense maps, ``MaskAction()``, ``BoxAction(size)``,
                ``RegularAction(group)``, ``PointAction()``).
            result: the result of :meth:`canonicalize`; default: the last ``forward`` call's.

        Returns:
            ``c(x)·y``, same shape as ``y``.
        """
        result = self._result(result, "invert")
        if not isinstance(out_action, Action):
            raise TypeError(
                f"expected out_action to be an equify Action (e.g. InvariantAction()), "
                f"got {type(out_action).__name__}"
            )
        if not isinstance(y, torch.Tensor):
            raise TypeError(
                f"expected the predictor output as a torch.Tensor, got {type(y).__name__}"
            )
        if y.dim() == 0 or y.shape[0] != result.batch_size:
            raise ValueError(
                f"the output has batch size {y.shape[0] if y.dim() else 'none'} but the "
                f"canonicalization was for {result.batch_size} samples"
            )
        elements = result.elements
        if isinstance(self.group, ContinuousGroup) and y.is_floating_point():
            elements = elements.to(y.dtype)
        return out_action.apply(y, elements, self.group)

    def diagnostics(self, result: CanonicalizationResult | None = None) -> dict[str, Any]:
        """Identity fraction, histogram of chosen elements and per-sample angles (JSON-ready)."""
        return self._result(result, "diagnostics").summary()

    def extra_repr(self) -> str:
        return f"group={self.group}, in_action={self.in_action!r}"
