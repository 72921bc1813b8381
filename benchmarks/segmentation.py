"""Dense prediction through `equify adapt --task segmentation`: digit scenes and real nuclei.

1. Digit scenes (64x64 canvases with 2-4 real MNIST digits, background + 10 classes; a turned 6
   reads as a 9), for C4 and D4: a U-Net pretrained on upright scenes, then vanilla,
   augmentation, canonicalization and canonicalization + prior (predictor fine-tuned, and in a
   second run frozen); on C4 also equitune and equizero around the pretrained U-Net, untrained
   (the zero-shot rows). Upright and orbit mIoU of every method, the oracle.
2. Nuclei (the real stardist fluorescence image, 125 labelled nuclei, 64x64 tiles, train/test
   split by region): foreground IoU upright and on the C4 orbit.
3. Cost: the segmenter with and without the canonicalizer, interleaved medians, at several
   image sizes and canonicalizer views (the canonicalizer looks at a fixed-size view, the
   segmenter at the whole image).

    python benchmarks/segmentation.py [--quick] [--out benchmarks/results/segmentation.json]

Writes JSON (and copies the runs' segmentation_examples.png next to it); not part of the tests.
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

from equify.actions import ImageAction
from equify.analysis import measure_cost
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel, ImagePreparation
from equify.models import UNet
from equify.training import load_config, run_adapt

RESULTS = Path(__file__).parent / "results"


def _run(overrides: list[str], reuse_from: Path | None = None) -> dict:
    cfg = load_config(overrides=overrides)
    out = Path(cfg["output_dir"])
    if reuse_from is not None and (reuse_from / "pretrained.pt").is_file():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(reuse_from / "pretrained.pt", out / "pretrained.pt")  # same fingerprint
    start = time.perf_counter()
    results = run_adapt(cfg, overwrite=True)
    results["wall_seconds"] = time.perf_counter() - start
    return results


def _rows(results: dict) -> dict:
    """Upright / orbit / worst mIoU, pixel accuracy, equivariance, identity, cost per method."""
    rows = {}
    for name, m in results["methods"].items():
        canon = m.get("canonicalization", {})
        rows[name] = {
            "upright_miou": m["upright_miou"],
            "orbit_miou": m["orbit"]["mean"],
            "worst_element_miou": m["orbit"]["worst"],
            "per_element_miou": dict(zip(m["orbit"]["names"], m["orbit"]["miou"], strict=True)),
            "all_angles_miou": m["angles"]["mean"],
            "upright_pixel_accuracy": m["upright_pixel_accuracy"],
            "orbit_pixel_accuracy": m["orbit"]["pixel_accuracy_mean"],
            "label_agreement": m["equivariance_error"]["label_agreement"],
            "equivariance_error_relative": m["equivariance_error"]["max_relative"],
            "identity_fraction_upright": canon.get("identity_fraction_upright"),
            "time_ratio": m["cost"]["time_ratio"],
            "extra_params_fraction": m["cost"]["extra_params_fraction"],
            "train_seconds": results["train_seconds"].get(name),
        }
    if "oracle" in results:
        o = results["oracle"]
        rows["oracle"] = {
            "upright_miou": o["upright_miou"],
            "orbit_miou": o["orbit"]["mean"],
            "worst_element_miou": o["orbit"]["worst"],
            "all_angles_miou": o["angles"]["mean"],
        }
    return rows


def _foreground(results: dict) -> dict:
    """Nuclei: the IoU of class 1 (nucleus) upright, per orbit element and at every angle."""
    out = {}
    for name, m in results["methods"].items():
        fg = [row[1] for row in m["orbit"]["iou"]]
        out[name] = {
            "upright_foreground_iou": m["upright_iou"][1],
            "orbit_foreground_iou": sum(fg) / len(fg),
            "per_element": dict(zip(m["orbit"]["names"], fg, strict=True)),
            "angles_foreground_iou": {
                f"{a:g}": row[1]
                for a, row in zip(m["angles"]["angles"], m["angles"]["iou"], strict=True)
            },
            "label_agreement": m["equivariance_error"]["label_agreement"],
        }
    return out


def _cost(sizes: list[int], views: list[int], repeats: int) -> list[dict]:
    """The U-Net of the scenes (11 classes) bare and canonicalized (C4), eval mode, no_grad."""
    rows = []
    torch.manual_seed(0)
    unet = UNet(1, 11).eval()
    for size in sizes:
        x = torch.rand(16, 1, size, size)
        for view in views:
            can = DiscreteCanonicalizer("C4", 1)
            can.preparation = ImagePreparation(
                view, can.preparation.crop_ratio, can.preparation.mask
            )
            model = EquivariantModel(unet, can, out_action=ImageAction()).eval()
            cost = measure_cost(model, unet, x, repeats=repeats, warmup=2)
            rows.append({"size": size, "view": view, **cost.to_dict()})
            logging.info("cost: %dx%d, view %d: x%.3f", size, size, view, cost.time_ratio)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data and epochs (a smoke run)")
    parser.add_argument("--runs", default="runs/bench-segmentation")
    parser.add_argument("--out", default=str(RESULTS / "segmentation.json"))
    parser.add_argument("--parts", default="scenes,nuclei,cost")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parts = set(args.parts.split(","))
    runs = Path(args.runs)
    n_train, n_test, pre, ep = (300, 60, 2, 1) if args.quick else (2000, 400, 8, 5)
    common = [
        "task=segmentation",
        "trainer.progress_bar=false",
        "trainer.accelerator=cpu" if not torch.cuda.is_available() else "trainer.accelerator=auto",
        f"pretrain.epochs={pre}",
        f"adapt.epochs={ep}",
    ]
    # a run of some parts updates those parts of an earlier JSON and keeps the others
    earlier = Path(args.out)
    out: dict = json.loads(earlier.read_text()) if earlier.is_file() else {}
    out |= {
        "about": __doc__.splitlines()[0],
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "settings": {
            "n_train": n_train,
            "n_test": n_test,
            "pretrain_epochs": pre,
            "adapt_epochs": ep,
        },
    }
    started = time.perf_counter()
    if "scenes" in parts:
        scenes = [
            "data.name=digit-scenes",
            f"data.kwargs.n_train={n_train}",
            f"data.kwargs.n_test={n_test}",
        ]
        first: Path | None = None
        for group in ("C4", "D4"):
            # C4 also: equitune and equizero around the pretrained U-Net, untrained (zero-shot)
            zero_shot = "evaluate.zero_shot=" + ("true" if group == "C4" else "false")
            run_dir = runs / f"scenes-{group}"
            res = _run(
                [
                    *common,
                    *scenes,
                    f"output_dir={run_dir}",
                    f"adapt.group={group}",
                    "adapt.methods=vanilla,augment,canon,canon-prior",
                    zero_shot,
                ],
                reuse_from=first,
            )
            first = first or run_dir
            frozen = _run(
                [
                    *common,
                    *scenes,
                    f"output_dir={runs / f'scenes-{group}-frozen'}",
                    f"adapt.group={group}",
                    "adapt.methods=canon-prior",
                    "adapt.freeze_predictor=true",
                ],
                reuse_from=first,
            )
            rows = _rows(res)
            rows["canon-prior (frozen predictor)"] = _rows(frozen)["canon-prior"]
            out[f"scenes_{group}"] = {
                "methods": rows,
                "wall_seconds": res["wall_seconds"] + frozen["wall_seconds"],
            }
            png = run_dir / "segmentation_examples.png"
            if png.is_file():
                shutil.copy(png, Path(args.out).with_name(f"segmentation_examples_{group}.png"))
    if "nuclei" in parts:
        run_dir = runs / "nuclei-C4"
        res = _run(
            [
                *common,
                "data.name=nuclei",
                f"output_dir={run_dir}",
                "adapt.group=C4",
                "adapt.methods=vanilla,augment,canon-prior",
                f"pretrain.epochs={3 * pre}",
                f"adapt.epochs={2 * ep}",
            ],
        )
        out["nuclei_C4"] = {
            "methods": _rows(res),
            "foreground": _foreground(res),
            "data": res["data"],
            "wall_seconds": res["wall_seconds"],
        }
        png = run_dir / "segmentation_examples.png"
        if png.is_file():
            shutil.copy(png, Path(args.out).with_name("segmentation_examples_nuclei.png"))
    if "cost" in parts:
        sizes = [64, 128] if args.quick else [64, 128, 256]
        out["cost"] = _cost(sizes, [64, 32], repeats=5 if args.quick else 11)
    out[f"seconds_{'_'.join(sorted(parts))}"] = time.perf_counter() - started
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
