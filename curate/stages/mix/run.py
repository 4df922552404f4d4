"""``curate mix``: documents from several sources, mixed to an exact token budget by weight.

A source's weight is its target share of the OUTPUT TOKENS. The mix runs in passes, streaming
every source each time and keeping only small per-document arrays in memory:

1. **Count**: every non-empty document of every source is tokenized with the chosen tokenizer
   (a trained BPE directory, or UTF-8 bytes by default); only ``n_tokens`` per document
   position is kept (4 bytes a document).
2. **Plan** (:func:`allocate`): targets are ``weight * budget``. A source may be repeated up
   to ``max_epochs`` times (4 by default: Muennighoff et al., 2023, "Scaling Data-Constrained
   Language Models", found up to about four epochs nearly as useful as fresh data); a source
   that would need more is capped and its shortfall is given to the other sources in
   proportion to their weights (water filling), or is an error with ``strict``.
   Each source's target is then met by whole epochs plus a uniform random sample (seeded) of
   documents for the last, partial epoch (:func:`select_documents`).
   **Budget rule**: the sample takes documents in a seeded random order until the source's
   target is reached, so each source overshoots its target by less than one document (the
   last one taken) and the mix holds at least the budget, unless sources run out (reported).
3. **Scatter**: each selected (source, document, epoch) row gets a seeded 64-bit random key
   and is appended to one of N temporary bucket files by key range (N sized so that a bucket
   fits in ``shuffle_memory``).
4. **Gather**: buckets are read one at a time, sorted by key and written out as shards of
   ``shard_size``. The result is a global shuffle across sources in bounded memory, and the
   same inputs, config and seed give byte-identical shards.

Rows keep ``source`` (set to the mix's source name) and their original ``id``; ``epoch`` says
which repeat a row is (0 = first) and ``n_tokens`` holds its token count. The manifest holds
requested vs realized shares, epochs, the seed and tokenizer, and the ``training_cutoff``
(latest document date, with the 99th percentile beside it) that the trainer records.

Configuration, counting and planning live in :mod:`curate.stages.mix.plan`, the shuffle and shard
writing in :mod:`curate.stages.mix.shuffle`; this module runs the passes, guards the output
directory and writes the manifest. Everything is importable from here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.files import atomic_write_json
from curate.core.manifest import build_manifest, config_hash, load_manifest, write_manifest
from curate.core.progress import Progress
from curate.core.tokenizer import Tokenizer, load_tokenizer
from curate.stages.mix.plan import (  # noqa: F401  (re-exported: the mix API lives in curate.stages.mix.run)
    MixConfig,
    SourceCount,
    SourcePlan,
    SourceSpec,
    allocate,
    count_source,
    count_tokens,
    crc_ids,
    load_mix_config,
    parse_source_option,
    plan_mix,
    select_documents,
    source_reader,
)
from curate.stages.mix.shuffle import ROW_OVERHEAD, TOKENS_DIR, Buckets, Cutoff, OutputWriter, shuffle_keys

STATE_FILE = ".curate/mix-state.json"
BUCKET_DIR = ".curate/buckets"


@dataclass
class _Realized:
    tokens: int = 0
    rows: int = 0
    docs: int = 0
    chars: int = 0  # of rows, repeats included
    doc_chars: int = 0  # of distinct documents


def _prepare_output(output_dir: str, chash: str, fingerprint: list[Any], overwrite: bool) -> dict[str, Any] | None:
    """Check the output directory; return the existing manifest when it is already the result
    of this exact mix (nothing to do), else clear earlier mix output."""
    out = Path(output_dir)
    state_path = out / STATE_FILE
    existing = load_manifest(out) if out.exists() else None
    has_shards = out.exists() and any(out.glob("*.parquet"))
    if not overwrite:
        if existing is not None and existing.get("stage") != "mix":
            raise CurateError(
                f"{output_dir} holds output of stage {existing.get('stage')!r}; "
                "use another output directory or --overwrite"
            )
        if has_shards and not state_path.exists():
            raise CurateError(
                f"{output_dir} already holds Parquet files not written by `curate mix`; "
                "use --overwrite or another output directory"
            )
        if state_path.exists():
            state = json.loads(state_path.read_text())
            if state.get("config_hash") != chash:
                raise CurateError(
                    f"{output_dir} holds a mix made with a different configuration; "
                    "use --overwrite to replace it, or another output directory"
                )
            if existing is not None and existing.get("complete") and state.get("inputs") == fingerprint:
                return existing
    # Start clean: a killed run leaves only whole shards (renamed into place) and temp files.
    for pattern in ("*.parquet", f"{TOKENS_DIR}/*.bin", ".*.tmp", f"{TOKENS_DIR}/.*.tmp", "manifest.json"):
        for f in out.glob(pattern):
            f.unlink()
    shutil.rmtree(out / BUCKET_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(state_path, {"stage": "mix", "config_hash": chash, "inputs": fingerprint})
    return None


def _fingerprint(counted_files: list[tuple[str, list[str]]]) -> list[Any]:
    out = []
    for name, files in counted_files:
        for f in files:
            st = os.stat(f)
            out.append([name, f, st.st_size, st.st_mtime_ns])
    return out


def run_mix(
    cfg: MixConfig,
    output_dir: str | None,
    *,
    overwrite: bool = False,
    plan_only: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the mix; returns its manifest (or, with ``plan_only``, the plan without writing)."""
    cfg.validate()
    log = log or (lambda msg: None)
    tokenizer = load_tokenizer(cfg.tokenizer)

    # Pass 1: count tokens per document of every source.
    p1 = Progress("mix: counting tokens", total=len(cfg.sources), unit="sources", enabled=None if progress else False)
    counted = []
    for spec in cfg.sources:
        counted.append(count_source(spec, tokenizer, p1))
        p1.advance()
    p1.close()
    for c in counted:
        if c.docs == 0:
            log(f"warning: source {c.spec.name!r} has no usable documents")
    plans, notes = plan_mix(cfg, counted)
    for note in notes:
        log(f"note: {note}")
    if sum(c.docs for c in counted) == 0:
        raise CurateError("no usable documents in any source (all inputs empty or unreadable)")
    if plan_only or output_dir is None:
        return _plan_report(cfg, counted, plans, notes, tokenizer)

    chash = config_hash(cfg.to_json())
    fingerprint = _fingerprint([(c.spec.name, c.files) for c in counted])
    done = _prepare_output(output_dir, chash, fingerprint, overwrite)
    if done is not None:
        log(f"{output_dir}: already holds this mix (same configuration and inputs); nothing to do")
        return done

    # Size the buckets so that one, sorted in memory, stays within shuffle_memory.
    planned_bytes = 0
    for c, p in zip(counted, plans):
        per_token = (c.bytes / c.tokens) if c.tokens else 1.0
        planned_bytes += int(p.tokens_planned * per_token) + ROW_OVERHEAD * 4 * p.rows_planned
    bucket_bytes = max(64 * 1024, cfg.shuffle_bytes // 3)
    n_buckets = max(1, min(4096, math.ceil(planned_bytes / bucket_bytes)))
    flush_bytes = max(64 * 1024, min(8 << 20, cfg.shuffle_bytes // (4 * n_buckets)))
    buckets = Buckets(Path(output_dir) / BUCKET_DIR, n_buckets, flush_bytes)
    stats = Stats()
    realized = {p.name: _Realized() for p in plans}
    cutoff = Cutoff()
    writer = OutputWriter(output_dir, cfg.shard_bytes, tokenizer if cfg.pretokenize else None)
    inputs: list[dict[str, Any]] = []

    try:
        # Pass 2: read again, scatter selected rows (with their repeats) into buckets.
        p2 = Progress(
            "mix: selecting", total=sum(c.docs for c in counted), unit="docs", enabled=None if progress else False
        )
        for src_index, (c, plan) in enumerate(zip(counted, plans)):
            reader = source_reader(c.spec)
            offset, crc = 0, 0
            for table in reader.tables():
                n = table.num_rows
                if offset + n > c.docs:
                    raise CurateError(
                        f"source {c.spec.name!r}: inputs changed while mixing (more documents than counted)"
                    )
                crc = crc_ids(crc, table)
                reps = plan.partial[offset : offset + n].astype(np.int64) + plan.full_epochs
                chosen = reps > 0
                if chosen.any():
                    picked = table.filter(pa.array(chosen))
                    cutoff.add(picked.column("date"))
                    real = realized[plan.name]
                    real.docs += int(chosen.sum())
                    real.doc_chars += int(pc.sum(pc.utf8_length(picked.column("text"))).as_py() or 0)
                    idx = np.repeat(np.arange(n), reps)
                    starts = np.repeat(np.cumsum(reps) - reps, reps)
                    epochs = (np.arange(idx.shape[0]) - starts).astype(np.int32)
                    positions = idx.astype(np.int64) + offset
                    ntok = c.n_tokens[positions].astype(np.int64)
                    real.rows += int(idx.shape[0])
                    real.tokens += int(ntok.sum())
                    rows = table.take(pa.array(idx))
                    real.chars += int(pc.sum(pc.utf8_length(rows.column("text"))).as_py() or 0)
                    rows = rows.set_column(
                        rows.schema.get_field_index("n_tokens"), "n_tokens", pa.array(ntok, pa.int64())
                    )
                    rows = rows.set_column(rows.schema.get_field_index("epoch"), "epoch", pa.array(epochs, pa.int32()))
                    keys = shuffle_keys(cfg.seed, plan.name, positions, epochs)
                    rows = rows.append_column("_key", pa.array(keys, pa.uint64()))
                    rows = rows.append_column("_src", pa.array(np.full(idx.shape[0], src_index, np.int32)))
                    rows = rows.append_column("_pos", pa.array(positions, pa.int64()))
                    bucket_of = ((keys >> np.uint64(32)) * np.uint64(n_buckets)) >> np.uint64(32)
                    order = np.argsort(bucket_of, kind="stable")
                    sorted_b = bucket_of[order]
                    rows = rows.take(pa.array(order))
                    bounds = np.searchsorted(sorted_b, np.arange(n_buckets + 1))
                    for b in range(n_buckets):
                        if bounds[b + 1] > bounds[b]:
                            buckets.add(b, rows.slice(int(bounds[b]), int(bounds[b + 1] - bounds[b])))
                offset += n
                p2.add(docs=n)
            if offset != c.docs or crc != c.id_digest:
                raise CurateError(f"source {c.spec.name!r}: inputs changed while mixing; rerun")
            s = reader.stats
            s.kept = realized[plan.name].docs
            if c.docs - s.kept:
                s.rejected["not_sampled"] += c.docs - s.kept
            stats.merge(s)
            for path, fs in reader.per_file.items():
                inputs.append(
                    {
                        "source": plan.name,
                        "path": path,
                        "read": fs.read,
                        "errors": sum(fs.errors.values()),
                        "status": "done" if not fs.errors else "done_with_errors",
                    }
                )
        buckets.close()
        p2.close()

        # Gather: bucket by bucket, sorted by key, into output shards.
        p3 = Progress("mix: writing", total=n_buckets, unit="buckets", enabled=None if progress else False)
        for b in range(n_buckets):
            table = buckets.read_sorted(b)
            if table is not None:
                writer.write(table)
                p3.add(rows=table.num_rows)
                os.unlink(buckets.paths[b])
            p3.advance()
        shards = writer.close()
        p3.close()
    except BaseException:
        writer.abort()
        buckets.close()
        shutil.rmtree(Path(output_dir) / BUCKET_DIR, ignore_errors=True)
        raise
    shutil.rmtree(Path(output_dir) / BUCKET_DIR, ignore_errors=True)

    stats.chars["kept"] = sum(r.doc_chars for r in realized.values())
    total_tokens = sum(r.tokens for r in realized.values())
    sources_json = []
    for c, p in zip(counted, plans):
        r = realized[p.name]
        sources_json.append(
            {
                "name": p.name,
                "paths": c.spec.paths,
                "files": len(c.files),
                "weight": p.weight,
                "share_requested": round(p.share_requested, 6),
                "share_realized": round(r.tokens / total_tokens, 6) if total_tokens else 0.0,
                "tokens_requested": int(round(p.tokens_requested)),
                "tokens_target": p.tokens_target,
                "tokens": r.tokens,
                "tokens_available": c.tokens,
                "docs_available": c.docs,
                "docs": r.docs,
                "rows": r.rows,
                "chars": r.chars,
                "epochs": round(r.tokens / c.tokens, 4) if c.tokens else 0.0,
                "max_epochs": p.max_epochs,
                "capped": p.capped,
                "shortfall_tokens": max(0, int(round(p.tokens_requested)) - p.tokens_target),
                "read": c.stats.read,
                "rejected": dict(c.stats.rejected),
                "errors": dict(c.stats.errors),
            }
        )
    extra: dict[str, Any] = {
        "complete": True,
        "inputs_failed": 0,
        "seed": cfg.seed,
        "tokenizer": tokenizer.describe(),
        "tokens": {
            "budget": cfg.budget,
            "realized": total_tokens,
            "rows": sum(r.rows for r in realized.values()),
            "rule": "each source takes whole epochs, then documents in a seeded random order until its "
            "target is reached; the last document taken may overshoot by less than its length",
        },
        "sources": sources_json,
        "training_cutoff": cutoff.to_json(),
        "notes": notes,
        "shuffle": {"buckets": n_buckets, "key": "splitmix64(seed, source, position, epoch)"},
        "upstream": sorted(
            {
                p
                for c in counted
                for p in c.spec.paths
                if os.path.isdir(p) and os.path.exists(os.path.join(p, "manifest.json"))
            }
        ),
    }
    if cfg.pretokenize:
        extra["pretokenized"] = {
            "dir": TOKENS_DIR,
            "dtype": np.dtype(writer.dtype).name,
            "byteorder": "little",
            "eot_id": tokenizer.eot_id,
            "layout": "per shard, one flat array: each row's token ids in row order, each followed by eot_id "
            "(so a shard holds sum(n_tokens) + rows ids)",
            "files": writer.token_files,
        }
    manifest = build_manifest("mix", cfg.to_json(), inputs, stats, {"": shards}, extra=extra)
    write_manifest(output_dir, manifest)
    return manifest


def _plan_report(
    cfg: MixConfig, counted: list[SourceCount], plans: list[SourcePlan], notes: list[str], tokenizer: Tokenizer
) -> dict[str, Any]:
    planned = sum(p.tokens_planned for p in plans)
    return {
        "stage": "mix-plan",
        "tokenizer": tokenizer.describe(),
        "seed": cfg.seed,
        "tokens": {"budget": cfg.budget, "realized": planned},
        "notes": notes,
        "sources": [
            {
                "name": p.name,
                "weight": p.weight,
                "share_requested": round(p.share_requested, 6),
                "share_realized": round(p.tokens_planned / planned, 6) if planned else 0.0,
                "tokens_requested": int(round(p.tokens_requested)),
                "tokens_target": p.tokens_target,
                "tokens": p.tokens_planned,
                "tokens_available": c.tokens,
                "docs_available": c.docs,
                "docs": p.docs_selected,
                "rows": p.rows_planned,
                "epochs": round(p.tokens_planned / c.tokens, 4) if c.tokens else 0.0,
                "max_epochs": p.max_epochs,
                "capped": p.capped,
                "shortfall_tokens": max(0, int(round(p.tokens_requested)) - p.tokens_target),
                "read": c.stats.read,
                "rejected": dict(c.stats.rejected),
                "errors": dict(c.stats.errors),
            }
            for c, p in zip(counted, plans)
        ],
    }


def summarize_mix(manifest: dict[str, Any]) -> str:
    """Human lines: one per source, then totals and the training cutoff."""
    lines = []
    t = manifest["tokens"]
    lines.append(
        f"{manifest['stage']}: {t['realized']:,} tokens (budget {t['budget']:,}), "
        f"tokenizer {manifest['tokenizer']['name']}, seed {manifest['seed']}"
    )
    lines.append(f"  {'source':<16}{'requested':>10}{'realized':>10}{'tokens':>14}{'docs':>9}{'rows':>9}{'epochs':>8}")
    for s in manifest["sources"]:
        flag = "  capped" if s["capped"] else ""
        lines.append(
            f"  {s['name']:<16}{100 * s['share_requested']:>9.2f}%{100 * s['share_realized']:>9.2f}%"
            f"{s['tokens']:>14,}{s['docs']:>9,}{s['rows']:>9,}{s['epochs']:>8.2f}{flag}"
        )
        errors = sum(s["errors"].values())
        if errors:
            lines.append(
                f"    {errors:,} unreadable record(s): " + ", ".join(f"{k}={v}" for k, v in sorted(s["errors"].items()))
            )
    cut = manifest.get("training_cutoff")
    if cut:
        lines.append(
            f"  training cutoff: max {cut['max']}, p99 {cut['p99']} "
            f"({cut['undated_docs']:,} undated document(s) ignored)"
        )
    if manifest.get("shards") is not None and manifest["stage"] == "mix":
        lines.append(f"  {len(manifest['shards'])} shard(s), {manifest['tokens']['rows']:,} rows")
    return "\n".join(lines)
