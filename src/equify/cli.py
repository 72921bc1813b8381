"""The ``equify`` command: ``adapt`` (the main job), ``pretrain``, ``train``, ``evaluate``,
``check``.

Examples::

    equify adapt                                   # defaults: MNIST, small CNN, C4, prior
    equify adapt --group D4 --methods vanilla,augment,canon,canon-prior --output runs/d4
    equify adapt --config my.yaml --set adapt.prior_weight=2 --set data.size=29
    equify adapt --output runs/d4 --resume         # continue an interrupted run
    equify evaluate --output runs/d4               # re-evaluate a finished run
    equify adapt --data qm9 --group SO3 --output runs/qm9   # real molecules, 3-D, invariant
    equify pretrain --data digits --output runs/digits
    equify train --model p4cnn --data mnist --size 29 --group C4 --output runs/p4
    equify check --model p4cnn --group C4 --sizes 24:40   # which sizes keep it exact
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


_COMMANDS = {
    "adapt": "pretrain (or load) a model, adapt it with every method, evaluate, report",
    "pretrain": "train the stand-in pretrained model on upright data",
    "train": "train a model from scratch (e.g. --model p4cnn), evaluate it on the orbit, report",
    "evaluate": "re-evaluate the models of a finished run and rewrite its report",
}
_CHECK = "which input sizes keep a model exactly equivariant: a table, a plot, JSON"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equify",
        description="Make a pretrained PyTorch model equivariant, and measure it.",
        epilog="Exit status: 0 done, 1 training failed (NaN loss), 2 bad input or a run "
        "directory in use / holding another run, 130 interrupted (resume with --resume).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in _COMMANDS.items():
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
        p.add_argument(
            "--task",
            help="what the model predicts: classification (default), segmentation "
            "(then --data digit-scenes, fashion-scenes or nuclei; default model unet), "
            "molecules or nbody (3-D, --group SO3 or O3; named by --data qm9 / nbody too)",
        )
        p.add_argument(
            "--data",
            help="data set: mnist, fashion-mnist, digits, folder, ...; for --task "
            "segmentation: digit-scenes, fashion-scenes, nuclei; 3-D: qm9 (real molecules), "
            "nbody (charged particles)",
        )
        p.add_argument("--root", help="directory of the data set's files (data.root)")
        p.add_argument(
            "--fit", choices=("pad", "resize"), help="reach data.size by padding or resizing"
        )
        p.add_argument("--checkpoint", help="your pretrained checkpoint (model.checkpoint)")
        p.add_argument(
            "--factory", help="importable package.module:function building it (needs --checkpoint)"
        )
        p.add_argument("--device", help="Lightning accelerator: auto, cpu, gpu, ...")
        p.add_argument("--seed", type=int, help="random seed")
        p.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
        if name in ("adapt", "evaluate"):
            p.add_argument(
                "--methods",
                help="comma-separated: vanilla,augment,canon,canon-prior"
                + (" (a subset of the run's)" if name == "evaluate" else ""),
            )
        if name in ("adapt", "train"):
            p.add_argument("--group", help="group: C4, C8, D4, SO2, ...")
        if name in ("adapt", "pretrain", "train"):
            p.add_argument(
                "--model",
                help="architecture to train: p4cnn, p4mcnn, partial_gcnn, full_gcnn, "
                "ordinary_cnn, small_cnn, ..."
                if name == "train"
                else "architecture of the pretrained model: small_cnn, mobilenet_v2, resnet18, ...",
            )
            p.add_argument(
                "--weights",
                help="initialise --model with pretrained weights before training on the data: "
                "imagenet (mobilenet_v2) or a weights file (model.weights)",
            )
            p.add_argument(
                "--size",
                type=int,
                help="input size N (data.size); `equify check` tells which sizes keep a strided "
                "P4 CNN exact (N = 4k + 1 for the default p4cnn)"
                if name == "train"
                else "input size N (data.size): images are padded (or with --fit resize, "
                "resized) to N x N",
            )
        if name in ("adapt", "evaluate"):
            p.add_argument(
                "--zero-shot",
                action="store_true",
                help="also evaluate the pretrained model wrapped by equitune and equizero, "
                "untrained (evaluate.zero_shot)",
            )
        if name in ("adapt", "pretrain", "train"):
            section = "adapt" if name == "adapt" else "pretrain"
            p.add_argument("--epochs", type=int, help=f"training epochs ({section}.epochs)")
            p.add_argument(
                "--resume", action="store_true", help="continue from the last checkpoints"
            )
            p.add_argument(
                "--overwrite",
                action="store_true",
                help="replace a run with other settings in the output directory",
            )
    c = sub.add_parser("check", help=_CHECK, description=_CHECK)
    c.add_argument("--model", help="a registered architecture: p4cnn, p4mcnn, p4resnet, ...")
    c.add_argument(
        "--kwargs", default="{}", help='its keyword arguments as JSON, e.g. {"channels": [8, 16]}'
    )
    c.add_argument("--checkpoint", help="your model's checkpoint")
    c.add_argument("--factory", help="importable package.module:function building it")
    c.add_argument("--output", help="an equify adapt / train run directory (with --method)")
    c.add_argument("--method", help="the run's model to check: canon-prior, ..., or pretrained")
    c.add_argument("--group", help="group: C4, D4, C2, ... (default: the run's)")
    c.add_argument("--sizes", help="input sizes: 24:40, 24:40:2 or 27,28,29")
    c.add_argument("--in-channels", type=int, default=None, help="image channels (default 1)")
    c.add_argument("--feature-layer", help="a module whose output is a regular feature map")
    c.add_argument("--report", help="where check.json and exactness.png go")
    c.add_argument("--quiet", action="store_true", help="no info logs")
    return parser


def _overrides(args: argparse.Namespace) -> list[str]:
    epochs_key = "adapt.epochs" if args.command == "adapt" else "pretrain.epochs"
    pairs = [
        ("task", args.task),
        ("output_dir", args.output),
        ("data.name", args.data),
        ("data.root", args.root),
        ("data.fit", args.fit),
        ("adapt.group", getattr(args, "group", None)),
        ("model.architecture", getattr(args, "model", None)),
        ("data.size", getattr(args, "size", None)),
        ("model.weights", getattr(args, "weights", None)),
        ("adapt.methods", getattr(args, "methods", None)),
        (epochs_key, getattr(args, "epochs", None)),
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
    if getattr(args, "zero_shot", False):
        out.append("evaluate.zero_shot=true")
    return out + list(args.overrides)


def _resume_command(argv: list[str]) -> str:
    """The command line that continues an interrupted run."""
    words = ["equify", *argv]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join([w for w in words if w != "--overwrite"])


def _summary(results: dict) -> str:
    from equify.training.tasks import get_task

    return get_task(results.get("task", "classification")).summarize(results)


def _check_subset(cfg: dict, config_path: str | None) -> None:
    """``evaluate --methods`` must name methods the run trained."""
    if config_path is None:
        return
    from equify.training import load_config

    trained = load_config(config_path)["adapt"]["methods"]
    extra = [m for m in cfg["adapt"]["methods"] if m not in trained]
    if extra:
        raise ValueError(
            f"evaluate --methods: {', '.join(extra)} not trained in this run (it has "
            f"{', '.join(trained)})"
        )


def _check_model(args: argparse.Namespace):
    """``(model, group, in_channels, label, default sizes, report dir)`` for ``equify check``."""
    import torch

    from equify.models import create_model, load_model, read_checkpoint

    sources = [bool(args.model), bool(args.checkpoint), bool(args.method)]
    if sum(sources) != 1:
        raise ValueError(
            "equify check needs exactly one model: --model NAME, --checkpoint PATH (with "
            "--factory for your own code), or --output RUN --method METHOD"
        )
    if args.factory and not args.checkpoint:
        raise ValueError("--factory builds the model of a checkpoint: give --checkpoint too")
    channels = args.in_channels or 1
    if args.method:
        from equify.training import load_adapted, load_config
        from equify.training.runner import _load_pretrained

        run = Path(args.output or "runs/default")
        if not (run / "config.yaml").is_file():
            raise FileNotFoundError(f"no equify run in {run} (no config.yaml)")
        cfg = load_config(run / "config.yaml", saved_run=True)
        from equify.training.tasks import task_of

        if not task_of(cfg).image_task:
            raise ValueError(
                f"equify check measures which image sizes keep a strided network exact; the run "
                f"in {run} is a 3-D task ({cfg['task']}) with no image size"
            )
        group = args.group or cfg["adapt"]["group"]
        if args.method == "pretrained":
            model = _load_pretrained(run / "pretrained.pt")
            channels = args.in_channels or int(model.mean.shape[1])
        elif (
            args.method not in cfg["adapt"]["methods"]
            or not (run / "models" / f"{args.method}.pt").is_file()
        ):
            trained = [m for m in cfg["adapt"]["methods"] if (run / "models" / f"{m}.pt").is_file()]
            raise ValueError(
                f"the run in {run} has no model {args.method!r}; check one of: "
                + ", ".join([*trained, "pretrained"])
            )
        else:
            model = load_adapted(run, args.method)
            meta = read_checkpoint(run / "models" / f"{args.method}.pt").metadata
            channels = args.in_channels or int(meta.get("in_channels", 1))
        n = 28
        if (run / "results.json").is_file():
            shape = json.loads((run / "results.json").read_text()).get("data", {})
            n = int(shape.get("image_shape", [1, 28])[-1])
        sizes = list(range(max(1, n - 4), n + 5))
        return model, group, channels, f"{run}:{args.method}", sizes, run / "check"
    if args.output:
        raise ValueError("--output names a run directory: use it with --method (or --report)")
    if not args.group:
        raise ValueError("--group is needed (C4, D4, ...) unless --output/--method name a run")
    try:
        kwargs = json.loads(args.kwargs)
    except ValueError:
        raise ValueError(f"--kwargs must be a JSON object, got {args.kwargs!r}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--kwargs must be a JSON object, got {args.kwargs!r}")
    if "in_channels" in kwargs:
        raise ValueError("give the image channels with --in-channels, not in --kwargs")
    if args.model:
        torch.manual_seed(0)
        try:
            model = create_model(args.model, in_channels=channels, **kwargs)
        except TypeError as err:
            raise ValueError(f"--kwargs do not fit the model {args.model!r}: {err}") from None
        label = args.model
    else:
        read_checkpoint(args.checkpoint)  # a clear error for a missing or corrupt file first
        model = load_model(args.checkpoint, factory=args.factory, factory_kwargs=kwargs or None)
        label = str(args.checkpoint)
    return model, args.group, channels, label, list(range(24, 41)), Path("runs") / "check"


def _check(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from equify.training.check import parse_sizes, run_check

        model, group, channels, label, sizes, out = _check_model(args)
        if args.sizes:
            sizes = parse_sizes(args.sizes)
        report = Path(args.report) if args.report else out
        done = run_check(model, group, sizes, channels, report, label, args.feature_layer)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"equify: error: {err}", file=sys.stderr)
        return 2
    print(done["table"])
    print(f"\nreport: {done['files'].get('json')}  plot: {done['files'].get('plot', '-')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``equify`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
        from equify.training.rundir import is_rank_zero
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
    # a resumed run keeps the earlier rows of metrics.csv itself (runner._merge_metrics)
    warnings.filterwarnings("ignore", message=".*Previous log files in this directory.*")
    if args.command == "check":
        return _check(args)
    resume = bool(getattr(args, "resume", False))
    overwrite = bool(getattr(args, "overwrite", False))
    try:
        if resume and overwrite:
            raise ValueError("--resume continues the run in --output; --overwrite replaces it")
        overrides = _overrides(args)
        config_path = args.config
        saved_run = False
        if config_path is None and (args.command == "evaluate" or resume):
            # evaluate and --resume continue a run: start from its saved configuration
            run_dir = Path(args.output or DEFAULTS["output_dir"])
            saved = run_dir / "config.yaml"
            config_path = str(saved) if saved.is_file() else None
            saved_run = config_path is not None
        cfg = load_config(config_path, overrides, saved_run=saved_run)
        if args.command == "evaluate" and args.methods:
            _check_subset(cfg, config_path)
        if args.command == "pretrain":
            info = run_pretrain(cfg, resume=resume, overwrite=overwrite)
            if is_rank_zero():
                print(f"pretrained model saved to {info['path']} ({info['seconds']:.0f} s)")
            return 0
        if args.command == "adapt":
            results = run_adapt(cfg, resume=resume, overwrite=overwrite)
        elif args.command == "train":
            from equify.training import run_train

            results = run_train(cfg, resume=resume, overwrite=overwrite)
        else:
            results = run_evaluate(cfg)
    except NonFiniteLossError as err:
        print(f"equify: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "evaluate":
            print("\nequify: interrupted; run it again to evaluate", file=sys.stderr)
        else:
            print(
                "\nequify: interrupted. The checkpoints of the finished epochs are kept; "
                f"continue with:\n  {_resume_command(argv)}",
                file=sys.stderr,
            )
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"equify: error: {err}", file=sys.stderr)
        return 2
    if results is None:  # a DDP worker process: rank 0 reports
        return 0
    print()
    print(format_table(results))
    print()
    print(_summary(results))
    files = results.get("files", {})
    print(f"\nresults: {files.get('results')}  plots: {Path(cfg['output_dir'])}/*.png")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
