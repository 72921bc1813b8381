"""Two-process DDP on the CPU (gloo): one copy of every file, synced metrics, equal steps."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

ARGS = [
    "--data",
    "digits",
    "--methods",
    "vanilla,canon-prior",
    "--device",
    "cpu",
    "--set",
    "pretrain.epochs=2",
    "--set",
    "adapt.epochs=2",
    "--set",
    "evaluate.angles_step=90",
    "--set",
    "evaluate.invariance_images=8",
    "--set",
    "evaluate.timing_batch=4",
    "--set",
    "trainer.progress_bar=false",
]


def _adapt(out: Path, *extra: str) -> subprocess.CompletedProcess:
    # Lightning's DDP launcher re-runs this command line for the second process
    cmd = [sys.executable, "-m", "equify.cli", "adapt", "--output", str(out), *ARGS, *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)


def _steps(run: Path, method: str) -> int:
    with (run / "logs" / method / "metrics.csv").open() as f:
        return max(int(r["step"]) for r in csv.DictReader(f))


def test_two_process_ddp_matches_one_process(tmp_path):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    a = _adapt(ddp, "--set", "trainer.devices=2", "--set", "trainer.strategy=ddp")
    assert a.returncode == 0, a.stderr[-3000:]
    b = _adapt(single)
    assert b.returncode == 0, b.stderr[-3000:]
    # rank 0 alone reports and writes: one table, one copy of every checkpoint
    assert a.stdout.count("inv. err") == 1
    assert a.stderr.count("saved checkpoint") == b.stderr.count("saved checkpoint") == 3
    for method in ("pretrain", "vanilla", "canon-prior"):
        files = sorted(p.name for p in (ddp / "checkpoints" / method).iterdir())
        assert files == ["best.ckpt", "last.ckpt"], (method, files)
    assert sorted(p.name for p in (ddp / "models").iterdir()) == ["canon-prior.pt", "vanilla.pt"]
    # epoch metrics are synced across the processes: Lightning has nothing to warn about
    assert "sync_dist" not in a.stderr
    # the global batch is kept: the same number of optimizer steps as one process
    for method in ("pretrain", "vanilla", "canon-prior"):
        assert _steps(ddp, method) == _steps(single, method), method
    ra = json.loads((ddp / "results.json").read_text())["methods"]
    rb = json.loads((single / "results.json").read_text())["methods"]
    for method in ("pretrained", "vanilla", "canon-prior"):
        assert abs(ra[method]["upright_accuracy"] - rb[method]["upright_accuracy"]) < 0.05
    assert ra["canon-prior"]["invariance_error"]["max_abs"] <= 1e-5
    assert not (ddp / ".equify.lock").exists()
