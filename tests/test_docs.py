"""The README's examples run as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(ROOT / "README.md")
    assert blocks, "the README has a quick start"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})


def test_quickstart_example_matches_the_readme_and_runs() -> None:
    quick = (ROOT / "examples" / "quickstart.py").read_text()
    assert python_blocks(ROOT / "README.md")[0] in quick
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
