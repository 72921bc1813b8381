"""Which input sizes keep a strided network exactly equivariant (Edixhoven et al., ICCVw 2023).

A layer with kernel ``k``, stride ``s``, dilation ``d`` and padding ``p`` reads, on ``N`` pixels,
windows centred at ``c_i = i·s − p + d(k − 1)/2``. It commutes with flips and 90° rotations only
if that grid is symmetric about the image centre, which holds iff

    ``(N + 2p − d(k − 1) − 1) % s == 0``

(on both axes; ``s = 1`` is always centred). One layer off-centre makes the whole network only
approximately equivariant. :func:`exact_sizes` traces a model once per input size with forward
hooks on its layers (also inside user models), predicts per size whether every strided layer is
centred and names the first that is not, then measures the real equivariance error of the
logits (and of a feature layer's regular representation, if named) so that the prediction is
checked against reality.

The prediction concerns the sampling grids: it is the exactness of the whole network when its
layers are otherwise equivariant (group convolutions, pointwise layers, isotropic kernels). An
ordinary convolution with a learned kernel is not rotation equivariant at any size; the
measurement shows that.

Analysed layers: ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d`` and
``nn.AdaptiveMaxPool2d`` (their bins are checked for symmetry), equify's
:class:`~equify.nn.LiftingConv2d` / :class:`~equify.nn.GroupConv2d` and
:class:`~equify.nn.CentredPool2d` (centred by construction). Layers that resample
(``nn.Upsample``) are reported as not analysed and the verdict is then unknown, never guessed.
Functional calls inside a module's ``forward`` (``F.conv2d``, ``F.max_pool2d``) are invisible
to hooks: wrap them in modules to have them checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from equify._state import eval_mode
from equify.actions import Action, ImageAction, InvariantAction, RegularAction
from equify.groups import FiniteGroup
from equify.groups import group as parse_group
from equify.nn import CentredPool2d, GroupConv2d, LiftingConv2d
from equify.testing import equivariance_error

__all__ = [
    "ExactSizePad",
    "LayerCheck",
    "SizeVerdict",
    "centred_axis",
    "exact_sizes",
    "exactness_scope",
    "nearest_exact_size",
    "trace_layers",
]


def centred_axis(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> bool:
    """Whether one axis of a strided window grid is centred: ``(N + 2p − d(k−1) − 1) % s == 0``.

    Also False when the window does not fit (no output).
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return span >= 0 and span % stride == 0


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[-1])
    return int(v), int(v)


@dataclass(frozen=True)
class LayerCheck:
    """One traced layer at one input size.

    Attributes:
        name: the module's qualified name in the model.
        kind: its class name.
        input_size: ``(H, W)`` of its input.
        geometry: kernel, stride, padding, dilation (per axis), or the adaptive output size.
        centred: whether the layer keeps the geometry symmetric (its grid centred on both axes,
            its padding symmetric, its group containing the checked one); None: not analysed.
        reason: why.
        weights_decide: an ordinary convolution whose kernels are not symmetric under the
            group: its grid may be centred, but whether it is equivariant depends on its
            weights (only the measurement can tell).
    """

    name: str
    kind: str
    input_size: tuple[int, int]
    geometry: dict[str, Any]
    centred: bool | None
    reason: str
    weights_decide: bool = False


@dataclass
class SizeVerdict:
    """The prediction and the measurement at one input size.

    Attributes:
        size: the input size ``N`` (square ``N x N``).
        predicted_exact: True when every layer keeps the geometry symmetric and commutes with the
            group; False when one does not (an off-centre grid, asymmetric padding, a flattened
            map, a layer or wrapper built for a smaller group); None when some layer could not
            be analysed or ordinary convolutions with unsymmetric kernels leave it to the
            weights.
        breaking_layer: the first off-centre layer's name (or None).
        reason: a sentence on the verdict.
        logit_error: measured max relative equivariance error of the model's output (None if
            not measured).
        feature_error: the same for the named feature layer's output (regular representation).
        layers: every traced layer.
        unanalysed: names of the layers that could not be analysed.
        grid_centred: whether every sampling grid is centred (None when unknown).
    """

    size: int
    predicted_exact: bool | None
    breaking_layer: str | None
    reason: str
    logit_error: float | None = None
    feature_error: float | None = None
    layers: list[LayerCheck] = field(default_factory=list)
    unanalysed: list[str] = field(default_factory=list)
    grid_centred: bool | None = None

    @property
    def measured_exact(self) -> bool | None:
        """Whether the measured logit error is at float rounding (< 1e-4 relative)."""
        return None if self.logit_error is None else self.logit_error < EXACT_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["measured_exact"] = self.measured_exact
        return out


#: A measured relative error below this counts as exact (float32 rounding through a network).
EXACT_TOLERANCE = 1e-4


# Leaf modules that act pointwise (or per channel, or on the group axis only): they keep the
# geometry and commute with every spatial symmetry.
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.Softmax,
    nn.LogSoftmax,
)
_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
_STRIDED = (LiftingConv2d, GroupConv2d, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _exact_by_construction() -> tuple[type, ...]:
    """equify's own leaf modules that keep the geometry symmetric (or act on the group axis)."""
    from equify.canonicalization.networks import InscribedDiskMask, SpatialMean
    from equify.canonicalization.preprocess import ImagePreparation
    from equify.nn import (
        GroupPool,
        PartialBatchNorm,
        PartialGroupPool,
        RegularBatchNorm,
        RegularGroupNorm,
    )
    from equify.nn.norm import OneValueGroupNorm

    return (
        CentredPool2d,
        PartialBatchNorm,
        PartialGroupPool,
        GroupPool,
        RegularBatchNorm,
        RegularGroupNorm,
        OneValueGroupNorm,
        InscribedDiskMask,
        SpatialMean,
        ImagePreparation,
    )


def _has_quarter_turns(group: FiniteGroup) -> bool:
    """Whether ``group`` has an exact element that swaps height and width (an odd 90° turn)."""
    from equify.actions.image import exact_codes

    codes = exact_codes(group.matrix(group.elements()))
    return bool(((codes >= 0) & (codes % 2 == 1)).any())


def _covers(inner: FiniteGroup, checked: FiniteGroup) -> bool:
    """Whether every exact element of ``checked`` is an element of ``inner`` (by matrix)."""
    mats = checked.matrix(_exact(checked))
    try:
        inner.from_matrix(mats)
    except ValueError:
        return False
    return True


def _symmetric_kernels(weight: torch.Tensor, group: FiniteGroup) -> bool:
    """Whether a plain convolution's kernels are unchanged by the group's exact elements."""
    w = weight.detach().double()
    flat = w.reshape(-1, 1, *w.shape[-2:])
    if flat.shape[-1] != flat.shape[-2]:
        return False
    act = ImageAction()
    scale = float(w.abs().max()) or 1.0
    return all(
        float((act.apply(flat, int(h), group) - flat).abs().max()) <= 1e-6 * scale
        for h in _exact(group)
    )


def _strided(name, module, kind, hw, checked: FiniteGroup) -> LayerCheck:
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    d = _pair(getattr(module, "dilation", 1))
    pad = module.padding
    geometry = {"kernel": k, "stride": s, "padding": pad, "dilation": d}
    if isinstance(pad, str):
        if pad == "valid":
            pad = 0
        else:  # "same": d(k-1) in total, one more at the end when it is odd
            ok = not any(di * (ki - 1) % 2 for di, ki in zip(d, k, strict=True))
            why = "symmetric 'same' padding" if ok else "'same' padding is asymmetric"
            return LayerCheck(name, kind, hw, geometry, ok, why)
    p = _pair(pad)
    if _has_quarter_turns(checked) and (
        k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or d[0] != d[1]
    ):
        return LayerCheck(
            name,
            kind,
            hw,
            geometry,
            False,
            "different kernel, stride, padding or dilation on height and width: a 90° rotation "
            "swaps them",
        )
    ok = [centred_axis(n, ki, si, pi, di) for n, ki, si, pi, di in zip(hw, k, s, p, d, strict=True)]
    if all(ok):
        return LayerCheck(
            name, kind, hw, geometry, True, "stride 1" if s == (1, 1) else "centred grid"
        )
    a = ok.index(False)
    n, ki, si, pi, di = hw[a], k[a], s[a], p[a], d[a]
    span = n + 2 * pi - di * (ki - 1) - 1
    rest = span % si if span >= 0 else "no output"
    why = (
        f"stride {si} on {n} px ({'height' if a == 0 else 'width'}): (N + 2p - d(k-1) - 1) % s = "
        f"({n} + {2 * pi} - {di * (ki - 1)} - 1) % {si} = {rest}, not centred"
    )
    return LayerCheck(name, kind, hw, geometry, False, why)


def _check_layer(
    name: str, module: nn.Module, hw: tuple[int, int], checked: FiniteGroup
) -> LayerCheck | None:
    """The check of one leaf module that received a spatial input of size ``hw``; None for
    layers that keep the geometry and commute with the group (nothing to report)."""
    kind = type(module).__name__
    report = getattr(module, "exactness_report", None)
    if callable(report):
        verdict = report(checked)
        if verdict is None:
            return None
        return LayerCheck(name, kind, hw, {}, verdict[0], verdict[1])
    inner = getattr(module, "group", None)
    if isinstance(inner, FiniteGroup) and not _covers(inner, checked):
        return LayerCheck(
            name,
            kind,
            hw,
            {"group": str(inner)},
            False,
            f"built for {inner}: not equivariant to every element of {checked}",
        )
    if isinstance(module, CentredPool2d):
        return LayerCheck(name, kind, hw, {"stride": module.stride}, True, "centred by design")
    if isinstance(module, _STRIDED):
        check = _strided(name, module, kind, hw, checked)
        if (
            check.centred
            and type(module) is nn.Conv2d  # a plain convolution, not one of equify's
            and not _symmetric_kernels(module.weight, checked)
        ):
            return LayerCheck(
                name,
                kind,
                hw,
                check.geometry,
                True,
                "ordinary convolution with kernels that change under the group: exactness "
                "depends on its weights",
                weights_decide=True,
            )
        return check
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = module.output_size
        o = _pair(out if out is not None else hw)
        o = tuple(hw[i] if o[i] is None else o[i] for i in range(2))
        # bins [floor(i·N/M), ceil((i+1)·N/M)): mirror-symmetric for every N, M (checked anyway)
        ok = all(_adaptive_symmetric(n, m) for n, m in zip(hw, o, strict=True))
        if ok and _has_quarter_turns(checked) and o[0] != o[1]:
            return LayerCheck(name, kind, hw, {"output_size": o}, False, "non-square output grid")
        why = "symmetric bins" if ok else f"adaptive bins of {hw} -> {o} are not symmetric"
        return LayerCheck(name, kind, hw, {"output_size": o}, ok, why)
    if isinstance(module, _PADS):
        left, right, top, bottom = _pair4(module.padding)
        ok = left == right and top == bottom
        if ok and _has_quarter_turns(checked):
            ok = left == top
        why = "symmetric padding" if ok else f"asymmetric padding {(left, right, top, bottom)}"
        return LayerCheck(name, kind, hw, {"padding": (left, right, top, bottom)}, ok, why)
    if isinstance(module, nn.Flatten):
        if hw == (1, 1):
            return None
        return LayerCheck(
            name,
            kind,
            hw,
            {},
            False,
            f"flattens a {hw[0]}x{hw[1]} map: the layers after it see where features are",
        )
    if isinstance(module, _POINTWISE + _exact_by_construction()):
        return None
    return LayerCheck(name, kind, hw, {}, None, f"{kind} is not a layer this analysis knows")


def _pair4(p: Any) -> tuple[int, int, int, int]:
    if isinstance(p, (tuple, list)) and len(p) == 4:
        return tuple(int(v) for v in p)  # type: ignore[return-value]
    a, b = _pair(p)
    return a, a, b, b


def _adaptive_symmetric(n: int, m: int) -> bool:
    """Whether adaptive pooling of ``n`` pixels into ``m`` bins has mirror-symmetric bins."""
    starts = [math.floor(i * n / m) for i in range(m)]
    ends = [math.ceil((i + 1) * n / m) for i in range(m)]
    return all(starts[i] + ends[m - 1 - i] == n for i in range(m))


def exactness_scope(model: nn.Module, checked: FiniteGroup) -> tuple[nn.Module | None, str, str]:
    """The part of ``model`` whose layers decide its exactness, a note, and a refusal.

    An :class:`~equify.canonicalization.EquivariantModel` is exact wherever its canonicalizer
    is, whatever the predictor (an optimization canonicalizer by construction); a symmetrizer is
    exact by construction — if their group contains every exact element of the checked group
    (else the third item says why not); any other model is decided by all its layers.
    """
    from equify.canonicalization import EquivariantModel, OptimizationCanonicalizer
    from equify.symmetrization import Symmetrizer

    own = getattr(getattr(model, "canonicalizer", model), "group", None)
    wrapper = isinstance(model, (EquivariantModel, Symmetrizer))
    if wrapper and isinstance(own, FiniteGroup) and not _covers(own, checked):
        return None, "", f"the model is built for {own}: not equivariant to all of {checked}"
    if isinstance(model, EquivariantModel):
        if isinstance(model.canonicalizer, OptimizationCanonicalizer):
            return None, "optimization canonicalization: exact by construction", ""
        return model.canonicalizer, "canonicalization: only the canonicalizer's layers matter", ""
    if isinstance(model, Symmetrizer):
        return None, "symmetrization: exact by construction for the group's exact elements", ""
    return model, "", ""


def trace_layers(
    model: nn.Module, x: torch.Tensor, checked: FiniteGroup, scope: nn.Module | None = None
) -> list[LayerCheck]:
    """Run ``model(x)`` once with hooks on every leaf module of ``scope`` (default: the whole
    model) and check each one that receives a spatial input, in call order.

    A spatial input whose size no traced module produced (slicing, padding or a functional
    call between modules changed it) is reported as not analysed.
    """
    checks: list[LayerCheck] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []
    scope = model if scope is None else scope
    seen_sizes: set[tuple[int, int]] = {(x.shape[-2], x.shape[-1])}

    def hook(module, args, output):
        inp = args[0] if args else None
        inp = getattr(inp, "tensor", inp)  # GroupFeatures of the partial layers
        output = getattr(output, "tensor", output)
        if not (isinstance(inp, torch.Tensor) and inp.dim() >= 3):
            return
        hw = (int(inp.shape[-2]), int(inp.shape[-1]))
        name = names.get(module, "?")
        if hw not in seen_sizes:
            checks.append(
                LayerCheck(
                    f"before {name}",
                    "(outside any module)",
                    hw,
                    {},
                    None,
                    f"the size became {hw[0]}x{hw[1]} outside the traced modules (slicing, padding "
                    "or a functional call): not analysed",
                )
            )
        c = _check_layer(name, module, hw, checked)
        if c is not None:
            checks.append(c)
        if isinstance(output, torch.Tensor) and output.dim() >= 3:
            seen_sizes.add((int(output.shape[-2]), int(output.shape[-1])))

    # layers that report their own exactness (the partial group convolutions) are traced as
    # one unit; their inner modules (kernel networks, samplers) are not
    units = [m for m in scope.modules() if callable(getattr(m, "exactness_report", None))]
    inside = {id(c) for u in units for c in u.modules() if c is not u}
    for m in scope.modules():
        if id(m) in inside:
            continue
        if m in units or not any(True for _ in m.children()):
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return checks


def _resolve_group(group: FiniteGroup | str) -> FiniteGroup:
    g = parse_group(group) if isinstance(group, str) else group
    if not isinstance(g, FiniteGroup):
        raise ValueError(f"exact_sizes checks a finite group (C4, D4, ...), got {group!r}")
    return g


def exact_sizes(
    model: nn.Module,
    group: FiniteGroup | str,
    sizes: Iterable[int],
    in_channels: int,
    measure: bool = True,
    feature_layer: str | None = None,
    out_action: Action | None = None,
    batch: int = 2,
    seed: int = 0,
) -> list[SizeVerdict]:
    """Predict, per input size, whether ``model`` is exactly equivariant, and measure it.

    Args:
        model: any ``nn.Module`` on images ``(B, C, N, N)``; put into eval mode here.
        group: the group to check (its exact elements: C4, D4, C2, D2, ...).
        sizes: input sizes ``N`` to try.
        in_channels: ``C``.
        measure: also measure the equivariance error on random inputs (float32).
        feature_layer: the name of a module (``model.named_modules()``) whose output is a
            regular feature map of ``group``; its error is measured too.
        out_action: how the group acts on the model's output (default invariant logits).
        batch: random inputs per size.
        seed: of the random inputs.

    Returns:
        One :class:`SizeVerdict` per size, in order.
    """
    g = _resolve_group(group)
    if not isinstance(model, nn.Module):
        raise TypeError(f"exact_sizes needs an nn.Module, got {type(model).__name__}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    sizes = list(sizes)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be positive ints, got {sizes!r}")
    modules = dict(model.named_modules())
    if feature_layer is not None and feature_layer not in modules:
        raise ValueError(
            f"no module named {feature_layer!r} in the model; names include: "
            + ", ".join(list(n for n in modules if n)[:12])
        )
    ref = next((p for p in model.parameters()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    out: list[SizeVerdict] = []
    with eval_mode(model):
        for n in sizes:
            gen = torch.Generator().manual_seed(seed + n)
            x = torch.randn(batch, in_channels, n, n, generator=gen).to(device=device, dtype=dtype)
            scope, note, refusal = exactness_scope(model, g)
            layers = trace_layers(model, x, g, scope) if scope is not None else []
            verdict = _verdict(n, layers)
            if refusal:
                verdict.predicted_exact, verdict.grid_centred = False, None
                verdict.breaking_layer, verdict.reason = "(the model's group)", refusal
            elif note:
                verdict.reason = f"{note}; {verdict.reason}"
            if measure:
                act = out_action if out_action is not None else InvariantAction()
                rep = equivariance_error(model, x, g, ImageAction(), act, elements=_exact(g))
                verdict.logit_error = rep.max_relative_error()
                if feature_layer is not None:
                    feats = _Capture(model, modules[feature_layer])
                    rep = equivariance_error(
                        feats, x, g, ImageAction(), RegularAction(g), elements=_exact(g)
                    )
                    verdict.feature_error = rep.max_relative_error()
            out.append(verdict)
    return out


def _exact(g: FiniteGroup) -> torch.Tensor:
    from equify.nn import exact_elements

    return torch.tensor(exact_elements(g))


class _Capture(nn.Module):
    """``model``'s run, returning one inner module's output instead of the model's."""

    def __init__(self, model: nn.Module, inner: nn.Module) -> None:
        super().__init__()
        self.model, self.inner = model, inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        h = self.inner.register_forward_hook(lambda m, a, o: seen.append(o))
        try:
            self.model(x)
        finally:
            h.remove()
        return seen[-1]


def _verdict(n: int, layers: list[LayerCheck]) -> SizeVerdict:
    unanalysed = [c.name for c in layers if c.centred is None]
    broken = next((c for c in layers if c.centred is False), None)
    depends = [c.name for c in layers if c.weights_decide]
    if broken is not None:
        return SizeVerdict(
            n,
            False,
            broken.name,
            f"{broken.name} ({broken.kind}): {broken.reason}",
            layers=layers,
            unanalysed=unanalysed,
            grid_centred=False,
        )
    if unanalysed:
        kinds = "; ".join(f"{c.name} ({c.kind}): {c.reason}" for c in layers if c.centred is None)
        return SizeVerdict(
            n,
            None,
            None,
            f"not analysed: {kinds}",
            layers=layers,
            unanalysed=unanalysed,
        )
    strided = sum(1 for c in layers if c.reason == "centred grid")
    if depends:
        return SizeVerdict(
            n,
            None,
            None,
            f"the grids are centred ({strided} strided layers), but {', '.join(depends)} "
            "are ordinary convolutions whose kernels change under the group: exactness depends "
            "on their weights",
            layers=layers,
            grid_centred=True,
        )
    why = f"every strided layer is centred ({strided} checked)" if strided else "no strided layer"
    return SizeVerdict(n, True, None, why, layers=layers, grid_centred=True)


def nearest_exact_size(
    model: nn.Module,
    group: FiniteGroup | str,
    size: int,
    in_channels: int,
    max_distance: int = 16,
    parity: bool = False,
) -> int:
    """The input size closest to ``size`` at which ``model`` is predicted exact (larger first).

    Args:
        model, group, in_channels: as in :func:`exact_sizes`.
        size: the size you have.
        max_distance: how far to search.
        parity: only sizes of ``size``'s parity (reachable by symmetric padding).

    Raises:
        ValueError: no exact size within ``max_distance``.
    """
    for delta in range(0, max_distance + 1):
        for n in (size + delta, size - delta):
            if n < 1 or (parity and (n - size) % 2):
                continue
            try:
                (v,) = exact_sizes(model, group, [n], in_channels, measure=False)
            except (ValueError, RuntimeError):
                continue  # too small for the model
            if v.predicted_exact:
                return n
    raise ValueError(
        f"no size within {max_distance} of {size} keeps the model exactly equivariant to "
        f"{group}{' (same parity)' if parity else ''}"
    )


class ExactSizePad(nn.Module):
    """Bring inputs centrally to an exact size, then run the model.

    Symmetric zero padding to a larger size changes the size by an even number of pixels and
    commutes with flips and 90° rotations; where no exact size of the input's parity is near
    (a network exact only at odd sizes, fed an even one), the input is resized with bilinear
    interpolation (``align_corners=False``, whose sampling grid is symmetric about the centre
    too: exact to float rounding). Either way the wrapped model is exactly equivariant at every
    input size. Targets are looked up once per input size and cached.

    Args:
        model: the strided network.
        group: the group it should be exact for.
        in_channels: image channels.
        mode: ``"auto"`` (symmetric padding to the nearest larger exact size of the same parity,
            else a resize to the nearest exact size; the default), ``"pad"`` (padding only,
            ValueError where impossible) or ``"resize"`` (always resize to the nearest exact
            size).
        max_distance: how far to search for an exact size.
    """

    MODES = ("auto", "pad", "resize")

    def __init__(
        self,
        model: nn.Module,
        group: FiniteGroup | str,
        in_channels: int,
        mode: str = "auto",
        max_distance: int = 16,
    ) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.model = model
        self.group = _resolve_group(group)
        self.in_channels = in_channels
        self.mode = mode
        self.max_distance = max_distance
        self._targets: dict[int, tuple[int, str]] = {}

    def _exact(self, n: int) -> bool:
        (v,) = exact_sizes(self.model, self.group, [n], self.in_channels, measure=False)
        return bool(v.predicted_exact)

    def target(self, size: int) -> tuple[int, str]:
        """``(target size, "pad" | "resize" | "none")`` for inputs of ``size`` pixels."""
        if size not in self._targets:
            choice = None
            if self.mode in ("auto", "pad"):
                for n in range(size, size + 2 * self.max_distance + 1, 2):
                    if self._exact(n):
                        choice = (n, "none" if n == size else "pad")
                        break
            if choice is None and self.mode == "pad":
                raise ValueError(
                    f"no exact size reachable by symmetric padding of {size} pixels within "
                    f"{2 * self.max_distance}: use mode='auto' or 'resize'"
                )
            if choice is None:
                n = nearest_exact_size(
                    self.model, self.group, size, self.in_channels, self.max_distance
                )
                choice = (n, "none" if n == size else "resize")
            self._targets[size] = choice
        return self._targets[size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(
                "ExactSizePad expects square images (B, C, N, N), got "
                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        n = x.shape[-1]
        t, how = self.target(n)
        if how == "pad":
            half = (t - n) // 2
            x = F.pad(x, (half, half, half, half))
        elif how == "resize":
            x = F.interpolate(x, size=(t, t), mode="bilinear", align_corners=False)
        return self.model(x)

    def extra_repr(self) -> str:
        return f"group={self.group}, mode={self.mode!r}"
