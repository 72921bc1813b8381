"""The ``equify`` command: ``pretrain``, ``adapt`` (the main job) and ``evaluate``.

Examples::

    equify adapt                                   # defaults: MNIST, small CNN, C4, prior
    equify adapt --group D4 --methods vanilla,augment,canon,canon-prior --output runs/d4
    equify adapt --config my.yaml --set adapt.prior_weight=2 --set data.size=29
    equify adapt --output runs/d4 --resume         # continue an interrupted run
    equify evaluate --output runs/d4               # re-evaluate a finished run
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equify",
        description="Make a pretrained PyTorch model equivariant, and measure it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("adapt", "pretrain (or load) a model, adapt it with every method, evaluate, report"),
        ("pretrain", "train the stand-in pretrained model on upright data"),
        ("evaluate", "re-evaluate the models of a finished run and rewrite its report"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", help="YAML file with configuration sections")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a configuration key, e.g. adapt.group=C8 (repeatable)",
        )
        p.add_argument("--output", help="run directory (output_dir)")
        p.add_argument("--data", help="data set: mnist, fashion-mnist, digits, folder, ...")
        p.add_argument("--root", help="directory of the data set's files (data.root)")
        p.add_argument("--group", help="group: C4, C8, D4, SO2, ...")
        p.add_argument("--methods", help="comma-separated: vanilla,augment,canon,canon-prior")
        p.add_argument("--epochs", type=int, help="adaptation epochs (adapt.epochs)")
        p.add_argument("--checkpoint", help="your pretrained checkpoint (model.checkpoint)")
        p.add_argument("--factory", help="importable package.module:function building it")
        p.add_argument("--device", help="Lightning accelerator: auto, cpu, gpu, ...")
        p.add_argument("--seed", type=int, help="random seed")
        p.add_argument("--resume", action="store_true", help="continue from last checkpoints")
        p.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    pairs = [
        ("output_dir", args.output),
        ("data.name", args.data),
        ("data.root", args.root),
        ("adapt.group", args.group),
        ("adapt.methods", args.methods),
        ("adapt.epochs", args.epochs),
        ("model.checkpoint", args.checkpoint),
        ("model.factory", args.factory),
        ("trainer.accelerator", args.device),
        ("seed", args.seed),
    ]
    # Strings are written as quoted YAML scalars, so that a path such as 2024-05-01 or
    # "a: b" stays a string; the numbers (epochs, seed) are read as numbers.
    out = [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in pairs if v is not None]
    if args.quiet:
        out.append("trainer.progress_bar=false")
    return out + list(args.overrides)


def _summary(results: dict) -> str:
    group = results["group"]
    lines = []
    for name, m in results["methods"].items():
        inv = m["invariance_error"]["max_abs"]
        lines.append(
            f"{name}: upright accuracy {100 * m['upright_accuracy']:.2f}%, {group} orbit "
            f"accuracy {100 * m['orbit']['mean']:.2f}% (worst element "
            f"{100 * m['orbit']['worst']:.2f}%), invariance error {inv:.1e}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``equify`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from equify.training import (
            DEFAULTS,
            format_table,
            load_config,
            run_adapt,
            run_evaluate,
            run_pretrain,
        )
        from equify.training.module import NonFiniteLossError
    except ImportError as err:
        print(f"equify: error: {err}", file=sys.stderr)
        return 2
    # Lightning configures its own INFO loggers on import: keep only its warnings. The data are
    # in-memory tensors (no loader workers needed); LeafSpec is a Lightning/torch version notice.
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # adapt.norm_stats=frozen keeps the predictor's BatchNorm layers in eval mode on purpose
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
    try:
        overrides = _overrides(args)
        config_path = args.config
        if config_path is None and (args.command == "evaluate" or args.resume):
            # evaluate and --resume continue a run: start from its saved configuration
            run_dir = Path(args.output or DEFAULTS["output_dir"])
            saved = run_dir / "config.yaml"
            config_path = str(saved) if saved.is_file() else None
        cfg = load_config(config_path, overrides)
        if args.command == "pretrain":
            info = run_pretrain(cfg, resume=args.resume)
            print(f"pretrained model saved to {info['path']} ({info['seconds']:.0f} s)")
            return 0
        results = (
            run_adapt(cfg, resume=args.resume) if args.command == "adapt" else run_evaluate(cfg)
        )
    except NonFiniteLossError as err:
        print(f"equify: training stopped: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"equify: error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(results))
    print()
    print(_summary(results))
    files = results.get("files", {})
    print(f"\nresults: {files.get('results')}  plots: {Path(cfg['output_dir'])}/*.png")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
