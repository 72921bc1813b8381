"""Partial G-CNNs against the full G-CNN and an ordinary CNN (Romero & Lohit, NeurIPS 2022).

The paper's qualitative result, on our real digits: full equivariance is at chance on MNIST6-180
(SE(2): a 6 turned by 180° is the other class) and MNIST6-M (E(2): a mirrored 6 is the other
class), partial equivariance solves both, and on rotated MNIST the partial and the full G-CNN
are equal and both above an ordinary CNN.

Every model is trained by the main job, ``equify train`` (Lightning, config, checkpoints, the
report), with the same seed, optimiser (Adam, ``pretrain.lr``), batch and epochs per data set;
the numbers are read from each run's ``results.json``: test accuracy (the rotated-MNIST test set
is itself rotated), the learned θ / reflection probability per layer after every epoch, and the
training seconds per epoch. A second, interleaved measurement times one training step (forward
and backward, batch 64, 28x28) of the three models side by side in one process, as ratios.

    python benchmarks/partial_gcnn.py [--epochs-six 15] [--epochs-rot 10] [--width 12]
        [--samples 8] [--device cpu] [--only mnist6-180,...]

Writes ``benchmarks/results/partial_gcnn.json`` and ``partial_gcnn_theta.png``; the runs stay in
``--runs`` (default a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from equify.cli import main as equify_main
from equify.models import create_model, load_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# data set -> (group of the G-CNNs, classes)
DATASETS = {"mnist6-180": ("SE2", 2), "mnist6-m": ("E2", 2), "rotated-mnist": ("SE2", 10)}
MODELS = ("partial_gcnn", "full_gcnn", "ordinary_cnn")


def run_one(data: str, model: str, epochs: int, args, runs: Path) -> dict:
    group, _ = DATASETS[data]
    out = runs / f"{data}_{model}"
    sets = [f"model.kwargs.width={args.width}", "evaluate.angles_step=30"]
    if model != "ordinary_cnn":
        sets += [f"model.kwargs.group={group}", f"model.kwargs.samples={args.samples}"]
    argv = ["train", "--model", model, "--data", data, "--group", "C4", "--epochs", str(epochs)]
    argv += ["--device", args.device, "--seed", str(args.seed), "--output", str(out)]
    argv += ["--overwrite", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    start = time.perf_counter()
    code = equify_main(argv)
    if code != 0:
        raise SystemExit(f"equify train failed for {data} / {model} (exit {code})")
    r = json.loads((out / "results.json").read_text())
    m = r["methods"][model]
    row = {
        "data": data,
        "model": model,
        "group": group if model != "ordinary_cnn" else None,
        "epochs": epochs,
        "test_accuracy": m["upright_accuracy"],
        "c4_orbit_accuracy": m["orbit"]["mean"],
        "train_seconds": r["train_seconds"][model],
        "seconds_per_epoch": r["train_seconds"][model] / epochs,
        "wall_seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in load_model(out / "pretrained.pt").parameters()),
        "run_dir": str(out),
    }
    if "learned_equivariance" in r:
        row["learned_equivariance"] = r["learned_equivariance"]
    print(
        f"{data:>14} {model:>13}: test {100 * row['test_accuracy']:.2f}%  "
        f"{row['seconds_per_epoch']:.1f} s/epoch",
        flush=True,
    )
    return row


def step_times(width: int, samples: int, repeats: int) -> dict:
    """Median seconds of one training step per model, interleaved, and ratios to the CNN."""
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    models = {
        "ordinary_cnn": create_model("ordinary_cnn", width=width),
        "partial_gcnn SE2": create_model("partial_gcnn", group="SE2", width=width, samples=samples),
        "full_gcnn SE2": create_model("full_gcnn", group="SE2", width=width, samples=samples),
        "partial_gcnn E2": create_model("partial_gcnn", group="E2", width=width, samples=samples),
        "full_gcnn E2": create_model("full_gcnn", group="E2", width=width, samples=samples),
    }
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(repeats + 1):
        for name, m in models.items():
            m.train()
            t = time.perf_counter()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            m.zero_grad()
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "batch": 64,
        "size": 28,
        "median_seconds": med,
        "ratio_to_ordinary_cnn": {k: v / med["ordinary_cnn"] for k, v in med.items()},
        "parameters": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
    }


def angle_errors(rows: list[dict], images: torch.Tensor) -> dict:
    """Relative logit error of each trained G-CNN under rotations by 90°, 45°, 30° and 22.5°.

    Multiples of 90° are exact at θ = 1 (the evaluation samples are then a group containing C4);
    other angles interpolate the image and are only approximately equivariant.
    """
    from equify.actions import ImageAction
    from equify.data.rotated import angle_matrices
    from equify.models import read_checkpoint
    from equify.training.module import Normalized

    out = {}
    act = ImageAction()
    for r in rows:
        if r["model"] == "ordinary_cnn":
            continue
        path = Path(r["run_dir"]) / "pretrained.pt"
        meta = read_checkpoint(path).metadata["normalization"]
        net = Normalized(load_model(path), torch.tensor(meta["mean"]), torch.tensor(meta["std"]))
        net = net.double().eval()
        x = images.double()
        with torch.no_grad():
            base = net(x)
            errs = {}
            for deg in (90.0, 45.0, 30.0, 22.5):
                turned = act.apply(x, angle_matrices(torch.full((len(x),), deg)))
                errs[f"{deg:g}"] = float((net(turned) - base).abs().max() / base.abs().max())
        out[f"{r['data']} / {r['model']}"] = errs
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learned = [r for r in rows if r["model"] == "partial_gcnn" and "learned_equivariance" in r]
    if not learned:
        return
    fig, axes = plt.subplots(1, len(learned), figsize=(5 * len(learned), 3.8), squeeze=False)
    for ax, r in zip(axes[0], learned, strict=True):
        hist = r["learned_equivariance"]["history"]
        epochs = [h["epoch"] for h in hist]
        for layer in hist[-1]["layers"]:
            ax.plot(
                epochs,
                [h["layers"][layer]["theta"] for h in hist],
                marker="o",
                ms=3,
                label=f"{layer} θ",
            )
            if "reflection_probability" in hist[-1]["layers"][layer]:
                ax.plot(
                    epochs,
                    [h["layers"][layer]["reflection_probability"] for h in hist],
                    ls="--",
                    label=f"{layer} p",
                )
        ax.set_title(f"{r['data']} ({r['group']}): test {100 * r['test_accuracy']:.1f}%")
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs-six", type=int, default=15)
    p.add_argument("--epochs-rot", type=int, default=10)
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", default=",".join(DATASETS))
    p.add_argument("--runs", default=None)
    p.add_argument("--output", default=str(RESULTS / "partial_gcnn.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="partial_gcnn_"))
    rows = []
    for data in args.only.split(","):
        epochs = args.epochs_rot if data == "rotated-mnist" else args.epochs_six
        for model in MODELS:
            rows.append(run_one(data, model, epochs, args, runs))
    report = {
        "benchmark": "partial_gcnn",
        "command": "python benchmarks/partial_gcnn.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, "")
        ),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "settings": {
            "width": args.width,
            "samples": args.samples,
            "seed": args.seed,
            "optimizer": "Adam, equify train defaults (pretrain.lr, batch 64)",
        },
        "runs": rows,
        "step_time": step_times(args.width, args.samples, args.repeats),
    }
    from equify.data import load_splits

    probe = load_splits("mnist").test.images[:64]
    report["relative_logit_error_by_angle"] = angle_errors(rows, probe)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    plot(rows, out.with_name(out.stem + "_theta.png"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
