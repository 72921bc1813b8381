"""Canonicalization networks built on escnn (optional extra: ``pip install "equify[escnn]"``).

Drop-in alternatives to the native networks of :mod:`equify.canonicalization.networks`, with the
same contracts, so either can be passed as ``network=`` to a canonicalizer:

* :class:`EscnnScoreNetwork`: ``(B, Cin, H, W) -> (B, |G|)`` scores for ``C_n`` / ``D_n``
  (escnn ``rot2dOnR2(n)`` / ``flipRot2dOnR2(n)``, regular feature fields, ReLU).
* :class:`EscnnVectorNetwork`: ``(B, Cin, H, W) -> (B, k, 2)`` vectors for SO(2) / O(2)
  (escnn ``rot2dOnR2(-1)`` / ``flipRot2dOnR2(-1)``, band-limited Fourier fields with FourierELU,
  output fields transforming like the plane itself, ``gspace.basespace_action``).

escnn is imported lazily: importing this module never needs it; building a network does, and
raises an ImportError with installation hints when escnn is missing.

Convention:
    * Scores: ``scores(ImageAction().apply(x, g, G)) == RegularAction(G).apply(scores(x), g, G)``,
      i.e. ``scores(g·x)[h] = scores(x)[g⁻¹h]``; slot ``h`` is equify's element ``h``.
    * Vectors: ``v(ImageAction().apply(x, R)) = R @ v(x)`` (:class:`~equify.actions.PointAction`),
      in the display frame (x right, y up); ``k = 1`` for SO(2), ``k = 2`` for O(2).

    How escnn's conventions map onto equify's (read from escnn 1.0.11's source and pinned by
    tests/canonicalization/test_escnn_networks.py: representation matrices for every element of
    C4, D4, C8, D8; network outputs for every element of C4, D4 and the exact elements of C8, D8,
    SO(2), O(2)):

    * escnn's ``GSpace2D`` reads a ``(B, C, H, W)`` tensor with the last axis as X and the
      second-last as -Y, and ``gspace.basespace_action(g)`` acts on ``(X, Y)``: the same display
      frame as equify (x right, y up), and rotations are counter-clockwise as displayed.
    * ``rot2dOnR2(n)``: element ``k`` is the rotation by ``2πk/n``, equify's element ``k``.
    * ``flipRot2dOnR2(n)`` (default ``axis=π/2``): the flip mirrors across the vertical axis,
      ``(x, y) -> (-x, y)``, i.e. ``torch.flip(x, (-1,))``, equify's ``s``. escnn lists
      ``D_n`` as ``[r^0..r^(n-1), r^0 f..r^(n-1) f]`` with ``r^k f`` = flip first, then rotate: the
      same order as equify's ``n + k``.
    * escnn's regular representation puts element ``e`` in slot ``elements.index(e)`` and acts
      by ``ρ(g) e_h = e_(gh)``, so ``out[h] = in[g⁻¹h]``: exactly
      :class:`~equify.actions.RegularAction`.

    The slot permutation is therefore the identity; it is still computed at construction by
    matching every escnn element's ``basespace_action`` matrix against equify's
    ``group.matrix(h)``, so a change of escnn's ordering or axis would be caught (and fail loudly).
    For O(2), note that the fiber group's own frequency-1 irrep ``irrep(1, 1)`` represents the
    flip of ``flipRot2dOnR2(-1)`` as ``diag(1, -1)`` (a mirror across the x axis) although it
    acts on the plane as ``diag(-1, 1)``; the output fields therefore use
    ``gspace.basespace_action``, which is the plane's own transformation law.

Exactness (measured with the default networks, random init; tests pin it):
    * C4, D4 (and the 90°/flip elements of C8, D8, SO(2), O(2)): exact to float rounding at every
      input size, 27, 28, 32, 33 tested (odd kernels with centred padding, no strides, centred
      average pooling): relative error ~1e-15 in float64, ~3e-7 (scores) / ~2e-6 (vectors) in
      float32. escnn samples its kernel bases in float32, which alone would leave ~1e-7 in
      float64; this module projects each sampled basis onto the kernels equivariant under the
      exact grid symmetries, in float64, and keeps float64 master copies of these constants that
      are re-cast after every ``.to()`` / ``.double()`` / ``.float()``.
    * Other elements (45° in C8/D8, arbitrary SO(2)/O(2) angles) are approximate: the pixel grid
      cannot be rotated exactly. Inputs and every feature map are masked to the inscribed disk
      for those groups, which removes the (large) border effects. On smooth images masked to the
      disk (bicubic upsampling of 6x6 noise), ``ImageAction(mask="circle")``, float64, 4 seeds:
      largest |error| / largest |output| is 0.02-0.2 for C8 and D8, 0.05-0.3 for SO(2) and
      0.08-0.13 for O(2) at 33x33; 0.02-0.09 (C8, D8) and 0.05-0.13 (SO(2), O(2)) at 64x64. A
      plain CNN scores 1.4-2.2.

Size and speed (``in_channels=3``, defaults; forward of a batch of 8 images 64x64 on 2 CPU
cores, median of 15, eval mode; ``export()`` in brackets):

    ======  ==========  ======================
    group   parameters  forward (exported)
    ======  ==========  ======================
    C4       6,320       19 ms (11 ms)
    D4      12,304       52 ms (32 ms)
    C8      12,304       56 ms (44 ms)
    D8      24,272       98 ms (81 ms)
    SO(2)    8,832       53 ms (49 ms)
    O(2)    17,328      161 ms (142 ms)
    ======  ==========  ======================

Notes:
    * escnn 1.0.11 hands ``np.matrix`` objects to scikit-learn's ``randomized_svd`` when it
      computes Clebsch-Gordan coefficients (dihedral groups, O(2)); recent scikit-learn rejects
      them (QUVA-Lab/escnn#112). :func:`require_escnn` wraps that one function of
      ``escnn.group._numerical`` so that it converts ``np.matrix`` to ``ndarray`` first; results are
      unchanged. escnn caches those coefficients on disk (in its package folder), so the first
      dihedral / O(2) network built in a fresh environment takes 5-30 s, later ones 1-3 s.
    * escnn's ``R2Conv`` caches its expanded filter when switched to eval mode and serves the stale
      cache if the weights change afterwards (e.g. ``load_state_dict`` in eval mode). These
      networks never use that cache: filters are expanded from the weights on every forward pass,
      and ``train()``/``eval()`` only flip the mode flags.
    * escnn's modules cannot be pickled (they hold local functions); ``pickle``, ``torch.save`` of
      the whole network and ``copy.deepcopy`` rebuild it from its constructor arguments and its
      state dict (a second or two). The state dict holds the learnable weights, the batch-norm
      statistics and a few small escnn index buffers, not the sampled bases. ``export()`` gives
      a plain, picklable copy.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from equify._validation import check_int as _check_int
from equify.actions import circle_mask
from equify.actions.image import exact_codes
from equify.groups import O2, SO2, FiniteGroup, Group
from equify.groups import group as parse_group
from equify.nn import CentredPool2d

__all__ = [
    "INSTALL_HINT",
    "EscnnScoreNetwork",
    "EscnnVectorNetwork",
    "ExportedEscnnNetwork",
    "escnn_available",
    "require_escnn",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    'the escnn-backed networks need the optional dependency escnn: pip install "equify[escnn]". '
    "escnn 1.0.x needs numpy<2, and its dependency py3nj compiles Fortran code "
    "(install a Fortran compiler first, e.g. apt-get install gfortran). Without a compiler: "
    "pip install --no-deps escnn, then its pure-Python dependencies "
    "(pip install scipy joblib lie_learn pymanopt autograd); py3nj is only used for 3-D groups."
)

_DOWNSAMPLING = ("centred", "none")
_MASKS = ("auto", "circle", None)
# Largest relative change the float64 re-symmetrization may make to escnn's float32 basis; more
# means the basis was not equivariant in the assumed convention (an escnn change): fail loudly.
_SYMMETRIZE_TOL = 1e-4


# --------------------------------------------------------------------------------------------
# Optional dependency
# --------------------------------------------------------------------------------------------


def escnn_available() -> bool:
    """True when escnn can be imported (without importing it when it is absent)."""
    try:
        return importlib.util.find_spec("escnn") is not None
    except (ImportError, ValueError):
        return False


def require_escnn() -> tuple[Any, Any]:
    """Import escnn and return ``(escnn.gspaces, escnn.nn)``.

    Also installs the small compatibility shim described in the module Notes.

    Raises:
        ImportError: escnn is missing or fails to import, with installation instructions.
    """
    try:
        from escnn import gspaces
        from escnn import nn as escnn_nn
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} (import failed: {err})") from err
    except Exception as err:  # e.g. escnn 1.0.x under numpy>=2 fails with AttributeError
        raise ImportError(
            f"escnn is installed but failed to import: {err!r}. {INSTALL_HINT}"
        ) from err
    _patch_randomized_svd()
    return gspaces, escnn_nn


def _patch_randomized_svd() -> None:
    """Let escnn's ``null()`` pass ``np.matrix`` to scikit-learn's ``randomized_svd`` again."""
    try:
        numerical = importlib.import_module("escnn.group._numerical")
    except ImportError:
        return
    svd = getattr(numerical, "randomized_svd", None)
    if svd is None or getattr(svd, "_equify_ndarray_shim", False):
        return

    def randomized_svd(M: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(M, np.matrix):
            M = np.asarray(M)
        return svd(M, *args, **kwargs)

    randomized_svd._equify_ndarray_shim = True  # type: ignore[attr-defined]
    numerical.randomized_svd = randomized_svd
    logger.debug("escnn: randomized_svd now converts np.matrix inputs (QUVA-Lab/escnn#112)")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def _quiet_escnn() -> Iterator[None]:
    """escnn prints while it computes Clebsch-Gordan coefficients; route that to the log."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), _default_dtype(torch.float32):
            yield
    finally:
        if buffer.getvalue():
            logger.debug("escnn output while building:\n%s", buffer.getvalue().rstrip())


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_kernel_size(value: object) -> int:
    k = _check_int(value, "kernel_size", 1)
    if k % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd (a centred 'same' convolution keeps 90° rotations and flips "
            f"exact at every input size), got {k}"
        )
    return k


def _check_network_args(
    in_channels: object,
    hidden_channels: object,
    kernel_size: object,
    num_layers: object,
    downsampling: object,
    batch_norm: object,
) -> tuple[int, int, int, int]:
    """Validate the arguments both escnn networks take; returns ``(in, hidden, k, layers)``."""
    checked = (
        _check_int(in_channels, "in_channels", 1),
        _check_int(hidden_channels, "hidden_channels", 1),
        _check_kernel_size(kernel_size),
        _check_int(num_layers, "num_layers", 1),
    )
    if downsampling not in _DOWNSAMPLING:
        raise ValueError(f"downsampling must be one of {_DOWNSAMPLING}, got {downsampling!r}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
    return checked


def _parse(group: Group | str) -> Group:
    if isinstance(group, str):
        return parse_group(group)
    if not isinstance(group, Group):
        raise TypeError(
            f"expected a Group (e.g. CyclicGroup(4), SO2()) or a name such as 'C4', "
            f"got {type(group).__name__}"
        )
    return group


def _is_exact_group(group: FiniteGroup) -> bool:
    """True when every element acts on images by an index permutation (C1, C2, C4, D1, D2, D4)."""
    return bool((exact_codes(group.matrix(group.elements())) >= 0).all())


def _masked(t: torch.Tensor) -> torch.Tensor:
    """``t`` with every pixel outside the inscribed disk set to zero."""
    return t * circle_mask(t.shape[-2], t.shape[-1], t.device).to(t.dtype)


def _spatial_mean(t: torch.Tensor, disk: bool) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C)``: mean over all pixels, or over the inscribed disk."""
    if not disk:
        return t.mean(dim=(-2, -1))
    m = circle_mask(t.shape[-2], t.shape[-1], t.device).to(t.dtype)
    return (t * m).sum(dim=(-2, -1)) / m.sum()


# --------------------------------------------------------------------------------------------
# Plain-PyTorch building blocks (shared by the escnn networks and their exports)
# --------------------------------------------------------------------------------------------


class _Pipeline(nn.Module):
    """Stages (``(B, C, H, W) -> (B, C', H, W)``), optional disk masks and centred pooling, a head
    convolution and a spatial mean: ``(B, Cin, H, W) -> (B, Cout)``."""

    def __init__(self, stages: Sequence[nn.Module], head: nn.Module, mask: bool, downsample: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.mask = bool(mask)
        self.pool = CentredPool2d(2) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = _masked(x) if self.mask else x
        for stage in self.stages:
            t = stage(t)
            if self.mask:
                t = _masked(t)
            if self.pool is not None:
                t = self.pool(t)
        return _spatial_mean(self.head(t), self.mask)

    def extra_repr(self) -> str:
        return f"mask={self.mask}"


class _SlotReadout(nn.Module):
    """``(B, |G|)`` pooled regular field -> equify's order: ``out[:, h] = in[:, slot[h]]``."""

    def __init__(self, slots: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("slots", slots.clone().long(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.index_select(1, self.slots)

    def extra_repr(self) -> str:
        return f"slots={self.slots.tolist()}"


class _VectorReadout(nn.Module):
    """``(B, 2k)`` pooled plane-vector fields -> ``(B, k, 2)`` vectors ``(x, y)``."""

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        self.num_vectors = num_vectors

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(t.shape[0], self.num_vectors, 2)

    def extra_repr(self) -> str:
        return f"num_vectors={self.num_vectors}"


class _FourierActivation(nn.Module):
    """Plain-PyTorch FourierELU: sample band-limited fields on a group grid, ELU, transform back.

    Args:
        A: ``(N_grid, F)`` inverse Fourier transform (coefficients -> samples).
        A_inv: ``(F, N_grid)`` Fourier transform (samples -> coefficients).
    """

    def __init__(self, A: torch.Tensor, A_inv: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A.detach().clone())
        self.register_buffer("A_inv", A_inv.detach().clone())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        B, C, H, W = t.shape
        size = self.A.shape[1]
        f = t.reshape(B, C // size, size, H, W)
        samples = F.elu(torch.einsum("bcfhw,gf->bcghw", f, self.A))
        return torch.einsum("bcghw,fg->bcfhw", samples, self.A_inv).reshape(B, C, H, W)


# --------------------------------------------------------------------------------------------
# escnn adapters
# --------------------------------------------------------------------------------------------


def _geometric(t: torch.Tensor, field_type: Any) -> Any:
    from escnn.nn import GeometricTensor

    return GeometricTensor(t, field_type)


def _conv_forward(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """escnn ``R2Conv`` on a plain tensor, with the filter expanded from the current weights."""
    weight, bias = conv.expand_parameters()
    return F.conv2d(t, weight, bias, padding=conv.padding, dilation=conv.dilation)


def _export_conv(conv: nn.Module) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with the expanded (detached) filter of an escnn ``R2Conv``."""
    with torch.no_grad():
        weight, bias = conv.expand_parameters()
    out = nn.Conv2d(
        conv.in_type.size,
        conv.out_type.size,
        conv.kernel_size,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=bias is not None,
    ).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def _export_pointwise(module: nn.Module) -> nn.Module:
    """Plain version of an escnn normalization or activation module."""
    from escnn import nn as escnn_nn

    if isinstance(module, escnn_nn.FourierPointwise):
        return _FourierActivation(module.A, module.Ainv)
    was_training = [(m, m.training) for m in module.modules()]
    try:
        exported = module.export()  # escnn's export switches the module to eval mode
    finally:
        for m, mode in was_training:
            m.training = mode
    return exported


class _EscnnStage(nn.Module):
    """escnn ``R2Conv`` -> normalization -> activation, on plain tensors ``(B, C, H, W)``."""

    def __init__(self, conv: nn.Module, norm: nn.Module | None, act: nn.Module | None) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.act = act

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = _conv_forward(self.conv, t)
        for m in (self.norm, self.act):
            if m is not None:
                t = m(_geometric(t, m.in_type)).tensor
        return t

    def export(self) -> nn.Sequential:
        parts = [_export_conv(self.conv)]
        parts += [_export_pointwise(m) for m in (self.norm, self.act) if m is not None]
        return nn.Sequential(*parts)


class _EscnnHead(nn.Module):
    """The last escnn ``R2Conv`` on plain tensors."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return _conv_forward(self.conv, t)

    def export(self) -> nn.Conv2d:
        return _export_conv(self.conv)


# --------------------------------------------------------------------------------------------
# Exact symmetrization of escnn's sampled kernel bases (float64)
# --------------------------------------------------------------------------------------------


def _signed_permutation(m: np.ndarray) -> bool:
    r = np.round(m)
    return bool(
        np.allclose(m, r, atol=1e-9)
        and np.all(np.abs(r).sum(axis=0) == 1)
        and np.all(np.abs(r).sum(axis=1) == 1)
    )


def _exact_fiber_elements(gspace: Any) -> list[Any]:
    """Elements of the fiber group acting on the pixel grid by a permutation (90° turns, flips)."""
    G = gspace.fibergroup
    candidates = list(G.elements) if G.order() > 0 else list(G.grid(4))
    return [e for e in candidates if _signed_permutation(np.asarray(gspace.basespace_action(e)))]


def _point_permutation(points: np.ndarray, matrix: np.ndarray) -> torch.Tensor:
    """Index ``perm`` with ``points[perm[j]] = matrix⁻¹ @ points[j]`` (exact grid symmetry)."""
    key = {tuple(np.round(2 * p).astype(int)): i for i, p in enumerate(points)}
    source = points @ matrix  # row j: (matrix^T p_j)^T = (matrix^-1 p_j)^T
    try:
        return torch.tensor([key[tuple(np.round(2 * q).astype(int))] for q in source])
    except KeyError as err:
        raise RuntimeError("escnn's kernel grid is not closed under a grid symmetry") from err


def _symmetrize_conv_bases(conv: nn.Module, gspace: Any, elements: list[Any]) -> list[tuple]:
    """Project every sampled basis of ``conv`` onto the kernels equivariant under ``elements``.

    ``K(p) -> mean_g ρ_out(g) K(g⁻¹p) ρ_in(g)ᵀ`` in float64; the basis escnn sampled in float32
    already satisfies this up to ~1e-7, so the projection only removes that rounding.

    Returns:
        ``(module, buffer name, float64 CPU master)`` for every re-registered basis.
    """
    expansion = conv.basisexpansion
    points = np.asarray(expansion.points, dtype=np.float64)
    reprs_in = {r.name: r for r in conv.in_type.representations}
    reprs_out = {r.name: r for r in conv.out_type.representations}
    perms = [
        _point_permutation(points, np.asarray(gspace.basespace_action(g), np.float64))
        for g in elements
    ]
    masters = []
    for block in expansion.children():
        basis = getattr(block, "basis", None)
        sampled = getattr(block, "sampled_basis", None)
        if basis is None or not isinstance(sampled, torch.Tensor):
            raise RuntimeError(
                "unexpected escnn basis layout (escnn version change?): cannot symmetrize "
                f"{type(block).__name__}"
            )
        r_in, r_out = reprs_in.get(basis.in_repr.name), reprs_out.get(basis.out_repr.name)
        if r_in is None or r_out is None or sampled.dim() != 4:
            raise RuntimeError("unexpected escnn basis layout (escnn version change?)")
        s = sampled.detach().to(device="cpu", dtype=torch.float64)  # (b, o, i, P)
        s_points_first = s.permute(0, 3, 1, 2)  # (b, P, o, i)
        acc = torch.zeros_like(s_points_first)
        for g, perm in zip(elements, perms, strict=True):
            rho_in = torch.as_tensor(np.asarray(r_in(g)), dtype=torch.float64)
            rho_out = torch.as_tensor(np.asarray(r_out(g)), dtype=torch.float64)
            acc += rho_out @ s_points_first[:, perm] @ rho_in.T
        sym = (acc / len(elements)).permute(0, 2, 3, 1).contiguous()
        change = float((sym - s).abs().max()) / max(float(s.abs().max()), 1e-30)
        if change > _SYMMETRIZE_TOL:
            raise RuntimeError(
                f"escnn's kernel basis is not equivariant under the grid symmetries in the assumed "
                f"convention (relative change {change:.2e}); escnn's conventions may have changed"
            )
        block.register_buffer("sampled_basis", sym.to(sampled.dtype), persistent=False)
        masters.append((block, "sampled_basis", sym))
    return masters


def _regular_slots(gspace: Any, group: FiniteGroup) -> torch.Tensor:
    """``slots[h]``: the escnn regular-representation slot of equify's element ``h``."""
    G = gspace.fibergroup
    elements = list(G.elements)
    identity_slot = elements.index(G.identity)
    mats = group.matrix(group.elements()).numpy()
    slots = []
    for h in range(group.order):
        match = [
            e for e in elements if np.allclose(np.asarray(gspace.basespace_action(e)), mats[h])
        ]
        if len(match) != 1:
            raise RuntimeError(
                f"cannot match equify's element {h} of {group} to escnn's {G} "
                f"({len(match)} candidates): escnn's conventions may have changed"
            )
        column = np.asarray(gspace.regular_repr(match[0]))[:, identity_slot]  # ρ(e) e_id = e_e
        slots.append(int(np.argmax(column)))
    if sorted(slots) != list(range(group.order)):
        raise RuntimeError(f"escnn's regular representation of {G} is not a permutation: {slots}")
    return torch.tensor(slots)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class _ImageNetwork(nn.Module):
    """Input checks and dtype handling around a pipeline and a readout."""

    in_channels: int
    pipeline: _Pipeline
    readout: nn.Module

    def _reference(self) -> torch.Tensor:
        return next(self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on images ``(B, Cin, H, W)``.

        The computation runs in the dtype of the network's parameters (float32 by default; call
        ``.double()`` for float64); the output is cast to the input's dtype. The input must be on
        the network's device.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"expected images as a torch.Tensor (B, {self.in_channels}, H, W), "
                f"got {type(x).__name__}"
            )
        if x.dim() != 4:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating images, got dtype {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"this network was built for in_channels={self.in_channels}, got images with "
                f"{x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        ref = self._reference()
        if x.device != ref.device:
            raise ValueError(
                f"the images are on {x.device} but the network is on {ref.device}: move the "
                f"network with .to({str(x.device)!r})"
            )
        return self.readout(self.pipeline(x.to(ref.dtype))).to(x.dtype)


class ExportedEscnnNetwork(_ImageNetwork):
    """Plain-PyTorch copy of an escnn network (``nn.Conv2d``, ``BatchNorm``, activations, pooling).

    Made by :meth:`EscnnScoreNetwork.export` / :meth:`EscnnVectorNetwork.export`: same output
    (to float rounding), same input checks, no escnn needed at run time. Its weights are a
    detached snapshot; it is meant for inference.

    Attributes:
        in_channels: image channels ``Cin``.
        group: the equify group of the source network.
        pipeline: the plain modules.
    """

    def __init__(self, group: Group, in_channels: int, pipeline: _Pipeline, readout: nn.Module):
        super().__init__()
        self.group = group
        self.in_channels = in_channels
        self.pipeline = pipeline
        self.readout = readout

    def extra_repr(self) -> str:
        return f"group={self.group}, in_channels={self.in_channels}"


class _EscnnNetwork(_ImageNetwork):
    """Shared escnn machinery: float64 master constants, mode switching without escnn's filter
    cache, export."""

    def __init__(self) -> None:
        super().__init__()
        # (module, buffer name, float64 CPU tensor): derived constants restored after .to()
        self._masters: list[tuple[nn.Module, str, torch.Tensor]] = []

    def _finish(self, gspace: Any, convs: list[nn.Module], activations: list[nn.Module]) -> None:
        """Symmetrize bases, record float64 masters, drop escnn's filter caches, set the dtype."""
        elements = _exact_fiber_elements(gspace)
        for conv in convs:
            self._masters += _symmetrize_conv_bases(conv, gspace, elements)
            for cache in ("filter", "expanded_bias"):
                if cache in conv._buffers:
                    delattr(conv, cache)
        for act in activations:
            for name in ("A", "Ainv"):
                buf = getattr(act, name, None)
                if isinstance(buf, torch.Tensor):
                    master = buf.detach().to(device="cpu", dtype=torch.float64).clone()
                    act.register_buffer(name, buf, persistent=False)
                    self._masters.append((act, name, master))
        self.to(dtype=torch.get_default_dtype())
        self.train(True)

    # escnn objects (field types, bases) hold local functions and cannot be pickled: pickle and
    # deepcopy rebuild the network from its constructor arguments and its state dict instead.
    _init_args: dict[str, Any]

    def __getstate__(self) -> dict[str, Any]:
        return {"init": self._init_args, "state": self.state_dict(), "training": self.training}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, **state["init"])
        tensors = [t for t in state["state"].values() if t.is_floating_point()]
        if tensors:
            self.to(device=tensors[0].device, dtype=tensors[0].dtype)
        self.load_state_dict(state["state"])
        self.train(state["training"])

    def _restore_constants(self) -> None:
        for module, name, master in self._masters:
            current = getattr(module, name)
            setattr(module, name, master.to(device=current.device, dtype=current.dtype))

    def _apply(self, fn: Any, recurse: bool = True) -> _EscnnNetwork:
        result = super()._apply(fn, recurse)
        self._restore_constants()
        return result

    def train(self, mode: bool = True) -> _EscnnNetwork:
        """Set training mode; unlike escnn's ``R2Conv.train`` no filter is cached."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            m.training = mode
        return self

    def export(self) -> ExportedEscnnNetwork:
        """Plain PyTorch copy for inference, in eval mode, with the same eval-mode output.

        Convolutions become ``nn.Conv2d`` with the filter expanded from the current weights (as
        escnn's ``R2Conv.export()`` does, but without switching this network to eval mode or
        reading escnn's cached filter); normalizations and ReLU/ELU use escnn's own ``export()``
        (batch norms become ``nn.BatchNorm2d`` with the running statistics, so the copy matches
        in eval mode only); FourierELU becomes an equivalent plain module. This network keeps
        its training/eval mode.
        """
        stages = [stage.export() for stage in self.pipeline.stages]
        pipeline = _Pipeline(
            stages, self.pipeline.head.export(), self.pipeline.mask, self.pipeline.pool is not None
        )
        out = ExportedEscnnNetwork(self.group, self.in_channels, pipeline, self._export_readout())
        ref = self._reference()
        return out.to(device=ref.device, dtype=ref.dtype).eval()

    def _export_readout(self) -> nn.Module:
        raise NotImplementedError


class EscnnScoreNetwork(_EscnnNetwork):
    """escnn G-CNN scoring every element of ``C_n`` / ``D_n``: ``(B, Cin, H, W) -> (B, |G|)``.

    Architecture: ``num_layers`` blocks of (escnn ``R2Conv`` to ``hidden_channels`` regular
    fields, ``InnerBatchNorm`` if ``batch_norm``, ReLU, centred 2x average pooling), then an
    ``R2Conv`` to one regular field and a spatial mean. Every convolution is odd-sized with
    centred zero padding and stride 1, so 90° rotations and flips stay exact at every input size.

    Parameter counts (``in_channels=3``, defaults): C4 6,320; D4 12,304; C8 12,304; D8 24,272
    (they grow like ``|G|·hidden²``); timings in the module docstring.

    Args:
        group: ``CyclicGroup(n)``, ``DihedralGroup(n)`` or a name such as ``"C4"``, ``"D8"``.
        in_channels: image channels ``Cin``.
        hidden_channels: regular fields per hidden layer (``hidden·|G|`` channels).
        kernel_size: odd kernel size of every convolution.
        num_layers: hidden blocks (>= 1).
        downsampling: ``"centred"`` (halve the resolution after every block with a centred
            average pool, exact at every size) or ``"none"`` (full resolution throughout).
        mask: ``"auto"`` (``"circle"`` for groups with non-90° rotations, else None), ``"circle"``
            (zero the input and every feature map outside the inscribed disk, average the last map
            over the disk) or None.
        batch_norm: add escnn's ``InnerBatchNorm`` (statistics shared over each field's group
            channels, so equivariant in training mode too).

    Shapes:
        input ``(B, Cin, H, W)`` floating (any ``H, W``; 90° rotations need ``H == W``);
        output ``(B, |G|)`` in the input's dtype.

    Example:
        >>> net = EscnnScoreNetwork("C4", in_channels=3)  # doctest: +SKIP
        >>> net(torch.randn(2, 3, 33, 33)).shape  # doctest: +SKIP
        torch.Size([2, 4])
    """

    def __init__(
        self,
        group: FiniteGroup | str,
        in_channels: int,
        hidden_channels: int = 8,
        kernel_size: int = 5,
        num_layers: int = 3,
        downsampling: str = "centred",
        mask: str | None = "auto",
        batch_norm: bool = True,
    ) -> None:
        g = _parse(group)
        if not isinstance(g, FiniteGroup):
            raise ValueError(
                f"EscnnScoreNetwork scores the elements of a finite group (CyclicGroup(n), "
                f"DihedralGroup(n)), got {g!r}; use EscnnVectorNetwork for SO2/O2"
            )
        in_channels, hidden, k, layers = _check_network_args(
            in_channels, hidden_channels, kernel_size, num_layers, downsampling, batch_norm
        )
        if mask not in _MASKS:
            raise ValueError(f"mask must be one of {_MASKS}, got {mask!r}")
        gspaces, enn = require_escnn()
        super().__init__()
        self._init_args = {
            "group": g,
            "in_channels": in_channels,
            "hidden_channels": hidden,
            "kernel_size": k,
            "num_layers": layers,
            "downsampling": downsampling,
            "mask": mask,
            "batch_norm": batch_norm,
        }
        self.group = g
        self.in_channels = in_channels
        self.mask = ("circle" if not _is_exact_group(g) else None) if mask == "auto" else mask
        with _quiet_escnn():
            gs = gspaces.flipRot2dOnR2(g.n) if g.has_reflections else gspaces.rot2dOnR2(g.n)
            self.gspace = gs
            current = enn.FieldType(gs, in_channels * [gs.trivial_repr])
            hidden_type = enn.FieldType(gs, hidden * [gs.regular_repr])
            stages, convs = [], []
            for _ in range(layers):
                conv = enn.R2Conv(current, hidden_type, k, padding=k // 2, recompute=True)
                norm = enn.InnerBatchNorm(hidden_type) if batch_norm else None
                stages.append(_EscnnStage(conv, norm, enn.ReLU(hidden_type)))
                convs.append(conv)
                current = hidden_type
            out_type = enn.FieldType(gs, [gs.regular_repr])
            head = enn.R2Conv(current, out_type, k, padding=k // 2, bias=False, recompute=True)
            convs.append(head)
            slots = _regular_slots(gs, g)
        self.pipeline = _Pipeline(
            stages, _EscnnHead(head), self.mask == "circle", downsampling == "centred"
        )
        self.readout = _SlotReadout(slots)
        self._finish(gs, convs, [])

    def _export_readout(self) -> nn.Module:
        return _SlotReadout(self.readout.slots.cpu())

    def extra_repr(self) -> str:
        return f"group={self.group}, in_channels={self.in_channels}, mask={self.mask!r}"


class EscnnVectorNetwork(_EscnnNetwork):
    """escnn steerable CNN for SO(2) / O(2): ``(B, Cin, H, W) -> (B, k, 2)`` equivariant vectors.

    Architecture: ``num_layers`` blocks of (escnn ``R2Conv`` to ``hidden_channels`` band-limited
    Fourier fields of the continuous group (frequencies ``0..max_frequency``), ``IIDBatchNorm2d``
    if ``batch_norm``, FourierELU sampled on ``grid_size`` rotations (and as many reflections
    for O(2)), centred 2x average pooling), then an ``R2Conv`` to ``k`` fields of type
    ``gspace.basespace_action`` (vectors of the plane) and a mean over the inscribed disk. Inputs
    and feature maps are masked to the inscribed disk. ``k = 1`` for SO(2), ``k = 2`` for O(2)
    (two vectors, so that a frame and its handedness can be read off).

    Exactness: exact to float rounding for rotations by multiples of 90° and for flips (the
    FourierELU grid contains them when ``grid_size % 4 == 0``); approximate for other angles.

    Parameter counts (``in_channels=3``, defaults): SO(2) 8,832; O(2) 17,328.

    Args:
        group: ``SO2()``, ``O2()``, ``"SO2"`` or ``"O2"``.
        in_channels: image channels ``Cin``.
        hidden_channels: Fourier fields per hidden layer.
        kernel_size: odd kernel size of every convolution.
        num_layers: hidden blocks (>= 1).
        max_frequency: band limit of the hidden fields (>= 1).
        grid_size: rotations sampled by FourierELU (a multiple of 4, >= 2·max_frequency + 2).
        downsampling: ``"centred"`` or ``"none"`` (as in :class:`EscnnScoreNetwork`).
        batch_norm: add escnn's ``IIDBatchNorm2d``.

    Shapes:
        input ``(B, Cin, H, W)`` floating (square for 90° rotations); output ``(B, k, 2)`` in the
        input's dtype, vectors ``(x, y)`` in the display frame (y up).
    """

    def __init__(
        self,
        group: Group | str,
        in_channels: int,
        hidden_channels: int = 8,
        kernel_size: int = 5,
        num_layers: int = 3,
        max_frequency: int = 3,
        grid_size: int = 16,
        downsampling: str = "centred",
        batch_norm: bool = True,
    ) -> None:
        g = _parse(group)
        if not isinstance(g, (SO2, O2)):
            raise ValueError(
                f"EscnnVectorNetwork is for the continuous planar groups SO2() and O2(), got "
                f"{g!r}; use EscnnScoreNetwork for finite groups"
            )
        in_channels, hidden, k, layers = _check_network_args(
            in_channels, hidden_channels, kernel_size, num_layers, downsampling, batch_norm
        )
        freq = _check_int(max_frequency, "max_frequency", 1)
        grid = _check_int(grid_size, "grid_size", 4)
        if grid % 4 or grid < 2 * freq + 2:
            raise ValueError(
                f"grid_size must be a multiple of 4 (keeps 90° rotations exact) and at least "
                f"2·max_frequency + 2 = {2 * freq + 2}, got {grid}"
            )
        gspaces, enn = require_escnn()
        super().__init__()
        self._init_args = {
            "group": g,
            "in_channels": in_channels,
            "hidden_channels": hidden,
            "kernel_size": k,
            "num_layers": layers,
            "max_frequency": freq,
            "grid_size": grid,
            "downsampling": downsampling,
            "batch_norm": batch_norm,
        }
        self.group = g
        self.in_channels = in_channels
        self.num_vectors = 2 if isinstance(g, O2) else 1
        with _quiet_escnn():
            max_f = max(6, freq)
            gs = (
                gspaces.flipRot2dOnR2(-1, maximum_frequency=max_f)
                if isinstance(g, O2)
                else gspaces.rot2dOnR2(-1, maximum_frequency=max_f)
            )
            self.gspace = gs
            current = enn.FieldType(gs, in_channels * [gs.trivial_repr])
            stages, convs, acts = [], [], []
            for _ in range(layers):
                with _default_dtype(torch.float64):  # float64 Fourier matrices (masters)
                    act = enn.FourierELU(
                        gs, hidden, irreps=gs.fibergroup.bl_irreps(freq), N=grid, inplace=False
                    )
                hidden_type = act.in_type
                conv = enn.R2Conv(current, hidden_type, k, padding=k // 2, recompute=True)
                norm = enn.IIDBatchNorm2d(hidden_type) if batch_norm else None
                stages.append(_EscnnStage(conv, norm, act))
                convs.append(conv)
                acts.append(act)
                current = hidden_type
            out_type = enn.FieldType(gs, self.num_vectors * [gs.basespace_action])
            head = enn.R2Conv(current, out_type, k, padding=k // 2, bias=False, recompute=True)
            convs.append(head)
        self.pipeline = _Pipeline(stages, _EscnnHead(head), True, downsampling == "centred")
        self.readout = _VectorReadout(self.num_vectors)
        self._finish(gs, convs, acts)

    def _export_readout(self) -> nn.Module:
        return _VectorReadout(self.num_vectors)

    def extra_repr(self) -> str:
        return f"group={self.group}, in_channels={self.in_channels}, k={self.num_vectors}"
