"""The README's library example runs as written (on the samples, in a scratch folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_using_the_library_example_runs(tmp_path, monkeypatch, capsys):
    blocks = _python_blocks("Using the library")
    assert len(blocks) == 1
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURATE_PROGRESS", "0")
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert printed.startswith("crawl: read ") and "'name': 'web'" in printed
    for stage in ("crawl", "filter", "dedup"):
        assert os.path.exists(tmp_path / "work" / stage / "manifest.json"), stage
    assert not (tmp_path / "work" / "mix").exists()  # planning writes nothing
