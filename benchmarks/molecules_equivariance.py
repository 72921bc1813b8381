"""Where the invariance error of the adapted QM9 models comes from, molecule by molecule.

Loads the ``canon-prior`` and ``frames`` models of a finished ``benchmarks/molecules.py`` run
(``qm9-gap``), turns every test molecule by its own random rotation and translation, and
reports the per-molecule error ``|Φ(g·x + t) − Φ(x)|`` in float32 and in float64 (the same
weights), its quantiles, how many molecules exceed 1e-5 eV, and, for the canonicalizer, how well
conditioned each molecule's frame is (the smallest Gram–Schmidt residual of its vectors relative
to their length): a near-symmetric molecule has a nearly undefined frame, and there float32
rounding of the input turns the frame visibly.

    python benchmarks/molecules_equivariance.py [--run runs/bench-molecules/qm9-gap]

Writes ``benchmarks/results/molecules_equivariance.json``; not part of the tests.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from equify.actions import PointSetAction
from equify.groups import SO3
from equify.training import load_adapted, load_config
from equify.training.runner import prepare_data

RESULTS = Path(__file__).parent / "results"


def _errors(model, x, g, t, act, batch=500):
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            moved = act.translate(act.apply(xb, g[i : i + batch].to(xb.dtype)), t[i : i + batch])
            out.append((model(moved) - model(xb)).abs().amax(1).double())
    return torch.cat(out)


def _conditioning(model, x, batch=500):
    """Per molecule: the second vector's component orthogonal to the first, relative to it."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            v = model.forward_with_result(x[i : i + batch])[1].vectors.double()
            q1 = v[:, 0] / v[:, 0].norm(dim=-1, keepdim=True)
            w = v[:, 1] - (v[:, 1] * q1).sum(-1, keepdim=True) * q1
            out.append(torch.minimum(w.norm(dim=-1) / v[:, 1].norm(dim=-1), v[:, 0].norm(dim=-1)))
    return torch.cat(out)


def _quantiles(e: torch.Tensor) -> dict:
    q = torch.tensor([0.5, 0.9, 0.99, 1.0], dtype=e.dtype)
    return {
        "median": float(e.median()),
        "p90": float(torch.quantile(e, q[1])),
        "p99": float(torch.quantile(e, q[2])),
        "max": float(e.max()),
        "above_1e-5": int((e > 1e-5).sum()),
        "molecules": len(e),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-molecules/qm9-gap")
    parser.add_argument("--out", default=str(RESULTS / "molecules_equivariance.json"))
    parser.add_argument("--molecules", type=int, default=5000)
    args = parser.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    data = prepare_data(cfg)
    x = data.test.inputs[: args.molecules]
    act = PointSetAction(data.test.layout)
    gen = torch.Generator().manual_seed(11)
    g = SO3().sample(len(x), generator=gen, dtype=torch.float64)
    t = 3 * torch.randn(len(x), 3, generator=gen, dtype=torch.float64)
    report = {"run": str(run), "methods": {}}
    for method in ("canon-prior", "frames"):
        model = load_adapted(run, method).eval()
        e32 = _errors(model, x, g, t.float(), act)
        e64 = _errors(copy.deepcopy(model).double(), x.double(), g, t, act)
        entry = {"float32": _quantiles(e32), "float64": _quantiles(e64)}
        if method == "canon-prior":
            cond = _conditioning(model, x)
            worst = e32.argsort(descending=True)[:10]
            entry["conditioning_of_the_10_worst"] = cond[worst].tolist()
            entry["conditioning_median"] = float(cond.median())
            entry["atoms_of_the_10_worst"] = data.test.layout.point_mask(x[worst]).sum(1).tolist()
            ill = cond < 1e-3
            entry["ill_conditioned_molecules"] = int(ill.sum())
            entry["float32_without_ill_conditioned"] = _quantiles(e32[~ill])
        report["methods"][method] = entry
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
