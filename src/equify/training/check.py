"""``equify check``: which input sizes keep a model exactly equivariant — a table, a plot, JSON.

The model is a registered architecture (``--model p4cnn``), a user checkpoint
(``--checkpoint`` + ``--factory``) or a model of an ``equify adapt`` / ``equify train`` run
(``--output runs/x --method canon-prior``; ``--method pretrained`` for the run's trained or
pretrained network). :func:`equify.analysis.exact_sizes` predicts each size's verdict from the
traced layers and measures the real error; the report writes ``check.json`` and
``exactness.png`` (error against input size, predicted-exact sizes marked).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from torch import nn

from equify.analysis import SizeVerdict, exact_sizes
from equify.groups import FiniteGroup
from equify.groups import group as parse_group

__all__ = ["format_check", "parse_sizes", "run_check"]

logger = logging.getLogger(__name__)


def parse_sizes(text: str) -> list[int]:
    """``"24:40"`` (inclusive range), ``"24:40:2"`` (with a step) or ``"27,28,29"``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected sizes like 24:40 or 27,28,29, got {text!r}")
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            if hi < lo or step < 1:
                raise ValueError(f"expected an increasing range like 24:40, got {text!r}")
            sizes = list(range(lo, hi + 1, step))
        else:
            sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as err:
        if "increasing" in str(err):
            raise
        raise ValueError(f"expected sizes like 24:40, 24:40:2 or 27,28,29, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive, got {text!r}")
    return sizes


def _fmt(v: float | None) -> str:
    return "      -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:9.1e}"


def format_check(verdicts: list[SizeVerdict], label: str, group: FiniteGroup) -> str:
    """The verdicts as an aligned table."""
    head = (
        f"{'size':>5}  {'predicted':<10}{'measured':<10}{'logit err':>10}{'feature err':>12}  why"
    )
    lines = [f"{label}: exactness to {group} by input size", head, "-" * len(head)]
    for v in verdicts:
        pred = {True: "exact", False: "approx.", None: "unknown"}[v.predicted_exact]
        meas = {True: "exact", False: "approx.", None: "-"}[v.measured_exact]
        lines.append(
            f"{v.size:>5}  {pred:<10}{meas:<10}{_fmt(v.logit_error):>10}"
            f"{_fmt(v.feature_error):>12}  {v.reason}"
        )
    agree = [v for v in verdicts if v.measured_exact is not None and v.predicted_exact is not None]
    right = sum(v.measured_exact == v.predicted_exact for v in agree)
    lines.append(f"prediction agrees with the measurement at {right} of {len(agree)} sizes")
    return "\n".join(lines)


def _plot(verdicts: list[SizeVerdict], label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [v.size for v in verdicts]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, name in (("logit_error", "logits"), ("feature_error", "features")):
        vals = [getattr(v, key) for v in verdicts]
        if any(x is not None for x in vals):
            ax.semilogy(
                sizes,
                [max(x, 1e-12) if x is not None else float("nan") for x in vals],
                marker="o",
                ms=3,
                label=name,
            )
    for v in verdicts:
        if v.predicted_exact:
            ax.axvspan(v.size - 0.4, v.size + 0.4, color="green", alpha=0.12, lw=0)
    ax.set_xlabel("input size N (N x N)")
    ax.set_ylabel("max relative equivariance error")
    ax.set_title(f"{label}: green = predicted exact")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_check(
    model: nn.Module,
    group: FiniteGroup | str,
    sizes: list[int],
    in_channels: int,
    out_dir: str | Path,
    label: str,
    feature_layer: str | None = None,
) -> dict[str, Any]:
    """Check ``model`` at every size, write ``check.json`` and ``exactness.png`` into ``out_dir``.

    Returns:
        ``{"table": str, "verdicts": [...], "files": {...}}``.
    """
    g = parse_group(group) if isinstance(group, str) else group
    if feature_layer is None:  # the P4/P4M models' last regular feature map, also when wrapped
        names = [n for n, _ in model.named_modules()]
        feature_layer = next(
            (n for n in names if n == "features_net" or n.endswith(".features_net")), None
        )
    verdicts = exact_sizes(model, g, sizes, in_channels, feature_layer=feature_layer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = format_check(verdicts, label, g)
    files = {"json": str(out / "check.json")}
    report = {
        "model": label,
        "group": str(g),
        "in_channels": in_channels,
        "feature_layer": feature_layer,
        "sizes": [v.to_dict() for v in verdicts],
        "files": files,
    }
    tmp = out / ".check.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out / "check.json")
    try:
        _plot(verdicts, label, out / "exactness.png")
        files["plot"] = str(out / "exactness.png")
    except Exception as err:  # the plot must not lose the check
        logger.warning("could not draw %s: %s", out / "exactness.png", err)
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out / "check.json")
    return {"table": table, "verdicts": verdicts, "files": files}
