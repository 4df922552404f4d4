"""The mix's manifest, its plan report (``--plan``) and the summary lines printed after a run."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from curate.core.manifest import build_manifest
from curate.core.shards import ShardInfo
from curate.stages.mix.config import MixConfig
from curate.stages.mix.plan import Planned, SourceCount, SourcePlan, number
from curate.stages.mix.shuffle import TOKENS_DIR, OutputWriter, Selected

STAGE = "mix"  # the stage name in manifests and state
RULE_WHOLE = (
    "each source takes whole epochs, then documents in a seeded random order until its "
    "target is reached; the last document taken may overshoot by less than its length"
)
RULE_CUT = (
    "documents over max_doc_tokens are cut into chunks; each source takes whole epochs, then "
    "chunks in a seeded random order until its target is reached, the last one cut to the tokens "
    "still needed (a cut under 16 tokens is left out instead)"
)


def source_entry(
    c: SourceCount, p: SourcePlan, tokens: int, docs: int, rows: int, total: int, chunks: int
) -> dict[str, Any]:
    """The fields a source has in the plan report and the manifest alike. ``docs`` counts the
    documents with at least one row taken; ``chunks`` the distinct rows taken (a document kept
    whole is one, a split one its chunks taken); ``chunks_available`` = ``chunks`` +
    ``chunks_not_sampled``."""
    return {
        "name": p.name,
        "weight": p.weight,
        "share_requested": round(p.share_requested, 6),
        "share_realized": round(tokens / total, 6) if total else 0.0,
        "tokens_requested": int(round(p.tokens_requested)),
        "tokens_target": p.tokens_target,
        "tokens": tokens,
        "tokens_available": c.tokens,
        "docs_available": c.docs,
        "docs": docs,
        "split_documents": int(c.split_docs.shape[0]),
        "chunks_available": c.positions,
        "chunks": chunks,
        "chunks_not_sampled": c.positions - chunks,
        "rows": rows,
        "epochs": round(tokens / c.tokens, 4) if c.tokens else 0.0,
        "max_epochs": p.max_epochs,
        "capped": p.capped,
        "shortfall_tokens": max(0, int(round(p.tokens_requested)) - p.tokens_target),
        "read": c.stats.read,
        "rejected": dict(c.stats.rejected),
        "errors": dict(c.stats.errors),
    }


def manifest(
    cfg: MixConfig,
    planned: Planned,
    selected: Selected,
    shards: list[ShardInfo],
    writer: OutputWriter,
    n_buckets: int,
) -> dict[str, Any]:
    realized = selected.realized
    stats = selected.stats
    stats.chars["kept"] = sum(r.doc_chars for r in realized.values())
    total_tokens = sum(r.tokens for r in realized.values())
    sources_json = []
    for c, p in zip(planned.counted, planned.plans):
        r = realized[p.name]
        entry = source_entry(c, p, r.tokens, r.docs, r.rows, total_tokens, r.chunks)
        sources_json.append(
            {**entry, "paths": c.spec.paths, "files": len(c.files), "chars": r.chars, "cut_rows": r.cut_rows}
        )
    failed = sum(len(c.failed) for c in planned.counted)
    extra: dict[str, Any] = {
        # A file that could not be read is left out, like in every stage: the mix of the others
        # is written, and a rerun (after the file is fixed) mixes again.
        "complete": not failed,
        "inputs_failed": failed,
        "seed": cfg.seed,
        "tokenizer": planned.tokenizer.describe(),
        "tokens": {
            "budget": cfg.budget,
            "realized": total_tokens,
            "rows": sum(r.rows for r in realized.values()),
            "rule": RULE_CUT if cfg.chunk_limit else RULE_WHOLE,
        },
        "chunking": {
            "max_doc_tokens": cfg.chunk_limit,
            "id": "PARENT_ID#cNNNNN (chunk index, from 0); meta holds parent_id, chunk and chunks",
            "split_documents": sum(int(c.split_docs.shape[0]) for c in planned.counted),
            "chunks_available": sum(c.positions for c in planned.counted),
            "chunks": sum(r.chunks for r in realized.values()),
            "cut_rows": sum(r.cut_rows for r in realized.values()),
        },
        "sources": sources_json,
        "training_cutoff": selected.cutoff.to_json(),
        "notes": planned.notes,
        "shuffle": {"buckets": n_buckets, "key": "splitmix64(seed, source, position, epoch)"},
        "upstream": sorted(
            {
                p
                for c in planned.counted
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
            "eot_id": planned.tokenizer.eot_id,
            "layout": "per shard, one flat array: each row's token ids in row order, each followed by eot_id "
            "(so a shard holds sum(n_tokens) + rows ids)",
            "files": writer.token_files,
        }
    return build_manifest(STAGE, cfg.to_json(), selected.inputs, stats, {"": shards}, extra=extra)


def plan_report(cfg: MixConfig, planned: Planned) -> dict[str, Any]:
    total = sum(p.tokens_planned for p in planned.plans)
    failed = [
        {"source": c.spec.name, "path": path, "status": "failed", "message": message}
        for c in planned.counted
        for path, (_, message) in c.failed.items()
    ]
    # Files that could not be read are listed as the run's manifest lists them.
    return ({"inputs_failed": len(failed), "inputs": failed} if failed else {}) | {
        "stage": "mix-plan",
        "tokenizer": planned.tokenizer.describe(),
        "seed": cfg.seed,
        "tokens": {"budget": cfg.budget, "realized": total},
        "max_doc_tokens": cfg.chunk_limit,
        "notes": planned.notes,
        "sources": [
            source_entry(c, p, p.tokens_planned, p.docs_selected, p.rows_planned, total, p.chunks_selected)
            for c, p in zip(planned.counted, planned.plans)
        ],
    }


def summarize_mix(manifest: dict[str, Any]) -> str:
    """Human lines: one per source, then totals and the training cutoff."""
    lines = []
    t = manifest["tokens"]
    lines.append(
        f"{manifest['stage']}: {t['realized']:,} tokens (budget {number(t['budget'])}), "
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
    split = sum(s.get("split_documents", 0) for s in manifest["sources"])
    if split:
        chunks = sum(s["chunks_available"] - s["docs_available"] + s["split_documents"] for s in manifest["sources"])
        limit = manifest.get("chunking", {}).get("max_doc_tokens") or manifest.get("max_doc_tokens")
        cut = sum(s.get("cut_rows", 0) for s in manifest["sources"])
        lines.append(
            f"  long documents: {split:,} cut into chunks"
            + (f" of at most {limit:,} tokens" if limit else "")
            + f" ({chunks:,} chunks)"
            + (f"; {cut} row(s) cut to end a source on its target" if cut else "")
        )
    for item in manifest.get("inputs", []):
        if item.get("status") == "failed":
            lines.append(f"  unreadable input: {item['path']}: {item.get('message', '')}")
    cut = manifest.get("training_cutoff")
    if cut:
        lines.append(
            f"  training cutoff: max {cut['max']}, p99 {cut['p99']} "
            f"({cut['undated_docs']:,} undated document(s) ignored)"
        )
    if manifest.get("shards") is not None and manifest["stage"] == "mix":
        lines.append(f"  {len(manifest['shards'])} shard(s), {manifest['tokens']['rows']:,} rows")
    return "\n".join(lines)
