"""Where the quality model's training examples come from: document shards, JSONL, text files.

:func:`iter_texts` streams the texts of ``curate quality train``'s ``--positive`` and
``--negative`` inputs, one file at a time; a missing or unreadable input is a one-line
:class:`~curate.core.errors.InputError` naming it (and the line, for JSONL).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path

from curate.core.errors import InputError
from curate.core.files import iter_jsonl


def iter_texts(paths: Iterable[str], text_field: str = "text", txt_unit: str = "line") -> Iterator[str]:
    """Texts from Parquet document shards (files or directories), JSONL (``text_field``) or
    plain text files (one document per line, or per blank-line-separated paragraph with
    ``txt_unit="paragraph"``), or folders of such files; ``.gz`` files are read transparently."""
    from curate.core.shards import expand_parquet_inputs, read_tables

    for path in paths:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{path}: no such file or directory")
        if p.is_dir() and not any(p.glob("*.parquet")):
            # A folder of text / Markdown / JSONL files (e.g. samples/books): each file in turn.
            files = sorted(str(f) for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise InputError(f"{path}: empty directory")
            yield from iter_texts(files, text_field=text_field, txt_unit=txt_unit)
            continue
        if p.is_dir() or p.suffix == ".parquet":
            for f in expand_parquet_inputs([str(p)]):
                for table in read_tables(f, columns=["text"]):
                    yield from (t for t in table.column("text").to_pylist() if t)
            continue
        yield from _file_texts(path, text_field, txt_unit)


def _file_texts(path: str, text_field: str, txt_unit: str) -> Iterator[str]:
    """The texts of one JSONL or plain text file (maybe gzip'd)."""
    p = Path(path)
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    opener = gzip.open if p.name.endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
            if name.endswith((".jsonl", ".json", ".ndjson")):
                for lineno, record, problem in iter_jsonl(fh, objects_only=True):
                    if problem:
                        raise InputError(f"{path}:{lineno}: not a JSON object per line")
                    text = record.get(text_field)
                    if isinstance(text, str) and text.strip():
                        yield text
            elif txt_unit == "paragraph":
                yield from _paragraphs(fh)
            else:
                yield from (line for line in fh if line.strip())
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def _paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Blocks of non-blank lines, as they were (line ends kept)."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)
