"""The README quick start (tests/test_docs.py checks that the two stay identical)."""

import torch
from torch import nn

import equify
from equify import ImageAction, InvariantAction

C4 = equify.group("C4")  # rotations by multiples of 90°
x = torch.randn(8, 3, 28, 28)  # a batch of images (B, C, H, W)

# Group elements act on data through actions; 90° rotations and flips are exact permutations.
rotated = ImageAction().apply(x, 1, C4)  # element 1 of C4: 90° counter-clockwise
assert torch.equal(rotated, torch.rot90(x, 1, dims=(-2, -1)))

# An ordinary CNN classifier is not rotation invariant ...
cnn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10)).eval()
report = equify.equivariance_error(cnn, x, C4, ImageAction(), InvariantAction())
print(report)  # per-element max / mean error, in float64


# ... averaging its logits over the group makes it exactly invariant.
def averaged(t):
    return torch.stack([cnn(ImageAction().apply(t, g, C4)) for g in range(4)]).mean(0)


equify.assert_equivariant(averaged, x, C4, ImageAction(), InvariantAction())
