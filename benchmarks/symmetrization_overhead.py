"""Time and peak memory of every symmetrizer against the bare predictor and canonicalization.

ResNet-50-sized predictor (``equify.models.resnet50``, 25.6M parameters) at 224x224, batch 8,
eval mode, ``no_grad``, on the CPU. Variants: the bare predictor, canonicalization
(``EquivariantModel``, one pass), equitune with ``chunk_size`` 1, 4 and |G|, λ-equitune,
equizero and equiattention (``chunk_size`` |G|). Times: interleaved runs in one process,
medians, reported as ratios to the bare predictor. Peak memory: every variant runs in a fresh
subprocess and reports the growth of its peak resident set over the model's own footprint
(``ru_maxrss``), as a ratio to the bare predictor's.

    python benchmarks/symmetrization_overhead.py [--groups C4,C8] [--repeats 3] [--threads 2]

Writes ``benchmarks/results/symmetrization_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import equify
from equify.canonicalization import DiscreteCanonicalizer, EquivariantModel
from equify.models import resnet50
from equify.symmetrization import EquiAttention, EquiZero, GroupAveraging, LambdaEquitune


def variants(predictor: torch.nn.Module, name: str) -> dict[str, torch.nn.Module]:
    g = equify.group(name)
    n = g.order
    out: dict[str, torch.nn.Module] = {
        "bare": predictor,
        "canonicalization": EquivariantModel(predictor, DiscreteCanonicalizer(g, 3)),
    }
    for chunk in sorted({1, 4, n}):
        out[f"equitune_chunk{chunk}"] = GroupAveraging(predictor, g, chunk_size=chunk)
    out["lambda_equitune"] = LambdaEquitune(predictor, g, in_channels=3)
    out["equizero"] = EquiZero(predictor, g)
    out["equiattention"] = EquiAttention(predictor, g, in_channels=3)
    return {k: m.eval() for k, m in out.items()}


def _rss_mb() -> float:
    """The current resident set size (Linux ``/proc/self/statm``), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_memory(group: str, variant: str, batch: int, size: int, threads: int) -> float:
    """In this (fresh) process: peak RSS growth, in MB, during one forward of ``variant``.

    A thread samples the resident set every millisecond while the forward runs; the model and
    the input are built (and one untimed forward of the bare predictor warms the allocator)
    before the baseline is read.
    """
    import gc
    import threading

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    predictor = resnet50(num_classes=1000, in_channels=3).eval()
    model = variants(predictor, group)[variant]
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        predictor(x[:1])
    gc.collect()
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    with torch.no_grad():
        model(x)
    done.set()
    watcher.join()
    return max(peak[0], _rss_mb()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="C4,C8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--memory-of", nargs=2, metavar=("GROUP", "VARIANT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "symmetrization_overhead.json")
    )
    args = parser.parse_args()
    if args.memory_of:  # the subprocess of one memory measurement
        print(peak_memory(*args.memory_of, args.batch, args.size, args.threads))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    predictor = resnet50(num_classes=1000, in_channels=3).eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "groups": {},
    }
    for name in args.groups.split(","):
        models = variants(predictor, name)
        times: dict[str, list[float]] = {k: [] for k in models}
        with torch.no_grad():
            for m in models.values():  # warm-up
                m(x)
            for _ in range(args.repeats):  # interleaved: every variant sees the same load
                for k, m in models.items():
                    start = time.perf_counter()
                    m(x)
                    times[k].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        memory = {}
        for k in models:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--memory-of",
                    name,
                    k,
                    "--batch",
                    str(args.batch),
                    "--size",
                    str(args.size),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            memory[k] = float(proc.stdout.strip().splitlines()[-1])
        passes = {
            k: (1 if k in ("bare", "canonicalization") else equify.group(name).order)
            for k in models
        }
        entry = {
            "median_seconds": med,
            "time_ratio_vs_bare": {k: med[k] / med["bare"] for k in med},
            "peak_memory_growth_mb": memory,
            "memory_ratio_vs_bare": {k: memory[k] / max(memory["bare"], 1e-9) for k in memory},
            "predictor_passes_per_input": passes,
        }
        results["groups"][name] = entry
        for k in models:
            print(
                f"{name} {k:<22} passes {passes[k]:>2}  time x{entry['time_ratio_vs_bare'][k]:6.2f}"
                f"  peak memory x{entry['memory_ratio_vs_bare'][k]:5.2f}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
