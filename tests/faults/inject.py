"""Fault injection for the resume tests: run a curate command that dies mid-stage.

    python tests/faults/inject.py kill-after-docs INDEX N -- crawl in/ -o out -j 1

runs ``curate crawl in/ -o out -j 1`` in this process with the shard writer patched: once input
number INDEX has written N documents to its main output, the partial row group goes to disk
(as a real crash would leave it) and the process SIGKILLs itself. Forked workers inherit the
patch. Nothing in the product knows about this; tests run it as a subprocess.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

SECONDARY_OUTPUTS = ("rejected", "removed")


def kill_after_docs(index: int, limit: int) -> None:
    """Patch :class:`curate.core.shards.ShardWriter` to die after ``limit`` documents of input
    ``index`` (writer prefix ``part-{index:05d}``) reach the main output."""
    from curate.core.shards import ShardWriter

    original = ShardWriter.write
    prefix = f"part-{index:05d}"
    written = {"n": 0}

    def write(self, doc):  # type: ignore[no-untyped-def]
        original(self, doc)
        if self.prefix == prefix and Path(self.directory).name not in SECONDARY_OUTPUTS:
            written["n"] += 1
            if written["n"] >= limit:
                self._flush_rows()  # a partial shard under its temp name, as a crash leaves it
                os.kill(os.getpid(), signal.SIGKILL)

    ShardWriter.write = write  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[0] != "kill-after-docs" or "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    kill_after_docs(int(argv[1]), int(argv[2]))
    from curate.cli import cli

    cli(argv[split + 1 :], prog_name="curate")


if __name__ == "__main__":
    main(sys.argv[1:])
