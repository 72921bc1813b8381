"""The README quick start (tests/test_docs.py checks that the two stay identical)."""

import torch
from torch import nn

import equify
from equify import ImageAction, InvariantAction

# Any pretrained classifier that is not rotation invariant (a CNN with a flatten + linear head).
predictor = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 28 * 28, 10)
)
x = torch.rand(16, 1, 28, 28)  # a batch of images (B, C, H, W)
D4 = equify.group("D4")  # the 4 rotations by multiples of 90° and 4 reflections

# The checker applies every element of D4 and compares the outputs in float64.
print(equify.equivariance_error(predictor.eval(), x, D4, ImageAction(), InvariantAction()))

# Wrap it: a small D4-equivariant network picks an orientation c(x) per image, the unchanged
# predictor sees c(x)⁻¹·x. The wrapped model is invariant, whatever the predictor is.
canonicalizer = equify.DiscreteCanonicalizer(group="D4", in_channels=1)
model = equify.EquivariantModel(predictor, canonicalizer, out_action=InvariantAction())
equify.assert_equivariant(model.eval(), x, D4, ImageAction(), InvariantAction())

# One training step: the task loss plus the prior that keeps canonical orientations upright,
# where the pretrained predictor is at home (Mondal et al., 2023).
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
labels = torch.randint(0, 10, (16,))
loss = nn.functional.cross_entropy(model(x), labels) + 1.0 * model.prior_loss()
loss.backward()
optimizer.step()
print(model.diagnostics())  # fraction mapped to the identity, histogram of chosen elements
