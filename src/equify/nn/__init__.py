"""Group-equivariant layers, pure PyTorch: finite ``C_n``/``D_n`` and partial SE(2)/E(2).

Regular feature maps are ``(B, C·|G|, H, W)`` with the group axis innermost (see
:class:`~equify.actions.RegularAction`). Every layer has ``export()``, which returns plain PyTorch
modules with the expanded weights precomputed. The partial group convolutions
(:mod:`equify.nn.partial`, continuous kernels of :mod:`equify.nn.continuous`, learnable element
distributions of :mod:`equify.nn.sampling`) carry :class:`GroupFeatures` ``(B, C, N, H, W)`` on
sampled elements instead. The vector-neuron layers of :mod:`equify.nn.vector_neurons` (Deng et
al. 2021) act on 3-D vector features ``(..., C, 3)`` and are O(3)-equivariant.
"""

from equify.nn.continuous import KERNEL_NETS, KernelNet
from equify.nn.gconv import GroupConv2d, LiftingConv2d
from equify.nn.kernels import KERNEL_BASES, exact_elements, kernel_transform_basis
from equify.nn.norm import RegularBatchNorm, RegularGroupNorm
from equify.nn.partial import (
    GroupFeatures,
    PartialBatchNorm,
    PartialGroupConv,
    PartialGroupPool,
    PartialLiftingConv,
    kernel_positions,
)
from equify.nn.pool import CentredPool2d, GroupPool, centred_pool_geometry, is_centred
from equify.nn.sampling import PARTIAL_GROUPS, ElementSampler, GroupSamples
from equify.nn.vector_neurons import (
    VNBatchNorm,
    VNInvariant,
    VNLeakyReLU,
    VNLinear,
    VNMaxPool,
    VNMeanPool,
    knn_edge_features,
    knn_indices,
)

__all__ = [
    "KERNEL_BASES",
    "KERNEL_NETS",
    "PARTIAL_GROUPS",
    "CentredPool2d",
    "ElementSampler",
    "GroupConv2d",
    "GroupFeatures",
    "GroupPool",
    "GroupSamples",
    "KernelNet",
    "LiftingConv2d",
    "PartialBatchNorm",
    "PartialGroupConv",
    "PartialGroupPool",
    "PartialLiftingConv",
    "RegularBatchNorm",
    "RegularGroupNorm",
    "VNBatchNorm",
    "VNInvariant",
    "VNLeakyReLU",
    "VNLinear",
    "VNMaxPool",
    "VNMeanPool",
    "centred_pool_geometry",
    "exact_elements",
    "is_centred",
    "kernel_positions",
    "kernel_transform_basis",
    "knn_edge_features",
    "knn_indices",
]
