"""The groups the layer and network tests sweep over."""

from equify.groups import CyclicGroup, DihedralGroup

#: Groups whose elements are grid symmetries: filters rotate exactly, layers are exact.
EXACT_GROUPS = [CyclicGroup(n) for n in (1, 2, 4)] + [DihedralGroup(n) for n in (1, 2, 4)]
#: Groups with non-90° rotations: filters are interpolated, layers are approximate.
INTERPOLATED_GROUPS = [
    CyclicGroup(3),
    CyclicGroup(6),
    CyclicGroup(8),
    DihedralGroup(3),
    DihedralGroup(8),
]
