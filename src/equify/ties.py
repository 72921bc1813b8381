"""Tie sets: the group elements whose scores are within a tolerance of the best one.

A canonicalizer (or equizero's proxy) picks ``argmax_h s(x)_h``. When ``x`` has a symmetry
(``k·x = x`` for some ``k ≠ e``: a constant image, a centred disk, a C2-symmetric pattern), the
scores of a whole coset are equal and ``argmax`` has to break the tie by some rule that does not
move with the input — the lowest index — which breaks equivariance of every output that is not
invariant. The fix is frame averaging over the tie set: average the mapped-back outputs of every
tied element. This module computes tie sets; the models average over them.

Convention:
    ``tie_mask(s)[b, h]`` is True where ``s[b, h] >= max_h s[b] - tol_b`` with
    ``tol_b = atol + rtol · max_h |s[b, h]|``. The argmax of every row is always in its set.

Why this is equivariant: if the scores permute with the input, ``s(g·x)_h = s(x)_{g⁻¹h}``, then
``max_h s`` and ``max_h |s|`` (hence ``tol``) are unchanged and the mask permutes the same way:
``T(g·x) = g·T(x)``. Averaging ``h·φ(h⁻¹·x)`` over ``T(x)`` is then equivariant for any ``φ``:
``Σ_{h ∈ gT} h·φ(h⁻¹g·x) = Σ_{t ∈ T} g·t·φ(t⁻¹·x)``. The tolerance only has to exceed the rounding
error of the scores of a symmetric input (exact to rounding for the exact grid symmetries, see
:mod:`equify.canonicalization.networks`), while staying far below the score gaps of ordinary
inputs; a few near-ties of ordinary inputs that fall inside it are averaged too, which costs a
predictor pass but never breaks equivariance. A score gap that lies within rounding of the
tolerance itself can be classified differently for ``x`` and ``g·x``; that needs a gap within
~1e-7 (float32) of the tolerance and is not seen in practice.
"""

from __future__ import annotations

import torch

__all__ = ["default_tie_tolerance", "tie_mask"]

# (atol, rtol) per dtype of the scores: ~100x the relative rounding of the default score
# networks on symmetric inputs (float32: ~1e-6; float64: ~1e-14).
_TIE_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float32: (1e-4, 1e-4),
    torch.float64: (1e-10, 1e-10),
}


def default_tie_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` that :func:`tie_mask` uses for scores of ``dtype``."""
    return _TIE_TOLERANCES.get(dtype, _TIE_TOLERANCES[torch.float32])


def tie_mask(
    scores: torch.Tensor, atol: float | None = None, rtol: float | None = None
) -> torch.Tensor:
    """Boolean ``(B, n)``: the elements tied with the best score of each row.

    Args:
        scores: ``(B, n)`` floating scores (higher is better), e.g. a canonicalizer's logits.
        atol: absolute tolerance; default from :func:`default_tie_tolerance`.
        rtol: tolerance relative to the row's largest ``|score|``; default likewise.

    Returns:
        ``(B, n)`` bool, True for every element within the tolerance of the row's maximum; the
        row's ``argmax`` is always included (also for rows with NaN scores).

    Raises:
        TypeError: ``scores`` is not a floating tensor.
        ValueError: ``scores`` is not 2-D or a tolerance is negative.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(
            "expected floating scores (B, n), got "
            f"{scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__}"
        )
    if scores.dim() != 2:
        raise ValueError(f"expected scores of shape (B, n), got {tuple(scores.shape)}")
    d_atol, d_rtol = default_tie_tolerance(scores.dtype)
    atol = d_atol if atol is None else float(atol)
    rtol = d_rtol if rtol is None else float(rtol)
    if not (atol >= 0 and rtol >= 0):
        raise ValueError(f"tie tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    s = scores.detach()
    if s.shape[0] == 0 or s.shape[1] == 0:
        return torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    best = s.amax(dim=1, keepdim=True)
    tol = atol + rtol * s.abs().amax(dim=1, keepdim=True)
    mask = s >= best - tol
    first = torch.zeros_like(mask).scatter_(1, s.argmax(dim=1, keepdim=True), True)
    return mask | first
