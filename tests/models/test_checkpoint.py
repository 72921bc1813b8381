"""Checkpoint input/output: round trips, atomic writes, users' checkpoints and factories, errors."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from equify.models import (
    CHECKPOINT_FORMAT,
    SmallCNN,
    create_model,
    extract_state_dict,
    load_model,
    load_state_dict_into,
    read_checkpoint,
    resnet18,
    resolve_factory,
    save_checkpoint,
)

from ..conftest import devices

LIGHT = {
    "small_cnn": {"in_channels": 1, "num_classes": 4, "channels": (8, 16)},
    "resnet18": {"in_channels": 1, "num_classes": 4, "small_input": True, "base_width": 4},
    "resnet50": {"in_channels": 1, "num_classes": 4, "base_width": 4},
    "vit_tiny": {"in_channels": 1, "num_classes": 4, "depth": 1, "embed_dim": 16},
    "dense": {"in_channels": 1, "num_classes": 4, "width": 4},
}

USER_MODULE = "equify_test_user_factories"


def _trained_like(model: nn.Module) -> nn.Module:
    """Move parameters and BN statistics away from their initial values."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.train()(torch.randn(4, model.in_channels, 20, 20))  # updates running statistics
    return model.eval()


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    """A user's own architecture and factories, importable as USER_MODULE."""
    source = textwrap.dedent(
        """
        import torch
        from torch import nn

        NOT_CALLABLE = 3


        class Net(nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.bn = nn.BatchNorm2d(4)
                self.fc = nn.Linear(4 * 6 * 6, num_classes)

            def forward(self, x):
                return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


        def build(num_classes=10):
            return Net(num_classes)


        class Builders:
            @staticmethod
            def small():
                return Net(2)


        def not_a_module():
            return "a string"
        """
    )
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{USER_MODULE}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, USER_MODULE, raising=False)
    yield USER_MODULE
    sys.modules.pop(USER_MODULE, None)


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_round_trip_through_the_registry_gives_identical_outputs(tmp_path, name) -> None:
    model = _trained_like(create_model(name, **LIGHT[name]))
    path = save_checkpoint(tmp_path / f"{name}.pt", model, metadata={"epochs": 3})
    loaded = load_model(path)  # no factory: the architecture is in the checkpoint
    assert type(loaded) is type(model)
    assert not loaded.training
    x = torch.randn(2, 1, 29, 29)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_checkpoint_layout_and_metadata(tmp_path) -> None:
    model = create_model("small_cnn", in_channels=1, num_classes=3, channels=(4, 8))
    path = save_checkpoint(
        tmp_path / "m.pt", model, metadata={"data": "mnist", "sizes": (27, 28), "nested": {"a": 1}}
    )
    raw = torch.load(path, weights_only=True)  # plain torch can read it, safely
    assert raw["format"] == CHECKPOINT_FORMAT and raw["format_version"] == 1
    assert set(raw["state_dict"]) == set(model.state_dict())
    ckpt = read_checkpoint(path)
    assert ckpt.source == "equify"
    assert ckpt.metadata["data"] == "mnist"
    assert ckpt.metadata["sizes"] == [27, 28]  # tuples are stored as lists
    assert ckpt.metadata["nested"] == {"a": 1}
    assert ckpt.metadata["architecture"] == {
        "name": "small_cnn",
        "kwargs": {"in_channels": 1, "num_classes": 3, "channels": [4, 8]},
    }


def test_explicit_architecture_metadata_and_factory_kwargs_override(tmp_path) -> None:
    state = SmallCNN(1, 3, channels=(4, 8)).state_dict()
    arch = {"name": "small_cnn", "kwargs": {"in_channels": 1, "num_classes": 3, "channels": [4, 8]}}
    path = save_checkpoint(tmp_path / "m.pt", state, metadata={"architecture": arch})
    loaded = load_model(path, factory_kwargs={"dropout": 0.25})
    assert loaded.head[1].p == 0.25
    assert loaded.channels == (4, 8)


def test_load_with_a_callable_factory_and_load_state_dict_into(tmp_path) -> None:
    model = _trained_like(SmallCNN(1, 3, channels=(4, 8)))
    path = save_checkpoint(tmp_path / "m.pt", model)  # built directly: no architecture stored
    assert "architecture" not in read_checkpoint(path).metadata
    loaded = load_model(
        path, factory=SmallCNN, factory_kwargs={"num_classes": 3, "channels": [4, 8]}
    )
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    fresh = SmallCNN(1, 3, channels=(4, 8))
    assert load_state_dict_into(fresh, path) is fresh
    other = SmallCNN(1, 3, channels=(4, 8))
    load_state_dict_into(other, model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))
        assert torch.equal(other.eval()(x), model(x))


def test_save_creates_parent_directories_and_respects_the_umask(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "a" / "b" / "m.pt", {"w": torch.ones(2)})
    assert path.is_file()
    umask = os.umask(0)
    os.umask(umask)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(IsADirectoryError):
        save_checkpoint(tmp_path / "a", {"w": torch.ones(2)})


@pytest.mark.parametrize("device", devices())
def test_map_location_moves_the_model(tmp_path, device) -> None:
    path = save_checkpoint(tmp_path / "m.pt", create_model("dense", **LIGHT["dense"]))
    loaded = load_model(path, map_location=device)
    assert all(p.device.type == torch.device(device).type for p in loaded.parameters())


# ---------------------------------------------------------------------------------------------
# atomic writes


class _SimulatedWriteError(Exception):
    pass


def _failing_save(written: list[int], exc: BaseException):
    def save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint " * 100)  # some bytes reach the disk, then ...
        f.flush()
        written.append(1)
        raise exc

    return save


@pytest.mark.parametrize("exc", [_SimulatedWriteError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch, exc) -> None:
    path = tmp_path / "model.pt"
    old = create_model("small_cnn", **LIGHT["small_cnn"])
    save_checkpoint(path, old)
    before = path.read_bytes()
    written: list[int] = []
    monkeypatch.setattr(torch, "save", _failing_save(written, exc))
    with pytest.raises(type(exc)):
        save_checkpoint(path, create_model("small_cnn", **LIGHT["small_cnn"]))
    assert written, "the failing save ran"
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["model.pt"], "no temporary file is left behind"
    monkeypatch.undo()
    with torch.no_grad():
        x = torch.randn(1, 1, 28, 28)
        assert torch.equal(load_model(path)(x), old.eval()(x))


def test_interrupted_first_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch, "save", _failing_save([], _SimulatedWriteError("boom")))
    with pytest.raises(_SimulatedWriteError):
        save_checkpoint(tmp_path / "new.pt", {"w": torch.ones(3)})
    assert _files(tmp_path) == []


def test_overwrite_replaces_the_file(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", {"w": torch.zeros(3)})
    save_checkpoint(path, {"w": torch.ones(3)})
    assert torch.equal(read_checkpoint(path).state_dict["w"], torch.ones(3))
    assert _files(tmp_path) == ["m.pt"]


# ---------------------------------------------------------------------------------------------
# users' checkpoints and factories


def test_user_factory_from_a_local_module(tmp_path, user_module) -> None:
    module = __import__(user_module)
    model = _trained_like_user(module.build(num_classes=3))
    path = tmp_path / "user.pth"
    torch.save(model.state_dict(), path)  # a user's plain checkpoint
    loaded = load_model(path, factory=f"{user_module}:build", factory_kwargs={"num_classes": 3})
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # a dotted attribute after the colon
    small = module.build(num_classes=2)
    torch.save(small.state_dict(), tmp_path / "small.pth")
    assert isinstance(
        load_model(tmp_path / "small.pth", factory=f"{user_module}:Builders.small"), module.Net
    )


def _trained_like_user(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.train()(torch.randn(4, 1, 8, 8))
    return model.eval()


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        ("no_colon_here", ValueError, "one colon"),
        ("a:b:c", ValueError, "one colon"),
        (":build", ValueError, "one colon"),
        ("{mod}:", ValueError, "one colon"),
        ("equify_no_such_module_xyz:build", ImportError, "equify_no_such_module_xyz"),
        ("{mod}:missing", ValueError, "no attribute 'missing'"),
        ("{mod}:Builders.missing", ValueError, "no attribute 'missing'"),
        ("{mod}:NOT_CALLABLE", ValueError, "not callable"),
        (3, TypeError, "factory"),
    ],
)
def test_bad_factories(user_module, factory, error, match) -> None:
    if isinstance(factory, str):
        factory = factory.format(mod=user_module)
    with pytest.raises(error, match=match):
        resolve_factory(factory)


def test_factory_must_return_a_module(tmp_path, user_module) -> None:
    torch.save({"w": torch.ones(1)}, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="not an nn.Module"):
        load_model(tmp_path / "x.pt", factory=f"{user_module}:not_a_module")


def test_resolve_factory_on_the_library_itself() -> None:
    assert resolve_factory("equify.models:resnet18") is resnet18
    assert resolve_factory(resnet18) is resnet18


def _reference() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = _trained_like(SmallCNN(1, 3, channels=(4, 8)))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        return model, x, model(x)


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="raw"),
        pytest.param(
            lambda sd: {
                "epoch": 3,
                "global_step": 120,
                "pytorch-lightning_version": "2.6.0",
                "state_dict": {**_prefixed(sd, "model."), "loss_fn.weight": torch.ones(3)},
                "hyper_parameters": {"lr": 0.1},
                "optimizer_states": [],
            },
            id="lightning",
        ),
        pytest.param(lambda sd: _prefixed(sd, "module."), id="dataparallel"),
        pytest.param(lambda sd: {"model": _prefixed(sd, "module.")}, id="model-key-ddp"),
        pytest.param(lambda sd: {"model_state_dict": sd, "epoch": 1}, id="model_state_dict"),
        pytest.param(lambda sd: _prefixed(sd, "_orig_mod."), id="torch-compile"),
        pytest.param(lambda sd: {"state_dict": _prefixed(sd, "module.model.")}, id="ddp+lightning"),
    ],
)
def test_common_checkpoint_layouts(tmp_path, wrap) -> None:
    model, x, expected = _reference()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(model.state_dict()), path)
    loaded = load_model(
        path, factory=SmallCNN, factory_kwargs={"num_classes": 3, "channels": [4, 8]}
    )
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_a_model_attribute_called_model_is_not_stripped(tmp_path) -> None:
    # A wrapper whose own keys start with "model." must load as is.
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = SmallCNN(1, 3, channels=(4, 8))

    src = Wrapper()
    _trained_like(src.model)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = load_state_dict_into(Wrapper(), tmp_path / "w.pt")
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(dst.model.eval()(x), src.model(x))


def test_extract_state_dict_error_lists_the_keys() -> None:
    with pytest.raises(ValueError, match="'epoch', 'weights'"):
        extract_state_dict({"epoch": 1, "weights": [1, 2]})
    with pytest.raises(ValueError, match="expected a dict"):
        extract_state_dict([torch.ones(1)])


@pytest.mark.slow
def test_a_real_lightning_checkpoint(tmp_path) -> None:
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(lightning.LightningModule):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = SmallCNN(1, 3, channels=(4, 8))
            self.loss_fn = nn.CrossEntropyLoss(weight=torch.ones(3))

        def training_step(self, batch, _):
            return self.loss_fn(self.model(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    data = DataLoader(TensorDataset(torch.randn(8, 1, 28, 28), torch.randint(0, 3, (8,))), 4)
    trainer = lightning.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    module = Module()
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = load_model(
        tmp_path / "last.ckpt",
        factory=SmallCNN,
        factory_kwargs={"num_classes": 3, "channels": [4, 8]},
    )
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), module.model.eval()(x))


# ---------------------------------------------------------------------------------------------
# errors


def test_wrong_architecture_names_the_mismatches(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "cnn.pt", create_model("small_cnn", **LIGHT["small_cnn"]))
    # same family, different head: shape mismatches
    with pytest.raises(ValueError, match=r"shape mismatch") as info:
        load_model(path, factory=SmallCNN, factory_kwargs={"num_classes": 7, "channels": [8, 16]})
    assert "head.2.weight: (4, 256) vs (7, 256)" in str(info.value)
    assert "head.2.bias: (4,) vs (7,)" in str(info.value)
    # another architecture: missing and unexpected keys, with counts and the first few names
    with pytest.raises(ValueError, match="missing keys") as info:
        load_model(path, factory="equify.models:resnet18", factory_kwargs={"base_width": 4})
    msg = str(info.value)
    assert "conv1.weight" in msg and "features.0.weight" in msg
    assert "unexpected keys" in msg and "more)" in msg
    assert "ResNet" in msg


def test_non_strict_loading_skips_keys_but_not_shapes(tmp_path, caplog) -> None:
    model = _trained_like(SmallCNN(1, 3, channels=(4, 8)))
    state = dict(model.state_dict())
    state.pop("head.2.bias")
    state["extra.weight"] = torch.ones(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="1 missing keys.*head.2.bias"):
        load_model(path, factory=SmallCNN, factory_kwargs={"num_classes": 3, "channels": [4, 8]})
    with caplog.at_level(logging.WARNING, logger="equify.models.checkpoint"):
        loaded = load_model(
            path,
            factory=SmallCNN,
            factory_kwargs={"num_classes": 3, "channels": [4, 8]},
            strict=False,
        )
    assert "1 missing keys" in caplog.text and "1 unexpected keys" in caplog.text
    assert torch.equal(loaded.head[2].weight, model.head[2].weight)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_model(path, factory=SmallCNN, factory_kwargs={"num_classes": 5}, strict=False)


def test_missing_file_and_directory(tmp_path) -> None:
    missing = tmp_path / "nope" / "model.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_model(missing, factory=SmallCNN)
    with pytest.raises(FileNotFoundError, match="model.pt"):
        read_checkpoint(str(missing))
    with pytest.raises(IsADirectoryError):
        read_checkpoint(tmp_path)


def test_corrupt_and_unsafe_files(tmp_path) -> None:
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(1000)})
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_checkpoint(tmp_path / "empty.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled_module.pt")  # a whole pickled model
    with pytest.raises(ValueError, match="weights_only=True"):
        load_model(tmp_path / "pickled_module.pt", factory=lambda: nn.Linear(2, 2))
    # random bytes are corrupt, never "a pickled model": no advice to unpickle them unsafely
    gen = torch.Generator().manual_seed(0)
    noise = bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist())
    (tmp_path / "noise.pt").write_bytes(noise)
    for name in ("noise.pt", "truncated.pt", "empty.pt"):
        with pytest.raises(ValueError) as info:
            read_checkpoint(tmp_path / name)
        message = str(info.value)
        assert "weights_only=False" not in message and "pickled model" not in message
        assert message.endswith("again.")  # whole, not cut mid-word
    with pytest.raises(ValueError) as info:
        read_checkpoint(tmp_path / "pickled_module.pt")
    assert "only if you trust its source" in str(info.value)
    assert "..." not in str(info.value)[-5:]


def test_no_architecture_and_no_factory(tmp_path) -> None:
    torch.save({"w": torch.ones(1)}, tmp_path / "raw.pt")
    with pytest.raises(ValueError, match="pass factory="):
        load_model(tmp_path / "raw.pt")
    path = save_checkpoint(tmp_path / "f.pt", {"w": torch.ones(1)}, {"factory": "pkg.mod:build"})
    with pytest.raises(ValueError, match="never imported from a checkpoint automatically"):
        load_model(path)


def test_unregistered_architecture_name(tmp_path) -> None:
    arch = {"name": "my_private_net", "kwargs": {}}
    path = save_checkpoint(tmp_path / "m.pt", {"w": torch.ones(1)}, {"architecture": arch})
    with pytest.raises(ValueError, match="'my_private_net'.*not registered"):
        load_model(path)


def test_unsupported_format_version(tmp_path) -> None:
    torch.save(
        {"format": CHECKPOINT_FORMAT, "format_version": 99, "state_dict": {}}, tmp_path / "v"
    )
    with pytest.raises(ValueError, match="format version 99"):
        read_checkpoint(tmp_path / "v")


@pytest.mark.parametrize(
    ("obj", "metadata", "error", "match"),
    [
        (nn.Linear(2, 2), {"t": torch.ones(1)}, TypeError, "JSON-like.*Tensor"),
        (nn.Linear(2, 2), {"s": {1, 2}}, TypeError, "JSON-like"),
        (nn.Linear(2, 2), {1: "x"}, TypeError, "str keys"),
        (nn.Linear(2, 2), ["not", "a", "dict"], TypeError, "metadata"),
        (nn.Linear(2, 2), {"architecture": "resnet18"}, ValueError, "architecture"),
        ([torch.ones(1)], None, TypeError, "nn.Module or a state dict"),
        ({"w": 3}, None, TypeError, "tensor values"),
        ({1: torch.ones(1)}, None, TypeError, "str keys"),
    ],
)
def test_bad_save_arguments(tmp_path, obj, metadata, error, match) -> None:
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path / "m.pt", obj, metadata)
    assert _files(tmp_path) == []


def test_bad_load_arguments(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", create_model("dense", **LIGHT["dense"]))
    with pytest.raises(TypeError, match="factory_kwargs"):
        load_model(path, factory_kwargs=["width", 4])
    with pytest.raises(TypeError, match="path"):
        load_model(3)
    with pytest.raises(TypeError, match="strict"):
        load_state_dict_into(nn.Linear(1, 1), {"weight": torch.ones(1, 1)}, strict="yes")
    with pytest.raises(TypeError, match="nn.Module"):
        load_state_dict_into("model", path)


def test_equify_checkpoint_without_a_state_dict(tmp_path) -> None:
    torch.save({"format": CHECKPOINT_FORMAT, "format_version": 1, "metadata": {}}, tmp_path / "x")
    with pytest.raises(ValueError, match="no valid 'state_dict'"):
        read_checkpoint(tmp_path / "x")
