"""Save and load model checkpoints: atomic writes, safe loads, users' checkpoints and factories.

File format written by :func:`save_checkpoint` (a ``torch.save`` zip file, loadable with
``torch.load(..., weights_only=True)``)::

    {
        "format": "equify.checkpoint",
        "format_version": 1,
        "state_dict": {name: tensor, ...},
        "metadata": {...},          # JSON-like; "architecture": {"name": ..., "kwargs": {...}}
        "torch_version": "2.x.y",
        "equify_version": "0.1.0",  # or None when equify is not installed as a distribution
    }

:func:`load_model` also reads users' checkpoints: a raw state dict, Lightning's
``{"state_dict": ...}``, ``{"model_state_dict": ...}`` or ``{"model": ...}``, with the
``"module."`` prefix of ``DataParallel``/``DistributedDataParallel``, the ``"_orig_mod."`` prefix of
``torch.compile`` and a LightningModule's attribute prefix such as ``"model."`` removed when that
makes the keys match the model. Everything is loaded with ``torch.load(weights_only=True)``: a
checkpoint never runs code, and a factory named in a checkpoint's metadata is never imported
unless the caller passes it explicitly.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import os
import pickle
import secrets
import stat
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from equify.models.registry import architecture_of, available_models, create_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "atomic_torch_save",
    "extract_state_dict",
    "load_model",
    "load_state_dict_into",
    "read_checkpoint",
    "resolve_factory",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "equify.checkpoint"
FORMAT_VERSION = 1
# Wrapper keys of common checkpoint layouts, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Key prefixes added by wrappers: DataParallel/DDP, torch.compile, a LightningModule's attribute.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
_MAX_PREFIX_DEPTH = 3
_SHOWN = 5  # keys shown per category in mismatch messages

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Checkpoint:
    """The content of a checkpoint file.

    Attributes:
        state_dict: parameter and buffer tensors by name (wrapper prefixes not yet removed).
        metadata: the JSON-like metadata of an equify checkpoint; ``{}`` for other checkpoints.
        source: the layout found: ``"equify"``, ``"raw"`` (a bare state dict), or the wrapper key
            (``"state_dict"``, ``"model_state_dict"``, ``"model"``).
    """

    state_dict: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "raw"


# ----------------------------------------------------------------------------------------------
# helpers


def _as_path(path: object, name: str = "path") -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    raise TypeError(f"expected {name} as a str or os.PathLike, got {type(path).__name__}")


def _json_like(value: object, where: str) -> Any:
    """A JSON-like copy of ``value`` (tuples become lists); TypeError naming the bad entry."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_like(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"expected str keys in {where}, got key {k!r}")
            out[k] = _json_like(v, f"{where}[{k!r}]")
        return out
    raise TypeError(
        f"expected JSON-like metadata (None, bool, int, float, str, list, dict), got "
        f"{type(value).__name__} at {where}"
    )


def _check_architecture(arch: object, where: str) -> dict[str, Any]:
    if (
        not isinstance(arch, Mapping)
        or not isinstance(arch.get("name"), str)
        or not isinstance(arch.get("kwargs", {}), Mapping)
    ):
        raise ValueError(f"expected {where} as {{'name': str, 'kwargs': dict}}, got {arch!r}")
    return {"name": arch["name"], "kwargs": dict(arch.get("kwargs", {}))}


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
        for k, v in obj.items()
    )


def _equify_version() -> str | None:
    try:
        return importlib_metadata.version("equify")
    except importlib_metadata.PackageNotFoundError:
        return None


def _fsync_directory(directory: Path) -> None:
    """Persist a rename on POSIX; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _open_temporary(directory: Path, name: str) -> tuple[int, Path]:
    """Create a new, empty, hidden file next to the target (mode 0o666 minus the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file, flush + fsync, then ``os.replace`` onto ``path``.

    An interruption at any point leaves ``path`` with its previous content (or absent).
    """
    if path.is_dir():
        raise IsADirectoryError(f"cannot write a checkpoint to {path}: it is a directory")
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temporary(directory, path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(directory)


# ----------------------------------------------------------------------------------------------
# saving


def save_checkpoint(
    path: PathLike,
    model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically: the file at ``path`` is either the old one or the new one.

    The checkpoint is serialised into a hidden temporary file in the same directory, flushed and
    fsynced, then renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows). If
    anything fails midway, the temporary file is removed and ``path`` keeps its previous content
    (or still does not exist). Missing parent directories are created.

    Args:
        path: the target file (conventionally ``*.pt``).
        model_or_state_dict: an ``nn.Module`` (its ``state_dict()`` is saved) or a mapping of
            names to tensors.
        metadata: JSON-like extra information (None, bool, int, float, str, lists, dicts with
            str keys; tuples are stored as lists). ``metadata["architecture"]``, if given, must
            be ``{"name": registry_name, "kwargs": {...}}``; when absent and the model was built
            by :func:`equify.models.create_model`, its name and kwargs are stored there, so
            :func:`load_model` can rebuild it without a factory.

    Returns:
        The path written.

    Raises:
        TypeError: a bad ``path``, a state dict with non-str keys or non-tensor values, or
            metadata that is not JSON-like.
        ValueError: a malformed ``metadata["architecture"]``.
        IsADirectoryError: ``path`` is a directory.
    """
    target = _as_path(path)
    if isinstance(model_or_state_dict, nn.Module):
        state = model_or_state_dict.state_dict()
        arch = architecture_of(model_or_state_dict)
    elif isinstance(model_or_state_dict, Mapping):
        state, arch = model_or_state_dict, None
    else:
        raise TypeError(
            "expected an nn.Module or a state dict (a mapping of names to tensors), got "
            f"{type(model_or_state_dict).__name__}"
        )
    if not _is_state_dict(state):
        bad = next(
            (k, v) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)
        )
        raise TypeError(
            f"expected a state dict of str keys and tensor values, got {bad[0]!r}: "
            f"{type(bad[1]).__name__}"
        )
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"expected metadata as a dict or None, got {type(metadata).__name__}")
    meta = _json_like(dict(metadata or {}), "metadata")
    if "architecture" in meta:
        meta["architecture"] = _check_architecture(meta["architecture"], "metadata['architecture']")
    elif arch is not None:
        try:
            meta["architecture"] = _json_like(arch, "architecture")
        except TypeError as err:
            logger.warning(
                "not storing the architecture of %s in %s (%s); load_model will need a factory",
                arch["name"],
                target,
                err,
            )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach() if torch.is_tensor(v) else v for k, v in state.items()},
        "metadata": meta,
        "torch_version": str(torch.__version__),
        "equify_version": _equify_version(),
    }
    atomic_torch_save(payload, target)
    logger.info("saved checkpoint %s (%d tensors)", target, len(payload["state_dict"]))
    return target


# ----------------------------------------------------------------------------------------------
# reading


def extract_state_dict(obj: object) -> Checkpoint:
    """Find the state dict in a loaded checkpoint object.

    Args:
        obj: what ``torch.load`` returned: an equify checkpoint, a raw state dict, or a dict
            wrapping one under ``"state_dict"`` (Lightning), ``"model_state_dict"`` or
            ``"model"`` (possibly nested).

    Returns:
        A :class:`Checkpoint`; key prefixes are kept (see :func:`load_state_dict_into`).

    Raises:
        ValueError: no state dict found (the message lists the top-level keys).
    """
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"unsupported equify checkpoint format version {version!r}; this equify "
                f"reads versions up to {FORMAT_VERSION}"
            )
        meta = obj.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"expected the checkpoint's metadata as a dict, got {meta!r}")
        if not _is_state_dict(obj.get("state_dict")):
            raise ValueError("the equify checkpoint has no valid 'state_dict' (names to tensors)")
        return Checkpoint(dict(obj["state_dict"]), copy.deepcopy(dict(meta)), "equify")
    if _is_state_dict(obj):
        return Checkpoint(dict(obj), {}, "raw")
    cur, source = obj, None
    for _ in range(_MAX_PREFIX_DEPTH):
        if not isinstance(cur, Mapping):
            break
        key = next((k for k in _WRAPPER_KEYS if isinstance(cur.get(k), Mapping)), None)
        if key is None:
            break
        cur, source = cur[key], source or key
        if _is_state_dict(cur):
            return Checkpoint(dict(cur), {}, source)
    if isinstance(obj, Mapping):
        keys = [repr(k) for k in list(obj)[:10]]
        more = f" (and {len(obj) - 10} more)" if len(obj) > 10 else ""
        raise ValueError(
            "no state dict found in the checkpoint: expected a mapping of names to tensors or a "
            f"dict with one under {', '.join(map(repr, _WRAPPER_KEYS))}; got a dict with keys "
            f"{', '.join(keys)}{more}"
        )
    raise ValueError(
        f"no state dict found in the checkpoint: expected a dict, got {type(obj).__name__}"
    )


def read_checkpoint(path: PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Load a checkpoint file safely (``torch.load(weights_only=True)``) and find its state dict.

    Args:
        path: the checkpoint file.
        map_location: passed to ``torch.load`` (``"cpu"`` by default).

    Returns:
        A :class:`Checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a loadable checkpoint (corrupt, truncated, or it pickles
            objects other than tensors and plain containers), or holds no state dict.
    """
    p = _as_path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise IsADirectoryError(f"expected a checkpoint file, got the directory {p}")
    kind = _archive_kind(p)
    if kind == "corrupt":
        raise ValueError(
            f"{p} is not a readable PyTorch checkpoint (corrupt or truncated file?): it is "
            "neither a complete torch.save archive nor a legacy pickle (a truncated download "
            "or copy, or another kind of file). Save or download it again."
        )
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"could not load {p} with torch.load(weights_only=True): it is a valid archive "
            "that pickles objects other than tensors and plain containers (a whole pickled "
            "model?). Unpickling such a file runs code from it: only if you trust its source, "
            "load it yourself with torch.load(..., weights_only=False), take its state_dict() "
            f"and pass that to load_state_dict_into. The unpickler said: {_first_line(err)}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, struct.error) as err:
        raise ValueError(
            f"could not read {p} as a PyTorch checkpoint (corrupt or truncated file?): "
            f"{type(err).__name__}: {_first_line(err)}"
        ) from err
    return extract_state_dict(obj)


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an error message, whole."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def _archive_kind(path: Path) -> str:
    """``"zip"`` (a torch.save archive whose members all check out), ``"legacy"`` (a file that
    starts like a pickle) or ``"corrupt"``."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return "zip" if archive.testzip() is None else "corrupt"
        except (OSError, zipfile.BadZipFile, EOFError):
            return "corrupt"
    with path.open("rb") as f:
        head = f.read(2)
    # pickle protocol 2+ starts with PROTO (0x80); torch's legacy format is a pickle stream
    return "legacy" if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5 else "corrupt"


# ----------------------------------------------------------------------------------------------
# matching a state dict to a model


def _prefix_candidates(state: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(removed_prefix, state)`` for every chain of up to 3 wrapper prefixes present."""
    out = [("", state)]
    frontier = out
    for _ in range(_MAX_PREFIX_DEPTH):
        new = []
        for removed, cur in frontier:
            for p in _WRAPPER_PREFIXES:
                sub = {k[len(p) :]: v for k, v in cur.items() if k.startswith(p)}
                if sub:
                    new.append((removed + p, sub))
        out = out + new
        frontier = new
    return out


def _align_keys(state: dict[str, Any], expected: set[str]) -> tuple[dict[str, Any], str]:
    """Remove the wrapper prefixes that make ``state`` match ``expected`` best.

    Chooses the candidate with the most keys in ``expected``; ties go to fewer dropped keys,
    then the shorter prefix (so an unwrapped state dict is never altered).
    """
    best_score, best = None, ("", state)
    for removed, cand in _prefix_candidates(state):
        score = (len(expected.intersection(cand)), len(cand) - len(state), -len(removed))
        if best_score is None or score > best_score:
            best_score, best = score, (removed, cand)
    removed, cand = best
    if removed:
        logger.info(
            "removed the key prefix %r from the checkpoint (%d of %d keys kept)",
            removed,
            len(cand),
            len(state),
        )
    return cand, removed


def _listing(items: list[str], what: str) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = f", ... ({len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
    return f"{len(items)} {what}: {shown}{more}"


def _mismatch_message(
    model: nn.Module,
    missing: list[str],
    unexpected: list[str],
    shapes: list[str],
    removed: str,
) -> str:
    parts = []
    if missing:
        parts.append(_listing(missing, "missing keys (in the model, not in the checkpoint)"))
    if unexpected:
        parts.append(_listing(unexpected, "unexpected keys (in the checkpoint, not in the model)"))
    if shapes:
        parts.append(_listing(shapes, "shape mismatches (checkpoint vs model)"))
    note = f" after removing the prefix {removed!r}" if removed else ""
    return (
        f"the checkpoint does not match the {type(model).__name__} architecture{note}:\n  "
        + "\n  ".join(parts)
        + "\nIs it the right factory / factory_kwargs (e.g. num_classes, in_channels) for this "
        "checkpoint?"
    )


def load_state_dict_into(
    model: nn.Module,
    path_or_state_dict: PathLike | Mapping[str, Any],
    strict: bool = True,
    map_location: Any = "cpu",
) -> nn.Module:
    """Copy a checkpoint's tensors into ``model``, with clear errors when they do not fit.

    Wrapper layouts and key prefixes (``"module."``, ``"_orig_mod."``, ``"model."``, up to three
    in a row) are removed when that makes more keys match the model's; keys without the removed
    prefix are then left out (e.g. a LightningModule's ``loss_fn.weight``), and an unwrapped
    state dict is never altered. Tensors are cast to the model's dtypes and devices by
    ``nn.Module.load_state_dict``.

    Args:
        model: the model to fill (modified in place, and returned).
        path_or_state_dict: a checkpoint file, a state dict, or a loaded checkpoint object.
        strict: require exactly the model's keys. With ``strict=False`` missing and unexpected
            keys are skipped (and logged as a warning); shape mismatches always raise.
        map_location: for ``torch.load`` when a path is given.

    Returns:
        ``model``.

    Raises:
        ValueError: keys or shapes do not match; the message names the first few missing keys,
            unexpected keys and shape mismatches with their counts.
        FileNotFoundError: a path that does not exist.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be an nn.Module, got {type(model).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"expected strict to be a bool, got {type(strict).__name__}")
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        state = read_checkpoint(path_or_state_dict, map_location).state_dict
    elif isinstance(path_or_state_dict, Mapping):
        state = extract_state_dict(path_or_state_dict).state_dict
    else:
        raise TypeError(
            f"expected a checkpoint path or a state dict, got {type(path_or_state_dict).__name__}"
        )
    own = model.state_dict()
    state, removed = _align_keys(state, set(own))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state
        and torch.is_tensor(own[k])
        and torch.is_tensor(state[k])
        and state[k].shape != own[k].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        raise ValueError(_mismatch_message(model, missing, unexpected, shapes, removed))
    if missing or unexpected:
        logger.warning(
            "loading with strict=False: %d missing keys (left as initialised), "
            "%d unexpected keys (ignored)",
            len(missing),
            len(unexpected),
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return model


# ----------------------------------------------------------------------------------------------
# factories and whole models


def resolve_factory(factory: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Turn ``"package.module:function"`` (or a callable) into a callable.

    The part after the colon may be dotted (``"pkg.mod:Class.build"``).

    Args:
        factory: a ``"module:attribute"`` string, e.g. ``"torchvision.models:resnet50"`` or
            ``"equify.models:resnet50"``, or a callable.

    Returns:
        The callable.

    Raises:
        ValueError: a string without exactly one colon or with an empty side, a missing
            attribute, or an attribute that is not callable.
        ImportError: the module cannot be imported.
        TypeError: ``factory`` is neither a string nor callable.
    """
    if callable(factory):
        return factory
    if not isinstance(factory, str):
        raise TypeError(
            "expected factory as a 'package.module:function' string or a callable, got "
            f"{type(factory).__name__}"
        )
    module_name, sep, attr_path = factory.partition(":")
    if not sep or not module_name.strip() or not attr_path.strip() or ":" in attr_path:
        raise ValueError(
            f"expected factory as 'package.module:function' (one colon), got {factory!r}"
        )
    module_name, attr_path = module_name.strip(), attr_path.strip()
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:
        raise ImportError(
            f"cannot import module {module_name!r} for factory {factory!r}: "
            f"{type(err).__name__}: {err}"
        ) from err
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(
                f"factory {factory!r}: {getattr(obj, '__name__', module_name)!r} has no "
                f"attribute {part!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"factory {factory!r} is not callable: it is a {type(obj).__name__}")
    return obj


def load_model(
    path: PathLike,
    factory: str | Callable[..., nn.Module] | None = None,
    factory_kwargs: Mapping[str, Any] | None = None,
    strict: bool = True,
    map_location: Any = "cpu",
) -> nn.Module:
    """Build a model and load a checkpoint into it; returns it in ``eval()`` mode.

    Two ways to say which network the weights belong to:

    * ``factory=None``: the checkpoint was written by :func:`save_checkpoint` with an
      architecture (``metadata["architecture"] = {"name", "kwargs"}``); the model is rebuilt by
      :func:`equify.models.create_model` with the stored kwargs updated by ``factory_kwargs``.
    * ``factory`` given: ``factory(**factory_kwargs)`` builds the model; it may be a callable or
      an importable ``"package.module:function"`` string (e.g. ``"torchvision.models:resnet50"``
      on a machine that has torchvision). Stored kwargs are not used.

    Args:
        path: the checkpoint file (equify, raw state dict, Lightning, ``{"model": ...}``, with
            ``"module."``/``"model."`` prefixes; see :func:`load_state_dict_into`).
        factory: see above.
        factory_kwargs: keyword arguments for the factory.
        strict: as in :func:`load_state_dict_into`.
        map_location: ``torch.load``'s ``map_location``; when it is a device or a string, the
            model is moved there too.

    Returns:
        The model, weights loaded, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: no architecture stored and no factory given, a bad factory string, an
            unknown architecture name, or a checkpoint that does not fit the model.
        ImportError: the factory's module cannot be imported.
        TypeError: the factory does not return an ``nn.Module``; bad argument types.
    """
    if factory_kwargs is not None and (
        not isinstance(factory_kwargs, Mapping)
        or not all(isinstance(k, str) for k in factory_kwargs)
    ):
        raise TypeError(f"expected factory_kwargs as a dict with str keys, got {factory_kwargs!r}")
    kwargs = dict(factory_kwargs or {})
    ckpt = read_checkpoint(path, map_location)
    if factory is None:
        if "architecture" not in ckpt.metadata:
            hint = ""
            stored = ckpt.metadata.get("factory")
            if isinstance(stored, str):
                hint = (
                    f" Its metadata names the factory {stored!r}; pass factory={stored!r} if you "
                    "trust it (factories are never imported from a checkpoint automatically)."
                )
            raise ValueError(
                f"{path} does not say which architecture it holds (a {ckpt.source!r} "
                "checkpoint without equify architecture metadata): pass "
                "factory='package.module:function' or a callable, and factory_kwargs." + hint
            )
        arch = _check_architecture(ckpt.metadata["architecture"], "metadata['architecture']")
        if arch["name"] not in available_models():
            raise ValueError(
                f"{path} holds a {arch['name']!r} model, which is not registered; register it "
                "with equify.models.register_model or pass factory=... (registered: "
                f"{', '.join(available_models())})"
            )
        model = create_model(arch["name"], **{**arch["kwargs"], **kwargs})
    else:
        build = resolve_factory(factory)
        model = build(**kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the factory {factory!r} returned {type(model).__name__}, not an nn.Module"
            )
    if isinstance(map_location, (str, torch.device)):
        model = model.to(map_location)
    load_state_dict_into(model, ckpt.state_dict, strict=strict)
    return model.eval()
