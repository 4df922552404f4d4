"""Export outputs appear whole or not at all: a folder or file is built under a temporary name
beside its destination and renamed into place when complete. An existing output is replaced
only with ``overwrite``, and a folder only when it holds an earlier export (a config.json),
so a mistyped ``-o`` cannot delete unrelated files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curate.core.errors import ConfigError
from curate.core.files import make_public, replace_folder, writing


def _folder_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _check_replaceable(out: Path, overwrite: bool, folder: bool) -> None:
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ConfigError(f"{out}: {above} is a file, not a folder; choose another output")
    if not out.exists():
        return
    if folder != out.is_dir():
        raise ConfigError(f"{out}: exists and is not a {'folder' if folder else 'file'}")
    if folder and not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{out}: exists; pass --overwrite to replace it")
    if folder and not (out / "config.json").exists():
        raise ConfigError(f"{out}: is not an exported model folder (no config.json); choose another output")


@contextmanager
def staged_folder(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder to fill; renamed to ``out`` when the block completes."""
    _check_replaceable(out, overwrite, folder=True)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        with writing(out):
            yield tmp
            os.chmod(tmp, _folder_mode())  # mkdtemp makes it private; an export is for sharing
            replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def staged_file(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary path to write; renamed to ``out`` when the block completes."""
    _check_replaceable(out, overwrite, folder=False)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        with writing(out):
            yield tmp
            make_public(tmp)
            os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
