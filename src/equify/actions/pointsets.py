"""Point sets with features: positions, vectors, scalars and a padding mask in one tensor.

A molecule or a particle system is a set of ``N`` points, each with a position, optional
vectors that turn with it (velocities, forces) and optional invariant scalars (atom types,
charges). Batches of sets of different sizes are padded to the largest one, with a mask that
marks the real points. :class:`PointLayout` packs all of it into one ``(B, N, C)`` tensor, so
that sets travel through data loaders, the training loop and the wrappers like any other input:

    channels ``[0:3]`` position · ``[3:3+3v]`` the ``v`` vectors · then the ``s`` scalars ·
    then, if ``mask``, one channel that is 1 for real points and 0 for padding.

:class:`PointSetAction` turns positions and vectors by an orthogonal matrix and leaves scalars
and the mask alone; :meth:`PointSetAction.translate` moves the positions of the real points
(vectors, scalars and padding do not move), so a canonicalizer can centre sets (SE(3), E(3)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from equify.actions.base import Action, check_tensor, resolve_elements
from equify.groups import Group

__all__ = ["PointLayout", "PointSetAction"]


@dataclass(frozen=True)
class PointLayout:
    """The channels of a packed point set ``(B, N, C)``.

    Attributes:
        dim: coordinates per position and vector (3).
        vectors: vector features per point, e.g. 1 for a velocity.
        scalars: invariant features per point, e.g. 5 for one-hot atom types.
        mask: True when the last channel marks real points (1) and padding (0).
    """

    dim: int = 3
    vectors: int = 0
    scalars: int = 0
    mask: bool = False

    def __post_init__(self) -> None:
        for name in ("dim", "vectors", "scalars"):
            v = getattr(self, name)
            least = 1 if name == "dim" else 0
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"PointLayout.{name} must be an int >= {least}, got {v!r}")
        if not isinstance(self.mask, bool):
            raise TypeError(f"PointLayout.mask must be a bool, got {self.mask!r}")

    @property
    def channels(self) -> int:
        """``C``: the packed width."""
        return self.dim * (1 + self.vectors) + self.scalars + int(self.mask)

    @property
    def geometric(self) -> int:
        """Channels that turn with the group: the position and the vectors."""
        return self.dim * (1 + self.vectors)

    def check(self, x: object, name: str = "point sets") -> torch.Tensor:
        """``x`` as a valid packed batch; TypeError/ValueError otherwise.

        Checks the shape ``(B, N, C)``, a floating dtype, finite values and, with a mask, that
        the mask channel holds only 0 and 1 and every set has at least one real point.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected {name} as a torch.Tensor (B, N, C), got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.channels:
            raise ValueError(
                f"expected {name} of shape (B, N, {self.channels}) for {self}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating {name}, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} hold NaN or infinite values")
        if self.mask and x.shape[0] and x.shape[1]:
            m = x[..., -1]
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"the mask channel of {name} must hold only 0 and 1")
            if not bool((m > 0).any(dim=1).all()):
                empty = (~(m > 0).any(dim=1)).nonzero().flatten().tolist()
                raise ValueError(f"{name} {empty[:5]} have no real point (mask all 0)")
        if x.shape[1] == 0 and x.shape[0]:
            raise ValueError(f"{name} need at least one point, got N = 0")
        return x

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim)`` positions."""
        return x[..., : self.dim]

    def vector_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, vectors, dim)`` vector features."""
        return x[..., self.dim : self.geometric].unflatten(-1, (self.vectors, self.dim))

    def scalar_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, scalars)`` invariant features."""
        return x[..., self.geometric : self.geometric + self.scalars]

    def point_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` bool: the real points (all True without a mask channel)."""
        if not self.mask:
            return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return x[..., -1] > 0.5

    def pack(
        self,
        positions: torch.Tensor,
        vectors: torch.Tensor | None = None,
        scalars: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One ``(B, N, C)`` tensor from the parts (shapes as the accessors return them; the
        mask bool)."""
        if not isinstance(positions, torch.Tensor) or not positions.is_floating_point():
            raise TypeError(
                "positions must be a floating torch.Tensor (B, N, dim), got "
                f"{positions.dtype if isinstance(positions, torch.Tensor) else type(positions)}"
            )
        if positions.dim() != 3 or positions.shape[-1] != self.dim:
            raise ValueError(
                f"positions must have shape (B, N, {self.dim}), got {tuple(positions.shape)}"
            )
        B, N = positions.shape[:2]
        parts = [positions]
        if self.vectors:
            if vectors is None or tuple(vectors.shape) != (B, N, self.vectors, self.dim):
                raise ValueError(
                    f"{self} needs vectors of shape {(B, N, self.vectors, self.dim)}, got "
                    f"{None if vectors is None else tuple(vectors.shape)}"
                )
            parts.append(vectors.flatten(-2).to(positions.dtype))
        if self.scalars:
            if scalars is None or tuple(scalars.shape) != (B, N, self.scalars):
                raise ValueError(
                    f"{self} needs scalars of shape {(B, N, self.scalars)}, got "
                    f"{None if scalars is None else tuple(scalars.shape)}"
                )
            parts.append(scalars.to(positions.dtype))
        if self.mask:
            if mask is None or tuple(mask.shape) != (B, N):
                raise ValueError(
                    f"{self} needs a mask of shape {(B, N)}, got "
                    f"{None if mask is None else tuple(mask.shape)}"
                )
            if mask.dtype != torch.bool:
                raise TypeError(f"the mask must be bool (True = real point), got {mask.dtype}")
            parts.append(mask.to(positions.dtype)[..., None])
        return torch.cat(parts, dim=-1)

    def centroid(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` the mean position of each set's real points."""
        pos = self.positions(x)
        w = self.point_mask(x).to(pos.dtype)[..., None]
        return (pos * w).sum(1) / w.sum(1).clamp_min(1.0)


class PointSetAction(Action):
    """Rotations and reflections of packed point sets (:class:`PointLayout`).

    Args:
        layout: the channels; default: bare positions ``(B, N, 3)``.
    """

    def __init__(self, layout: PointLayout | None = None) -> None:
        layout = layout if layout is not None else PointLayout()
        if not isinstance(layout, PointLayout):
            raise TypeError(f"layout must be a PointLayout, got {type(layout).__name__}")
        self.layout = layout

    def _check(self, x: object) -> torch.Tensor:
        check_tensor(x, "point sets", (3,), f"(B, N, {self.layout.channels})")
        if x.shape[-1] != self.layout.channels:
            raise ValueError(
                f"expected point sets of shape (B, N, {self.layout.channels}) for "
                f"{self.layout}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected floating point sets, got dtype {x.dtype}")
        return x

    def apply(self, x: torch.Tensor, g: object, group: Group | None = None) -> torch.Tensor:
        """Turn positions and vectors by ``g``.

        Args:
            x: ``(B, N, C)`` packed sets.
            g: one element or ``B``: ``(d, d)`` / ``(B, d, d)`` orthogonal matrices (or indices
                of a finite 2-D group with ``group``).
            group: the group of integer elements.

        Returns:
            ``(B, N, C)``, same dtype and device; scalars and the mask unchanged.
        """
        x = self._check(x)
        lay = self.layout
        el = resolve_elements(g, group, x.shape[0], x.device, dim=lay.dim)
        m = el.matrices.to(x.dtype)
        geo = x[..., : lay.geometric].unflatten(-1, (1 + lay.vectors, lay.dim))  # (B, N, V, d)
        turned = geo @ m.T if m.dim() == 2 else torch.einsum("bnvj,bij->bnvi", geo, m)
        return torch.cat([turned.flatten(-2), x[..., lay.geometric :]], dim=-1)

    translates = True

    def translate(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Add ``t`` ``(B, d)`` to the positions of the real points (vectors do not move)."""
        x = self._check(x)
        lay = self.layout
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (x.shape[0], lay.dim):
            raise ValueError(
                f"expected translations of shape {(x.shape[0], lay.dim)}, got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
        if t.device != x.device:
            raise ValueError(f"translations are on {t.device} but the point sets on {x.device}")
        w = lay.point_mask(x).to(x.dtype)[..., None]
        shifted = x[..., : lay.dim] + w * t.to(x.dtype)[:, None]
        return torch.cat([shifted, x[..., lay.dim :]], dim=-1)

    def __repr__(self) -> str:
        return f"PointSetAction({self.layout!r})"
