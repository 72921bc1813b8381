"""Rules of a run directory: one process at a time, one configuration per directory.

* **Lock.** ``equify adapt`` / ``pretrain`` / ``evaluate`` hold an ``flock`` on
  ``<run>/.equify.lock`` (which names the owner: pid, host, command, start time) while they
  run. A second command on the same directory stops at once with a message naming the owner.
  The kernel releases the lock of a process that dies, so a dead process never blocks a run.
* **One configuration.** A directory belongs to the configuration in its ``config.yaml`` (and its
  ``pretrained.pt`` to the settings in that file's metadata). A fresh ``adapt`` whose settings
  differ, or a ``pretrain`` that would replace a pretrained model trained with other settings,
  refuses and lists the differences (the ``trainer`` and ``evaluate`` sections may change);
  ``--resume`` refuses the same way; ``--overwrite`` clears the old run's artefacts first
  (only what equify wrote), and ``--output`` picks another directory.
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
    "holds_run",
    "is_rank_zero",
]

logger = logging.getLogger(__name__)

LOCK_NAME = ".equify.lock"
#: The files a run writes at the top of its directory (besides ``pretrained.pt``).
ARTEFACTS = (
    "config.yaml",
    "results.json",
    "accuracy_vs_angle.png",
    "canonical_orientations.png",
    "canonicalized_examples.png",
    "learned_equivariance.png",
    "segmentation_examples.png",
)
# Settings that do not change what a run trains: where it runs and how it is evaluated. A run
# directory may be re-run or resumed with other values of these.
_NOT_IDENTITY = ("output_dir", "trainer", "evaluate")


class RunDirectoryError(ValueError):
    """The run directory is in use, or holds another run that a command would overwrite."""


def is_rank_zero() -> bool:
    """False in the worker processes of a distributed run (rank > 0 in the environment)."""
    return all(os.environ.get(k, "0") in ("", "0") for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class RunLock:
    """Exclusive use of a run directory for one command (a context manager).

    The lock is an ``flock`` on ``<run>/.equify.lock``: the kernel releases it when its process
    ends in any way (crash, ``kill -9``), so a lock is never stale and two processes can never
    both hold it. The file's content (pid, host, command, start time) only names the owner in
    the message. On file systems without ``flock`` (some network mounts) the lock is advisory.

    Args:
        run_dir: the run directory (created if missing; removed again on exit if the command
            left it empty).
        command: what holds it, for the message (``"equify adapt"``).

    Raises:
        RunDirectoryError: on entry, when another process holds the directory.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.command = command
        self.fd: int | None = None
        self.created = False

    @staticmethod
    def _describe(info: dict[str, Any]) -> str:
        started = info.get("started")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
        return (
            f"pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"`{info.get('command', '?')}`, since {when}"
        )

    def _owner(self) -> dict[str, Any]:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> RunLock:
        if not is_rank_zero():
            return self  # the rank-0 process holds the directory for the whole run
        import fcntl

        self.created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirectoryError(
                    f"{self.run_dir} is in use by another equify process "
                    f"({self._describe(self._owner())}): wait for it to finish or choose another "
                    "--output"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder before us removed the file while we opened it: again
                os.close(fd)
                continue
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": self.command,
                "started": time.time(),
            }
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
            self.fd = fd
            return self
        raise RunDirectoryError(f"could not take the lock {self.path}")  # pragma: no cover

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        # unlink while still holding the lock: a process that opened the old file then sees
        # that it is gone (the inode check above) and starts over
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
        if self.created and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
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
    """``"section.key: old -> new"`` for every setting that differs.

    The ``trainer`` and ``evaluate`` sections and ``output_dir`` are not compared (they do not
    change what is trained); numbers compare by value (``1`` equals ``1.0``).

    Args:
        old, new: two configurations.
        keys: compare only these flattened keys (tuples such as ``("data", "name")``).
    """
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key[0] in _NOT_IDENTITY or (keys is not None and key not in keys):
            continue
        if _normal(a.get(key)) != _normal(b.get(key)):
            out.append(f"{'.'.join(key)}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def _normal(v: Any) -> str:
    """A comparable form: numbers as floats, containers recursively, the rest as JSON."""

    def norm(x: Any) -> Any:
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return x
        if isinstance(x, (int, float)):
            return float(x)
        if isinstance(x, dict):
            return {str(k): norm(w) for k, w in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(w) for w in x]
        return str(x)

    return json.dumps(norm(v), sort_keys=True)


def holds_run(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` holds an equify run (its ``config.yaml`` or ``pretrained.pt``)."""
    d = Path(run_dir)
    return (d / "config.yaml").is_file() or (d / "pretrained.pt").is_file()


def clear_run(
    run_dir: str | os.PathLike, methods: tuple[str, ...], keep_pretrained: bool = True
) -> None:
    """Remove what equify wrote for a run in ``run_dir``, and nothing else.

    Only the files and per-method folders equify writes are removed (``config.yaml``,
    ``results.json``, the report's plots, ``models/<method>.pt``, ``checkpoints/<method>/``,
    ``logs/<method>/`` for ``methods`` and ``pretrain``, and ``pretrained.pt`` unless kept); a
    folder such as ``models/`` goes only if that leaves it empty. A directory that holds no
    equify run is left alone.
    """
    d = Path(run_dir)
    if not holds_run(d):
        return
    names = [*methods, "pretrain"]
    paths = [d / f for f in ARTEFACTS]
    paths += [d / "models" / f"{m}.pt" for m in names]
    paths += [d / "checkpoints" / m for m in names] + [d / "logs" / m for m in names]
    if not keep_pretrained:
        paths.append(d / "pretrained.pt")
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for folder in ("models", "checkpoints", "logs"):
        f = d / folder
        if f.is_dir() and not any(f.iterdir()):
            f.rmdir()
    logger.info("cleared the earlier run in %s", d)
