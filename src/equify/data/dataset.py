"""The small in-memory dataset type every built-in source returns.

Convention:
    ``images`` always hold the raw pixels in ``[0, 1]`` (float32 for the built-in sources).
    Normalisation is not baked into them: a dataset may carry :class:`ChannelStats` in
    ``normalization`` (the train split's, also on the test split), and ``dataset[i]`` returns the
    normalised image. Rotations (:class:`~equify.data.rotated.RotatedDataset`) act on the raw
    pixels first and normalise afterwards, so that the corners a rotation brings in are black
    (0) rather than ``-mean / std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from equify.data.transforms import ChannelStats

__all__ = ["DatasetSplits", "ImageDataset", "check_images", "check_index", "check_indices"]


def check_images(images: object) -> None:
    """Raise unless ``images`` is a floating ``(N, C, H, W)`` tensor (raw pixels in [0, 1])."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"expected images as a torch.Tensor (N, C, H, W), got {type(images).__name__}"
        )
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"expected floating images in [0, 1], got dtype {images.dtype}")


def check_index(index: object, n: int) -> int:
    """``index`` (an int or a 0-d tensor) as an int in ``[-n, n)``; TypeError / IndexError."""
    if isinstance(index, torch.Tensor) and index.dim() == 0:
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"expected an int index, got {type(index).__name__}")
    if not -n <= index < n:
        raise IndexError(f"index {index} out of range for a dataset of {n} images")
    return index


def check_indices(indices: torch.Tensor, n: int, items: str = "images") -> torch.Tensor:
    """``(K,)`` integer indices in ``[-n, n)`` as positions in ``[0, n)`` (int64).

    Raises:
        ValueError: indices that are not one-dimensional.
        IndexError: an index out of range (the message names the dataset's ``items``).
    """
    idx = torch.as_tensor(indices, dtype=torch.long)
    if idx.dim() != 1:
        raise ValueError(f"expected (K,) indices, got shape {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"indices out of range for a dataset of {n} {items}")
    return idx % max(n, 1)


class ImageDataset(Dataset):
    """Labelled images held in memory.

    Args:
        images: ``(N, C, H, W)`` floating tensor, raw pixels in ``[0, 1]``; kept as given (not
            copied), never modified.
        labels: ``(N,)`` integer class indices in ``[0, len(classes))``; stored as int64.
        classes: class names, ``classes[k]`` names label ``k``.
        name: a short name of the dataset and split, e.g. ``"mnist/train"``.
        normalization: statistics applied by ``__getitem__`` (None: images are returned raw).

    Items:
        ``dataset[i]`` is ``(image, label)``: ``image`` ``(C, H, W)`` (normalised when
        ``normalization`` is set) and ``label`` a Python int. A ``DataLoader`` batches them into
        ``(B, C, H, W)`` and an int64 ``(B,)``.

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), ["a", "b"])
        >>> image, label = ds[1]
        >>> tuple(image.shape), label
        ((1, 8, 8), 1)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        name: str = "images",
        normalization: ChannelStats | None = None,
    ) -> None:
        check_images(images)
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"expected labels as a torch.Tensor (N,), got {type(labels).__name__}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"expected integer labels, got dtype {labels.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"expected labels of shape ({images.shape[0]},) to match {images.shape[0]} "
                f"images, got {tuple(labels.shape)}"
            )
        if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
            raise TypeError(f"expected classes as a sequence of names (str), got {classes!r}")
        classes = list(classes)
        if not classes:
            raise ValueError("expected at least one class name")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError(
                f"labels must lie in [0, {len(classes) - 1}] for {len(classes)} classes, got "
                f"values in [{int(labels.min())}, {int(labels.max())}]"
            )
        if normalization is not None:
            if not isinstance(normalization, ChannelStats):
                raise TypeError(
                    f"expected normalization as ChannelStats or None, got {normalization!r}"
                )
            if normalization.channels != images.shape[1]:
                raise ValueError(
                    f"normalization has {normalization.channels} channel(s), the images "
                    f"{images.shape[1]}"
                )
        self.images = images
        self.labels = labels.long()
        self.classes = classes
        self.name = str(name)
        self.normalization = normalization

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = check_index(index, len(self))
        return self.normalize(self.images[index]), int(self.labels[index])

    @property
    def num_classes(self) -> int:
        """Number of classes ``len(classes)``."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply this dataset's normalisation to raw images ``(..., C, H, W)`` (None: as is)."""
        if self.normalization is None:
            return images
        return self.normalization.normalize(images)

    def normalized_images(self) -> torch.Tensor:
        """All images ``(N, C, H, W)`` as ``__getitem__`` returns them (normalised if set)."""
        return self.normalize(self.images)

    def class_counts(self) -> torch.Tensor:
        """LongTensor ``(num_classes,)``: number of images of each class."""
        return torch.bincount(self.labels.cpu(), minlength=self.num_classes)

    def subset(
        self, indices: torch.Tensor | Sequence[int], name: str | None = None
    ) -> ImageDataset:
        """A new dataset of the images at ``indices`` (copied), same classes and normalisation."""
        idx = check_indices(indices, len(self))
        return ImageDataset(
            self.images.index_select(0, idx.to(self.images.device)),
            self.labels.index_select(0, idx.to(self.labels.device)),
            self.classes,
            name if name is not None else self.name,
            self.normalization,
        )

    def with_images(self, images: torch.Tensor, name: str | None = None) -> ImageDataset:
        """The same labels, classes and normalisation with other ``(N, C, H, W)`` images."""
        return ImageDataset(
            images, self.labels, self.classes, name or self.name, self.normalization
        )

    def with_normalization(self, normalization: ChannelStats | None) -> ImageDataset:
        """The same images (shared, not copied) with other normalisation statistics."""
        return ImageDataset(self.images, self.labels, self.classes, self.name, normalization)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        norm = "" if self.normalization is None else ", normalized"
        return (
            f"ImageDataset({self.name!r}, {len(self)} images of {c}x{h}x{w}, "
            f"{self.num_classes} classes{norm})"
        )


class DatasetSplits(NamedTuple):
    """The train and test splits of a dataset; unpacks as ``train, test = splits``."""

    train: ImageDataset
    test: ImageDataset
