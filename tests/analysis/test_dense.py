"""Segmentation on the orbit: confusion matrices, mIoU, equivariance of dense outputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from equify.analysis import (
    confusion_matrix,
    dense_equivariance_error,
    evaluate_segmentation_oracle,
    evaluate_segmentation_orbits,
    segmentation_scores,
)
from equify.data import SegmentationDataset
from equify.groups import group as parse_group


def _scenes(n: int = 6, size: int = 9, classes: int = 3) -> SegmentationDataset:
    g = torch.Generator().manual_seed(1)
    masks = torch.randint(classes, (n, size, size), generator=g)
    images = (masks.float() / (classes - 1)).unsqueeze(1)  # the label is a function of the pixel
    return SegmentationDataset(images, masks, [f"c{k}" for k in range(classes)])


class Pixelwise(nn.Module):
    """Reads each pixel's label off its value: a 1x1 map, equivariant to every permutation."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.linspace(0, 1, self.classes, dtype=x.dtype, device=x.device)
        return -((x - centres.view(1, -1, 1, 1)) ** 2)


class Positional(Pixelwise):
    """Pixelwise, but wrong in the top-left quarter: not equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x).clone()
        h, w = x.shape[-2:]
        out[:, :, : h // 2, : w // 2] = out[:, :, : h // 2, : w // 2].flip(1)
        return out


def test_confusion_matrix_and_scores_by_hand():
    target = torch.tensor([[0, 0, 1, 2]])
    pred = torch.tensor([[0, 1, 1, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    s = segmentation_scores(conf)
    # IoU: class 0 = 1/2, class 1 = 1/3, class 2 = 0/1
    assert s["iou"] == pytest.approx([0.5, 1 / 3, 0.0])
    assert s["miou"] == pytest.approx((0.5 + 1 / 3 + 0.0) / 3)
    assert s["pixel_accuracy"] == pytest.approx(0.5)


def test_absent_classes_have_no_iou_and_do_not_count():
    conf = confusion_matrix(
        torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long), 3
    )
    s = segmentation_scores(conf)
    assert s["miou"] == 1.0 and math.isnan(s["iou"][1]) and math.isnan(s["iou"][2])


@pytest.mark.parametrize(
    "pred, target, k, message",
    [
        (torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2, "shape"),
        (torch.zeros(4, dtype=torch.long), torch.full((4,), 5), 2, "labels must lie"),
        (torch.full((4,), 3), torch.zeros(4, dtype=torch.long), 2, "more channels"),
    ],
)
def test_confusion_matrix_rejects_bad_input(pred, target, k, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(pred, target, k)


def test_confusion_matrix_refuses_float_predictions():
    with pytest.raises(TypeError, match="integer predictions"):
        confusion_matrix(torch.rand(4), torch.zeros(4, dtype=torch.long), 2)


@pytest.mark.parametrize("group", ["C4", "D4"])
@pytest.mark.parametrize("size", [8, 9])
def test_an_equivariant_segmenter_scores_the_same_on_the_orbit(group, size):
    data = _scenes(size=size)
    up, orbit = evaluate_segmentation_orbits(Pixelwise(), data, [[0.0], group], batch_size=4)
    assert up.miou[0] == 1.0 and up.pixel_accuracy[0] == 1.0
    assert orbit.miou == [1.0] * parse_group(group).order
    assert orbit.mean == orbit.worst == 1.0
    assert len(orbit.names) == parse_group(group).order
    d = orbit.to_dict()
    assert d["accuracy"] == d["miou"] and d["pixel_accuracy_mean"] == 1.0


def test_a_positional_segmenter_fails_the_same_check():
    up, orbit = evaluate_segmentation_orbits(Positional(), _scenes(), [[0.0], "C4"], batch_size=4)
    assert orbit.miou[0] == up.miou[0] < 1.0
    assert len(set(orbit.miou)) > 1  # the score depends on the element


def test_shared_transformations_give_the_numbers_of_separate_calls():
    data = _scenes()
    together = evaluate_segmentation_orbits(Positional(), data, ["C4", [0, 45, 90]], 4)
    alone = [
        evaluate_segmentation_orbits(Positional(), data, [r], 4)[0] for r in ("C4", [0, 45, 90])
    ]
    assert [t.miou for t in together] == [a.miou for a in alone]


def test_the_oracle_is_upright_for_exact_elements_even_for_a_positional_model():
    data = _scenes()
    up = evaluate_segmentation_orbits(Positional(), data, [[0.0]], 4)[0]
    oracle = evaluate_segmentation_oracle(Positional(), data, "D4", 4)
    assert oracle.miou == pytest.approx([up.miou[0]] * 8)


def test_dense_equivariance_error_zero_for_pixelwise_and_not_for_positional():
    x = _scenes().images.double()
    ok = dense_equivariance_error(Pixelwise(), x, parse_group("D4"))
    assert ok["max_abs"] == 0.0 and ok["label_agreement"] == 1.0
    bad = dense_equivariance_error(Positional(), x, parse_group("D4"))
    assert bad["max_abs"] > 0.1 and bad["label_agreement"] < 1.0


def test_bad_inputs_are_refused():
    data = _scenes()
    with pytest.raises(TypeError, match="segmentation dataset"):
        evaluate_segmentation_orbits(Pixelwise(), torch.zeros(2, 1, 4, 4), ["C4"])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_segmentation_orbits(Pixelwise(), data, ["C4"], batch_size=0)
    with pytest.raises(ValueError, match="2 class channels, the data set has 3"):
        evaluate_segmentation_orbits(Pixelwise(classes=2), data, ["C4"])
    with pytest.raises(ValueError, match=r"logits \(B, K, H, W\)"):
        evaluate_segmentation_orbits(lambda x: x.mean((1, 2, 3)), data, ["C4"])
    with pytest.raises(ValueError, match="non-empty"):
        dense_equivariance_error(Pixelwise(), torch.zeros(0, 1, 4, 4), parse_group("C4"))
    with pytest.raises(TypeError, match="finite group"):
        dense_equivariance_error(Pixelwise(), data.images, parse_group("SO2"))


def test_an_empty_test_set_gives_no_scores_rather_than_a_crash():
    empty = _scenes().subset(torch.arange(0))
    orbit = evaluate_segmentation_orbits(Pixelwise(), empty, ["C4"])[0]
    assert all(math.isnan(v) for v in orbit.miou) and orbit.count == 0
