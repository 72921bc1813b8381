"""Use the result of ``equify adapt`` in your own code: :func:`load_adapted`."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from equify.canonicalization import EquivariantModel
from equify.models import load_model, read_checkpoint
from equify.training.config import load_config
from equify.training.methods import method_names
from equify.training.tasks import task_of

__all__ = ["load_adapted"]


def load_adapted(
    run_dir: str | os.PathLike, method: str = "canon-prior", export: bool = False
) -> nn.Module:
    """The model that ``equify adapt`` trained with ``method``, ready to use (eval mode, CPU).

    The model takes raw ``[0, 1]`` images ``(B, C, H, W)`` (its input normalisation is inside)
    and returns class logits. Nothing is retrained and the data set is not loaded: the
    architecture comes from the run's ``config.yaml`` and ``pretrained.pt`` (or your
    ``model.checkpoint``), the weights from ``models/<method>.pt``.

    Args:
        run_dir: the run directory (``--output`` of ``equify adapt``).
        method: any method the run trained: ``"vanilla"``, ``"augment"``, ``"canon"``,
            ``"canon-prior"``, ``"equitune"``, ``"lambda-equitune"``, ``"equizero"``,
            ``"equiattention"`` (or a registered plug-in's name).
        export: return :meth:`EquivariantModel.export` (its canonicalization network in plain
            PyTorch, same outputs up to rounding) for the canonicalization methods.

    Returns:
        An ``nn.Module``: an :class:`~equify.canonicalization.EquivariantModel` for ``canon`` /
        ``canon-prior``, a :mod:`equify.symmetrization` module for the symmetrization methods,
        the fine-tuned predictor for ``vanilla`` / ``augment``.

    Raises:
        FileNotFoundError: no run (``config.yaml``) or no model for ``method`` in ``run_dir``.
        ValueError: ``method`` is not one of the methods, or not one this run trained.

    Example::

        model = equify.load_adapted("runs/default", "canon-prior")
        logits = model(images)          # invariant to the run's group
    """
    from equify.training.runner import _load_pretrained, _method_model, prepare_data

    run = Path(run_dir)
    if method not in method_names():
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(method_names())}")
    config = run / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(
            f"no equify run in {run} (no config.yaml): run `equify adapt --output {run}` first"
        )
    cfg = load_config(config, saved_run=True)
    cfg["output_dir"] = str(run)
    if method not in cfg["adapt"]["methods"]:
        raise ValueError(
            f"the run in {run} did not train {method!r}; it has "
            f"{', '.join(cfg['adapt']['methods'])}"
        )
    path = run / "models" / f"{method}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no model for {method!r} at {path}: the run has not finished it (continue with "
            f"`equify adapt --output {run} --resume`)"
        )
    ckpt = read_checkpoint(path)
    in_channels = ckpt.metadata.get("in_channels")
    if not isinstance(in_channels, int):  # a run from before the metadata was written
        in_channels = prepare_data(cfg).in_channels
    m = cfg["model"]
    if m["checkpoint"] is not None:
        net = load_model(m["checkpoint"], factory=m["factory"], factory_kwargs=m["kwargs"] or None)
        pretrained: nn.Module = task_of(cfg).wrap_checkpoint(net, None, in_channels)
    else:
        pretrained = _load_pretrained(run / "pretrained.pt", task_of(cfg))
    model, _ = _method_model(method, cfg, pretrained, None, in_channels=in_channels)
    model.load_state_dict(ckpt.state_dict)  # normalisation buffers and all weights
    model.eval()
    if export and isinstance(model, EquivariantModel):
        return model.export()
    return model
