"""Rules of a run directory: one process at a time, one configuration per directory.

* **Lock.** ``equify adapt`` / ``pretrain`` / ``evaluate`` hold ``<run>/.equify.lock`` (the
  owner's pid, host, command and start time) while they run. A second command on the same
  directory stops at once with a message naming the owner. A lock whose process is gone (same
  host, pid no longer alive) is stale: it is replaced, with a warning.
* **One configuration.** A directory belongs to the configuration in its ``config.yaml`` (and its
  ``pretrained.pt`` to the settings in that file's metadata). A fresh ``adapt`` whose settings
  differ, or a ``pretrain`` that would replace a pretrained model trained with other settings,
  refuses and lists the differences; ``--overwrite`` clears the old run's artefacts first, and
  ``--output`` picks another directory.
* **Ranks.** Under DDP the worker processes (``LOCAL_RANK``/``NODE_RANK``/``RANK`` not 0) join the
  training only: the process of rank 0 holds the lock and writes every file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

__all__ = [
    "ARTEFACTS",
    "RunDirectoryError",
    "RunLock",
    "clear_run",
    "config_differences",
    "is_rank_zero",
]

logger = logging.getLogger(__name__)

LOCK_NAME = ".equify.lock"
#: What a run writes into its directory (``clear_run`` removes these).
ARTEFACTS = (
    "config.yaml",
    "results.json",
    "accuracy_vs_angle.png",
    "canonical_orientations.png",
    "canonicalized_examples.png",
    "models",
    "checkpoints",
    "logs",
)
# Settings that do not change what a run computes.
_COSMETIC = {("output_dir",), ("trainer", "progress_bar")}


class RunDirectoryError(ValueError):
    """The run directory is in use, or holds another run that a command would overwrite."""


def is_rank_zero() -> bool:
    """False in the worker processes of a distributed run (rank > 0 in the environment)."""
    return all(os.environ.get(k, "0") in ("", "0") for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class RunLock:
    """Exclusive use of a run directory for one command (a context manager).

    Args:
        run_dir: the run directory (created if missing).
        command: what holds it, for the message (``"equify adapt"``).

    Raises:
        RunDirectoryError: on entry, when another live process holds the directory.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.command = command
        self.held = False
        self.created = False

    def _describe(self, info: dict[str, Any]) -> str:
        started = info.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        return (
            f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"`{info.get('command', '?')}`, since {when}"
        )

    def _read(self) -> dict[str, Any]:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> RunLock:
        if not is_rank_zero():
            return self  # the rank-0 process holds the directory for the whole run
        self.created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.time(),
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read()
                pid = owner.get("pid")
                same_host = owner.get("host") == info["host"]
                if not owner:
                    # being written right now, or left empty by a crash: look again shortly
                    time.sleep(0.2)
                    owner = self._read()
                    if not owner:
                        logger.warning("removing an unreadable lock file %s", self.path)
                        self.path.unlink(missing_ok=True)
                        continue
                    pid = owner.get("pid")
                if same_host and isinstance(pid, int) and not _pid_alive(pid):
                    logger.warning(
                        "%s: the lock of a process that is gone (%s) is stale: taking over",
                        self.run_dir,
                        self._describe(owner),
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunDirectoryError(
                    f"{self.run_dir} is in use by another equify process "
                    f"({self._describe(owner)}): wait for it to finish or choose another "
                    f"--output; if that process no longer runs, delete {self.path}"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            self.held = True
            return self
        raise RunDirectoryError(f"could not take the lock {self.path}")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if self.created and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()  # a command that failed early leaves no empty directory


def _flatten(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for k, v in d.items():
        key = (*prefix, str(k))
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def config_differences(
    old: dict[str, Any], new: dict[str, Any], keys: set[tuple[str, ...]] | None = None
) -> list[str]:
    """``"section.key: old -> new"`` for every setting that differs (cosmetic ones ignored).

    Args:
        old, new: two configurations.
        keys: compare only these flattened keys (tuples such as ``("data", "name")``).
    """
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in _COSMETIC or (keys is not None and key not in keys):
            continue
        if json.dumps(a.get(key), default=str) != json.dumps(b.get(key), default=str):
            out.append(f"{'.'.join(key)}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def clear_run(run_dir: str | os.PathLike, keep_pretrained: bool = True) -> None:
    """Remove the artefacts of the run in ``run_dir`` (``pretrained.pt`` too unless kept)."""
    run_dir = Path(run_dir)
    names = [*ARTEFACTS, *(() if keep_pretrained else ("pretrained.pt",))]
    for name in names:
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    logger.info("cleared the earlier run in %s", run_dir)
