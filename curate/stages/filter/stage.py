"""The ``filter`` stage: run a chain of document filters over Parquet shards.

Each input shard is processed by :func:`curate.runtime.stage.run_stage` (worker processes, resume,
atomic shards). Kept documents go to the output directory, dropped ones to ``rejected/`` with
``reject_reason = "<filter>/<reason>"``. The manifest counts documents and characters per
reason (``counts``), and has a ``filters`` section with, per filter, the documents it saw,
dropped (and their characters) per reason, would have dropped (annotate mode), its counters
(lines removed, PII replacements ...) and its time.

Character accounting: ``chars.read`` = ``chars.kept`` (after transforms) + the
``chars.rejected:<reason>`` (as read) + ``chars.removed_by_transforms`` (from kept documents)
+ ``chars.errors``.

A ``quality`` filter with ``keep_top`` needs the score distribution of the documents that
reach it; :func:`run_filter` first makes a calibration pass (see :func:`calibrate_keep_top`)
and fixes the cut as the filter's ``keep_top_threshold`` before the real pass.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.config import load_toml
from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.progress import Progress
from curate.core.shards import (
    DEFAULT_SHARD_BYTES,
    atomic_write_json,
    expand_parquet_inputs,
    read_tables,
    write_manifest,
)
from curate.runtime.stage import STATE_DIR, InputResult, Stats, Task, run_stage

STAGE = "filter"
REJECTED = "rejected"

# The chain used when no --config is given: FineWeb's order (language, Gopher repetition,
# Gopher quality, C4, FineWeb), all languages kept, then PII scrubbing of what is kept.
DEFAULT_CHAIN: dict[str, Any] = {
    "filters": [
        {"name": "language", "min_score": 0.65},
        {"name": "gopher_repetition"},
        {"name": "gopher_quality"},
        {"name": "c4"},
        {"name": "fineweb"},
        {"name": "pii"},
    ]
}


def load_chain_config(path: str | None) -> dict[str, Any]:
    """A chain file (TOML) or, without a path, :data:`DEFAULT_CHAIN`."""
    if path is None:
        return json.loads(json.dumps(DEFAULT_CHAIN))
    return load_toml(path)


def _chain_from_specs(specs: list[dict[str, Any]]):
    from filters.registry import build_chain

    return build_chain(specs)


# One chain per process and configuration: models load once per worker, not per input.
_CHAINS: dict[str, Any] = {}


def _cached_chain(specs: list[dict[str, Any]]):
    key = hashlib.sha256(json.dumps(specs, sort_keys=True, default=str).encode()).hexdigest()
    chain = _CHAINS.get(key)
    if chain is None:
        chain = _CHAINS[key] = _chain_from_specs(specs)
    chain.reset_stats()
    return chain


def _report_path(output_dir: str, index: int) -> Path:
    return Path(output_dir) / STATE_DIR / "filters" / f"{index:05d}.json"


def process_input(task: Task) -> tuple[Stats, str, str | None]:
    """Filter one input shard (``run_stage``'s per-input function)."""
    from filters.registry import FilterFailure

    chain = _cached_chain(task.config["filters"])
    stats = Stats()
    kept_writer = task.writer("")
    rejected_writer = task.writer(REJECTED)
    report = _report_path(task.output_dir, task.index)
    if report.exists():
        report.unlink()
    for table in read_tables(task.path):
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
        task.report(docs=table.num_rows)
    atomic_write_json(report, chain.report())
    n_errors = sum(stats.errors.values())
    if n_errors:
        return stats, "done_with_errors", f"{n_errors} document(s) could not be filtered"
    return stats, "done", None


# ------------------------------------------------------------------ keep_top calibration


def _calibration_scores(args: tuple[str, list[dict[str, Any]], str]) -> tuple[str, int]:
    """Score the documents of one input that reach the last filter of ``specs`` (a quality
    filter); the scores go to ``out_path`` as a float64 .npy file (disk, not memory)."""
    path, specs, out_path = args
    chain = _cached_chain(specs)
    prefix, quality = chain.filters[:-1], chain.filters[-1]
    scores: list[float] = []
    for table in read_tables(path):
        for row in table.to_pylist():
            doc = Document.from_row(row)
            dropped = False
            for f in prefix:
                if f(doc) is not None and f.mode == "filter":
                    dropped = True
                    break
            if not dropped:
                scores.append(quality.predict(doc.text or ""))
    tmp = f"{out_path}.tmp.npy"
    np.save(tmp, np.asarray(scores, dtype=np.float64))
    os.replace(tmp, out_path)
    return out_path, len(scores)


def kth_largest(files: list[str], k: int, bins: int = 1 << 16) -> float:
    """The exact k-th largest value (1-based) of the scores in ``files`` (values in [0, 1]),
    reading them twice with memory bounded by one file plus one histogram bin: a histogram
    locates the bin holding the k-th value, then only that bin's values are sorted."""
    counts = np.zeros(bins, dtype=np.int64)
    for f in files:
        s = np.load(f, mmap_mode="r")
        if len(s):
            counts += np.bincount(np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(np.int64), bins - 1), minlength=bins)
    from_top = np.cumsum(counts[::-1])
    top_bin_index = int(np.searchsorted(from_top, k))  # first position where >= k from the top
    b = bins - 1 - top_bin_index
    above = int(from_top[top_bin_index - 1]) if top_bin_index > 0 else 0
    inside: list[np.ndarray] = []
    for f in files:
        s = np.load(f, mmap_mode="r")
        if len(s):
            idx = np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
            inside.append(np.asarray(s[idx == b]))
    values = np.sort(np.concatenate(inside))[::-1]
    return float(values[k - above - 1])


def calibrate_keep_top(
    inputs: list[str], specs: list[dict[str, Any]], work_dir: str, workers: int = 1
) -> dict[str, Any]:
    """Fix the score cut of the quality filter at the end of ``specs`` so that it keeps its
    ``keep_top`` fraction of the documents reaching it. Scores of an input are cached in
    ``work_dir`` keyed by the chain, so an interrupted run does not score them again."""
    keep_top = float(specs[-1]["keep_top"])
    key = hashlib.sha256(json.dumps(specs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    os.makedirs(work_dir, exist_ok=True)
    jobs = []
    files = []
    for path in inputs:
        st = os.stat(path)
        ident = hashlib.sha256(f"{key}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
        out = os.path.join(work_dir, f"scores-{ident}.npy")
        files.append(out)
        if not os.path.exists(out):
            jobs.append((path, specs, out))
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        for job in jobs:
            _calibration_scores(job)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_calibration_scores, jobs):
                pass
    n = sum(len(np.load(f, mmap_mode="r")) for f in files)
    if n == 0:
        threshold = 1.0
        kept = 0
    else:
        k = max(1, math.ceil(keep_top * n))
        threshold = kth_largest(files, k)
        kept = sum(int((np.load(f, mmap_mode="r") >= threshold).sum()) for f in files)
    return {
        "label": specs[-1].get("label") or specs[-1]["name"],
        "keep_top": keep_top,
        "scored": n,
        "keep_top_threshold": threshold,
        "expected_kept": kept,
    }


# ------------------------------------------------------------------------------ stage


def run_filter(
    inputs: list[str],
    output_dir: str,
    chain_config: dict[str, Any] | None = None,
    *,
    annotate: bool = False,
    workers: int = 1,
    overwrite: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[InputResult]]:
    """Filter Parquet document shards (files, directories or globs) into ``output_dir``.

    Returns the manifest (also written to ``output_dir/manifest.json``) and the per-input
    results. Raises :class:`~curate.core.errors.CurateError` for a bad chain or unusable inputs.
    """
    from filters.registry import build_chain, merge_reports

    chain = build_chain(chain_config if chain_config is not None else DEFAULT_CHAIN, annotate=annotate)
    paths = expand_parquet_inputs(inputs)
    if not paths:
        raise CurateError("no input shards found")
    if os.path.abspath(output_dir) in {os.path.abspath(os.path.dirname(p)) for p in paths}:
        raise ConfigError(f"{output_dir}: the output directory must not be an input directory")
    specs = chain.specs()

    calibration_dir = os.path.join(output_dir, ".curate-calibration")
    if overwrite and os.path.isdir(calibration_dir):
        for f in glob.glob(os.path.join(calibration_dir, "*")):
            os.unlink(f)
    calibrations = []
    for i, spec in enumerate(specs):
        if spec["name"] == "quality" and spec.get("keep_top") is not None and spec.get("keep_top_threshold") is None:
            result = calibrate_keep_top(paths, specs[: i + 1], calibration_dir, workers)
            spec["keep_top_threshold"] = result["keep_top_threshold"]
            calibrations.append(result)

    config = {"filters": specs, "annotate": annotate, "fingerprints": chain.fingerprint()}
    input_weights = {p: float(os.path.getsize(p)) for p in paths}
    if progress is not None:
        progress.unit = "bytes"
    manifest, results = run_stage(
        STAGE,
        paths,
        output_dir,
        process_input,
        config,
        outputs=[REJECTED],
        workers=workers,
        overwrite=overwrite,
        shard_bytes=shard_bytes,
        progress=progress,
        input_weights=input_weights,
    )
    reports = []
    for r in results:
        path = _report_path(output_dir, r.index)
        if r.status != "failed" and path.exists():
            reports.append(json.loads(path.read_text()))
    manifest["filters"] = merge_reports(reports) if reports else []
    if calibrations:
        manifest["calibration"] = calibrations
    write_manifest(output_dir, manifest)
    if manifest.get("complete") and os.path.isdir(calibration_dir):
        # The cut is in the manifest and the config; the cached scores are no longer needed.
        for f in glob.glob(os.path.join(calibration_dir, "*")):
            os.unlink(f)
        os.rmdir(calibration_dir)
    return manifest, results


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
