"""One run at a time per output folder: an advisory lock file that names its holder.

``curate pipeline`` locks its work directory, every stage command its output folder and every
training command its run directory, so a second run into the same place stops at once with one
line saying who holds it, instead of two runs writing the same shards. The lock is ``flock`` on
a file that stays in place (deleting a held lock file would let a third run lock a new file);
the kernel drops it when the holder exits, killed or not.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curate.core.errors import CurateError

LOCK_NAME = "lock"


@contextmanager
def folder_lock(lock_file: str | os.PathLike, what: str, where: str | os.PathLike) -> Iterator[None]:
    """Hold ``lock_file`` for the block. ``what`` names the command (```curate crawl```) and
    ``where`` the folder, for the message a second run gets (exit 2)."""
    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:  # "a+": an existing lock file is neither truncated nor replaced
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            raise CurateError(f"another {what} is running in {where}{f' ({holder})' if holder else ''}") from None
        try:
            fh.seek(0)
            fh.truncate()
            started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            fh.write(f"pid {os.getpid()}, started {started}: {' '.join(sys.argv[:3])}")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
