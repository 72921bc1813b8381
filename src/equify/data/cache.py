"""Where equify keeps data it derives once and reuses (parsed QM9, simulated N-body)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(name: str) -> Path:
    """``$EQUIFY_CACHE/<name>``, else ``$XDG_CACHE_HOME/equify/<name>``, else
    ``~/.cache/equify/<name>`` (not created here)."""
    if os.environ.get("EQUIFY_CACHE"):
        return Path(os.environ["EQUIFY_CACHE"]).expanduser() / name
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "equify" / name
    return Path.home() / ".cache" / "equify" / name
