"""``curate pipeline``: every stage from raw crawl to an RLHF-tuned model, in one resumable run.

The pipeline is a fixed sequence of stages; each writes its own folder under the work
directory and calls the same library function as its stand-alone command::

    crawl -> filter -> dedup -> tokenizer -> mix -> pretrain -> sft -> reward -> rlhf [-> eval]

``eval`` runs only when the file has an ``[eval]`` table: ``curate eval`` on the final model
(or the stage its ``checkpoint`` names), its scores in the summary table.

A stage that completed is recorded in ``WORKDIR/.pipeline/<stage>.json`` with a fingerprint of
its settings and of the stages before it (see :mod:`curate.workflow.state`); the stages themselves are the records of :mod:`curate.workflow.stages`. A rerun skips
stages whose fingerprint is unchanged, resumes an interrupted stage (every stage resumes on its
own), and redoes a stage, and all after it, whose settings changed. ``until`` / ``from_stage``
run part of the sequence; ``from_stage`` first checks that the stages before it completed with
their current settings. ``overwrite`` deletes the stages in range and redoes them from scratch.

In the config, string values may use ``{workdir}`` and ``{stage}`` placeholders, e.g.
``paths = ["{dedup}"]`` for the dedup stage's output folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json
from curate.core.manifest import load_manifest
from curate.workflow.config import Pipeline, read_pipeline
from curate.workflow.stages import OUTPUT_DIRS, PATH_KEYS, STAGE_NAMES, STAGES, kept_as_written
from curate.workflow.state import (
    check_earlier_stages,
    clear_stages,
    fingerprint,
    forget_stages,
    lock_path,
    overwrite_targets,
    pipeline_hint,
    read_marker,
    workdir_lock,
    write_marker,
)
from curate.workflow.summary import StageOutcome

BY_NAME = {s.name: s for s in STAGES}


def load_pipeline(path: str | os.PathLike, workdir: str | None = None, workers: int | None = None) -> Pipeline:
    """Read a pipeline file and build every stage's settings (the check: a typo anywhere fails
    here, before anything runs). The run uses the settings built here."""
    pipe = read_pipeline(path, OUTPUT_DIRS, PATH_KEYS, kept_as_written, workdir=workdir, workers=workers)
    for stage in STAGES:
        if pipe.has(stage.name):
            pipe.built[stage.name] = stage.build(pipe)
    return pipe


def run_pipeline(
    pipe: Pipeline,
    *,
    until: str | None = None,
    from_stage: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[StageOutcome]:
    """Run the stages in order (resuming), returning one outcome per stage that was in range.

    ``from_stage``: the stages before it must have completed with the settings they have now
    (checked before anything is created or deleted). ``overwrite``: the stages in range are
    deleted (folder and marker) and redone from scratch, even when up to date."""
    for name, value in (("--until", until), ("--from", from_stage)):
        if value is not None and value not in STAGE_NAMES:
            raise ConfigError(f"{name} {value!r}: unknown stage; stages: {', '.join(STAGE_NAMES)}")
        if value is not None and not pipe.has(value):
            raise ConfigError(
                f"{name} {value}: {pipe.source} has no [{value}] table, so the pipeline has no {value} stage"
            )
    first = STAGE_NAMES.index(from_stage) if from_stage else 0
    last = STAGE_NAMES.index(until) if until else len(STAGE_NAMES) - 1
    if first > last:
        raise ConfigError(f"--from {from_stage} comes after --until {until}")
    if not lock_path(pipe.workdir).exists():
        # A new work directory: check before creating it, so that a failed check leaves no trace.
        _preflight(pipe, first, last, from_stage, overwrite)
        pipe.workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(pipe.workdir):
        # (Again) under the lock: another run may have changed the markers meanwhile.
        upstream = _preflight(pipe, first, last, from_stage, overwrite)
        if overwrite:
            in_range = STAGE_NAMES[first : last + 1]
            clear_stages(pipe, [s for s in in_range if pipe.has(s)], log)
            # A redone stage keeps its fingerprint (the settings did not change), so the stages
            # after the range would still look up to date while built on the old output: mark
            # them out of date, so the next run that reaches them redoes them (an optional stage
            # the file leaves out too, should its table come back).
            forget_stages(pipe, [s for s in in_range if not pipe.has(s)] + STAGE_NAMES[last + 1 :], log)
        return _run_locked(pipe, first, last, upstream, log)


def _preflight(pipe: Pipeline, first: int, last: int, from_stage: str | None, overwrite: bool) -> str:
    """The read-only checks: earlier stages for --from, deletable folders for --overwrite.
    Returns the fingerprint the first stage in range builds on."""
    earlier = [s for s in STAGE_NAMES[:first] if pipe.has(s)]
    upstream = check_earlier_stages(pipe, earlier, from_stage) if from_stage else ""
    if overwrite:
        overwrite_targets(pipe, [s for s in STAGE_NAMES[first : last + 1] if pipe.has(s)])
    return upstream


def _run_locked(pipe: Pipeline, first: int, last: int, upstream: str, log: Callable[[str], None]) -> list[StageOutcome]:
    outcomes: list[StageOutcome] = []
    invalidated = False
    for stage in STAGE_NAMES[first : last + 1]:
        if not pipe.has(stage):
            # Not in this file (an optional stage): not run. Should its table come back, a
            # marker from before must not vouch for an output built on what was redone here.
            if invalidated:
                forget_stages(pipe, [stage], log)
            continue
        record = BY_NAME[stage]
        identity = record.identity(pipe, pipe.built[stage]) if record.identity else None
        fp = fingerprint(pipe, stage, upstream, identity)
        upstream = fp
        previous = read_marker(pipe.workdir, stage)
        if previous and previous.get("fingerprint") == fp and not invalidated:
            outcome = StageOutcome(stage, str(pipe.out(stage)), "skipped", notes=previous.get("notes", {}))
            log(f"[{stage}] up to date in {pipe.out(stage)}")
        else:
            # Changed settings (or a changed stage upstream) mean the old output is stale.
            overwrite = previous is not None or invalidated
            invalidated = invalidated or overwrite
            log(f"[{stage}] running -> {pipe.out(stage)}")
            started = time.monotonic()
            try:
                notes = record.run(pipe, pipe.built[stage], overwrite, log)
            except CurateError as exc:
                rerun = f"--overwrite --from {stage}" + (
                    f" --until {STAGE_NAMES[last]}" if last < len(STAGE_NAMES) - 1 else ""
                )
                hinted = pipeline_hint(exc, stage, rerun)
                if hinted is exc:
                    raise
                raise hinted from exc
            if notes.pop("_stopped", False):
                # Ctrl-C / SIGTERM: the stage checkpointed and stopped early; no completion
                # marker, so the next run resumes it.
                raise CurateError(f"pipeline interrupted during {stage}; rerun the same command to resume", 130)
            outcome = StageOutcome(stage, str(pipe.out(stage)), "ran", time.monotonic() - started, notes=notes)
            write_marker(pipe.workdir, stage, fp, notes, outcome.seconds)
        outcomes.append(outcome)
    # Counted at the end, so that tokens of the early stages use the tokenizer trained later.
    for outcome in outcomes:
        if outcome.stage in ("crawl", "filter", "dedup", "mix"):
            outcome.docs, outcome.tokens = _data_counts(pipe, outcome.stage)
    atomic_write_json(pipe.workdir / ".pipeline" / "summary.json", [o.to_json() for o in outcomes])
    return outcomes


def _data_counts(pipe: Pipeline, stage: str) -> tuple[int | None, int | None]:
    """Documents and tokens (with the pipeline's tokenizer, when trained) in a data stage's output."""
    manifest = load_manifest(pipe.out(stage))
    if not manifest:
        return None, None
    docs = manifest.get("counts", {}).get("kept")
    if stage == "mix":
        return docs, manifest["tokens"]["realized"]
    return docs, _count_tokens(pipe, pipe.out(stage))


def _count_tokens(pipe: Pipeline, directory: Path) -> int | None:
    from curate.core.shards import expand_parquet_inputs, read_tables
    from curate.core.tokenizer import TOKENIZER_FILE, load_tokenizer

    if not (pipe.out("tokenizer") / TOKENIZER_FILE).exists():
        return None
    tok = load_tokenizer(pipe.out("tokenizer"))
    total = 0
    for path in expand_parquet_inputs([str(directory)]):
        for table in read_tables(path, columns=["text"]):
            total += sum(tok.count(table.column("text").to_pylist()))
    return total
