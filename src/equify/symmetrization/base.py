"""The :class:`Symmetrizer` base: run a predictor on every transformed copy and combine.

Convention:
    For a finite group ``G`` acting on inputs by ``in_action`` and on outputs by ``out_action``,
    the *view* of element ``g`` is ``g⁻¹·x`` and its *mapped-back output* is ``g·M(g⁻¹·x)``.
    Every symmetrizer returns ``Φ(x) = Σ_g w_g(x) · g·M(g⁻¹·x)`` with weights ``w(x)`` (rows sum
    to 1) that permute with the input, ``w_g(h·x) = w_{h⁻¹g}(x)``. Then ``Φ`` is equivariant for
    any predictor ``M``: the views of ``h·x`` are those of ``x`` relabelled,
    ``g⁻¹·h·x = (h⁻¹g)⁻¹·x``, so ``Φ(h·x) = Σ_{g'} w_{g'}(x) · h·g'·M(g'⁻¹·x) = h·Φ(x)``.
    Uniform weights are group averaging (equitune); weights computed from each view alone
    (λ-equitune), from the set of views (equiattention) or a tie-averaged argmin (equizero)
    all permute that way.

Cost: ``|G|`` predictor passes per input, run as batched calls of ``chunk_size`` group elements
times ``B`` inputs (default: all ``|G|`` at once). Under ``torch.no_grad()`` the views of one
chunk are dropped before the next is made.

Two ways to call a symmetrizer, as :class:`~equify.canonicalization.EquivariantModel`: the
explicit ``y, result = model.forward_with_result(x)`` (no hidden state) and ``model(x)``, which
keeps the result in ``last_result`` for ``aux_loss()`` / ``diagnostics()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from equify._state import DetachedLastResult
from equify.actions import Action, ImageAction, InvariantAction
from equify.groups import FiniteGroup, Group
from equify.groups import group as parse_group

__all__ = ["SymmetrizationResult", "Symmetrizer", "finite_group", "weighted_sum"]


def finite_group(group: Group | str, who: str) -> FiniteGroup:
    """Parse ``group`` and require a finite one (C_n, D_n)."""
    g = parse_group(group)
    if not isinstance(g, FiniteGroup):
        raise ValueError(
            f"{who} averages over a finite group (C<n>, D<n>), got {g!r}; for SO(d)/O(d) on "
            "point clouds use FrameAveraging"
        )
    return g


def _detach(v: Any) -> Any:
    return v.detach() if isinstance(v, torch.Tensor) else v


@dataclass
class SymmetrizationResult:
    """What a symmetrizer computed for one batch.

    Attributes:
        group: the group averaged over (for frame averaging: None, the frames are per sample).
        weights: ``(B, K)`` weight of each element's (or frame's) mapped-back output; rows sum
            to 1.
        scores: ``(B, K)`` the method's raw per-element scores (λ logits, attention logits,
            equizero's proxy losses), or None for plain averaging.
        passes: predictor passes per input this call made.
        extras: method-specific tensors (e.g. equizero's ``"chosen"`` elements ``(B,)``).
    """

    group: FiniteGroup | None
    weights: torch.Tensor
    scores: torch.Tensor | None = None
    passes: float = 1.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.weights.shape[0])

    def detach(self) -> SymmetrizationResult:
        """A copy without autograd history."""
        return SymmetrizationResult(
            self.group,
            self.weights.detach(),
            _detach(self.scores),
            self.passes,
            {k: _detach(v) for k, v in self.extras.items()},
        )

    def tied(self) -> torch.Tensor:
        """Boolean ``(B,)``: samples whose weight is spread over several elements by a tie.

        Only meaningful for selecting methods (equizero); False elsewhere.
        """
        tied = self.extras.get("tied")
        if isinstance(tied, torch.Tensor):
            return tied
        return torch.zeros(self.batch_size, dtype=torch.bool, device=self.weights.device)

    @staticmethod
    def evaluation_summary(
        results: list[SymmetrizationResult],
    ) -> tuple[str, dict[str, Any]]:
        """``("symmetrization", summary)`` of the results of a test set's batches: predictor
        passes per input, the mean largest weight, the weight of the upright view, the share of
        inputs whose heaviest view is the upright one (NaN for plain averaging) and ties."""
        n = sum(r.batch_size for r in results)
        # batches may weigh different numbers of views (frame averaging widens the frames of
        # sets with a degenerate spectrum): pad with zero weights to the widest
        width = max((r.weights.shape[1] for r in results), default=0)
        weights = torch.cat(
            [
                torch.nn.functional.pad(r.weights.detach().cpu(), (0, width - r.weights.shape[1]))
                for r in results
            ]
        )
        # plain averaging: every view of a set has the same weight (padding views aside)
        spread = weights.amax(1) - torch.where(weights > 0, weights, weights.amax(1, True)).amin(1)
        uniform = bool(n) and float(spread.max()) < 1e-12
        top = weights.argmax(1)
        passes = sum(r.passes * r.batch_size for r in results) / n if n else math.nan
        return "symmetrization", {
            "predictor_passes_per_input": float(passes),
            "max_weight_mean_upright": float(weights.amax(1).double().mean()) if n else math.nan,
            "identity_weight_mean_upright": float(weights[:, 0].double().mean()) if n else math.nan,
            "identity_fraction_upright": (
                float((top == 0).double().mean()) if n and not uniform else math.nan
            ),
            "tied_samples_upright": int(sum(int(r.tied().sum()) for r in results)),
            # frame averaging flags sets whose covariance spectrum is degenerate
            "degenerate_samples_upright": int(
                sum(int(r.extras["degenerate"].sum()) for r in results if "degenerate" in r.extras)
            ),
        }

    def step_metrics(self) -> dict[str, float]:
        """Cheap per-batch numbers to log while training: the mean largest weight."""
        if not self.batch_size:
            return {}
        return {"max_weight": float(self.weights.detach().amax(1).double().mean())}

    def summary(self) -> dict[str, Any]:
        """Diagnostics as plain Python values (JSON-ready)."""
        w = self.weights.detach().double()
        b = self.batch_size
        ent = -(w.clamp_min(1e-300).log() * w).sum(1) if b else w.new_zeros(0)
        out: dict[str, Any] = {
            "batch_size": b,
            "predictor_passes_per_input": float(self.passes),
            "views": int(w.shape[1]),
            "weight_entropy_mean": float(ent.mean()) if b else math.nan,
            "max_weight_mean": float(w.amax(1).mean()) if b else math.nan,
            "tied_samples": int(self.tied().sum()),
        }
        if self.group is not None and b:
            top = w.argmax(1).cpu()
            out["identity_fraction"] = float((top == self.group.identity).double().mean())
            out["histogram"] = torch.bincount(top, minlength=w.shape[1]).tolist()
        return out


def weighted_sum(weights: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """``Σ_k weights[:, k] · outputs[k]``: ``(B, K)`` and ``(K, B, ...)`` -> ``(B, ...)``.

    Raises:
        TypeError: integer or bool outputs (labels cannot be averaged).
    """
    if not outputs.is_floating_point():
        raise TypeError(
            "symmetrization averages the predictor's outputs, so they must be floating (logits, "
            f"probabilities, feature maps), got dtype {outputs.dtype}; for segmentation return "
            "per-pixel logits (with ImageAction) and take the argmax afterwards"
        )
    w = weights.to(outputs.dtype).transpose(0, 1)
    return (w.reshape(*w.shape, *([1] * (outputs.dim() - 2))) * outputs).sum(0)


class Symmetrizer(DetachedLastResult):
    """Base class of the symmetrization family (finite groups).

    Args:
        predictor: the unchanged model ``M``. With ``head`` given, ``predictor`` is the backbone
            and the combination happens on its features (the feature-level form).
        group: a finite group or its name (``"C4"``, ``"D4"``, ``"C8"``).
        in_action: how the group acts on inputs (default ``ImageAction()``).
        out_action: how it acts on the predictor's outputs (default ``InvariantAction()``:
            logits); ``ImageAction()`` for dense maps, ``RegularAction(G)`` for G-CNN features.
        chunk_size: group elements per predictor call (``chunk_size·B`` views at once); None for
            all ``|G|``. The result is the same. Under ``torch.no_grad()`` it bounds the peak
            memory to one chunk's activations; in training every view's activations are kept
            for the backward pass whatever the chunk size.
        head: optional; for the feature-level form ``Φ(x) = head(Σ_g w_g · g·f(g⁻¹·x))`` with
            ``f = predictor``. ``head`` must be equivariant from ``feature_action`` to
            ``out_action`` (e.g. 1x1 convolutions for dense outputs, global pooling + linear for
            logits) for ``Φ`` to be.
        feature_action: how the group acts on the backbone's features (default
            ``ImageAction()``: spatial maps).
    """

    def __init__(
        self,
        predictor: nn.Module,
        group: FiniteGroup | str = "C4",
        in_action: Action | None = None,
        out_action: Action | None = None,
        chunk_size: int | None = None,
        head: nn.Module | None = None,
        feature_action: Action | None = None,
    ) -> None:
        super().__init__()
        if not callable(predictor):
            raise TypeError(f"predictor must be an nn.Module or callable, got {predictor!r}")
        self.group = finite_group(group, type(self).__name__)
        in_action = in_action if in_action is not None else ImageAction()
        out_action = out_action if out_action is not None else InvariantAction()
        for name, a in (("in_action", in_action), ("out_action", out_action)):
            if not isinstance(a, Action):
                raise TypeError(f"{name} must be an equify Action, got {type(a).__name__}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
        if head is not None and not callable(head):
            raise TypeError(f"head must be an nn.Module or callable, got {head!r}")
        if feature_action is not None and not isinstance(feature_action, Action):
            raise TypeError(f"feature_action must be an equify Action, got {feature_action!r}")
        for a in (in_action, out_action, feature_action):
            if a is not None:
                _check_fit(self.group, a)
        self.predictor = predictor
        self.in_action = in_action
        self.out_action = out_action
        self.chunk_size = chunk_size
        self.head = head
        self.feature_action = (
            (feature_action if feature_action is not None else ImageAction())
            if head is not None
            else None
        )
        self.last_result: SymmetrizationResult | None = None

    # ------------------------------------------------------------------ views
    def chunks(self) -> list[torch.Tensor]:
        """The group's elements ``(|G|,)`` split into chunks of ``chunk_size``."""
        els = self.group.elements()
        size = self.chunk_size or len(els)
        return list(els.split(size))

    def views(self, x: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        """``g⁻¹·x`` for each ``g`` in ``elements`` ``(k,)``: ``(k·B, ...)``, element-major."""
        g = self.group
        return torch.cat([self.in_action.apply(x, g.inverse(int(h)), g) for h in elements])

    def run_views(
        self, fn: nn.Module, x: torch.Tensor, elements: torch.Tensor, what: str
    ) -> torch.Tensor:
        """``fn`` on the views of ``elements``: ``(k, B, ...)`` (outputs not mapped back)."""
        B = x.shape[0]
        y = fn(self.views(x, elements))
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"the {what} must return a torch.Tensor, got {type(y).__name__}")
        if y.dim() == 0 or y.shape[0] != len(elements) * B:
            raise ValueError(
                f"the {what} must return one output per view: got shape {tuple(y.shape)} for "
                f"{len(elements)}·{B} views"
            )
        return y.reshape(len(elements), B, *y.shape[1:])

    def per_view(self, fn: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
        """``fn`` on every view, chunk by chunk: ``(|G|, B, ...)`` (not mapped back)."""
        return torch.cat([self.run_views(fn, x, els, what) for els in self.chunks()])

    def map_back(self, y: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        """``g·y_g`` for outputs ``(k, B, ...)`` of the views of ``elements``."""
        act = self.feature_action if self.head is not None else self.out_action
        return torch.stack([act.apply(y[i], int(h), self.group) for i, h in enumerate(elements)])

    def combine(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``Σ_g w_g · g·M(g⁻¹·x)`` (then ``head``), accumulated over chunks."""
        total = None
        for els in self.chunks():
            mapped = self.map_back(self.run_views(self.predictor, x, els, "predictor"), els)
            part = weighted_sum(weights[:, els.to(weights.device)], mapped)
            total = part if total is None else total + part
        return self._finish(total)

    def outputs_and(self, x: torch.Tensor, fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mapped-back outputs of every view ``(|G|, B, ...)`` and ``fn`` of each chunk's raw
        outputs (the raw outputs themselves are dropped chunk by chunk)."""
        mapped, extra = [], []
        for els in self.chunks():
            y = self.run_views(self.predictor, x, els, "predictor")
            extra.append(fn(y))
            mapped.append(self.map_back(y, els))
        return torch.cat(mapped), extra

    def _finish(self, combined: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return combined
        out = self.head(combined)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the head must return a torch.Tensor, got {type(out).__name__}")
        return out

    # ------------------------------------------------------------------ public API
    def validate_input(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor input, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError("expected a batch (B, ...), got a 0-d tensor")
        return x

    def forward_with_result(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        """Explicit form: ``(Φ(x), result)``, keeping no state."""
        x = self.validate_input(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Φ(x)``; the result is kept in ``last_result``."""
        y, result = self.forward_with_result(x)
        self.last_result = result
        return y

    def aux_loss(self, result: SymmetrizationResult | None = None) -> torch.Tensor:
        """The method's extra training loss (0 for the symmetrizers here)."""
        r = result if result is not None else self.last_result
        ref = r.weights if r is not None else None
        return ref.new_zeros(()) if ref is not None else torch.zeros(())

    def diagnostics(self, result: SymmetrizationResult | None = None) -> dict[str, Any]:
        """Predictor passes per input, weight statistics (JSON-ready)."""
        r = result if result is not None else self.last_result
        if r is None:
            raise RuntimeError("diagnostics() needs a forward call first, or pass result=")
        return r.summary()

    def extra_repr(self) -> str:
        return (
            f"group={self.group}, in_action={self.in_action!r}, out_action={self.out_action!r}, "
            f"chunk_size={self.chunk_size}"
        )


def _check_fit(group: FiniteGroup, action: Action) -> None:
    """Raise when the action cannot carry the group (a RegularAction of another group)."""
    other = getattr(action, "group", None)
    if isinstance(other, FiniteGroup) and other != group:
        raise ValueError(
            f"{action!r} is the regular representation of {other}, but the symmetrizer averages "
            f"over {group}: use RegularAction({group!r})"
        )
