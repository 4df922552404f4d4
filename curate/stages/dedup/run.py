"""``curate dedup``: URL, exact and MinHash near-duplicate removal across a whole corpus.

The stage is global (a duplicate may sit in any shard), so it does not use the per-input
runner. It makes two passes over the inputs:

1. **Signatures** (parallel over ``workers`` processes, one Parquet row group per task, results
   consumed in input order so the outcome never depends on ``workers``): reads only ``id``,
   ``text``, ``url``, ``date`` and ``quality_score``; computes per document a 128-bit hash of the
   normalized text, its MinHash signature and LSH band keys (:mod:`curate.stages.dedup.minhash`). Signatures
   and per-document columns go to flat files; ``(key, doc)`` records go to
   :class:`~curate.stages.dedup.index.KeyIndex` instances that spill to disk past ``memory_bytes``.
2. **Decisions**, in this order, each only among documents still kept:

   * ``url`` (with ``--url``): documents whose normalized URLs match; the newest fetch is kept.
   * ``exact``: documents whose normalized text is identical.
   * ``near``: documents sharing an LSH band are candidates; a candidate pair is *verified*
     when the fraction of agreeing signature values (estimated Jaccard) is at least the
     verify threshold (default: the threshold), or with ``verify = "exact"`` when the true
     Jaccard of the two shingle sets is (:mod:`curate.stages.dedup.exact`: one more streaming pass
     that hashes only the documents in a candidate pair, and pairs resolved in batches
     within ``memory_bytes``), and verified pairs are joined by union-find.
     Union-find alone would chain A~B~C into one cluster even when A and C are far apart, so
     each cluster is then split into stars: the best-ranked document is kept and removes every
     member whose Jaccard (estimated or exact, as above) *with it* passes the verify threshold; the best-ranked of
     the rest starts the next star. A removed document is therefore always within the
     threshold of the document that represents it.

   The representative kept for a group is the one with the earliest ``date``, then the higher
   ``quality_score``, then the smaller ``id`` (then input order); missing dates rank last and
   missing scores lowest. For URL groups the *latest* date wins instead (a refetch supersedes).
3. **Write** (second streaming pass): kept rows go to ``output_dir`` in input order, removed
   rows to ``output_dir/removed`` with ``dup_of`` (the id of the kept document that represents
   it, following url -> exact -> near chains), ``dup_kind`` (why it was removed) and
   ``dup_similarity`` (Jaccard with ``dup_of``: estimated, or exact with ``verify = "exact"``).

Outputs are staged under ``.curate/`` and moved into place only once complete, then
``manifest.json`` is written; a killed run leaves the previous output (or none) intact, and a
rerun with the same inputs and configuration is a no-op.

Modules: :mod:`curate.stages.dedup.minhash` (normalization, signatures, bands), :mod:`curate.stages.dedup.signatures`
(pass 1 in the workers), :mod:`curate.stages.dedup.index` (spilling key index, document store,
union-find), :mod:`curate.stages.dedup.config` (settings and defaults), :mod:`curate.stages.dedup.inputs` (input metadata and casts),
:mod:`curate.stages.dedup.plan` (resource plan),
:mod:`curate.stages.dedup.decide` (ranking and the decisions of step 2), :mod:`curate.stages.dedup.exact`
(exact verification),
:mod:`curate.stages.dedup.output` (pass 2 and the commit), :mod:`curate.stages.dedup.ray` (``--engine ray``:
the signature pass and the near-duplicate edges as Ray tasks, through the ``_unit_results``,
``_make_indexes``, ``_index_keys``, ``_near_edges`` and ``_near`` hooks of :class:`_Run`); this one runs
the stage: pass 1 into the document store and key indexes, then the passes in order, the
manifest and the summary.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.files import atomic_write_json
from curate.core.manifest import build_manifest, config_hash
from curate.core.progress import Progress
from curate.core.shards import ShardInfo, expand_parquet_inputs
from curate.stages.dedup.config import DEFAULT_MEMORY_GB, DedupConfig
from curate.stages.dedup.decide import Decisions, Ranker
from curate.stages.dedup.exact import ordered_results
from curate.stages.dedup.index import DocStore, KeyIndex, remove_tree
from curate.stages.dedup.inputs import InputInfo, inspect_inputs
from curate.stages.dedup.output import STAGE, check_output, commit, state_path, write_outputs
from curate.stages.dedup.plan import DedupPlan, plan_dedup
from curate.stages.dedup.signatures import placeholder, signature_unit, unit_key_records


@dataclass
class DedupResult:
    manifest: dict[str, Any]
    plan: DedupPlan | None
    skipped: bool  # True when a complete identical run was already there


# --------------------------------------------------------------------------- the stage


class _Run(Decisions):
    """State of one dedup run (work files live under ``output_dir/.curate/work``)."""

    def __init__(
        self,
        inputs: list[InputInfo],
        output_dir: str,
        config: DedupConfig,
        workers: int,
        memory_bytes: int,
        progress: bool,
    ):
        self.inputs = inputs
        self.output_dir = output_dir
        self.config = config
        self.workers = workers
        self.memory_bytes = memory_bytes
        self.show_progress = progress
        self.work = Path(output_dir) / ".curate" / "work"
        self.staging = Path(output_dir) / ".curate" / "staging"
        self.n_docs = sum(i.rows for i in inputs if not i.error)
        self.failed: dict[int, str] = {i.index: i.error for i in inputs if i.error}
        self.input_errors: dict[int, Counter] = {}
        self.error_examples: dict[int, dict[str, list[dict[str, Any]]]] = {}
        self.counters: Counter = Counter()
        self.offsets: dict[int, int] = {}

    # ---- pass 1
    def signatures(self) -> None:
        cfg = self.config
        bands, _ = cfg.lsh() if cfg.near else (0, 0)
        n = self.n_docs
        # One index per kind of key that is on, even with no documents at all (an empty
        # corpus then goes through every pass and writes empty outputs).
        records = {
            name: count
            for name, count, on in (("exact", n, cfg.exact), ("url", n, cfg.url), ("band", n * bands, cfg.near))
            if on
        }
        self.indexes = self._make_indexes(records)
        self.store = DocStore(
            self.work / "store",
            {
                "sig": ("<u4", cfg.num_perm),
                "date": ("<i8", 1),
                "quality": ("<f4", 1),
                "exact": ("<u8", 2),
                "url": ("<u8", 2),
                "has_url": ("u1", 1),
                "n_shingles": ("<i8", 1),
                "valid": ("u1", 1),
                "input": ("<i4", 1),
            },
        )
        units = []
        offset = 0
        for info in self.inputs:
            if info.error:
                continue
            self.offsets[info.index] = offset
            for rg, rows in enumerate(info.row_groups):
                units.append((info.index, offset, (info.path, rg, rows, cfg)))
                offset += rows
        progress = Progress("dedup: signatures", total=n, unit="docs", enabled=None if self.show_progress else False)
        try:
            with self._unit_results(units) as results:
                for (input_index, doc_offset, _), result in zip(units, results):
                    self._absorb(input_index, doc_offset, result)
                    progress.advance(result["n"])
        finally:
            progress.close()
        self.store.finish()
        input_of = self.store["input"]
        self.alive = self.store["valid"].astype(bool)
        if self.failed and n:
            self.alive &= ~np.isin(input_of, np.fromiter(self.failed, dtype=np.int32))
        self.kind = np.memmap(self.work / "kind.bin", dtype="u1", mode="w+", shape=(max(n, 1),))[:n]
        self.dup_of = np.memmap(self.work / "dup_of.bin", dtype="<i8", mode="w+", shape=(max(n, 1),))[:n]
        self.dup_of[:] = -1
        self.ranker = Ranker(self.store)

    def _make_indexes(self, records: dict[str, int]) -> dict[str, Any]:
        """One key index per kind of key; each gets a share of the budget proportional to its
        records."""
        total = max(sum(records.values()), 1)
        return {
            name: KeyIndex(self.work / "index", name, max(1, self.memory_bytes * count // total), count)
            for name, count in records.items()
        }

    def _unit_results(self, units: list[tuple[int, int, tuple]]) -> Iterator[Iterator[dict[str, Any]]]:
        """The results of :func:`signature_unit` over ``units``, in unit order."""
        return ordered_results(signature_unit, [u[2] for u in units], self.workers)

    def _absorb(self, input_index: int, doc_offset: int, result: dict[str, Any]) -> None:
        cfg = self.config
        if "error" in result:
            if input_index not in self.failed:
                self.failed[input_index] = result["error"]
            result = placeholder(result["n"], cfg)
        else:
            # Kept per input: an input that fails later on is left out of every count.
            self.input_errors.setdefault(input_index, Counter()).update(result["errors"])
            for reason in result["errors"]:
                bucket = self.error_examples.setdefault(input_index, {}).setdefault(reason, [])
                if len(bucket) < 5:
                    bucket.append({"file": self.inputs[input_index].path, "ids": result["error_examples"]})
        n = result["n"]
        docs = np.arange(doc_offset, doc_offset + n, dtype=np.int64)
        self.store.append(
            result["ids"],
            sig=result["sig"],
            date=result["date"],
            quality=result["quality"],
            exact=result["exact"],
            url=result["url"],
            has_url=result["has_url"],
            n_shingles=result["n_shingles"],
            valid=result["valid"],
            input=np.full(n, input_index, dtype=np.int32),
        )
        self._index_keys(docs, result)

    def _index_keys(self, docs: np.ndarray, result: dict[str, Any]) -> None:
        """Add the unit's ``(key, doc)`` records to the key indexes."""
        for name, keys, key_docs in unit_key_records(result, docs, self.config):
            self.indexes[name].add(keys, key_docs)

    # ---- pass 2
    def write(self, clusters: list[dict[str, Any]]) -> tuple[Stats, dict[str, list[ShardInfo]]]:
        return write_outputs(self, clusters)


# --------------------------------------------------------------------------- entry point


def _execute(run: _Run, started: float) -> tuple:
    """The passes of one run; its work files are removed whatever happens."""
    remove_tree(run.work)
    try:
        run.signatures()
        t_signatures = time.monotonic() - started
        run.decide()
        run.resolve()
        clusters = run.clusters()
        t_decide = time.monotonic() - started - t_signatures
        stats, shards = run.write(clusters)
        spilled = {name: idx.partitions for name, idx in run.indexes.items()}
        spilled_bytes = sum(idx.spilled_bytes for idx in run.indexes.values())
        store_bytes = run.store.bytes_on_disk()
        if getattr(run, "exact_verifier", None) is not None:
            store_bytes += run.exact_verifier.stats["shingle_bytes"]
        run.store.close()
    finally:
        if getattr(run, "exact_verifier", None) is not None:
            run.exact_verifier.close()
        remove_tree(run.work)
    return t_signatures, t_decide, clusters, stats, shards, spilled, spilled_bytes, store_bytes


def run_dedup(
    inputs: list[str],
    output_dir: str,
    config: DedupConfig | None = None,
    *,
    workers: int = 1,
    memory_bytes: int = int(DEFAULT_MEMORY_GB * 1024**3),
    overwrite: bool = False,
    progress: bool = True,
    plan_only: bool = False,
    on_plan: Callable[[DedupPlan], None] | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
) -> DedupResult:
    """Deduplicate the documents of ``inputs`` (files, directories, globs) into ``output_dir``.

    ``plan_only`` returns the resource plan without touching anything; ``on_plan`` is called
    with the plan (estimated from metadata) just before the work starts. ``engine`` 'ray'
    computes signatures and near-duplicate edges as Ray tasks (:mod:`curate.stages.dedup.ray`; the
    cluster at ``ray_address`` or a local instance with ``workers`` CPUs) with the same result;
    by default the engine of the enclosing :func:`curate.runtime.stage.execution` block is used."""
    config = (config or DedupConfig()).validate()
    engine = engine or "local"
    if engine not in ("local", "ray"):
        raise CurateError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    if not inputs:
        raise CurateError("no inputs given")
    paths = expand_parquet_inputs(inputs)
    if not paths:
        raise CurateError("no input files found")
    infos = inspect_inputs(paths)
    workers = max(1, int(workers))
    if plan_only:
        return DedupResult({}, plan_dedup(infos, config, workers, memory_bytes), skipped=False)
    if all(i.error for i in infos):
        raise CurateError(f"no readable input: {infos[0].error}")
    previous = check_output(output_dir, paths, overwrite)
    config_json = config.to_json()
    chash = config_hash(config_json)
    fingerprint = [i.fingerprint() for i in infos]
    if previous is not None:
        same = previous.get("config_hash") == chash and previous.get("input_fingerprint") == fingerprint
        if same and previous.get("complete"):
            return DedupResult(previous, None, skipped=True)
        if not same:
            raise CurateError(
                f"{output_dir} holds a dedup of other inputs or options; rerun with the same ones to "
                "keep it, or add --overwrite to replace it"
            )
    plan = plan_dedup(infos, config, workers, memory_bytes, measure=False)
    if on_plan is not None:
        on_plan(plan)
    started = time.monotonic()
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(state_path(output_dir), {"stage": STAGE, "config_hash": chash})
    with ExitStack() as session:
        if engine == "ray":
            from curate.runtime.ray import ray_session
            from curate.stages.dedup.ray import RayRun

            ray = session.enter_context(ray_session(ray_address, num_cpus=workers))
            run: _Run = RayRun(infos, output_dir, config, workers, memory_bytes, progress, ray)
        else:
            run = _Run(infos, output_dir, config, workers, memory_bytes, progress)
        t_signatures, t_decide, clusters, stats, shards, spilled, spilled_bytes, store_bytes = _execute(run, started)
    failed = run.failed
    input_entries = []
    for info in infos:
        entry = {
            "path": info.path,
            "index": info.index,
            "rows": info.rows,
            "bytes": info.bytes,
            "status": "failed" if info.index in failed else "done",
        }
        if info.index in failed:
            entry["message"] = failed[info.index]
        input_entries.append(entry)
    bands, rows = config.lsh() if config.near else (None, None)
    extra = {
        "complete": not failed,
        "inputs_failed": len(failed),
        "config_hash": chash,
        "input_fingerprint": fingerprint,
        "lsh": {
            "threshold": config.threshold,
            "verify_threshold": config.accept,
            "num_perm": config.num_perm,
            "ngram": config.ngram,
            "seed": config.seed,
            "bands": bands,
            "rows": rows,
            "shingle_hash": config.shingle_hash,
            "verify": config.verify,
            "candidate_probability": {f"{s:.2f}": round(1 - (1 - s**rows) ** bands, 4) for s in (0.5, 0.7, 0.8, 0.9)}
            if bands
            else {},
        },
        "pairs": {
            "candidates": run.counters["candidate_pairs"],
            "verified": run.counters["verified_pairs"],
            "verify": config.verify,
            **({"exact": run.exact_verifier.manifest()} if getattr(run, "exact_verifier", None) else {}),
        },
        "clusters": clusters,
        "memory": {
            "budget_bytes": memory_bytes,
            "partitions": spilled,
            "spilled_bytes": spilled_bytes,
            "work_bytes": store_bytes + spilled_bytes,
        },
        "seconds": {
            "signatures": round(t_signatures, 3),
            "decide": round(t_decide, 3),
            "total": round(time.monotonic() - started, 3),
        },
        "workers": run.workers,
        "engine": engine,
    }
    manifest = build_manifest(STAGE, config_json, input_entries, stats, shards, extra=extra)
    commit(output_dir, run.staging, manifest)
    return DedupResult(manifest, plan, skipped=False)


def summarize(result: DedupResult) -> str:
    """Human lines about a finished (or skipped) run."""
    m = result.manifest
    c = m["counts"]
    removed = sum(c["rejected"].values())
    lines = [
        f"dedup: read {c['read']:,}  kept {c['kept']:,}  removed {removed:,}"
        + (f" ({removed / c['read']:.1%})" if c["read"] else "")
        + f"  errors {sum(c['errors'].values()):,}"
    ]
    if c["rejected"]:
        lines.append("  removed: " + ", ".join(f"{k}={v:,}" for k, v in sorted(c["rejected"].items())))
    if c["errors"]:
        lines.append("  errors: " + ", ".join(f"{k}={v:,}" for k, v in sorted(c["errors"].items())))
    lsh = m.get("lsh", {})
    if lsh.get("bands"):
        lines.append(
            f"  near: {lsh['bands']} bands x {lsh['rows']} rows, {m['pairs']['candidates']:,} candidate pairs, "
            f"{m['pairs']['verified']:,} verified ({'exact' if lsh.get('verify') == 'exact' else 'estimated'} Jaccard >= {lsh['verify_threshold']})"
        )
        exact = m["pairs"].get("exact")
        if exact:
            lines.append(
                f"  exact verification: {exact['accepted']:,} accepted ({exact['accepted_below_estimate']:,} the "
                f"estimate would have missed), {exact['rejected']:,} rejected ({exact['rejected_above_estimate']:,} "
                f"the estimate would have merged); {exact['documents_hashed']:,} documents re-read"
            )
    for cl in m.get("clusters", [])[:3]:
        lines.append(
            f"  cluster of {cl['size']:,}: keeps {cl['representative']} {cl.get('representative_url') or ''}".rstrip()
        )
    for item in m.get("inputs", []):
        if item.get("status") == "failed":
            lines.append(f"  unreadable input: {item.get('message')}")
    return "\n".join(lines)
