"""The tiny configuration the training tests share: 8x8 digits, a few epochs, CPU."""

from __future__ import annotations

from pathlib import Path

from equify.training import load_config


def tiny_config(out: Path, *extra: str, pretrain_epochs: int = 2) -> dict:
    """Digits (8x8), ``pretrain_epochs`` pretraining and one adaptation epoch: seconds."""
    return load_config(
        None,
        [
            f"output_dir={out}",
            "data.name=digits",
            f"pretrain.epochs={pretrain_epochs}",
            "adapt.epochs=1",
            "trainer.accelerator=cpu",
            "trainer.progress_bar=false",
            "evaluate.angles_step=45",
            "evaluate.invariance_images=16",
            "evaluate.timing_batch=8",
            *extra,
        ],
    )
