"""Real photographs that ship inside installed packages, as an unlabelled image set.

A pretrained ImageNet classifier's top-1 on an upright photo is a label for free, so these photos
measure (and train for) rotation consistency without any annotation. Sources, used when present:

* ``skimage/<name>``: the colour photos inside the scikit-image wheel (astronaut, chelsea, coffee,
  rocket, motorcycle, Hubble deep field, IHC, retina);
* ``sklearn/<name>``: scikit-learn's two sample photos (china, flower);
* ``opencv/<name>``: Debian's ``opencv-doc`` sample photos
  (``apt-get install opencv-doc``, under ``/usr/share/doc/opencv-doc/examples/data``); only
  natural colour photos are listed (no calibration boards, logos, text or drawings).

Files are found by path (:func:`importlib.util.find_spec`, nothing is imported) and read with
pillow (``equify[data]``). Photos are ``(3, H, W)`` float tensors in ``[0, 1]``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from equify.data._optional import import_optional

__all__ = [
    "OPENCV_SAMPLES",
    "PHOTO_FILES",
    "available_photos",
    "centre_view",
    "load_photo",
    "random_crops",
    "split_photos",
]

#: Where Debian's opencv-doc package puts its sample images.
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")

#: ``name -> (package or folder, file)`` of every photo this module knows.
PHOTO_FILES: dict[str, tuple[str, str]] = {
    **{
        f"skimage/{n}": ("skimage", f"data/{f}")
        for n, f in {
            "astronaut": "astronaut.png",
            "chelsea": "chelsea.png",
            "coffee": "coffee.png",
            "rocket": "rocket.jpg",
            "motorcycle": "motorcycle_left.png",
            "hubble_deep_field": "hubble_deep_field.jpg",
            "ihc": "ihc.png",
            "retina": "retina.jpg",
        }.items()
    },
    "sklearn/china": ("sklearn", "datasets/images/china.jpg"),
    "sklearn/flower": ("sklearn", "datasets/images/flower.jpg"),
    **{
        f"opencv/{Path(f).stem}": (str(OPENCV_SAMPLES), f)
        for f in (
            "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
            "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
            "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg", "licenseplate_motion.jpg",
            "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png",
            "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg",
        )
    },
}  # fmt: skip


#: The distribution that installs each package of :data:`PHOTO_FILES`.
_DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn"}


def _root(source: str) -> Path | None:
    if source.startswith("/"):
        return Path(source)
    spec = importlib.util.find_spec(source)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def available_photos(sources: Sequence[str] | None = None) -> dict[str, Path]:
    """The known photos installed on this machine, ``name -> file``, in a fixed order.

    Args:
        sources: keep only these sources, the part of a name before ``/`` (e.g.
            ``["skimage", "opencv"]``).

    Raises:
        TypeError: ``sources`` is a plain string (give a list).
    """
    if isinstance(sources, str):
        raise TypeError(f"expected sources to be a list of prefixes, got the string {sources!r}")
    roots: dict[str, Path | None] = {}
    out: dict[str, Path] = {}
    for name, (source, file) in PHOTO_FILES.items():
        if sources is not None and name.split("/")[0] not in sources:
            continue
        if source not in roots:
            roots[source] = _root(source)
        root = roots[source]
        if root is not None and (root / file).is_file():
            out[name] = root / file
    return out


def load_photo(photo: str | Path) -> torch.Tensor:
    """A photo as a ``(3, H, W)`` float32 tensor in ``[0, 1]`` (grey and RGBA become RGB).

    Args:
        photo: a name of :data:`PHOTO_FILES` (``"skimage/chelsea"``) or an image file's path.

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: a known photo that is not installed, or a path with no file.
    """
    if isinstance(photo, str) and photo in PHOTO_FILES:
        path = available_photos().get(photo)
        if path is None:
            source = PHOTO_FILES[photo][0]
            hint = (
                "apt-get install opencv-doc" if source.startswith("/") else f"pip install {source}"
            )
            raise FileNotFoundError(f"photo {photo!r} is not installed here ({hint})")
    elif isinstance(photo, (str, Path)):
        path = Path(photo)
        if not path.suffix:
            raise ValueError(
                f"unknown photo {photo!r}; known names: {', '.join(sorted(PHOTO_FILES))}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"no image file at {path}")
    else:
        raise TypeError(f"expected a photo name or path, got {type(photo).__name__}")
    image = import_optional("PIL.Image", "pillow", "reading photographs")
    import numpy as np

    with image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def _check_photo(photo: object) -> torch.Tensor:
    if not isinstance(photo, torch.Tensor) or photo.dim() != 3 or not photo.is_floating_point():
        got = tuple(photo.shape) if isinstance(photo, torch.Tensor) else type(photo).__name__
        raise ValueError(f"expected a floating (C, H, W) photo, got {got}")
    return photo


def _resize(square: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(
        square[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0.0, 1.0)


def centre_view(photo: torch.Tensor, size: int) -> torch.Tensor:
    """The largest centred square of ``photo``, resized to ``(C, size, size)``."""
    p = _check_photo(photo)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expected size to be a positive int, got {size!r}")
    h, w = p.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return _resize(p[:, top : top + s, left : left + s], size)


def random_crops(
    photos: Sequence[torch.Tensor],
    size: int,
    per_photo: int,
    scale: tuple[float, float] = (0.35, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """Seeded random square crops of every photo, resized: ``(len(photos) * per_photo, C, size,
    size)``.

    Each crop's side is a uniform fraction in ``scale`` of the photo's shorter side, at a uniform
    position inside the photo.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"expected size to be a positive int, got {size!r}")
    if isinstance(per_photo, bool) or not isinstance(per_photo, int) or per_photo < 1:
        raise ValueError(f"expected per_photo to be a positive int, got {per_photo!r}")
    lo, hi = scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"expected 0 < scale[0] <= scale[1] <= 1, got {scale}")
    if len(photos) == 0:
        raise ValueError("no photos to crop")
    gen = torch.Generator().manual_seed(seed)
    crops = []
    for photo in photos:
        p = _check_photo(photo)
        h, w = p.shape[-2:]
        for _ in range(per_photo):
            r = lo + (hi - lo) * torch.rand((), generator=gen).item()
            s = max(1, math.floor(r * min(h, w)))
            top = int(torch.randint(0, h - s + 1, (), generator=gen))
            left = int(torch.randint(0, w - s + 1, (), generator=gen))
            crops.append(_resize(p[:, top : top + s, left : left + s], size))
    return torch.stack(crops)


def split_photos(
    names: Sequence[str], test_fraction: float = 0.3, seed: int = 0
) -> tuple[list[str], list[str]]:
    """A seeded split of photo names into (train, test); both non-empty.

    Raises:
        ValueError: fewer than two names, or ``test_fraction`` outside ``(0, 1)``.
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("photo names must be distinct")
    if len(names) < 2:
        raise ValueError(f"need at least two photos to split, got {len(names)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = min(len(names) - 1, max(1, round(test_fraction * len(names))))
    test = sorted(names[i] for i in order[:n_test])
    train = [n for n in names if n not in test]
    return train, test
