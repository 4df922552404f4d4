"""Output side of ``curate dedup``: pass 2 (writing kept and removed shards to a staging
directory), the checks on an existing output directory, and the final commit (staged shards
moved into place, then ``manifest.json`` written last)."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.manifest import load_manifest, write_manifest
from curate.core.progress import Progress
from curate.core.shards import ShardInfo, ShardWriter, read_tables
from curate.stages.dedup.index import remove_tree

STAGE = "dedup"
KEPT, EXACT, NEAR, URL = 0, 1, 2, 3
KIND_NAMES = {EXACT: "exact", NEAR: "near", URL: "url"}


def write_outputs(run: Any, clusters: list[dict[str, Any]]) -> tuple[Stats, dict[str, list[ShardInfo]]]:
    """Pass 2: stream the inputs again and write kept rows and removed rows (with ``dup_of``,
    ``dup_kind``, ``dup_similarity``) to the staging directory, in input order."""
    cfg = run.config
    remove_tree(run.staging)
    kept_writer = ShardWriter(run.staging, prefix="part-00000", shard_bytes=cfg.shard_bytes)
    removed_writer = ShardWriter(run.staging / "removed", prefix="part-00000", shard_bytes=cfg.shard_bytes)
    stats = Stats()
    for index, errors in sorted(run.input_errors.items()):
        if index not in run.failed:
            stats.errors.update(errors)
            for reason, items in run.error_examples.get(index, {}).items():
                for item in items:
                    stats.example(reason, **item)
    rep_rank = {int(r): k for k, r in enumerate(run.top_reps)}
    progress = Progress("dedup: writing", total=run.n_docs, unit="docs", enabled=None if run.show_progress else False)
    removed_sorted = run.removed_docs  # sorted ascending (np.flatnonzero)
    buffers: dict[str, list[pa.Table]] = {"": [], "removed": []}
    buffered = {"": 0, "removed": 0}

    # Rows are buffered into row groups of up to min(32 MB, shard size) of text, so shards
    # get their target size and row groups do not depend on how inputs were batched.
    group_chars = max(1, min(32 * 1024 * 1024, cfg.shard_bytes))

    def emit(name: str, table: pa.Table | None, flush: bool = False) -> None:
        if table is not None and table.num_rows:
            buffers[name].append(table)
            buffered[name] += (pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0) + 200 * table.num_rows
        if not buffers[name] or not (flush or buffered[name] >= group_chars):
            return
        writer = kept_writer if name == "" else removed_writer
        whole = pa.concat_tables(buffers[name])
        lengths = pc.utf8_length(whole.column("text")).to_numpy(zero_copy_only=False)
        ends = np.cumsum(np.nan_to_num(lengths.astype(np.float64)) + 200)
        start = 0
        while start < whole.num_rows:
            done = ends[start - 1] if start else 0.0
            stop = int(np.searchsorted(ends, done + group_chars, side="left")) + 1
            stop = min(max(stop, start + 1), whole.num_rows)
            if stop == whole.num_rows and not flush and ends[-1] - done < group_chars:
                break  # keep the tail for the next row group
            writer.write_table(whole.slice(start, stop - start))
            start = stop
        rest = whole.slice(start)
        buffers[name] = [rest] if rest.num_rows else []
        buffered[name] = int(ends[-1] - (ends[start - 1] if start else 0.0)) if rest.num_rows else 0

    try:
        for info in run.inputs:
            if info.index in run.failed:
                continue
            stats.read += info.rows
            offset = run.offsets[info.index]
            for table in read_tables(info.path, batch_rows=2048):
                n = table.num_rows
                idx = np.arange(offset, offset + n)
                offset += n
                valid = run.store["valid"][idx].astype(bool)
                kind = run.kind[idx]
                keep = valid & (kind == KEPT)
                rem = valid & (kind != KEPT)
                text_len = pc.utf8_length(table.column("text")).to_numpy(zero_copy_only=False)
                text_len = np.nan_to_num(text_len.astype(np.float64)).astype(np.int64)
                stats.chars["read"] += int(text_len.sum())
                stats.chars["kept"] += int(text_len[keep].sum())
                stats.kept += int(keep.sum())
                for k, name in KIND_NAMES.items():
                    c = int(np.count_nonzero(rem & (kind == k)))
                    if c:
                        stats.rejected[name] += c
                        stats.chars[f"rejected:{name}"] += int(text_len[rem & (kind == k)].sum())
                if rep_rank:
                    for j in np.flatnonzero(np.isin(idx, run.top_reps)).tolist():
                        clusters[rep_rank[int(idx[j])]]["representative_url"] = table.column("url")[j].as_py()
                emit("", table.filter(pa.array(keep)))
                if rem.any():
                    docs = idx[rem]
                    where = np.searchsorted(removed_sorted, docs)
                    targets = np.asarray(run.dup_of[docs])
                    removed = table.filter(pa.array(rem))
                    removed = _set_column(removed, "dup_of", pa.array(run.store.doc_ids(targets), pa.string()))
                    removed = _set_column(
                        removed, "dup_kind", pa.array([KIND_NAMES[int(k)] for k in run.kind[docs]], pa.string())
                    )
                    removed = _set_column(removed, "dup_similarity", pa.array(run.similarity[where], pa.float32()))
                    emit("removed", removed)
                progress.advance(n)
            if offset != run.offsets[info.index] + info.rows:
                raise CurateError(f"{info.path}: changed while dedup was running; rerun")
        emit("", None, flush=True)
        emit("removed", None, flush=True)
        shards = {"": kept_writer.close(), "removed": removed_writer.close()}
    except BaseException:
        kept_writer.abort()
        removed_writer.abort()
        raise
    finally:
        progress.close()
    return stats, shards


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values)


def state_path(output_dir: str) -> Path:
    return Path(output_dir) / ".curate" / "state.json"


def check_output(output_dir: str, input_paths: list[str], overwrite: bool) -> dict[str, Any] | None:
    out = Path(output_dir).resolve()
    for p in input_paths:
        if Path(p).resolve().parent in (out, out / "removed"):
            raise CurateError(f"input {p} is inside the output directory {output_dir}; choose another -o")
    manifest = load_manifest(output_dir) if out.exists() else None
    state = json.loads(state_path(output_dir).read_text()) if state_path(output_dir).exists() else None
    if overwrite:
        return None
    if manifest is not None and manifest.get("stage") != STAGE:
        raise CurateError(
            f"{output_dir} holds output of stage {manifest.get('stage')!r}, not dedup; "
            "use another output directory or --overwrite"
        )
    if (
        manifest is None
        and (state is None or state.get("stage") != STAGE)
        and glob.glob(os.path.join(output_dir, "*.parquet"))
    ):
        raise CurateError(
            f"{output_dir} already holds Parquet files not written by dedup; use --overwrite or another output directory"
        )
    return manifest


def commit(output_dir: str, staging: Path, manifest: dict[str, Any]) -> None:
    """Replace the previous output with the staged one; the manifest goes last."""
    out = Path(output_dir)
    (out / "manifest.json").unlink(missing_ok=True)
    for sub in ("", "removed"):
        for f in glob.glob(str(out / sub / "*.parquet")):
            os.unlink(f)
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted(glob.glob(str(staging / sub / "*.parquet"))):
            os.replace(f, out / sub / os.path.basename(f))
    remove_tree(staging)
    write_manifest(output_dir, manifest)
