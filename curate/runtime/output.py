"""A stage's output folder: what may already be in it, resuming, and the atomic commit.

Every data stage writes through one :class:`OutputDir`, so the rules are the same everywhere:

- An input may not live inside the output folder (a rerun would read its own output).
- A folder written by another stage, or holding Parquet files no curate run wrote, is refused
  (``--overwrite`` to replace it, or another folder).
- ``.curate/<state file>`` records the stage and a hash of its configuration as soon as a run
  starts; a rerun with another configuration is refused, with the same one it resumes.
- Shards are renamed into place whole (see :mod:`curate.core.shards`); ``manifest.json`` is
  written last, so a folder with a manifest is a finished stage. A stage that builds its output
  elsewhere first (dedup stages it under ``.curate/staging``) moves it in with :meth:`commit`.
- ``overwrite`` clears what earlier runs wrote: shards of every output sub-folder, leftover
  temp files, the state and the manifest. Nothing else in the folder is touched.
- :meth:`locked` holds ``.curate/lock`` while a run writes: a second run into the same folder
  stops with one line naming the holder (:mod:`curate.core.lock`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.core.errors import CurateError
from curate.core.files import atomic_write_json
from curate.core.lock import LOCK_NAME, folder_lock
from curate.core.manifest import MANIFEST_NAME, load_manifest, write_manifest

STATE_DIR = ".curate"


class OutputDir:
    """The output folder of stage ``stage``; ``subdirs`` are its secondary outputs
    (``rejected``, ``removed`` ...), ``state_file`` its state's name under ``.curate/``."""

    def __init__(
        self, path: str | os.PathLike, stage: str, subdirs: Sequence[str] = (), state_file: str = "state.json"
    ):
        self.path = Path(path)
        self.stage = stage
        self.subdirs = ["", *[s for s in subdirs if s]]
        self.state_dir = self.path / STATE_DIR
        self.state_path = self.state_dir / state_file

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ checks

    def refuse_inputs_inside(self, input_paths: Iterable[str]) -> None:
        """An input file directly in the folder or one of its sub-folders is an error."""
        out = self.path.resolve()
        inside = {out / sub for sub in self.subdirs}
        for p in input_paths:
            if Path(p).resolve().parent in inside:
                raise CurateError(f"input {p} is inside the output directory {self.path}; choose another -o")

    def has_shards(self) -> bool:
        return bool(glob.glob(os.path.join(self.path, "*.parquet")))

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}  # unreadable: not ours to trust, but ours to replace with --overwrite

    def manifest(self) -> dict[str, Any] | None:
        return load_manifest(self.path) if self.path.is_dir() else None

    def check(self) -> dict[str, Any] | None:
        """Refuse a folder this stage cannot write into; return its recorded state, if any."""
        manifest = self.manifest()
        state = self.read_state()
        found = (state or {}).get("stage") or (manifest or {}).get("stage")
        if found is not None and found != self.stage:
            raise CurateError(
                f"{self.path} holds output of stage {found!r}, not {self.stage!r}; "
                "use another output directory or --overwrite"
            )
        if state is None and self.has_shards():
            raise CurateError(
                f"{self.path} already holds Parquet files not written by `curate {self.stage}`; "
                "use --overwrite or another output directory"
            )
        return state

    def changed(self, what: str = "configuration") -> CurateError:
        """The error for a folder written with other settings (``what``) than this run's."""
        return CurateError(
            f"{self.path} was written with a different {what}; "
            "rerun with the same options to resume, or --overwrite to start over"
        )

    # ------------------------------------------------------------------ writing

    def start(self, state: dict[str, Any]) -> None:
        """Create the folder and record this run's state (``stage`` is added)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.state_path, {"stage": self.stage, **state})

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for the block (one run at a time per output folder)."""
        with folder_lock(self.state_dir / LOCK_NAME, f"`curate {self.stage}`", self.path):
            yield

    def reset(self) -> None:
        """``--overwrite``: remove shards, temp files, the state folder (all but the lock) and the
        manifest."""
        if self.state_dir.is_dir():
            for entry in self.state_dir.iterdir():
                if entry.name == LOCK_NAME:
                    continue  # held by this run: deleting it would let another run lock a new file
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for sub in self.subdirs:
            for pattern in ("*.parquet", ".*.tmp"):
                for f in glob.glob(os.path.join(self.path, sub, pattern)):
                    os.unlink(f)
        (self.path / MANIFEST_NAME).unlink(missing_ok=True)

    def remove_temp_files(self) -> None:
        """Leftovers of a killed run: shards it never renamed into place, and half-written state
        files (per-input records, filter reports ...) anywhere under ``.curate/``."""
        leftovers = [f for sub in self.subdirs for f in glob.glob(os.path.join(self.path, sub, ".*.tmp"))]
        leftovers += glob.glob(os.path.join(self.state_dir, "**", ".*.tmp"), recursive=True)
        for f in leftovers:
            os.unlink(f)

    def remove_shards(self, prefix: str) -> None:
        """Shards named ``{prefix}-*.parquet`` in every sub-folder (an unfinished input's)."""
        for sub in self.subdirs:
            for f in glob.glob(os.path.join(self.path, sub, f"{prefix}-*.parquet")):
                os.unlink(f)

    def commit(self, manifest: dict[str, Any], staging: Path | None = None) -> None:
        """Finish the stage: replace the shards with the staged ones (when the stage staged
        them), then write the manifest, last."""
        (self.path / MANIFEST_NAME).unlink(missing_ok=True)
        if staging is not None:
            for sub in self.subdirs:
                for f in glob.glob(str(self.path / sub / "*.parquet")):
                    os.unlink(f)
                (self.path / sub).mkdir(parents=True, exist_ok=True)
                for f in sorted(glob.glob(str(staging / sub / "*.parquet"))):
                    os.replace(f, self.path / sub / os.path.basename(f))
            shutil.rmtree(staging, ignore_errors=True)
        write_manifest(self.path, manifest)
