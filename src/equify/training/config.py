"""Configuration of ``equify pretrain`` / ``adapt`` / ``evaluate``: defaults, YAML, overrides.

A configuration is a nested dictionary with the sections below; every key has a default, a YAML
file overrides some of them, and ``key.path=value`` overrides (from the command line) come last.
The resolved configuration is saved beside the results (``config.yaml``).

Sections:
    ``data``: which data set and how to prepare it.
    ``model``: the pretrained predictor: an architecture to pretrain, or a user checkpoint
    (+ factory).
    ``pretrain``: training of the stand-in pretrained model on upright data.
    ``adapt``: the methods to run and the canonicalizer's settings.
    ``evaluate``: what the report measures.
    ``trainer``: PyTorch Lightning settings (accelerator, devices, strategy, num_nodes, ...).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from equify.training.methods import get_method, method_names
from equify.training.methods.base import prior_warmup_epochs
from equify.training.tasks import get_task, task_for_data

__all__ = [
    "DEFAULTS",
    "DEFAULT_METHODS",
    "METHODS",
    "apply_overrides",
    "load_config",
    "parse_override",
    "save_config",
    "validate_config",
]

#: The default methods (the papers' baselines): fine-tuning on upright data, fine-tuning with
#: group augmentation, learned canonicalization without and with the prior. Every registered
#: method (``equify.training.methods.method_names()``) can be named in ``adapt.methods``.
DEFAULT_METHODS = ("vanilla", "augment", "canon", "canon-prior")
#: The methods registered when this module was imported (``method_names()`` is always current).
METHODS = method_names()
#: "auto": discrete for C<n>/D<n>, continuous for SO2/O2.
CANONICALIZERS = ("auto", "discrete", "optimization", "continuous")
PRIORS = ("identity", "data")
#: What adaptation does with the predictor's BatchNorm statistics: keep the pretrained ones
#: ("frozen") or re-estimate them on the adaptation batches ("update").
NORM_STATS = ("frozen", "update")
#: adapt.lr_schedule: Adam at constant rates, or a one-cycle ramp up and anneal per batch;
#: "auto" is one-cycle for the canonicalization methods and constant for the others
LR_SCHEDULES = ("auto", "constant", "onecycle")

#: How ``data.size`` is reached: zero-padding (never rescales) or a bilinear resize.
FITS = ("pad", "resize")
#: Keys that must be true booleans (YAML ``true``/``false``), not strings or numbers.
BOOLEAN_KEYS = (
    ("data", "normalize"),
    ("adapt", "freeze_predictor"),
    ("trainer", "progress_bar"),
    ("trainer", "deterministic"),
    ("evaluate", "zero_shot"),
    ("evaluate", "oracle"),
)

DEFAULTS: dict[str, Any] = {
    "output_dir": "runs/default",
    "seed": 0,
    # what the model predicts (equify.training.tasks): classification, segmentation; a task
    # may change some of these defaults (segmentation: digit-scenes and a U-Net)
    "task": "classification",
    "data": {
        "name": "mnist",
        "root": None,
        "size": None,
        "fit": "pad",
        "test_fraction": 0.2,
        "val_fraction": 0.1,
        "normalize": True,
        "max_train": None,
        "max_val": None,
        "max_test": None,
        # free-form keyword arguments of the task's data loader (segmentation: n_train,
        # n_test, per_scene)
        "kwargs": {},
    },
    "model": {
        "architecture": "small_cnn",
        "kwargs": {},
        "checkpoint": None,
        "factory": None,
        # pretrained weights for a registered architecture: "imagenet" or a weights file
        "weights": None,
    },
    "pretrain": {
        "epochs": 6,
        "batch_size": 64,
        "lr": 2e-3,
    },
    "adapt": {
        "methods": list(DEFAULT_METHODS),
        "group": "C4",
        "canonicalizer": "auto",
        "prior": "identity",
        "prior_weight": 5.0,
        # canon-prior: first epochs on the prior alone (the canonicalizer learns "upright"
        # before the task loss and the predictor join); part of adapt.epochs; "auto" is a fifth
        # of adapt.epochs, rounded down
        "prior_warmup_epochs": "auto",
        "beta": 1.0,  # inverse temperature of the discrete canonicalizer's softmax
        # longest side of the image the canonicalization network sees (larger ones are shrunk)
        "canonicalizer_view": 64,
        # the canonicalization network's capacity: G-conv blocks and regular fields per block
        # (null: the network's own defaults, see GroupScoreNetwork)
        "canonicalizer_layers": None,
        "canonicalizer_width": None,
        # "constant" or "onecycle" (ramp up, then anneal; per batch, every parameter group);
        # "auto": one-cycle for canon / canon-prior, constant for fine-tuning and symmetrizers
        "lr_schedule": "auto",
        "freeze_predictor": False,
        "norm_stats": "frozen",
        "epochs": 10,
        "batch_size": 64,
        "lr_canonicalizer": 5e-3,
        "lr_predictor": 2e-4,
    },
    "evaluate": {
        "angles_step": 15,
        "batch_size": 500,
        "invariance_images": 64,
        "timing_batch": 64,
        # also evaluate the pretrained model wrapped by equitune and equizero, untrained
        "zero_shot": False,
        # the pretrained model on each orbit image turned back by its true inverse
        "oracle": True,
    },
    "trainer": {
        "accelerator": "auto",
        "devices": "auto",
        "strategy": "auto",
        "num_nodes": 1,
        "precision": "32-true",
        "progress_bar": True,
        "deterministic": False,
    },
}


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in base:
            valid = ", ".join(sorted(base))
            raise ValueError(f"unknown configuration key {path!r}; valid keys here: {valid}")
        if key == "kwargs" and isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = {**base[key], **copy.deepcopy(value)}  # free-form: merged, not checked
        elif isinstance(base[key], dict) and key != "kwargs":
            if not isinstance(value, dict):
                raise ValueError(f"configuration key {path!r} must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, f"{path}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _yaml():
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - train extra missing
        raise ImportError(
            'reading and writing configuration files needs PyYAML: pip install "equify[train]"'
        ) from err
    return yaml


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``"adapt.group=C8"`` into ``(["adapt", "group"], "C8")`` (values read as YAML)."""
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"expected an override of the form key.path=value, got {text!r}")
    key, raw = text.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ValueError(f"empty key in override {text!r}")
    return keys, _safe_load(raw, f"override {text!r}") if raw.strip() else None


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a configuration (returns a new one)."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        config = _merge(config, nested)
    return config


#: Scientific notation without a dot (``1e-3``), which YAML 1.1 reads as a string.
_SCIENTIFIC = re.compile(r"[+-]?\d+[eE][+-]?\d+")


def _numbers(value: Any) -> Any:
    """``value`` with every ``1e-3``-style string read as the float it spells."""
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _safe_load(text: str, source: str) -> Any:
    """``yaml.safe_load`` with a one-line ValueError naming the source, line and column;
    ``1e-3`` is read as a number (YAML 1.1 needs ``1.0e-3``)."""
    yaml = _yaml()
    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ValueError(f"{where}: invalid YAML: {detail}") from None


def _as_trained_by_older_runs(loaded: dict[str, Any]) -> None:
    """Fill in the keys a run saved by an earlier equify lacks, with what that run used.

    A run's ``config.yaml`` holds every key that existed when it was saved. Keys added later
    would otherwise take today's defaults, and a run trained at constant rates with two G-conv
    blocks could neither load its weights nor resume: ``adapt.lr_schedule`` (added with the
    one-cycle default) is ``"constant"``; ``adapt.canonicalizer_layers`` is 2 where the
    default score network (discrete canonicalizer, finite image group) had two blocks.
    """
    a = loaded.get("adapt")
    if not isinstance(a, dict):
        return
    a.setdefault("lr_schedule", "constant")
    if "canonicalizer_layers" not in a and a.get("canonicalizer", "auto") in ("auto", "discrete"):
        from equify.groups import FiniteGroup
        from equify.groups import group as parse_group

        try:
            group = parse_group(a.get("group", DEFAULTS["adapt"]["group"]))
            finite = isinstance(group, FiniteGroup)
        except (TypeError, ValueError):
            finite = False  # validation reports the bad group
        if finite and loaded.get("task") in (None, "classification", "segmentation"):
            a["canonicalizer_layers"] = 2


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, saved_run: bool = False
) -> dict:
    """Defaults, updated by the YAML file at ``path`` and then by ``overrides``; validated.

    ``saved_run=True`` reads ``path`` as a run's own ``config.yaml`` (``evaluate``, ``--resume``,
    ``load_adapted``): keys that equify added after the run was saved take the values the run
    was trained with, not today's defaults.
    """
    loaded: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"configuration file not found: {p}")
        loaded = _safe_load(p.read_text(), str(p)) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{p} must hold a mapping of configuration sections, got {loaded!r}")
        if saved_run:
            _as_trained_by_older_runs(loaded)
    overrides = list(overrides or [])
    # the task's own defaults come first: the file and the overrides are applied over them
    task = apply_overrides(
        {"task": loaded.get("task")}, [o for o in overrides if parse_override(o)[0] == ["task"]]
    )["task"]
    if task is None:  # no task named: the data set's (qm9 -> molecules), else classification
        section = loaded.get("data") if isinstance(loaded.get("data"), dict) else {}
        name = apply_overrides(
            {"data": {"name": section.get("name")}},
            [o for o in overrides if parse_override(o)[0] == ["data", "name"]],
        )["data"]["name"]
        task = task_for_data(name) or DEFAULTS["task"]
    config = _merge(copy.deepcopy(DEFAULTS), get_task(task).defaults)
    config["task"] = task
    config = _merge(config, loaded)
    config = apply_overrides(config, overrides)
    return validate_config(_absolute_paths(config))


def _absolute_paths(config: dict[str, Any]) -> dict[str, Any]:
    """``model.checkpoint`` and ``data.root`` as absolute paths (relative ones are resolved
    against the working directory), so that a saved run is usable from anywhere."""
    for section, key in (("model", "checkpoint"), ("data", "root"), ("model", "weights")):
        v = config[section][key]
        if key == "weights" and (
            _is_weights_name(config["model"])
            or not (isinstance(v, str) and Path(v).expanduser().is_file())
        ):
            continue  # a weights name such as "imagenet" (a name wins over a file of that name)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            config[section][key] = str(Path(v).expanduser().resolve())
        elif isinstance(v, str) and v.startswith("~"):
            config[section][key] = str(Path(v).expanduser())
    return config


def save_config(config: dict[str, Any], path: str | Path) -> Path:
    """Write the resolved configuration as YAML."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(_yaml().safe_dump(config, sort_keys=False))
    return p


def _positive(value: object, name: str, kind: type = int) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        raise ValueError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def _check_canonicalizer_group(kind: str, g: object) -> None:
    from equify.groups import O2, SO2, FiniteGroup

    if kind == "continuous" and not isinstance(g, (SO2, O2)):
        raise ValueError(
            f"adapt.canonicalizer=continuous needs adapt.group SO2 or O2 (images), got {g}"
        )
    if kind in ("discrete", "optimization") and isinstance(g, (SO2, O2)):
        raise ValueError(
            f"adapt.canonicalizer={kind} needs a finite group (C<n> or D<n>), got {g}: "
            "use adapt.canonicalizer=continuous or auto"
        )
    if not isinstance(g, (FiniteGroup, SO2, O2)):
        raise ValueError(f"adapt.group {g} is not supported for images; use C<n>, D<n>, SO2, O2")


def _is_weights_name(m: dict[str, Any]) -> bool:
    """Whether ``model.weights`` is a known weights name of ``model.architecture``."""
    from equify.models.pretrained import PRETRAINED_WEIGHTS

    return (m["architecture"], m["weights"]) in PRETRAINED_WEIGHTS


def _check_weights(m: dict[str, Any]) -> None:
    """``model.weights``: None, a known name for ``model.architecture``, or a file path.

    A path is not required to exist here (a saved run's configuration stays loadable when the
    file moves: its weights are in ``pretrained.pt``); pretraining reports a missing file.
    """
    from equify.models.pretrained import PRETRAINED_WEIGHTS

    w = m["weights"]
    if w is None:
        return
    if not isinstance(w, str) or not w:
        raise ValueError(f"model.weights must be a weights name or a file path, got {w!r}")
    if m["checkpoint"] is not None:
        raise ValueError(
            "model.weights initialises model.architecture before pretraining; a "
            "model.checkpoint (--checkpoint) already holds its weights: give one of the two"
        )
    p = Path(w)
    if _is_weights_name(m) or p.suffix or len(p.parts) > 1 or p.expanduser().is_file():
        return
    known = sorted(name for arch, name in PRETRAINED_WEIGHTS if arch == m["architecture"])
    raise ValueError(
        f"model.weights={w!r} is neither a file path nor a known name for architecture "
        f"{m['architecture']!r} (known: {', '.join(known) or 'none'})"
    )


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check types and names; raise ValueError naming the key and the valid values."""
    from equify.groups import FiniteGroup
    from equify.groups import group as parse_group

    a, d = config["adapt"], config["data"]
    task = get_task(config["task"])  # raises with the valid names
    config["task"] = task.name
    methods = a["methods"]
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
        a["methods"] = methods
    if not isinstance(methods, list) or not methods:
        raise ValueError(f"adapt.methods must be a non-empty list, got {methods!r}")
    for m in methods:
        if m not in method_names():
            valid = ", ".join(method_names())
            raise ValueError(f"unknown method {m!r} in adapt.methods; valid: {valid}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise ValueError(f"adapt.methods lists {', '.join(repeated)} more than once: {methods!r}")
    for section, key in BOOLEAN_KEYS:
        v = config[section][key]
        if not isinstance(v, bool):
            raise ValueError(f"{section}.{key} must be true or false, got {v!r}")
    if d["fit"] not in FITS:
        raise ValueError(f"unknown data.fit {d['fit']!r}; valid: {', '.join(FITS)}")
    m = config["model"]
    if m["factory"] is not None and m["checkpoint"] is None:
        raise ValueError(
            f"model.factory ({m['factory']!r}) builds the model of a checkpoint: give "
            "model.checkpoint (--checkpoint) too, or drop the factory"
        )
    g = parse_group(a["group"])  # raises with the valid forms
    if a["canonicalizer"] not in CANONICALIZERS:
        raise ValueError(
            f"unknown canonicalizer {a['canonicalizer']!r}; valid: {', '.join(CANONICALIZERS)}"
        )
    if task.image_task:  # the 3-D tasks check their groups themselves
        _check_canonicalizer_group(a["canonicalizer"], g)
    for m in methods:
        get_method(m).check(config)
    if config["evaluate"]["zero_shot"] is True and not isinstance(g, FiniteGroup):
        raise ValueError(
            f"evaluate.zero_shot wraps the pretrained model by equitune and equizero over a "
            f"finite group (C<n> or D<n>), got adapt.group {g}"
        )
    if a["prior"] == "data" and not isinstance(g, FiniteGroup):
        raise ValueError("adapt.prior=data needs a finite group (C<n> or D<n>)")
    if a["norm_stats"] not in NORM_STATS:
        raise ValueError(
            f"unknown adapt.norm_stats {a['norm_stats']!r}; valid: {', '.join(NORM_STATS)}"
        )
    if a["prior"] not in PRIORS:
        raise ValueError(f"unknown prior {a['prior']!r}; valid: {', '.join(PRIORS)}")
    for name, keys in (
        ("pretrain", ("epochs", "batch_size")),
        ("adapt", ("epochs", "batch_size")),
        ("evaluate", ("batch_size", "angles_step", "invariance_images", "timing_batch")),
    ):
        for k in keys:
            _positive(config[name][k], f"{name}.{k}")
    rates = ("lr_canonicalizer", "lr_predictor", "beta")
    for name, keys in (("pretrain", ("lr",)), ("adapt", rates)):
        for k in keys:
            _positive(config[name][k], f"{name}.{k}", float)
    if not isinstance(a["prior_weight"], (int, float)) or a["prior_weight"] < 0:
        raise ValueError(f"adapt.prior_weight must be >= 0, got {a['prior_weight']!r}")
    for k in ("val_fraction", "test_fraction"):
        v = d[k]
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ValueError(f"data.{k} must be in (0, 1), got {v!r}")
    for k in ("max_train", "max_val", "max_test", "size"):
        if d[k] is not None:
            _positive(d[k], f"data.{k}")
    if not isinstance(config["seed"], int):
        raise ValueError(f"seed must be an int, got {config['seed']!r}")
    _check_weights(config["model"])
    _positive(a["canonicalizer_view"], "adapt.canonicalizer_view")
    for k in ("canonicalizer_layers", "canonicalizer_width"):
        if a[k] is not None:
            _positive(a[k], f"adapt.{k}")
            if a["canonicalizer"] == "optimization":
                raise ValueError(
                    f"adapt.{k} sets the score network of the discrete and continuous "
                    "canonicalizers; the optimization canonicalizer has none"
                )
    if a["lr_schedule"] not in LR_SCHEDULES:
        raise ValueError(
            f"unknown adapt.lr_schedule {a['lr_schedule']!r}; valid: {', '.join(LR_SCHEDULES)}"
        )
    w = a["prior_warmup_epochs"]
    if w != "auto" and (isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < a["epochs"]):
        raise ValueError(
            f"adapt.prior_warmup_epochs must be 'auto' or an int in [0, adapt.epochs = "
            f"{a['epochs']}), got {w!r}"
        )
    w = prior_warmup_epochs(a)
    if w and "canon-prior" in methods and not a["prior_weight"]:
        raise ValueError(
            "adapt.prior_warmup_epochs trains on the prior alone: it needs adapt.prior_weight > 0"
        )
    for section in ("model", "data"):
        if not isinstance(config[section]["kwargs"], dict):
            raise ValueError(f"{section}.kwargs must be a mapping")
    task.check(config)
    return config
