"""Group-equivariant layers for planar finite groups (``C_n``, ``D_n``), pure PyTorch.

Regular feature maps are ``(B, C·|G|, H, W)`` with the group axis innermost (see
:class:`~equify.actions.RegularAction`). Every layer has ``export()``, which returns plain PyTorch
modules with the expanded weights precomputed.
"""

from equify.nn.gconv import GroupConv2d, LiftingConv2d
from equify.nn.kernels import KERNEL_BASES, exact_elements, kernel_transform_basis
from equify.nn.norm import RegularBatchNorm, RegularGroupNorm
from equify.nn.pool import CentredPool2d, GroupPool, centred_pool_geometry, is_centred

__all__ = [
    "KERNEL_BASES",
    "CentredPool2d",
    "GroupConv2d",
    "GroupPool",
    "LiftingConv2d",
    "RegularBatchNorm",
    "RegularGroupNorm",
    "centred_pool_geometry",
    "exact_elements",
    "is_centred",
    "kernel_transform_basis",
]
