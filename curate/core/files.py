"""Files (and folders) written whole or not at all, write failures as one line, file hashes, and
JSON Lines reading: one of each.

Every file the project writes goes through a temporary name in the same folder and a rename,
so a killed job never leaves half a file under the real name. :func:`iter_jsonl` is the one
JSON Lines loop: callers decide what a bad line means for them (a counted error, a skipped
record, a one-line failure).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.core.errors import OutputError

# Errors that mean "this output cannot be written", whatever is being read.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
_ADVICE = {
    errno.ENOSPC: "free some space or choose another output directory",
    errno.EDQUOT: "free some of your quota or choose another output directory",
    errno.EROFS: "choose an output directory on a writable file system",
    errno.EFBIG: "choose smaller shards (shard_size) or another file system",
    errno.EACCES: "choose an output directory you may write to",
    errno.EPERM: "choose an output directory you may write to",
}


def output_error(exc: OSError, path: str | os.PathLike) -> OutputError:
    """One line for a failed write of ``path``: what happened and what to do."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    advice = _ADVICE.get(exc.errno or 0, "check the output directory")
    return OutputError(f"cannot write {path}: {reason}; {advice}")


def is_write_failure(exc: BaseException) -> bool:
    """An OSError that can only come from writing (disk full, read-only, quota, file too big)."""
    return isinstance(exc, OSError) and not isinstance(exc, OutputError) and exc.errno in WRITE_ERRNOS


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failed write inside the block into :func:`output_error` for ``path`` (also
    permission errors: the block only writes)."""
    try:
        yield
    except OSError as exc:
        if is_write_failure(exc) or exc.errno in (errno.EACCES, errno.EPERM):
            raise output_error(exc, path) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def make_public(path: str | os.PathLike) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the usual permissions before it is renamed
    into place, so outputs are readable by other users like any file the user creates."""
    os.chmod(path, _FILE_MODE)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            make_public(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys (byte-stable for the same content)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def replace_folder(new: Path, dest: Path) -> None:
    """Put the complete folder ``new`` at ``dest`` (same file system) in one rename; a folder
    already at ``dest`` is moved aside first and deleted after, so ``dest`` is never half old,
    half new."""
    if not dest.exists():
        os.replace(new, dest)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.replace(dest, trash / dest.name)
    os.replace(new, dest)
    shutil.rmtree(trash, ignore_errors=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def iter_jsonl(lines: Iterable[str], objects_only: bool = True) -> Iterator[tuple[int, Any, str | None]]:
    """``(line number, record, problem)`` for every non-blank line: ``problem`` is None, or
    ``invalid JSON (...)`` / ``not a JSON object`` (``objects_only``) with ``record`` None.
    Line numbers count from 1 and include blank lines, as an editor shows them."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON ({exc.msg})"
            continue
        if objects_only and not isinstance(record, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, record, None
