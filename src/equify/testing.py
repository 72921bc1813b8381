"""Measure and assert the equivariance of any function or model.

For every tested group element ``g`` (one element applied to the whole batch):

    expected = out_action.apply(fn(x), g)        # transform the output
    actual   = fn(in_action.apply(x, g))         # transform the input

and the difference is measured in float64. Invariance is the special case
``out_action=InvariantAction()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from equify.actions.base import Action
from equify.groups import ContinuousGroup, FiniteGroup, Group

__all__ = ["EquivarianceReport", "assert_equivariant", "default_tolerance", "equivariance_error"]

# (atol, rtol) per dtype of the compared outputs: |actual - expected| <= atol + rtol * scale,
# where scale is the largest |expected| of that element.
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-10),
}


def default_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` used by :func:`assert_equivariant` for outputs of ``dtype``.

    Integer and bool outputs get ``(0, 0)``: they must match exactly.
    """
    if not dtype.is_floating_point:
        return 0.0, 0.0
    return _TOLERANCES.get(dtype, _TOLERANCES[torch.float32])


@dataclass(frozen=True)
class EquivarianceReport:
    """Per-element equivariance errors.

    Attributes:
        group: the group tested.
        elements: the tested elements: ``(n,)`` indices or ``(n, d, d)`` matrices.
        max_abs: ``(n,)`` float64, largest ``|actual - expected|`` per element.
        mean_abs: ``(n,)`` float64, mean ``|actual - expected|`` per element.
        scale: ``(n,)`` float64, largest ``|expected|`` per element (for relative errors).
        dtype: dtype of the function's output.
    """

    group: Group
    elements: torch.Tensor
    max_abs: torch.Tensor
    mean_abs: torch.Tensor
    scale: torch.Tensor
    dtype: torch.dtype

    @property
    def relative(self) -> torch.Tensor:
        """``(n,)`` ``max_abs / scale`` (0 where both are 0)."""
        return self.max_abs / self.scale.clamp_min(torch.finfo(torch.float64).tiny)

    def max_error(self) -> float:
        """Largest absolute error over all elements."""
        return float(self.max_abs.max()) if self.max_abs.numel() else 0.0

    def max_relative_error(self) -> float:
        """Largest relative error over all elements."""
        return float(self.relative.max()) if self.max_abs.numel() else 0.0

    def failures(self, atol: float, rtol: float) -> torch.Tensor:
        """Boolean ``(n,)``: True where ``max_abs > atol + rtol * scale`` (or not finite)."""
        bad = self.max_abs > atol + rtol * self.scale
        return bad | ~torch.isfinite(self.max_abs)

    def _label(self, i: int) -> str:
        if isinstance(self.group, FiniteGroup):
            e = int(self.elements[i])
            kind = "reflection" if bool(self.group.is_reflection(e)) else "rotation"
            deg = float(self.group.angle(e)) * 180 / torch.pi
            return f"{e} ({kind} {deg:g}°)"
        m = self.elements[i]
        if self.group.dim == 2:
            deg = float(torch.rad2deg(torch.atan2(m[1, 0], m[0, 0])))
            det = "reflection " if float(torch.linalg.det(m.double())) < 0 else ""
            return f"sample {i} ({det}{deg:.1f}°)"
        return f"sample {i}"

    def table(self, rows: torch.Tensor | None = None) -> str:
        """A readable table of the errors, for all elements or the boolean mask ``rows``."""
        lines = [f"{'element':<28}{'max abs':>12}{'mean abs':>12}{'relative':>12}"]
        rel = self.relative
        for i in range(self.max_abs.numel()):
            if rows is not None and not bool(rows[i]):
                continue
            lines.append(
                f"{self._label(i):<28}{float(self.max_abs[i]):>12.3e}"
                f"{float(self.mean_abs[i]):>12.3e}{float(rel[i]):>12.3e}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"equivariance errors for {self.group} ({self.dtype}):\n{self.table()}"


def _check_action(a: object, name: str) -> Action:
    if not isinstance(a, Action):
        raise TypeError(
            f"expected {name} to be an equify Action (e.g. ImageAction()), got {type(a).__name__}"
        )
    return a


def _tested_elements(
    group: Group,
    elements: torch.Tensor | None,
    n_samples: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if elements is not None:
        if not isinstance(elements, torch.Tensor):
            raise TypeError(f"expected elements as a tensor, got {type(elements).__name__}")
        if isinstance(group, FiniteGroup):
            if elements.is_floating_point():
                if elements.dim() != 3 or elements.shape[-2:] != (2, 2):
                    raise ValueError(
                        "expected (n,) element indices or (n, 2, 2) orthogonal matrices of "
                        f"{group}, got a floating tensor of shape {tuple(elements.shape)}"
                    )
                return group.from_matrix(elements)  # ValueError for non-elements
            if elements.dim() != 1:
                raise ValueError(
                    "expected (n,) element indices or (n, 2, 2) orthogonal matrices, got shape "
                    f"{tuple(elements.shape)}"
                )
        if isinstance(group, ContinuousGroup):
            group.validate(elements, name="elements")
            if elements.dim() != 3:
                raise ValueError(f"expected (n, d, d) matrices, got shape {tuple(elements.shape)}")
        return elements
    if isinstance(group, FiniteGroup):
        return group.elements()
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return group.sample(n_samples, generator=generator, dtype=torch.float64)


@torch.no_grad()
def equivariance_error(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: Group,
    in_action: Action,
    out_action: Action,
    elements: torch.Tensor | None = None,
    n_samples: int = 16,
    generator: torch.Generator | None = None,
) -> EquivarianceReport:
    """Per-element equivariance errors of ``fn`` on the batch ``x``, compared in float64.

    Args:
        fn: a function or ``nn.Module`` mapping a batch to a tensor output. Put modules in
            ``eval()`` mode first: dropout or batch statistics break equivariance.
        x: the input batch, e.g. ``(B, C, H, W)`` images.
        group: the group to test.
        in_action: how elements act on ``x``.
        out_action: how elements act on ``fn(x)`` (``InvariantAction()`` for invariance).
        elements: elements to test: ``(n,)`` indices or ``(n, d, d)`` matrices (for a finite
            group, matrices of its elements, converted to indices). Default: all elements of a
            finite group, ``n_samples`` Haar samples of a continuous one.
        n_samples: number of sampled elements of a continuous group.
        generator: random generator for the samples (default: seeded with 0, reproducible).

    Returns:
        An :class:`EquivarianceReport`.
    """
    if not callable(fn):
        raise TypeError(f"expected fn to be callable, got {type(fn).__name__}")
    if not isinstance(group, Group):
        raise TypeError(f"expected a Group (e.g. CyclicGroup(4)), got {type(group).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected x as a torch.Tensor, got {type(x).__name__}")
    _check_action(in_action, "in_action")
    _check_action(out_action, "out_action")
    els = _tested_elements(group, elements, n_samples, generator)
    y = fn(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"expected fn to return a torch.Tensor, got {type(y).__name__}")
    max_abs, mean_abs, scale = [], [], []
    for g in els:
        expected = out_action.apply(y, g, group)
        actual = fn(in_action.apply(x, g, group))
        if actual.shape != expected.shape:
            raise ValueError(
                f"fn's output shape changed under the group: {tuple(actual.shape)} for a "
                f"transformed input against {tuple(expected.shape)}"
            )
        diff = (actual.double() - expected.double()).abs()
        max_abs.append(diff.max() if diff.numel() else diff.new_zeros(()))
        mean_abs.append(diff.mean() if diff.numel() else diff.new_zeros(()))
        scale.append(expected.double().abs().max() if diff.numel() else diff.new_zeros(()))
    return EquivarianceReport(
        group=group,
        elements=els.cpu(),
        max_abs=torch.stack(max_abs).cpu(),
        mean_abs=torch.stack(mean_abs).cpu(),
        scale=torch.stack(scale).cpu(),
        dtype=y.dtype,
    )


def assert_equivariant(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    group: Group,
    in_action: Action,
    out_action: Action,
    elements: torch.Tensor | None = None,
    n_samples: int = 16,
    atol: float | None = None,
    rtol: float | None = None,
    exact: bool = False,
    generator: torch.Generator | None = None,
) -> EquivarianceReport:
    """Raise ``AssertionError`` unless ``fn`` is equivariant on ``x`` for every tested element.

    An element passes when ``max |actual - expected| <= atol + rtol * max |expected|``.
    Defaults come from :func:`default_tolerance` for the output dtype
    (float32: 1e-5/1e-5, float64: 1e-10/1e-10, float16: 1e-2/1e-2); ``exact=True`` demands
    bit-identical outputs (for exact paths: 90° rotations, flips, permutations).

    Args:
        fn, x, group, in_action, out_action, elements, n_samples, generator: as in
            :func:`equivariance_error`.
        atol: absolute tolerance (overrides the default).
        rtol: relative tolerance (overrides the default).
        exact: require zero error.

    Returns:
        The :class:`EquivarianceReport`, when every element passes.

    Raises:
        AssertionError: with a per-element table of the elements above tolerance.
    """
    report = equivariance_error(
        fn, x, group, in_action, out_action, elements, n_samples, generator=generator
    )
    d_atol, d_rtol = default_tolerance(report.dtype)
    if exact:
        atol, rtol = 0.0, 0.0
    atol = d_atol if atol is None else float(atol)
    rtol = d_rtol if rtol is None else float(rtol)
    bad = report.failures(atol, rtol)
    if bool(bad.any()):
        raise AssertionError(
            f"not equivariant to {report.group}: {int(bad.sum())} of {bad.numel()} elements "
            f"exceed atol={atol:g} + rtol={rtol:g} * max|expected| ({report.dtype}):\n"
            + report.table(bad)
        )
    return report
