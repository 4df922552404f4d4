"""What ``curate pipeline`` remembers between runs, kept in ``WORKDIR/.pipeline/``.

- A completion marker per stage (``<stage>.json``), written only when the stage finished, with
  the stage's fingerprint: its settings as written, the contents of the files they name, the
  seed and the fingerprint of the stage before. A marker with the current fingerprint means the
  stage's folder is up to date.
- The checks ``--from STAGE`` makes on the stages before it (completed, and with unchanged
  fingerprints), and the guarded removal ``--overwrite`` does: only folders inside the work
  directory, never through a symbolic link.
- The lock that keeps one pipeline per work directory.

The stage records live in :mod:`curate.workflow.stages`, the run in :mod:`curate.workflow.run`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.core.errors import CurateError
from curate.core.files import atomic_write_json
from curate.core.lock import folder_lock
from curate.workflow.config import Pipeline

STATE_DIR = ".pipeline"
MAX_HASHED_FILE = 64 * 1024 * 1024


def marker_path(workdir: Path, stage: str) -> Path:
    return workdir / STATE_DIR / f"{stage}.json"


def read_marker(workdir: Path, stage: str) -> dict[str, Any] | None:
    """The stage's completion record, or None when it has none. Markers are written atomically,
    so an unreadable one is not a half-written record; it is treated as absent, so the stage is
    redone rather than trusted."""
    path = marker_path(workdir, stage)
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def write_marker(workdir: Path, stage: str, fingerprint: str, notes: dict[str, Any], seconds: float) -> None:
    atomic_write_json(
        marker_path(workdir, stage), {"stage": stage, "fingerprint": fingerprint, "notes": notes, "seconds": seconds}
    )


def referenced_files(value: Any) -> list[str]:
    """Existing files named by a stage's settings (config TOMLs, JSONL data): their contents
    are part of the stage's fingerprint. Directories are not hashed (crawl inputs can be huge;
    the data stages resume per input on their own)."""
    if isinstance(value, str):
        return [value] if os.path.isfile(value) and os.path.getsize(value) <= MAX_HASHED_FILE else []
    if isinstance(value, list):
        return [f for v in value for f in referenced_files(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in referenced_files(v)]
    return []


def fingerprint(pipe: Pipeline, stage: str, upstream: str, identity: Any = None) -> str:
    """What decides whether a completed stage is still up to date: its settings as written
    (before {placeholders} are expanded, so the same work directory spelt differently does not
    count as a change), the contents of the files they name, the seed and the stage before;
    plus, for a stage that has one, ``identity`` (eval: the checkpoint it scores)."""
    from curate.core.files import sha256_file

    files = {f: sha256_file(f) for f in sorted(set(referenced_files(pipe.tables[stage])))}
    settings = pipe.raw.get(stage, pipe.tables[stage])
    record = {
        "stage": stage,
        "settings": settings,
        "files": list(files.values()),
        "upstream": upstream,
        "seed": pipe.seed,
    }
    if identity is not None:
        record["identity"] = identity
    payload = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def check_earlier_stages(pipe: Pipeline, earlier: list[str], from_stage: str) -> str:
    """``--from``: every stage before ``from_stage`` must have completed, with the settings (and
    referenced files) it has now, and its folder must still be there. Reads only; returns the
    fingerprint of the last of them, which the next stage's fingerprint builds on."""
    upstream = ""
    for stage in earlier:
        fp = fingerprint(pipe, stage, upstream)
        record = read_marker(pipe.workdir, stage)
        if record is None:
            raise CurateError(
                f"--from {from_stage}: stage {stage!r} has not completed in {pipe.workdir}; "
                f"run without --from, or --from {stage}"
            )
        # The first mismatch in order is the stage that itself changed: every stage after it
        # differs too, because its fingerprint includes the one before.
        if record.get("fingerprint") == STALE:
            raise CurateError(
                f"--from {from_stage}: stage {stage!r} is out of date (a stage before it was redone "
                f"with --overwrite); run with --from {stage} (or without --from)"
            )
        if record.get("fingerprint") != fp:
            raise CurateError(
                f"--from {from_stage}: stage {stage!r} settings changed since it ran (its table, a file "
                f"it names, or the seed); run with --from {stage} (or without --from)"
            )
        if not pipe.out(stage).is_dir():
            raise CurateError(
                f"--from {from_stage}: the output of stage {stage!r} ({pipe.out(stage)}) is missing; "
                f"run with --from {stage} (or without --from)"
            )
        upstream = fp
    return upstream


def overwrite_targets(pipe: Pipeline, stages: list[str]) -> list[Path]:
    """The folders ``--overwrite`` will delete, checked before anything is: each must lie inside
    the work directory with no symbolic link on the way (a link could lead anywhere, e.g. to a
    crawl the user keeps on another disk), and must be a folder if it exists."""
    targets = []
    for stage in stages:
        relative = Path(os.path.relpath(pipe.out(stage), pipe.workdir))
        if relative.is_absolute() or ".." in relative.parts or relative == Path("."):
            raise CurateError(f"--overwrite: {pipe.out(stage)} is not inside the work directory {pipe.workdir}")
        path = pipe.workdir
        for part in relative.parts:
            path = path / part
            if path.is_symlink():
                raise CurateError(
                    f"--overwrite: {path} is a symbolic link (to {os.readlink(path)}); the pipeline "
                    f"deletes only inside {pipe.workdir} and does not follow links; remove it yourself"
                )
        if path.exists() and not path.is_dir():
            raise CurateError(
                f"--overwrite: {path} (the {stage} stage's output) exists and is not a folder; remove it yourself"
            )
        targets.append(path)
    return targets


def clear_stages(pipe: Pipeline, stages: list[str], log: Callable[[str], None]) -> None:
    """``--overwrite``: delete the stages' completion markers, then their folders. Markers go
    first, so that a run killed half way through the deletion leaves no stage marked complete
    over a half-deleted folder."""
    targets = overwrite_targets(pipe, stages)
    for stage in stages:
        marker_path(pipe.workdir, stage).unlink(missing_ok=True)
    for stage, path in zip(stages, targets):
        if path.is_dir():
            log(f"[{stage}] --overwrite: removing {path}")
            # rmtree does not follow links inside the tree (it removes the links themselves).
            shutil.rmtree(path)


STALE = "stale"  # the fingerprint of a stage whose input was redone under it


def forget_stages(pipe: Pipeline, stages: list[str], log: Callable[[str], None]) -> None:
    """Mark completed ``stages`` out of date (their folders stay until then): the next run that
    reaches them redoes them from scratch, as it does a stage whose settings changed."""
    for stage in stages:
        record = read_marker(pipe.workdir, stage)
        if record is not None and record.get("fingerprint") != STALE:
            atomic_write_json(marker_path(pipe.workdir, stage), {**record, "fingerprint": STALE})
            log(f"[{stage}] out of date now that an earlier stage is redone: the next run that reaches it redoes it")


def lock_path(workdir: Path) -> Path:
    return workdir / STATE_DIR / "lock"


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """One pipeline at a time per work directory: a second one would overwrite stages under
    the running one's feet."""
    with folder_lock(lock_path(workdir), "`curate pipeline`", workdir):
        yield


def pipeline_hint(exc: CurateError, stage: str, rerun: str) -> CurateError:
    """A stage's own command suggests ``--overwrite`` or another output directory when its
    folder holds work it cannot resume (e.g. a stage interrupted, then its settings changed).
    Inside the pipeline the folder is fixed, so say which pipeline command starts it over."""
    message = str(exc)
    if "--overwrite" not in message:
        return exc
    head = message.rsplit("; ", 1)[0] if "; " in message else message
    return CurateError(f"{stage}: {head}; rerun the pipeline with {rerun} to start this stage over", exc.exit_code)
