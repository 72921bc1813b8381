"""Frame averaging for point clouds (Puny et al., ICLR 2022): exact O(d)/SO(d) symmetrization
with a handful of predictor passes instead of a whole group.

For a cloud ``X`` ``(N, d)`` with centroid ``c`` and covariance ``C = (X - c)ᵀ(X - c) / N``,
the eigenvectors ``V`` of ``C`` (columns, eigenvalues in decreasing order) are defined up to the
sign of each column: the frame is the set ``F(X) = {V·diag(s) : s ∈ {±1}^d}`` (``2^d``
elements for O(d); the half with determinant +1 for SO(d)). It moves with the cloud,
``F(Q·X + t) = Q·F(X)``, so

    ``Φ(X) = 1/|F| Σ_{R ∈ F(X)} ρ(R) · M(Rᵀ·(X - c))``   (``+ c`` for predicted positions)

is invariant (``ρ = 1``) or equivariant (``ρ(R) y = R·y`` for vectors) for any predictor ``M``,
and invariant to translations.

Convention:
    Points are rows: ``apply(X, Q) = X @ Qᵀ`` (:class:`~equify.actions.PointAction`). The frame
    is computed in float64.

Degenerate spectra: when two eigenvalues coincide (a symmetric cloud: a square, a regular
polygon, a sphere-like cloud), the eigenvectors of that eigenspace are not defined by the cloud
and the frame is not equivariant. Such samples are flagged (``result.extras["degenerate"]``) and,
for a two-fold eigenspace, the frame is widened by ``degenerate_rotations`` equally spaced
rotations inside that plane, which makes the average approximately invariant there (the residual
is measured in the tests); a three-fold (isotropic) spectrum in 3-D is flagged only. A cloud
with one zero eigenvalue (planar in 3-D) is not degenerate as long as the other two differ.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import nn

from equify._state import DetachedLastResult
from equify.actions import PointLayout, PointSetAction
from equify.groups import O2, O3, SO2, SO3, ContinuousGroup, Group
from equify.groups import group as parse_group
from equify.symmetrization.base import SymmetrizationResult

__all__ = ["OUTPUTS", "FrameAveraging", "pca_frames"]

#: How the predictor's output transforms: not at all, as vectors, or as positions.
OUTPUTS = ("invariant", "vectors", "positions")


def _sign_patterns(d: int, device: torch.device) -> torch.Tensor:
    """``(2^d, d)`` float64 sign vectors."""
    return torch.tensor(
        list(itertools.product((1.0, -1.0), repeat=d)), dtype=torch.float64, device=device
    )


def pca_frames(
    x: torch.Tensor,
    group: ContinuousGroup,
    translation: bool = True,
    degenerate_tol: float = 1e-6,
    degenerate_rotations: int = 8,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PCA frames of point clouds.

    Args:
        x: ``(B, N, d)`` points.
        group: ``O2()``, ``SO2()``, ``O3()`` or ``SO3()`` (``d`` must match).
        translation: centre the clouds (frames for E(d)/SE(d)); otherwise ``c = 0``.
        degenerate_tol: eigenvalues closer than ``degenerate_tol · λ_max`` count as equal.
        degenerate_rotations: in-plane rotations added for a two-fold degenerate eigenspace.
        mask: ``(B, N)`` bool, the real points (padding enters neither centroid nor
            covariance); None: all.

    Returns:
        ``frames`` ``(B, K, d, d)`` float64 orthogonal matrices (columns are the axes),
        ``centroid`` ``(B, d)`` float64, ``degenerate`` ``(B,)`` bool. ``K = 2^d`` (O(d)) or
        ``2^(d-1)`` (SO(d)), times ``degenerate_rotations`` where the spectrum is degenerate
        (every sample gets the same ``K``: non-degenerate ones repeat their frame, which leaves
        the average unchanged).
    """
    B, _, d = x.shape
    c, evecs, gaps = _spectrum(x, translation, degenerate_tol, mask)
    degenerate = gaps.any(dim=1)
    signs = _sign_patterns(d, x.device)  # (S, d)
    frames = evecs[:, None] * signs[None, :, None, :]  # (B, S, d, d): columns scaled
    if not group.has_reflections:
        det = torch.linalg.det(frames)  # (B, S): ±1
        keep = det > 0  # exactly half of the patterns per sample
        frames = frames[keep].view(B, signs.shape[0] // 2, d, d)
    m = int(degenerate_rotations)
    if m > 1 and bool(degenerate.any()):
        frames = _widen(frames, gaps, degenerate, m)
    return frames, c, degenerate


def _spectrum(
    x: torch.Tensor, translation: bool, degenerate_tol: float, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centroids ``(B, d)``, eigenvectors ``(B, d, d)`` (decreasing eigenvalues) and the
    degenerate gaps ``(B, d-1)`` (True where eigenvalues ``i`` and ``i+1`` coincide), float64,
    without gradients (the frame is a discrete choice); ``mask`` ``(B, N)`` keeps padding out."""
    B, N, d = x.shape
    pts = x.detach().double()
    w = pts.new_ones(B, N, 1) if mask is None else mask.to(pts.dtype)[..., None]
    count = w.sum(1).clamp_min(1.0)  # (B, 1)
    c = (pts * w).sum(1) / count if translation else pts.new_zeros(B, d)
    xc = (pts - c[:, None]) * w
    cov = xc.transpose(1, 2) @ xc / count[:, :, None]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(-1), evecs.flip(-1)  # decreasing
    scale = evals[:, :1].abs().clamp_min(torch.finfo(torch.float64).tiny)
    gaps = (evals[:, :-1] - evals[:, 1:]) <= degenerate_tol * scale  # (B, d-1)
    return c, evecs, gaps


def _widen(frames: torch.Tensor, gaps: torch.Tensor, degenerate: torch.Tensor, m: int):
    """Rotate the columns of a two-fold degenerate eigenspace by ``2πk/m`` (k < m)."""
    B, K, d, _ = frames.shape
    out = frames[:, :, None].expand(B, K, m, d, d).clone()
    angles = torch.arange(m, dtype=torch.float64, device=frames.device) * (2 * math.pi / m)
    cos, sin = torch.cos(angles), torch.sin(angles)
    for b in degenerate.nonzero().flatten().tolist():
        pairs = gaps[b].nonzero().flatten().tolist()
        if len(pairs) != 1:
            continue  # an isotropic spectrum: flagged, not widened
        i = pairs[0]
        a, bvec = frames[b, :, :, i], frames[b, :, :, i + 1]  # (K, d) columns
        out[b, :, :, :, i] = cos[None, :, None] * a[:, None] + sin[None, :, None] * bvec[:, None]
        out[b, :, :, :, i + 1] = (
            -sin[None, :, None] * a[:, None] + cos[None, :, None] * bvec[:, None]
        )
    return out.reshape(B, K * m, d, d)


class FrameAveraging(DetachedLastResult):
    """Frame averaging of any point-cloud model over O(d)/SO(d) (and translations).

    Args:
        predictor: the unchanged model, ``(B, N, d)`` points -> its output.
        group: ``"O3"`` (default), ``"SO3"``, ``"O2"``, ``"SO2"`` or a group value.
        output: ``"invariant"`` (logits, scalars), ``"vectors"`` (``(B, d)`` or ``(B, M, d)``,
            rotated back by the frame) or ``"positions"`` (vectors, plus the centroid).
        translation: centre the clouds (invariance to translations).
        stochastic: in training mode, use one random frame element per sample and step
            (stochastic frame averaging): one predictor pass instead of ``|F|``.
        chunk_size: frame elements per predictor call (None: all at once).
        degenerate_tol, degenerate_rotations: the degenerate-spectrum rule (module docstring).
        layout: the input is a packed point set (:class:`~equify.actions.PointLayout`:
            positions, vectors that turn with them, invariant scalars, a padding mask): the
            frame is the PCA of the real points' positions, and every view turns the positions
            and the vectors (:class:`~equify.actions.PointSetAction`). None: bare points.

    Shapes:
        input ``(B, N, d)`` floating (``(B, N, C)`` with a layout), any ``N >= 1``; the output
        has the predictor's shape.
    """

    def __init__(
        self,
        predictor: nn.Module,
        group: Group | str = "O3",
        output: str = "invariant",
        translation: bool = True,
        stochastic: bool = False,
        chunk_size: int | None = None,
        degenerate_tol: float = 1e-6,
        degenerate_rotations: int = 8,
        layout: PointLayout | None = None,
    ) -> None:
        super().__init__()
        if not callable(predictor):
            raise TypeError(f"predictor must be an nn.Module or callable, got {predictor!r}")
        g = parse_group(group)
        if not isinstance(g, (O2, SO2, O3, SO3)):
            raise ValueError(
                f"FrameAveraging handles O2, SO2, O3 and SO3 on point clouds, got {g!r}; for "
                "C<n>/D<n> on images use GroupAveraging"
            )
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an int >= 1, got {chunk_size!r}")
        if not (isinstance(degenerate_rotations, int) and degenerate_rotations >= 1):
            raise ValueError(
                f"degenerate_rotations must be an int >= 1, got {degenerate_rotations!r}"
            )
        self.predictor = predictor
        self.group = g
        self.output = output
        self.translation = bool(translation)
        self.stochastic = bool(stochastic)
        self.chunk_size = chunk_size
        self.degenerate_tol = float(degenerate_tol)
        self.degenerate_rotations = degenerate_rotations
        if layout is not None and (not isinstance(layout, PointLayout) or layout.dim != g.dim):
            raise ValueError(f"layout must be a PointLayout with dim {g.dim}, got {layout!r}")
        self.layout = layout
        self.in_action = PointSetAction(layout or PointLayout(dim=g.dim))
        self.last_result: SymmetrizationResult | None = None

    def validate_input(self, x: object) -> torch.Tensor:
        if self.layout is not None:
            return self.layout.check(x)
        d = self.group.dim
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"expected points as a torch.Tensor (B, N, {d}), got {type(x).__name__}"
            )
        if x.dim() != 3 or x.shape[-1] != d or x.shape[1] < 1:
            raise ValueError(f"expected points of shape (B, N >= 1, {d}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected floating points, got dtype {x.dtype}")
        return x

    def _map_back(self, y: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.output == "invariant":
            return y
        d = self.group.dim
        if y.shape[-1] != d or y.dim() not in (2, 3):
            raise ValueError(
                f"output={self.output!r} needs predictor outputs (B, {d}) or (B, M, {d}), got "
                f"{tuple(y.shape)}"
            )
        rt = r.to(y.dtype)
        out = (y.unsqueeze(1) if y.dim() == 2 else y) @ rt.transpose(-1, -2)
        if self.output == "positions":
            out = out + c.to(y.dtype)[:, None]
        return out if y.dim() == 3 else out.squeeze(1)

    def forward_with_result(self, x: torch.Tensor) -> tuple[torch.Tensor, SymmetrizationResult]:
        """Explicit form: ``(Φ(x), result)``.

        Gradients flow to ``x`` through the views and the centroid; the frame itself is a
        discrete choice (no gradient through the eigenvectors). Only the samples with a
        two-fold degenerate spectrum pay for the widened frame.
        """
        x = self.validate_input(x)
        B, d = x.shape[0], self.group.dim
        lay = self.in_action.layout
        pos, mask = lay.positions(x), (lay.point_mask(x) if lay.mask else None)
        # the centroid with its gradient (translation equivariance of positions, input gradients)
        c = lay.centroid(x) if self.translation else x.new_zeros(B, d)
        frames, _, degenerate = pca_frames(
            pos, self.group, self.translation, self.degenerate_tol, 1, mask
        )
        _, _, gaps = _spectrum(pos, self.translation, self.degenerate_tol, mask)
        widen = (gaps.sum(1) == 1) & (self.degenerate_rotations > 1)
        K = frames.shape[1]
        if self.training and self.stochastic:
            pick = torch.randint(K, (B,), device=x.device)
            chosen = frames[torch.arange(B, device=x.device), pick][:, None]
            y = self._average(x, chosen, c)
            weights = torch.zeros(B, K, dtype=torch.float64, device=x.device)
            weights[torch.arange(B, device=x.device), pick] = 1.0
            return y, SymmetrizationResult(
                None, weights, passes=1.0, extras={"degenerate": degenerate}
            )
        idx = widen.nonzero().flatten()
        if not idx.numel():
            y = self._average(x, frames, c)
            weights = torch.full((B, K), 1.0 / K, dtype=torch.float64, device=x.device)
            return y, SymmetrizationResult(
                None, weights, passes=float(K), extras={"degenerate": degenerate}
            )
        # two groups of samples, each in its own batched calls, then back in batch order
        rest = (~widen).nonzero().flatten()
        wide, _, _ = pca_frames(
            pos[idx],
            self.group,
            self.translation,
            self.degenerate_tol,
            self.degenerate_rotations,
            None if mask is None else mask[idx],
        )
        parts, order = [self._average(x[idx], wide, c[idx])], [idx]
        if rest.numel():
            parts.append(self._average(x[rest], frames[rest], c[rest]))
            order.append(rest)
        y = torch.cat(parts).index_select(0, torch.cat(order).argsort())
        Kw = wide.shape[1]
        weights = torch.zeros(B, Kw, dtype=torch.float64, device=x.device)
        weights[idx] = 1.0 / Kw
        weights[rest, :K] = 1.0 / K
        passes = (idx.numel() * Kw + rest.numel() * K) / B
        return y, SymmetrizationResult(
            None, weights, passes=float(passes), extras={"degenerate": degenerate}
        )

    def _average(self, x: torch.Tensor, frames: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        B, K, d = frames.shape[:3]
        size = self.chunk_size or K
        total = None
        for start in range(0, K, size):
            ks = range(start, min(start + size, K))
            # one batched predictor call for this chunk of frame elements
            rs = frames[:, list(ks)]  # (B, k, d, d)
            xc = self.in_action.translate(x, -c.to(x.dtype))  # c keeps its gradient
            # the view of frame element R is Rᵀ·(x - c): positions and vectors turned
            views = self.in_action.apply(
                xc.repeat(len(ks), 1, 1),
                rs.transpose(0, 1).reshape(-1, d, d).transpose(-1, -2).to(x.dtype),
            )
            y = self.predictor(views)
            if not isinstance(y, torch.Tensor) or y.dim() == 0 or y.shape[0] != len(ks) * B:
                raise ValueError(
                    "the predictor must return a tensor with one output per cloud, got "
                    f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__} "
                    f"for {len(ks) * B} clouds"
                )
            y = y.reshape(len(ks), B, *y.shape[1:])
            part = sum(self._map_back(y[i], frames[:, k], c) for i, k in enumerate(ks))
            total = part if total is None else total + part
        return total / K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, result = self.forward_with_result(x)
        self.last_result = result
        return y

    def aux_loss(self, result: SymmetrizationResult | None = None) -> torch.Tensor:
        """Frame averaging has no extra loss: 0."""
        return torch.zeros(())

    def diagnostics(self, result: SymmetrizationResult | None = None) -> dict[str, Any]:
        """Frames per input, predictor passes, degenerate samples (JSON-ready)."""
        r = result if result is not None else self.last_result
        if r is None:
            raise RuntimeError("diagnostics() needs a forward call first, or pass result=")
        out = r.summary()
        out["degenerate_samples"] = int(r.extras["degenerate"].sum())
        return out

    def extra_repr(self) -> str:
        return (
            f"group={self.group}, output={self.output!r}, translation={self.translation}, "
            f"stochastic={self.stochastic}, chunk_size={self.chunk_size}"
        )
