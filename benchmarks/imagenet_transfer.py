"""The papers' transfer setting on a real ImageNet network: MobileNetV2 fine-tuned on Fashion-MNIST.

Mondal et al. (NeurIPS 2023), Table 1, fine-tune an ImageNet ResNet-50 on CIFAR-10 and report
upright / C8-orbit accuracy per method. Here the network is the real ImageNet MobileNetV2
(``--model mobilenet_v2 --weights imagenet``), the data Fashion-MNIST (grey repeated to RGB
inside the model, resized to ``--size``). Step 1 fine-tunes the ImageNet network on the upright
images (the "pretrained" row: vanilla fine-tuning); step 2 runs every method from it (further
fine-tuning, C<n>-augmented fine-tuning, canonicalization without and with the prior, and the
symmetrization methods given with ``--methods``), for C8 and C4, through ``equify adapt``'s code.

The defaults are the CPU-sized run (a subset, few epochs, under 10 minutes on 2 cores per group
set); ``--full`` is the whole data set for a machine with an accelerator::

    python benchmarks/imagenet_transfer.py                  # CPU subset
    python benchmarks/imagenet_transfer.py --full --device gpu

Writes ``results/imagenet_transfer[_full].json`` with the paper's numbers beside ours.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fashion_mnist_methods import build_parser, run

#: Mondal et al. (2023), Table 1: ImageNet ResNet-50 fine-tuned on CIFAR-10, (upright, C8 orbit).
PAPER_TABLE_1 = {
    "source": "Mondal et al., NeurIPS 2023, Table 1 (ResNet-50, ImageNet -> CIFAR-10)",
    "vanilla": {"upright": 96.97, "c8_orbit": 57.77},
    "c8_augmented": {"upright": 94.91, "c8_orbit": 90.11},
    "canonicalization": {"upright": 93.29, "c8_orbit": 92.96},
    "canonicalization_with_prior": {"upright": 96.19, "c8_orbit": 95.31},
}

CPU = {
    "max_train": 2000,
    "max_test": 400,
    "zero_shot": False,
    "pretrain_epochs": 3,
    "epochs": 3,
    "size": 64,
    "angles_step": 45,
    "methods": "vanilla,augment,canon,canon-prior",
}
FULL = {
    "max_train": None,
    "max_test": None,
    "pretrain_epochs": 5,
    "epochs": 5,
    "size": 96,
    "angles_step": 15,
    "methods": "vanilla,augment,canon,canon-prior,equitune,equizero",
    "zero_shot": True,
}


def main() -> None:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole data set (accelerator)")
    parser.set_defaults(
        groups="C8,C4",
        architecture="mobilenet_v2",
        weights="imagenet",
        fit="resize",
        batch_size=64,
        runs="runs/imagenet_transfer",
        out=None,
        **CPU,
    )
    args = parser.parse_args()
    # canonicalization + prior: one prior-only epoch first, prior weight 5 (chosen on this
    # benchmark's C4 subset: upright 80.25 at the equify defaults, 87.5 with these, and the
    # identity fraction 0.84 -> 0.95; see the README)
    # ImageNet -> upright fine-tuning at lr 1e-3 (the small CNNs pretrain at 2e-3)
    args.overrides = [
        "pretrain.lr=1e-3",
        "adapt.prior_weight=5",
        "adapt.prior_warmup_epochs=1",
        *args.overrides,
    ]
    if args.full:
        given = {
            a.dest
            for a in parser._actions
            if any(arg.split("=")[0] in a.option_strings for arg in sys.argv[1:])
        }
        for key, value in FULL.items():
            if key not in given:
                setattr(args, key, value)
    results = Path(__file__).parent / "results"
    if args.out is None:
        args.out = str(
            results / ("imagenet_transfer_full.json" if args.full else "imagenet_transfer.json")
        )
    run(args, extra={"paper": PAPER_TABLE_1, "mode": "full" if args.full else "cpu-subset"})


if __name__ == "__main__":
    main()
