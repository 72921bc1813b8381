"""Rotation consistency of a real ImageNet MobileNetV2 on real photographs, without labels.

The bare model's top-1 on an upright photo is the label. For C4 and C8 this measures, on
held-out photos, how often the top-1 of each rotated photo equals it: the bare model, equitune
(group averaging) and equizero wrapping it (no training), and a canonicalizer trained with the
prior and distillation to the upright model's predictions (predictor frozen; no labels). It also
reports how many upright photos changed their prediction, and draws one held-out photo under the
group with the bare and the adapted model's top-1 (``imagenet_photos_<group>.png``).

Photos: every photo :func:`equify.data.available_photos` finds (scikit-image, scikit-learn and,
when ``apt-get install opencv-doc`` ran, Debian's OpenCV samples); a seeded split by photo into
train and test; random square crops of the train photos, the centre square and random crops of
the test photos.

    python benchmarks/imagenet_photos.py [--size 160] [--groups C4,C8] [--epochs 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch

import equify
from equify.actions import ImageAction
from equify.analysis import rotation_consistency
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel, ImagePreparation
from equify.canonicalization.discrete import is_exact_group
from equify.data import (
    RotationSet,
    available_photos,
    centre_view,
    load_photo,
    random_crops,
    split_photos,
)
from equify.models import create_model, load_pretrained_weights, top_labels
from equify.symmetrization import EquiZero, GroupAveraging
from equify.training.distill import distill_canonicalizer

RESULTS = Path(__file__).parent / "results"


def _consistency(model, images, group, reference) -> dict:
    ev = rotation_consistency(model, images, group, reference=reference, batch_size=32)
    return {
        "per_element": dict(zip(ev.names, ev.accuracy, strict=True)),
        "mean": ev.mean,
        "worst": ev.worst,
        "upright_kept": ev.accuracy[0],
    }


def _figure(photo: torch.Tensor, name: str, group, bare, adapted, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    act = ImageAction()
    labels = RotationSet.parse(group).names()
    views = torch.cat([act.apply(photo[None], g, group) for g in range(group.order)])
    with torch.no_grad():
        bare_top = [t[0] for t in top_labels(bare(views))]
        adapted_top = [t[0] for t in top_labels(adapted(views))]
    fig, axes = plt.subplots(1, group.order, figsize=(2.3 * group.order, 3.0))
    for g, ax in enumerate(axes):
        ax.imshow(views[g].permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(
            f"{labels[g]}\nbare: {bare_top[g]}\nadapted: {adapted_top[g]}",
            fontsize=7,
        )
        ax.axis("off")
    fig.suptitle(f"{name} (held out), {group}: MobileNetV2 ImageNet top-1", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pictured(bare, test: list[str], loaded: dict, group, size: int) -> str:
    """The held-out photo to draw: among those the bare model labels with confidence >= 0.5
    upright (a label a reader can check), the one whose top-1 changes under the most elements
    (all photos when none is that confident)."""
    views = torch.stack([centre_view(loaded[n], size) for n in test])
    with torch.no_grad():
        confidence = torch.softmax(bare(views), 1).amax(1)
    changes = [
        sum(1 - a for a in rotation_consistency(bare, views[i : i + 1], group).accuracy)
        for i in range(len(test))
    ]
    sure = [i for i in range(len(test)) if confidence[i] >= 0.5] or list(range(len(test)))
    return test[max(sure, key=lambda i: (changes[i], float(confidence[i])))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="crop side in pixels")
    parser.add_argument("--groups", default="C4,C8")
    parser.add_argument("--train-crops", type=int, default=24, help="random crops per photo")
    parser.add_argument("--test-crops", type=int, default=8, help="random crops per test photo")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--prior-weight", type=float, default=1.0)
    parser.add_argument("--view", type=int, default=64, help="the canonicalizer's view size")
    parser.add_argument(
        "--figure-photo",
        default=None,
        help="the pictured held-out photo (default: see _pictured)",
    )
    parser.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "imagenet_photos.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = available_photos()
    names = list(photos)
    train, test = split_photos(names, args.test_fraction, args.seed)
    loaded = {n: load_photo(n) for n in names}
    train_x = random_crops([loaded[n] for n in train], args.size, args.train_crops, seed=args.seed)
    test_x = torch.cat(
        [
            torch.stack([centre_view(loaded[n], args.size) for n in test]),
            random_crops([loaded[n] for n in test], args.size, args.test_crops, seed=args.seed + 1),
        ]
    )
    bare = create_model("mobilenet_v2")
    load_pretrained_weights(bare, "imagenet")
    bare.eval()
    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "model": "mobilenet_v2, ImageNet-1k (torchvision's mobilenet_v2-b0353104.pth)",
        "size": args.size,
        "photos": {"train": train, "test": test},
        "images": {"train": len(train_x), "test": len(test_x)},
        "settings": vars(args),
        "groups": {},
    }
    for gname in args.groups.split(","):
        g = equify.group(gname)
        entry: dict = {}
        start = time.perf_counter()
        entry["bare"] = _consistency(bare, test_x, g, bare)
        if args.zero_shot:
            entry["equitune"] = _consistency(GroupAveraging(bare, g).eval(), test_x, g, bare)
            entry["equizero"] = _consistency(EquiZero(bare, g).eval(), test_x, g, bare)
        entry["zero_shot_seconds"] = time.perf_counter() - start
        torch.manual_seed(args.seed)
        prep = ImagePreparation(size=args.view, mask=None if is_exact_group(g) else "circle")
        can = DiscreteCanonicalizer(g, in_channels=3, prior="identity", preparation=prep)
        adapted = EquivariantModel(copy.deepcopy(bare), can)
        entry["untrained_canonicalizer"] = _consistency(adapted, test_x, g, bare)
        start = time.perf_counter()
        entry["training"] = distill_canonicalizer(
            adapted,
            train_x,
            teacher=bare,
            val_images=test_x[: len(test)],
            epochs=args.epochs,
            batch_size=args.batch,
            lr=args.lr,
            prior_weight=args.prior_weight,
            seed=args.seed,
            accelerator="cpu" if not torch.cuda.is_available() else "auto",
        )
        entry["training_seconds"] = time.perf_counter() - start
        adapted.eval()
        entry["adapted"] = _consistency(adapted, test_x, g, bare)
        entry["adapted"]["upright_changed"] = 1.0 - entry["adapted"]["upright_kept"]
        results["groups"][gname] = entry
        zero = "".join(
            f", {k} {entry[k]['mean']:.3f}" for k in ("equitune", "equizero") if k in entry
        )
        print(
            f"{gname}: consistency (mean / worst) bare {entry['bare']['mean']:.3f} / "
            f"{entry['bare']['worst']:.3f}{zero}, adapted {entry['adapted']['mean']:.3f} / "
            f"{entry['adapted']['worst']:.3f}; upright changed "
            f"{100 * entry['adapted']['upright_changed']:.1f}%"
        )
        pictured = args.figure_photo or _pictured(bare, test, loaded, g, args.size)
        fig = Path(args.out).with_name(f"imagenet_photos_{gname}.png")
        _figure(centre_view(loaded[pictured], args.size), pictured, g, bare, adapted, fig)
        entry["figure"] = {"file": fig.name, "photo": pictured}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
