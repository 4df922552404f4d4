"""The ``filter`` stage: run a chain of document filters over Parquet shards.

Each input shard is processed by :func:`curate.runtime.per_input.run_per_input` (worker
processes or Ray tasks, resume, atomic shards). Kept documents go to the output directory, dropped ones to ``rejected/`` with
``reject_reason = "<filter>/<reason>"``. The manifest counts documents and characters per
reason (``counts``), and has a ``filters`` section with, per filter, the documents it saw,
dropped (and their characters) per reason, would have dropped (annotate mode), its counters
(lines removed, PII replacements ...) and its time.

Character accounting: ``chars.read`` = ``chars.kept`` (after transforms) + the
``chars.rejected:<reason>`` (as read) + ``chars.removed_by_transforms`` (from kept documents)
+ ``chars.errors``.

A ``quality`` filter with ``keep_top`` needs the score distribution of the documents that
reach it; :func:`run` first makes a calibration pass (:mod:`curate.stages.filter.calibrate`)
and fixes the cut as the filter's ``keep_top_threshold`` before the real pass.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json
from curate.core.progress import Progress
from curate.core.shards import DEFAULT_SHARD_BYTES, drop_null_rows, expand_parquet_inputs, read_tables
from curate.runtime.output import OutputDir
from curate.runtime.per_input import Task, run_per_input
from curate.runtime.stage import StageContext
from curate.stages.filter.calibrate import calibrate_keep_top
from curate.stages.filter.chain import cached_chain, default_chain, load_chain_config

STAGE = "filter"
REJECTED = "rejected"


@dataclass
class FilterConfig:
    """The chain (as a chain file holds it: ``{"filters": [{"name": ...}, ...]}``), whether to
    only annotate, and the target size of output shards."""

    chain: dict[str, Any] = field(default_factory=default_chain)
    annotate: bool = False
    shard_bytes: int = DEFAULT_SHARD_BYTES


def load_config(path: str | None = None, annotate: bool = False) -> FilterConfig:
    """A chain file (TOML) or, without a path, the default chain."""
    return FilterConfig(chain=load_chain_config(path), annotate=annotate)


def _report_path(output_dir: str, index: int) -> Path:
    return Path(output_dir) / ".curate" / "filters" / f"{index:05d}.json"


def process_input(task: Task) -> tuple[Stats, str, str | None]:
    """Filter one input shard (the per-input function)."""
    from filters.registry import FilterFailure

    chain = cached_chain(task.config["filters"])
    stats = Stats()
    kept_writer = task.writer("")
    rejected_writer = task.writer(REJECTED)
    report = _report_path(task.output_dir, task.index)
    if report.exists():
        report.unlink()
    first_row = 0
    for table in read_tables(task.path):
        n_rows = table.num_rows
        # A row with a null id or text is an error of its own; the file's other rows go on.
        table = drop_null_rows(table, stats, task.path, first_row)
        first_row += n_rows
        for row in table.to_pylist():
            doc = Document.from_row(row)
            stats.read += 1
            n_read = len(doc.text or "")
            stats.chars["read"] += n_read
            doc.reject_reason = None
            try:
                reason = chain.process(doc)
            except FilterFailure as exc:
                label = exc.label
                stats.error(f"{label}/error", file=task.path, detail=f"document {doc.id}: {exc}")
                stats.chars["errors"] += n_read
                doc.reject_reason = f"{label}/error"
                rejected_writer.write(doc)
                continue
            if reason is not None:
                stats.reject(reason, n_read)
                rejected_writer.write(doc)
            else:
                stats.kept += 1
                n_kept = len(doc.text or "")
                stats.chars["kept"] += n_kept
                if n_kept != n_read:
                    stats.chars["removed_by_transforms"] += n_read - n_kept
                kept_writer.write(doc)
        task.report(docs=n_rows)
    atomic_write_json(report, chain.report())
    n_errors = sum(stats.errors.values())
    if n_errors:
        return stats, "done_with_errors", f"{n_errors} document(s) could not be filtered"
    return stats, "done", None


def run(config: FilterConfig, ctx: StageContext) -> dict[str, Any]:
    """Filter the Parquet document shards of ``ctx.inputs`` (files, directories or globs) into
    ``ctx.output``; returns the manifest (also written there). Raises
    :class:`~curate.core.errors.CurateError` for a bad chain or unusable inputs."""
    from filters.registry import build_chain

    chain = build_chain(config.chain, annotate=config.annotate)
    paths = expand_parquet_inputs(ctx.inputs)
    if not paths:
        raise CurateError("no input shards found")
    if os.path.abspath(ctx.output) in {os.path.abspath(os.path.dirname(p)) for p in paths}:
        raise ConfigError(f"{ctx.output}: the output directory must not be an input directory")
    specs = chain.specs()
    out = OutputDir(ctx.output, STAGE, [REJECTED])
    calibration_dir = os.path.join(ctx.output, ".curate-calibration")
    with out.locked(), ctx.executor.session():
        calibrations = _calibrate(specs, paths, calibration_dir, ctx)
        manifest_config = {"filters": specs, "annotate": config.annotate, "fingerprints": chain.fingerprint()}
        bar = Progress("filter", unit="bytes") if ctx.progress else None
        manifest, results = run_per_input(
            out,
            paths,
            process_input,
            manifest_config,
            ctx.executor,
            overwrite=ctx.overwrite,
            shard_bytes=config.shard_bytes,
            progress=bar,
            input_weights={p: float(os.path.getsize(p)) for p in paths},
        )
        manifest["filters"] = _merged_reports(ctx.output, results)
        if calibrations:
            manifest["calibration"] = calibrations
        out.commit(manifest)
    if manifest.get("complete") and os.path.isdir(calibration_dir):
        # The cut is in the manifest and the config; the cached scores are no longer needed.
        for f in glob.glob(os.path.join(calibration_dir, "*")):
            os.unlink(f)
        os.rmdir(calibration_dir)
    return manifest


def _merged_reports(output: str, results: list) -> list:
    """The per-filter counts of every input that was filtered, merged."""
    from filters.registry import merge_reports

    reports = []
    for r in results:
        path = _report_path(output, r.index)
        if r.status != "failed" and path.exists():
            reports.append(json.loads(path.read_text()))
    return merge_reports(reports) if reports else []


def _calibrate(specs: list[dict[str, Any]], paths: list[str], calibration_dir: str, ctx: StageContext) -> list:
    """Fix the cut of every quality filter with ``keep_top`` (in ``specs``, in place)."""
    if ctx.overwrite and os.path.isdir(calibration_dir):
        for f in glob.glob(os.path.join(calibration_dir, "*")):
            os.unlink(f)
    calibrations = []
    for i, spec in enumerate(specs):
        if spec["name"] == "quality" and spec.get("keep_top") is not None and spec.get("keep_top_threshold") is None:
            result = calibrate_keep_top(paths, specs[: i + 1], calibration_dir, ctx.executor)
            spec["keep_top_threshold"] = result["keep_top_threshold"]
            calibrations.append(result)
    return calibrations


def summarize_filters(manifest: dict[str, Any]) -> str:
    """Per-filter lines for the CLI: documents in, dropped per reason, counters."""
    lines = []
    chars = manifest["counts"].get("chars", {})
    if chars.get("read"):
        lines.append(
            f"  characters: read {chars['read']:,}  kept {chars.get('kept', 0):,} "
            f"({chars.get('kept', 0) / chars['read']:.1%})"
        )
    for f in manifest.get("filters", []):
        dropped = sum(f["dropped"].values())
        would = sum(f["would_drop"].values())
        part = f"  {f['label']}: in {f['docs_in']:,}"
        if f["mode"] == "annotate":
            part += f", would drop {would:,}"
            detail = f["would_drop"]
        else:
            part += f", dropped {dropped:,}"
            detail = f["dropped"]
        if detail:
            part += " (" + ", ".join(f"{k}={v:,}" for k, v in sorted(detail.items(), key=lambda kv: -kv[1])[:6]) + ")"
        if f["counters"]:
            part += "; " + ", ".join(f"{k}={v:,}" for k, v in sorted(f["counters"].items())[:6])
        part += f"; {f['seconds']:.1f}s"
        lines.append(part)
    for c in manifest.get("calibration", []):
        lines.append(
            f"  {c['label']}: keep_top {c['keep_top']} of {c['scored']:,} scored -> cut "
            f"{c['keep_top_threshold']:.6f} (keeps {c['expected_kept']:,})"
        )
    return "\n".join(lines)
