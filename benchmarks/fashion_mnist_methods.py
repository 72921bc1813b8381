"""Every adaptation method on Fashion-MNIST (60k train / 10k test), with zero-shot rows.

Pretrains the stand-in model (small CNN) on upright images, then runs the configured methods
(default: all of them — vanilla and group-augmented fine-tuning, canonicalization without and
with the prior, equitune, λ-equitune, equizero, equiattention) and the zero-shot equitune /
equizero rows, all through ``equify.training.run_adapt`` (the code behind ``equify adapt``), and
writes each method's upright and orbit accuracy, invariance error, predictor passes per input,
time per image (relative to the pretrained model) and training time to JSON.

    python benchmarks/fashion_mnist_methods.py [--groups C4,C8] [--root DIR] [--device auto]
        [--methods vanilla,canon-prior,...] [--max-train N --max-test N] [--threads N]

The data are read from ``--root`` (default: where Debian's dataset-fashion-mnist puts them).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from pathlib import Path

import torch

import equify
from equify.training import load_config, run_adapt


def build_parser(description: str) -> argparse.ArgumentParser:
    """The options of this benchmark (``imagenet_transfer.py`` changes their defaults)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--groups", default="C4,C8", help="comma-separated groups, one run each")
    parser.add_argument("--root", default=None, help="directory of the idx(.gz) files")
    parser.add_argument("--architecture", default="small_cnn")
    parser.add_argument("--weights", default=None, help="model.weights, e.g. imagenet")
    parser.add_argument("--size", type=int, default=None, help="data.size (default: 28)")
    parser.add_argument("--fit", default="pad", help="data.fit: pad or resize")
    parser.add_argument("--angles-step", type=int, default=15, help="evaluate.angles_step")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other configuration key, e.g. adapt.prior_weight=5 (repeatable)",
    )
    parser.add_argument(
        "--zero-shot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the untrained equitune / equizero rows (evaluate.zero_shot)",
    )
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5, help="adaptation epochs per method")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", help="Lightning accelerator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--norm-stats", default="frozen", help="adapt.norm_stats: frozen or update (BatchNorm)"
    )
    parser.add_argument("--max-train", type=int, default=None, help="fewer training images")
    parser.add_argument("--max-test", type=int, default=None, help="fewer test images")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--runs", default="runs/fashion_mnist", help="run directories go here")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "fashion_mnist_methods.json")
    )
    return parser


def run(args: argparse.Namespace, extra: dict | None = None) -> dict:
    """Run every group of ``args`` and write the summary (with ``extra`` merged in) to JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    from equify.training.methods import method_names

    methods = args.methods or ",".join(method_names())
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    summary: dict = {
        "equify": equify.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "settings": vars(args),
        **(extra or {}),
        "runs": {},
    }
    pretrained_dir = Path(args.runs) / "pretrained"
    for name in [g.strip() for g in args.groups.split(",") if g.strip()]:
        run_dir = Path(args.runs) / name
        run_dir.mkdir(parents=True, exist_ok=True)
        shared = pretrained_dir / "pretrained.pt"
        if shared.is_file() and not (run_dir / "pretrained.pt").exists():
            (run_dir / "pretrained.pt").write_bytes(shared.read_bytes())  # one pretrained model
        cfg = load_config(
            None,
            [
                f"output_dir={run_dir}",
                "data.name=fashion-mnist",
                f"data.root={args.root}" if args.root else "data.root=",
                f"model.architecture={args.architecture}",
                f"pretrain.epochs={args.pretrain_epochs}",
                f"pretrain.batch_size={args.batch_size}",
                f"adapt.group={name}",
                f"adapt.epochs={args.epochs}",
                f"adapt.norm_stats={args.norm_stats}",
                f"adapt.batch_size={args.batch_size}",
                f"trainer.accelerator={args.device}",
                "trainer.progress_bar=false",
                f"seed={args.seed}",
                f"data.max_train={args.max_train}" if args.max_train else "data.max_train=",
                f"data.max_test={args.max_test}" if args.max_test else "data.max_test=",
                f"adapt.methods={methods}",
                f"evaluate.zero_shot={str(args.zero_shot).lower()}",
                f"evaluate.angles_step={args.angles_step}",
                f"data.fit={args.fit}",
                f"data.size={args.size}" if args.size else "data.size=",
                f"model.weights={args.weights}" if args.weights else "model.weights=",
                *args.overrides,
            ],
        )
        results = run_adapt(cfg, overwrite=True)  # the benchmark owns its run directories
        if not shared.is_file():
            pretrained_dir.mkdir(parents=True, exist_ok=True)
            shared.write_bytes((run_dir / "pretrained.pt").read_bytes())
        summary["runs"][name] = {
            "device": results["device"],
            "train_seconds": results["train_seconds"],
            "total_seconds": results["total_seconds"],
            "data": results["data"],
            "methods": {
                method: {
                    "upright_accuracy": m["upright_accuracy"],
                    "orbit_accuracy": m["orbit"]["mean"],
                    "orbit_worst_element": m["orbit"]["worst"],
                    "orbit_per_element": m["orbit"]["accuracy"],
                    "all_angles_accuracy": m["angles"]["mean"],
                    "invariance_error": m["invariance_error"]["max_abs"],
                    "identity_fraction": m.get("canonicalization", {}).get(
                        "identity_fraction_upright"
                    ),
                    "predictor_passes_per_input": m["predictor_passes_per_input"],
                    "time_ratio": m["cost"]["time_ratio"],
                    "seconds_per_image": m["cost"]["seconds_per_image_model"],
                    "extra_params_fraction": m["cost"]["extra_params_fraction"],
                }
                for method, m in results["methods"].items()
            },
            "oracle": {
                "orbit_accuracy": results["oracle"]["orbit"]["mean"],
                "orbit_worst_element": results["oracle"]["orbit"]["worst"],
                "orbit_per_element": results["oracle"]["orbit"]["accuracy"],
            }
            if "oracle" in results
            else None,
        }
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))
        for method, m in summary["runs"][name]["methods"].items():
            print(
                f"{name} {method:<16} upright {100 * m['upright_accuracy']:6.2f}%  "
                f"orbit {100 * m['orbit_accuracy']:6.2f}%  "
                f"worst {100 * m['orbit_worst_element']:6.2f}%"
                f"  inv.err {m['invariance_error']:.1e}"
                f"  passes {m['predictor_passes_per_input']:.2f}  time x{m['time_ratio']:.2f}"
            )
    print(f"wrote {args.out}")
    return summary


def main() -> None:
    run(build_parser(__doc__.splitlines()[0]).parse_args())


if __name__ == "__main__":
    main()
