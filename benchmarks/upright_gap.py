"""Ablation of canonicalization + prior's training and capacity: what closes the upright gap.

Every variant is ``equify adapt --methods canon-prior`` on the same data with some settings
changed (``--set``), all around one pretrained model (pretrained once, copied into each run
directory), through ``equify.training.run_adapt``. For each group and variant the JSON keeps the
pretrained model's upright accuracy, canonicalization + prior's upright and orbit accuracy, its
identity fraction on upright test images, the invariance error, the canonicalizer's extra
parameters and time ratio, and the oracle's orbit accuracy.

    python benchmarks/upright_gap.py [--groups C4,D4] [--variants "defaults;earlier defaults"]
        [--data mnist | --data fashion-mnist --root DIR --max-train N --max-test N]
        [--resume]   # keep the variants already in the JSON
    python benchmarks/upright_gap.py --probe --groups D4   # the canonicalizer alone
    python benchmarks/upright_gap.py --image-actions RUN_DIR   # C8: interpolation and padding

``--probe`` trains only the canonicalization network (:class:`GroupScoreNetwork`, several
depths and widths) on the identity prior — "which element turns this training image upright?"
(always the identity, and by equivariance every other element for the turned images) — and
reports the fraction of held-out upright test images it keeps upright: the capacity question
without the predictor.

The default data are those of ``equify adapt`` (MNIST, small CNN, 6 pretraining epochs, 10
adaptation epochs); 1–2 minutes per variant and group on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

import equify
from equify.training import load_config, run_adapt

#: equify's image-classification settings before this ablation: two G-conv blocks, Adam at
#: constant rates, canonicalizer rate 2e-3, prior weight 1, no warm-up, 5 epochs
EARLIER = [
    "adapt.canonicalizer_layers=2",
    "adapt.lr_schedule=constant",
    "adapt.lr_canonicalizer=2e-3",
    "adapt.prior_weight=1",
    "adapt.prior_warmup_epochs=0",
    "adapt.epochs=5",
]

#: name -> settings on top of equify's current defaults
VARIANTS: dict[str, list[str]] = {
    "earlier defaults": EARLIER,
    "earlier + 3 blocks": [*EARLIER, "adapt.canonicalizer_layers=3"],
    "earlier + one-cycle rate": [*EARLIER, "adapt.lr_schedule=onecycle"],
    "earlier + 10 epochs": [*EARLIER, "adapt.epochs=10"],
    "defaults, 2 blocks": ["adapt.canonicalizer_layers=2"],
    "defaults, constant rate": ["adapt.lr_schedule=constant"],
    "defaults, canonicalizer lr 2e-3": ["adapt.lr_canonicalizer=2e-3"],
    "defaults, prior weight 1": ["adapt.prior_weight=1"],
    "defaults, no warm-up": ["adapt.prior_warmup_epochs=0"],
    "defaults, 5 epochs": ["adapt.epochs=5"],
    "defaults": [],
    "defaults, data-driven prior": ["adapt.prior=data"],
    "defaults, beta 2": ["adapt.beta=2"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="C4,D4")
    parser.add_argument("--variants", default=None, help="';'-separated names (default: all)")
    parser.add_argument("--data", default="mnist", help="data.name")
    parser.add_argument("--root", default=None, help="data.root")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="default: equify's")
    parser.add_argument("--epochs", type=int, default=None, help="adapt.epochs (default: equify's)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--angles-step", type=int, default=90, help="evaluate.angles_step")
    parser.add_argument("--device", default="auto", help="Lightning accelerator")
    parser.add_argument("--seed", type=int, default=0, help="seed (pretraining and adaptation)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runs", default="runs/upright_gap")
    parser.add_argument("--out", default="benchmarks/results/upright_gap.json")
    parser.add_argument("--resume", action="store_true", help="skip variants already in --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--probe", action="store_true", help="the canonicalizer alone (above)")
    parser.add_argument("--probe-epochs", type=int, default=10)
    parser.add_argument("--probe-out", default="benchmarks/results/upright_gap_probe.json")
    parser.add_argument("--image-actions", default=None, metavar="RUN_DIR", help="see above")
    parser.add_argument(
        "--image-actions-out", default="benchmarks/results/upright_gap_image_actions.json"
    )
    return parser


def image_actions(args: argparse.Namespace) -> None:
    """Oracle and canon-prior orbit accuracy for each interpolation / padding of the inverse."""
    from equify.actions import ImageAction
    from equify.analysis import evaluate_oracle, evaluate_orbit
    from equify.training import load_adapted
    from equify.training.runner import _load_pretrained, prepare_data
    from equify.training.tasks import orbit_rotations

    run = Path(args.image_actions)
    cfg = load_config(run / "config.yaml")
    cfg["output_dir"] = str(run)
    data = prepare_data(cfg)
    bare = _load_pretrained(run / "pretrained.pt").eval()
    model = load_adapted(run, "canon-prior")
    rotations = orbit_rotations(cfg["adapt"]["group"])
    rows = []
    for interpolation in ("bilinear", "bicubic"):
        for padding in ("zeros", "reflection", "border"):
            back = ImageAction(interpolation=interpolation, padding=padding)
            oracle = evaluate_oracle(bare, data.test, rotations, 500, inverse_action=back)
            model.canonicalizer.in_action = back
            with torch.no_grad():
                canon = evaluate_orbit(model, data.test, rotations, 500)
            rows.append(
                {
                    "interpolation": interpolation,
                    "padding": padding,
                    "oracle_orbit": oracle.mean,
                    "oracle_worst": oracle.worst,
                    "canon_prior_orbit": canon.mean,
                    "canon_prior_worst": canon.worst,
                    "canon_prior_upright": canon.accuracy[0],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    _write(
        Path(args.image_actions_out),
        {
            "what": "orbit accuracy for each image action that turns orbit images back "
            "(benchmarks/upright_gap.py --image-actions): the oracle and the trained canon-prior",
            "run": str(run),
            "group": cfg["adapt"]["group"],
            "data": cfg["data"]["name"],
            "rows": rows,
        },
    )


def _write(out: Path, summary: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")


#: (blocks, fields per block) of the probe; None is the network's default
PROBE_NETWORKS = [(2, None), (3, None), (4, None), (2, 16), (3, 16)]


def probe(args: argparse.Namespace) -> None:
    """Prior-only training of the score network; held-out identity fraction per capacity."""
    import torch.nn.functional as F

    from equify.canonicalization import GroupScoreNetwork
    from equify.canonicalization.networks import count_parameters
    from equify.groups import group as parse_group
    from equify.training.runner import prepare_data

    cfg = load_config(None, [o for o in _common(args) if not o.startswith("adapt.methods")])
    data = prepare_data(cfg)
    batch = cfg["adapt"]["batch_size"]
    x_train, x_test = data.train.images, data.test.images
    rows = []
    for name in [g.strip() for g in args.groups.split(",") if g.strip()]:
        g = parse_group(name)
        for layers, width in PROBE_NETWORKS:
            torch.manual_seed(0)
            net = GroupScoreNetwork(g, data.in_channels, hidden_channels=width, num_layers=layers)
            steps = args.probe_epochs * -(-len(x_train) // batch)
            opt = torch.optim.Adam(net.parameters(), lr=5e-3)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=steps)
            target = torch.full((batch,), g.identity)
            start = time.perf_counter()
            for epoch in range(args.probe_epochs):
                order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
                net.train()
                for i in range(0, len(x_train), batch):
                    scores = net(x_train[order[i : i + batch]])
                    loss = F.cross_entropy(scores, target[: len(scores)])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
            net.eval()
            with torch.no_grad():
                kept = {
                    split: float(
                        torch.cat([net(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
                        .eq(g.identity)
                        .float()
                        .mean()
                    )
                    for split, x in (("train", x_train), ("test", x_test))
                }
            rows.append(
                {
                    "group": name,
                    "blocks": net.num_layers,
                    "fields": net.hidden_channels,
                    "parameters": count_parameters(net),
                    "identity_fraction_train": kept["train"],
                    "identity_fraction_test": kept["test"],
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    _write(
        Path(args.probe_out),
        {
            "what": "the canonicalization network alone, trained on the identity prior "
            "(benchmarks/upright_gap.py --probe): held-out upright images kept upright",
            "equify": equify.__version__,
            "settings": {**vars(args), "lr": 5e-3, "schedule": "onecycle", "batch": batch},
            "rows": rows,
        },
    )


def _common(args: argparse.Namespace) -> list[str]:
    opt = [
        f"data.name={args.data}",
        f"data.root={args.root}" if args.root else None,
        f"data.max_train={args.max_train}" if args.max_train else None,
        f"data.max_test={args.max_test}" if args.max_test else None,
        f"pretrain.epochs={args.pretrain_epochs}" if args.pretrain_epochs else None,
        f"pretrain.batch_size={args.batch_size}" if args.batch_size else None,
        f"adapt.batch_size={args.batch_size}" if args.batch_size else None,
        f"adapt.epochs={args.epochs}" if args.epochs else None,
        f"evaluate.angles_step={args.angles_step}",
        f"trainer.accelerator={args.device}",
        "trainer.progress_bar=false",
        "adapt.methods=canon-prior",
        f"seed={args.seed}",
    ]
    return [o for o in opt if o is not None] + list(args.overrides)


def _row(results: dict, seconds: float) -> dict:
    m = results["methods"]["canon-prior"]
    return {
        "pretrained_upright": results["methods"]["pretrained"]["upright_accuracy"],
        "upright": m["upright_accuracy"],
        "orbit": m["orbit"]["mean"],
        "orbit_worst_element": m["orbit"]["worst"],
        "identity_fraction_upright": m["canonicalization"]["identity_fraction_upright"],
        "invariance_error": m["invariance_error"]["max_abs"],
        "extra_params_fraction": m["cost"]["extra_params_fraction"],
        "time_ratio": m["cost"]["time_ratio"],
        "oracle_orbit": results["oracle"]["orbit"]["mean"] if "oracle" in results else None,
        "train_seconds": results["train_seconds"].get("canon-prior"),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.probe:
        probe(args)
        return
    if args.image_actions:
        image_actions(args)
        return
    names = [v.strip() for v in args.variants.split(";")] if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    out = Path(args.out)
    summary: dict = {
        "what": "canon-prior variants around one pretrained model (benchmarks/upright_gap.py)",
        "equify": equify.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "settings": vars(args),
        "variants": {n: VARIANTS[n] for n in VARIANTS},
        "runs": {},
    }
    if args.resume and out.is_file():
        summary["runs"] = json.loads(out.read_text()).get("runs", {})
    shared = Path(args.runs) / "pretrained.pt"
    common = _common(args)
    for group in [g.strip() for g in args.groups.split(",") if g.strip()]:
        rows = summary["runs"].setdefault(group, {})
        for name in names:
            if name in rows:
                continue
            run_dir = Path(args.runs) / group / name.replace(" ", "_").replace("+", "p")
            run_dir.mkdir(parents=True, exist_ok=True)
            if shared.is_file():  # one pretrained model for every run
                (run_dir / "pretrained.pt").write_bytes(shared.read_bytes())
            cfg = load_config(
                None,
                [f"output_dir={run_dir}", f"adapt.group={group}", *common, *VARIANTS[name]],
            )
            start = time.perf_counter()
            results = run_adapt(cfg, overwrite=True)  # the benchmark owns its run directories
            if not shared.is_file():
                shared.write_bytes((run_dir / "pretrained.pt").read_bytes())
            rows[name] = _row(results, time.perf_counter() - start)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(summary, indent=2))
            r = rows[name]
            print(
                f"{group} {name:<28} upright {100 * r['upright']:6.2f}  orbit "
                f"{100 * r['orbit']:6.2f}  identity {100 * r['identity_fraction_upright']:5.1f}%"
                f"  pretrained {100 * r['pretrained_upright']:6.2f}  inv.err "
                f"{r['invariance_error']:.1e}",
                flush=True,
            )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
