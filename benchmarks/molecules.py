"""3-D point sets through `equify adapt`: real QM9 molecules and the charged N-body system.

1. QM9 (qm9pack's CSVs, 130,831 molecules; seeded splits by molecule), the HOMO–LUMO gap (eV)
   and the dipole moment mu (D): an ordinary transformer over atoms that reads raw coordinates
   is pretrained on the molecules as they come, then adapted under SO(3) + translations with
   vanilla fine-tuning, augmentation, canonicalization (vector-neuron canonicalizer), with the
   prior, and frame averaging. MAE on the test molecules as they come and each turned by its own
   Haar-random rotation; invariance error under random rotations and translations.
2. N-body (our seeded simulator of the NRI / EGNN charged system: 5 particles, 3,000 / 2,000 /
   2,000 trajectories, positions 1,000 steps ahead): the same methods under SO(3) and O(3),
   MSE per coordinate (Satorras et al. 2021, Table 2: EGNN 0.0071).
3. Cost per molecule / system of every method against the bare predictor (interleaved
   medians, from the runs' reports).

    python benchmarks/molecules.py [--quick] [--only qm9-gap,nbody-SO3,...]

Writes ``benchmarks/results/molecules.json``; not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import time
from pathlib import Path

import torch

from equify.training import load_config, run_adapt

RESULTS = Path(__file__).parent / "results"

#: name -> (overrides, run this one's pretrained model from another run's directory)
RUNS: dict[str, tuple[list[str], str | None]] = {
    "qm9-gap": (
        [
            "data.name=qm9",
            "adapt.group=SO3",
            "data.kwargs.properties=[gap]",
            "data.kwargs.n_train=50000",
            "data.kwargs.n_val=5000",
            "data.kwargs.n_test=10000",
            "pretrain.epochs=25",
            "adapt.epochs=5",
        ],
        None,
    ),
    "qm9-mu": (
        [
            "data.name=qm9",
            "adapt.group=SO3",
            "data.kwargs.properties=[mu]",
            "data.kwargs.n_train=20000",
            "data.kwargs.n_val=2000",
            "data.kwargs.n_test=5000",
            "pretrain.epochs=15",
            "adapt.epochs=3",
        ],
        None,
    ),
    "nbody-SO3": (
        [
            "data.name=nbody",
            "adapt.group=SO3",
            "pretrain.epochs=100",
            "adapt.epochs=30",
            "adapt.lr_predictor=5e-4",
        ],
        None,
    ),
    "nbody-O3": (
        [
            "data.name=nbody",
            "adapt.group=O3",
            "pretrain.epochs=100",
            "adapt.epochs=30",
            "adapt.lr_predictor=5e-4",
        ],
        "nbody-SO3",
    ),
}

QUICK = [
    "data.kwargs.n_train=400",
    "data.kwargs.n_val=100",
    "data.kwargs.n_test=200",
    "pretrain.epochs=2",
    "adapt.epochs=1",
]


def _rows(results: dict) -> dict:
    rows = {}
    for name, m in results["methods"].items():
        canon = m.get("canonicalization", m.get("symmetrization", {}))
        rows[name] = {
            "upright": m["upright"],
            "rotated": m["rotated"],
            "equivariance_error": m["equivariance_error"],
            "identity_fraction_upright": canon.get("identity_fraction_upright"),
            "degenerate_samples_upright": canon.get("degenerate_samples_upright"),
            "predictor_passes": m.get("predictor_passes_per_input", 1.0),
            "extra_params_fraction": m["cost"]["extra_params_fraction"],
            "time_ratio": m["cost"]["time_ratio"],
            "seconds_per_set_model": m["cost"]["seconds_per_image_model"],
            "seconds_per_set_bare": m["cost"]["seconds_per_image_bare"],
        }
    if results.get("oracle"):
        rows["oracle"] = {k: results["oracle"][k] for k in ("upright", "rotated")}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny splits, 1-2 epochs")
    parser.add_argument("--only", default=None, help="comma-separated run names")
    parser.add_argument("--runs", default="runs/bench-molecules")
    parser.add_argument(
        "--resume", action="store_true", help="keep the methods an interrupted run finished"
    )
    parser.add_argument("--out", default=str(RESULTS / "molecules.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = args.only.split(",") if args.only else list(RUNS)
    out_path = Path(args.out)
    report = json.loads(out_path.read_text()) if out_path.is_file() and args.only else {}
    report.setdefault("runs", {})
    report["machine"] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    for name in names:
        overrides, reuse = RUNS[name]
        run_dir = Path(args.runs) / name
        overrides = [*overrides, f"output_dir={run_dir}", "trainer.progress_bar=false"]
        overrides += ["evaluate.invariance_images=256"]
        if args.quick:
            overrides += QUICK
        if reuse is not None and (Path(args.runs) / reuse / "pretrained.pt").is_file():
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(Path(args.runs) / reuse / "pretrained.pt", run_dir / "pretrained.pt")
        start = time.perf_counter()
        cfg = load_config(overrides=overrides)
        resume = args.resume and (run_dir / "config.yaml").is_file()
        results = run_adapt(cfg, resume=resume, overwrite=not resume)
        wall = time.perf_counter() - start
        report["runs"][name] = {
            "command": "equify adapt " + " ".join(f"--set {o}" for o in overrides),
            "data": results["data"],
            "group": results["group"],
            "train_seconds": results["train_seconds"],
            "wall_seconds": wall,
            "methods": _rows(results),
        }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2, default=str))
        logging.info("%s done in %.0f s", name, wall)
    print(
        json.dumps(
            {
                n: {m: r["rotated"] for m, r in v["methods"].items()}
                for n, v in report["runs"].items()
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
