"""The in-memory dataset type of the segmentation sources: images with per-pixel labels.

Convention:
    ``images`` hold raw pixels in ``[0, 1]`` (as in :class:`~equify.data.dataset.ImageDataset`);
    ``masks`` hold one class index per pixel, ``0`` being the background (``classes[0]``);
    ``instances`` (optional) hold one object id per pixel, ``0`` being the background and
    ``1, 2, ...`` the objects of that image (ids need not be consecutive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from equify.data.dataset import check_images, check_index, check_indices

__all__ = ["SegmentationDataset", "SegmentationSplits"]


def _check_integer_tensor(value: object, what: str, shape: str) -> torch.Tensor:
    """``value`` if it is an integer tensor, else a TypeError naming ``what`` and ``shape``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected {what} as a torch.Tensor {shape}, got {type(value).__name__}")
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"expected integer {what} {shape}, got dtype {value.dtype}")
    return value


class SegmentationDataset(Dataset):
    """Images and their per-pixel class labels (semantic masks), held in memory.

    Args:
        images: ``(N, C, H, W)`` floating tensor, raw pixels in ``[0, 1]``; kept as given (not
            copied), never modified.
        masks: ``(N, H, W)`` integer class indices in ``[0, len(classes))``; stored as int64.
        classes: class names, ``classes[k]`` names label ``k``; ``classes[0]`` is the
            background.
        name: a short name of the dataset and split, e.g. ``"nuclei/train"``.
        instances: optional ``(N, H, W)`` integer object ids (``0`` = background, ``>= 1`` an
            object); stored as int64.

    Items:
        ``dataset[i]`` is ``(image, mask)``: ``image`` ``(C, H, W)`` and ``mask`` an int64
        ``(H, W)``. A ``DataLoader`` batches them into ``(B, C, H, W)`` and ``(B, H, W)``, the
        layout ``torch.nn.functional.cross_entropy`` takes with ``(B, K, H, W)`` logits.

    Attributes:
        labels: the same tensor as ``masks``, so that code written for classification datasets
            (``TensorDataset(ds.images, ds.labels)``) works unchanged.

    Example:
        ds = SegmentationDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long),
                                 ["background", "cell"])
        image, mask = ds[0]          # (1, 4, 4) float, (4, 4) int64
        ds.class_pixel_counts()      # tensor([32, 0])
    """

    def __init__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        classes: Sequence[str],
        name: str = "segmentation",
        instances: torch.Tensor | None = None,
    ) -> None:
        check_images(images)
        n, _, h, w = (int(s) for s in images.shape)
        _check_integer_tensor(masks, "masks", "(N, H, W)")
        if tuple(masks.shape) != (n, h, w):
            raise ValueError(
                f"expected masks of shape ({n}, {h}, {w}) to match the images "
                f"{tuple(images.shape)}, got {tuple(masks.shape)}"
            )
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise TypeError(f"expected classes as a sequence of names (str), got {classes!r}")
        if not all(isinstance(c, str) for c in classes):
            raise TypeError(f"expected classes as a sequence of names (str), got {classes!r}")
        classes = list(classes)
        if not classes:
            raise ValueError("expected at least one class name (classes[0] is the background)")
        if masks.numel() and (int(masks.min()) < 0 or int(masks.max()) >= len(classes)):
            raise ValueError(
                f"mask labels must lie in [0, {len(classes) - 1}] for {len(classes)} classes, "
                f"got values in [{int(masks.min())}, {int(masks.max())}]"
            )
        if instances is not None:
            _check_integer_tensor(instances, "instances", "(N, H, W)")
            if tuple(instances.shape) != (n, h, w):
                raise ValueError(
                    f"expected instances of shape ({n}, {h}, {w}) to match the images "
                    f"{tuple(images.shape)}, got {tuple(instances.shape)}"
                )
            if instances.numel() and int(instances.min()) < 0:
                raise ValueError(
                    f"expected non-negative instance ids (0 = background), got a minimum of "
                    f"{int(instances.min())}"
                )
            instances = instances.long()
        self.images = images
        self.masks = masks.long()
        self.classes = classes
        self.name = str(name)
        self.instances = instances

    @property
    def labels(self) -> torch.Tensor:
        """``(N, H, W)`` int64: the per-pixel labels, the same tensor as ``masks``."""
        return self.masks

    @property
    def num_classes(self) -> int:
        """Number of classes ``len(classes)``, the background included."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = check_index(index, len(self))
        return self.images[index], self.masks[index]

    def class_pixel_counts(self) -> torch.Tensor:
        """LongTensor ``(num_classes,)``: number of pixels of each class over all masks."""
        return torch.bincount(self.masks.reshape(-1).cpu(), minlength=self.num_classes)

    def subset(
        self, indices: torch.Tensor | Sequence[int], name: str | None = None
    ) -> SegmentationDataset:
        """A new dataset of the images, masks and instances at ``indices`` (copied).

        Args:
            indices: ``(K,)`` integer positions (negative ones count from the end).
            name: the new dataset's name (default: this one's).

        Raises:
            ValueError: indices that are not one-dimensional.
            IndexError: an index out of range.
        """
        idx = check_indices(indices, len(self))

        def take(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, idx.to(t.device))

        return SegmentationDataset(
            take(self.images),
            take(self.masks),
            self.classes,
            name if name is not None else self.name,
            take(self.instances) if self.instances is not None else None,
        )

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        inst = ", with instances" if self.instances is not None else ""
        return (
            f"SegmentationDataset({self.name!r}, {len(self)} images of {c}x{h}x{w}, "
            f"{self.num_classes} classes{inst})"
        )


class SegmentationSplits(NamedTuple):
    """The train and test splits of a segmentation dataset; unpacks as ``train, test``."""

    train: SegmentationDataset
    test: SegmentationDataset
