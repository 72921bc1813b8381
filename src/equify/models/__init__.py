"""Ordinary (non-equivariant) predictor networks and checkpoint input/output.

Besides the P4/P4M group CNNs (:mod:`equify.models.gcnn`) and the partial G-CNNs
(:mod:`equify.models.partial_gcnn`), these are the "pretrained models"
equify makes equivariant (no weights can be downloaded, so the
library pretrains them on upright data) and the arbitrary networks of its tests and benchmarks.
None of them is rotation- or reflection-equivariant. Users bring their own models: anything that
is an ``nn.Module`` works, and :func:`load_model` loads their checkpoints with a factory.
"""

from equify.models.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    extract_state_dict,
    load_model,
    load_state_dict_into,
    read_checkpoint,
    resolve_factory,
    save_checkpoint,
)
from equify.models.cnn import SmallCNN
from equify.models.dense import DensePredictor, coordinate_channels
from equify.models.efficientnet import EfficientNetLite, efficientnet_lite0
from equify.models.gcnn import GroupCNN, GroupResNet, p4cnn, p4mcnn, p4mresnet, p4resnet
from equify.models.mobilenet import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2, mobilenet_v2
from equify.models.partial_gcnn import (
    PartialGCNN,
    ResidualCNN,
    full_gcnn,
    ordinary_cnn,
    partial_gcnn,
)
from equify.models.pointset import PointTransformer
from equify.models.pretrained import (
    PRETRAINED_WEIGHTS,
    imagenet_classes,
    load_pretrained_weights,
    pretrained_weights_file,
    top_labels,
)
from equify.models.registry import (
    architecture_of,
    available_models,
    create_model,
    register_model,
)
from equify.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from equify.models.unet import UNet
from equify.models.vit import PatchEmbeddingClassifier

__all__ = [
    "CHECKPOINT_FORMAT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINED_WEIGHTS",
    "BasicBlock",
    "Bottleneck",
    "Checkpoint",
    "DensePredictor",
    "EfficientNetLite",
    "GroupCNN",
    "GroupResNet",
    "MobileNetV2",
    "PartialGCNN",
    "PatchEmbeddingClassifier",
    "PointTransformer",
    "ResNet",
    "ResidualCNN",
    "SmallCNN",
    "UNet",
    "architecture_of",
    "available_models",
    "coordinate_channels",
    "create_model",
    "efficientnet_lite0",
    "extract_state_dict",
    "full_gcnn",
    "imagenet_classes",
    "load_model",
    "load_pretrained_weights",
    "load_state_dict_into",
    "mobilenet_v2",
    "ordinary_cnn",
    "p4cnn",
    "p4mcnn",
    "p4mresnet",
    "p4resnet",
    "partial_gcnn",
    "pretrained_weights_file",
    "read_checkpoint",
    "register_model",
    "resnet18",
    "resnet34",
    "resnet50",
    "resolve_factory",
    "save_checkpoint",
    "top_labels",
]
