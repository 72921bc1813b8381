"""The data of a run: the splits as raw ``[0, 1]`` images, their statistics, seeded loaders.

Every task (:mod:`equify.training.tasks`) returns a :class:`DataBundle`; the runner and the
Lightning module only see its loaders, which yield ``(images, targets)`` batches: class indices
``(B,)`` for classification, label maps ``(B, H, W)`` for segmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from equify.data import load_splits, stratified_split

__all__ = ["DataBundle", "EpochShuffle", "prepare_classification_data"]

_SEEDED_SOURCES = ("mnist", "digits", "mnist6-180", "mnist6-m", "rotated-mnist")


@dataclass
class DataBundle:
    """The splits of one data set, as raw ``[0, 1]`` images (normalisation lives in the model).

    Attributes:
        name: the data set's name.
        train, val, test: the splits without normalisation attached: ImageDatasets
            (classification) or SegmentationDatasets (segmentation); both have ``images``,
            ``labels`` (the targets), ``num_classes`` and ``image_shape``.
        mean, std: per-channel statistics of the train split (or 0 / 1 without normalisation).
    """

    name: str
    train: Any
    val: Any
    test: Any
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def in_channels(self) -> int:
        """Image channels, or channels per point of packed point sets."""
        channels = getattr(self.train, "in_channels", None)
        return channels if isinstance(channels, int) else self.train.image_shape[0]

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def loader(
        self, split: str, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world: int = 1
    ) -> DataLoader:
        """A loader of ``split``; shuffled batches come from :class:`EpochShuffle`."""
        ds = getattr(self, split)
        data = TensorDataset(ds.images, ds.labels)
        if not shuffle:
            return DataLoader(data, batch_size=batch_size, shuffle=False)
        sampler = EpochShuffle(len(ds), seed, rank=rank, world=world)
        return DataLoader(data, batch_size=batch_size, sampler=sampler)


class EpochShuffle(Sampler[int]):
    """A random order of ``n`` indices that depends only on ``(seed, epoch)``; rank ``r`` of
    ``world`` processes takes every ``world``-th index of it, starting at ``r``.

    Lightning calls :meth:`set_epoch` before every epoch, also after ``--resume``: a resumed
    run sees the same batches in its remaining epochs as an uninterrupted one. Under DDP every
    process draws the same permutation and keeps its own share (padded by wrapping around to
    ``ceil(n / world)`` indices, so that every process takes the same number of steps); the
    runner turns Lightning's own distributed sampler off.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must lie in [0, {world}), got {rank}")
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.rank, self.world = int(rank), int(world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen)
        if self.world > 1:
            total = len(self) * self.world
            perm = torch.cat([perm, perm[: total - self.n]]) if total > self.n else perm
            perm = perm[self.rank : total : self.world]
        return iter(perm.tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world) if self.world > 1 else self.n


def prepare_classification_data(cfg: dict[str, Any]) -> DataBundle:
    """Load the configured classification data set: seeded train/val/test splits, raw images,
    train statistics."""
    d = cfg["data"]
    name = d["name"].strip().lower().replace("_", "-")
    splits = load_splits(
        name,
        root=d["root"],
        size=d["size"],
        fit=d["fit"],
        normalize=bool(d["normalize"]),
        test_fraction=d["test_fraction"] if name in _SEEDED_SOURCES else None,
        seed=cfg["seed"],
    )
    train, test = splits.train, splits.test
    stats = train.normalization
    tr_idx, val_idx = stratified_split(train.labels, d["val_fraction"], seed=cfg["seed"] + 1)
    if d["max_train"] is not None:
        tr_idx = tr_idx[: d["max_train"]]
    max_val = d["max_val"]
    if max_val is None and d["max_train"] is not None:
        # keep the configured train/validation proportion when only max_train is given
        max_val = math.ceil(d["max_train"] * d["val_fraction"] / (1 - d["val_fraction"]))
    if max_val is not None:
        val_idx = val_idx[:max_val]
    if d["max_test"] is not None:
        test = test.subset(torch.arange(min(d["max_test"], len(test))))
    c = train.image_shape[0]
    mean = stats.mean if stats is not None else torch.zeros(c)
    std = stats.std if stats is not None else torch.ones(c)
    raw = dict(normalization=None)
    return DataBundle(
        name=name,
        train=train.subset(tr_idx).with_normalization(**raw),
        val=train.subset(val_idx).with_normalization(**raw),
        test=test.with_normalization(**raw),
        mean=torch.as_tensor(mean, dtype=torch.float32).flatten(),
        std=torch.as_tensor(std, dtype=torch.float32).flatten(),
    )
