"""``curate dedup``: URL, exact and MinHash near-duplicate removal across a whole corpus.

The stage is global (a duplicate may sit in any shard), so it does not use the per-input
runner. It makes two passes over the inputs:

1. **Signatures** (parallel over the executor's workers or Ray tasks, one Parquet row group per
   task, results consumed in input order so the outcome never depends on ``workers``): reads only ``id``,
   ``text``, ``url``, ``date`` and ``quality_score``; computes per document a 128-bit hash of the
   normalized text, its MinHash signature and LSH band keys (:mod:`curate.stages.dedup.minhash`). Signatures
   and per-document columns go to flat files; ``(key, doc)`` records go to
   :class:`~curate.stages.dedup.index.KeyIndex` instances that spill to disk past the memory budget.
2. **Decisions**, in this order, each only among documents still kept:

   * ``url`` (with ``--url``): documents whose normalized URLs match; the newest fetch is kept.
   * ``exact``: documents whose normalized text is identical.
   * ``near``: documents sharing an LSH band are candidates; a candidate pair is *verified*
     when the fraction of agreeing signature values (estimated Jaccard) is at least the
     verify threshold (default: the threshold), or with ``verify = "exact"`` when the true
     Jaccard of the two shingle sets is (:mod:`curate.stages.dedup.exact`: one more streaming pass
     that hashes only the documents in a candidate pair, and pairs resolved in batches
     within the memory budget), and verified pairs are joined by union-find.
     Union-find alone would chain A~B~C into one cluster even when A and C are far apart, so
     each cluster is then split into stars: the best-ranked document is kept and removes every
     member whose Jaccard (estimated or exact, as above) *with it* passes the verify threshold; the best-ranked of
     the rest starts the next star. A removed document is therefore always within the
     threshold of the document that represents it.

   The representative kept for a group is the one with the earliest ``date``, then the higher
   ``quality_score``, then the smaller ``id`` (then input order); missing dates rank last and
   missing scores lowest. For URL groups the *latest* date wins instead (a refetch supersedes).
3. **Write** (second streaming pass, one task per input): kept rows go to ``output_dir`` in
   input order, one set of shards per input (``part-{input:05d}-NNN.parquet``), removed rows to
   ``output_dir/removed`` under the same names with ``dup_of`` (the id of the kept document that represents
   it, following url -> exact -> near chains), ``dup_kind`` (why it was removed) and
   ``dup_similarity`` (Jaccard with ``dup_of``: estimated, or exact with ``verify = "exact"``).

Outputs are staged under ``.curate/`` and moved into place only once complete, then
``manifest.json`` is written; a killed run leaves the previous output (or none) intact, and a
rerun with the same inputs and configuration is a no-op.

This module is the stage's entry point, :func:`run` (and :func:`plan` for ``--plan``): the
output folder's checks and commit, the engine the executor asks for, the passes in order
(:mod:`curate.stages.dedup.signature_pass`, :mod:`curate.stages.dedup.decide`,
:mod:`curate.stages.dedup.output`), the manifest and the summary.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.files import writing
from curate.core.manifest import build_manifest, config_hash
from curate.core.shards import ShardInfo, expand_parquet_inputs
from curate.runtime.output import OutputDir
from curate.runtime.stage import StageContext
from curate.stages.dedup.config import DEFAULT_MEMORY_GB, DedupConfig
from curate.stages.dedup.decide import Decisions
from curate.stages.dedup.engine import Engine, LocalEngine
from curate.stages.dedup.index import remove_tree
from curate.stages.dedup.inputs import InputInfo, inspect_inputs
from curate.stages.dedup.output import REMOVED, write_outputs
from curate.stages.dedup.plan import DedupPlan, plan_dedup
from curate.stages.dedup.ray import RayEngine
from curate.stages.dedup.signature_pass import signature_pass

STAGE = "dedup"


def run(
    config: DedupConfig, ctx: StageContext, *, on_plan: Callable[[DedupPlan], None] | None = None
) -> dict[str, Any]:
    """Deduplicate the documents of ``ctx.inputs`` (files, directories, globs) into
    ``ctx.output`` within ``ctx.memory_bytes``, on ``ctx.executor`` (local processes or Ray
    tasks: the same result; :data:`DEFAULT_MEMORY_GB` when the context sets no budget); returns
    the manifest (also written there).

    When the folder already holds this run, finished, nothing is done: ``ctx.log`` says so and
    its manifest is returned. ``on_plan`` is called with the resource plan (estimated from
    metadata) just before the work starts."""
    config = config.validate()
    ctx = _with_budget(ctx)
    infos = _inspect(ctx.inputs)
    # Unreadable inputs, even all of them, are counted in the manifest like in every stage.
    out = OutputDir(ctx.output, STAGE, [REMOVED])
    out.refuse_inputs_inside([i.path for i in infos])  # before the lock: a refused run leaves nothing
    with out.locked(), writing(out.path):
        return _run_locked(config, ctx, infos, out, on_plan)


def _run_locked(
    config: DedupConfig,
    ctx: StageContext,
    infos: list[InputInfo],
    out: OutputDir,
    on_plan: Callable[[DedupPlan], None] | None,
) -> dict[str, Any]:
    chash = config_hash(config.to_json())
    fingerprint = [i.fingerprint() for i in infos]
    previous = _finished_run(out, infos, chash, fingerprint, ctx.overwrite)
    if previous is not None:
        ctx.log(f"{ctx.output} is already complete for these inputs and options: nothing to do")
        return previous
    if on_plan is not None:
        on_plan(plan_dedup(infos, config, ctx.executor.workers, ctx.memory_bytes, measure=False))
    started = time.monotonic()
    out.start({"config_hash": chash})
    with ctx.executor.session():
        engine: Engine = RayEngine(ctx.executor) if ctx.executor.is_ray else LocalEngine(ctx.executor)
        workers = ctx.executor.cluster_cpus()  # the manifest's: local workers, or the cluster's CPUs
        outcome = _execute(config, infos, ctx, engine, out.state_dir, started)
    manifest = _manifest(config, infos, chash, fingerprint, outcome, ctx, workers, started)
    out.commit(manifest, staging=out.state_dir / "staging")
    return manifest


def plan(config: DedupConfig, ctx: StageContext) -> DedupPlan:
    """The resources a run over ``ctx.inputs`` would take (``--plan``): from Parquet metadata
    and a short timing of signatures on a sample. Nothing is written; ``ctx.output`` is unused."""
    config = config.validate()
    ctx = _with_budget(ctx)
    return plan_dedup(_inspect(ctx.inputs), config, ctx.executor.workers, ctx.memory_bytes)


def _with_budget(ctx: StageContext) -> StageContext:
    if ctx.memory_bytes is not None:
        return ctx
    return dataclasses.replace(ctx, memory_bytes=int(DEFAULT_MEMORY_GB * 1024**3))


def _inspect(inputs: list[str]) -> list[InputInfo]:
    if not inputs:
        raise CurateError("no inputs given")
    paths = expand_parquet_inputs(inputs)
    if not paths:
        raise CurateError("no input files found")
    return inspect_inputs(paths)


def _finished_run(
    out: OutputDir, infos: list[InputInfo], chash: str, fingerprint: list[dict[str, Any]], overwrite: bool
) -> dict[str, Any] | None:
    """The manifest ``out`` holds of this very run, finished; None when there is work to do.
    Refuses a folder this run may not write into: another stage's, or a dedup of other inputs
    or options (unless ``overwrite``, which clears it)."""
    if overwrite:
        out.reset()
    out.check()
    previous = out.manifest()
    if previous is None:
        return None
    if previous.get("config_hash") != chash or previous.get("input_fingerprint") != fingerprint:
        raise out.changed("configuration or inputs")
    return previous if previous.get("complete") else None


@dataclass
class _Outcome:
    """What the passes of a run found and wrote, for the manifest."""

    failed: dict[int, str]
    input_errors: dict[int, Counter]
    stats: Stats
    shards: dict[str, list[ShardInfo]]
    clusters: list[dict[str, Any]]
    counters: Counter
    exact: dict[str, Any] | None  # the exact verifier's counters (verify = "exact")
    partitions: dict[str, int]
    spilled_bytes: int
    work_bytes: int
    seconds: dict[str, float]


def _execute(
    config: DedupConfig, infos: list[InputInfo], ctx: StageContext, engine: Engine, state_dir: Path, started: float
) -> _Outcome:
    """The passes of one run; its work files (``state_dir/work``) are removed whatever happens."""
    work, staging = state_dir / "work", state_dir / "staging"
    remove_tree(work)
    decisions = None
    try:
        state = signature_pass(config, infos, work, ctx.memory_bytes, engine, ctx.progress)
        t_signatures = time.monotonic() - started
        decisions = Decisions(state, engine)
        removals = decisions.run()
        t_decide = time.monotonic() - started - t_signatures
        stats, shards = write_outputs(state, removals, staging, engine.map)
        verifier = decisions.verifier
        spilled_bytes = sum(idx.spilled_bytes for idx in state.indexes.values())
        work_bytes = state.store.bytes_on_disk() + spilled_bytes
        if verifier is not None:
            work_bytes += verifier.stats["shingle_bytes"]
        state.store.close()
    finally:
        if decisions is not None:
            decisions.close()
        remove_tree(work)
    return _Outcome(
        failed=state.failed,
        input_errors=state.input_errors,
        stats=stats,
        shards=shards,
        clusters=removals.clusters,
        counters=state.counters,
        exact=verifier.manifest() if verifier is not None else None,
        partitions={name: idx.partitions for name, idx in state.indexes.items()},
        spilled_bytes=spilled_bytes,
        work_bytes=work_bytes,
        seconds={"signatures": t_signatures, "decide": t_decide},
    )


def _input_entry(info: InputInfo, failed: dict[int, str], errors: dict[int, Counter]) -> dict[str, Any]:
    """An input as the manifest lists it: ``failed`` (left out, with the message), or ``done``
    (``done_with_errors`` when some of its rows could not be used), as in every stage."""
    status = "failed" if info.index in failed else "done_with_errors" if errors.get(info.index) else "done"
    entry: dict[str, Any] = {"path": info.path, "index": info.index, "rows": info.rows, "bytes": info.bytes}
    entry["status"] = status
    if info.index in failed:
        entry["message"] = failed[info.index].removeprefix(f"{info.path}: ")
    return entry


def _lsh_section(config: DedupConfig) -> dict[str, Any]:
    bands, rows = config.lsh() if config.near else (None, None)
    return {
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
    }


def _manifest(
    config: DedupConfig,
    infos: list[InputInfo],
    chash: str,
    fingerprint: list[dict[str, Any]],
    outcome: _Outcome,
    ctx: StageContext,
    workers: int,
    started: float,
) -> dict[str, Any]:
    extra = {
        "complete": not outcome.failed,
        "inputs_failed": len(outcome.failed),
        "config_hash": chash,
        "input_fingerprint": fingerprint,
        "lsh": _lsh_section(config),
        "pairs": {
            "candidates": outcome.counters["candidate_pairs"],
            "verified": outcome.counters["verified_pairs"],
            "verify": config.verify,
            **({"exact": outcome.exact} if outcome.exact is not None else {}),
        },
        "clusters": outcome.clusters,
        "memory": {
            "budget_bytes": ctx.memory_bytes,
            "partitions": outcome.partitions,
            "spilled_bytes": outcome.spilled_bytes,
            "work_bytes": outcome.work_bytes,
        },
        "seconds": {
            "signatures": round(outcome.seconds["signatures"], 3),
            "decide": round(outcome.seconds["decide"], 3),
            "total": round(time.monotonic() - started, 3),
        },
        "workers": workers,
        "engine": ctx.executor.engine,
    }
    entries = [_input_entry(info, outcome.failed, outcome.input_errors) for info in infos]
    return build_manifest(STAGE, config.to_json(), entries, outcome.stats, outcome.shards, extra=extra)


def summarize(manifest: dict[str, Any]) -> str:
    """Human lines about a finished (or already complete) run's manifest."""
    m = manifest
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
            lines.append(f"  unreadable input: {item['path']}: {item.get('message')}")
    return "\n".join(lines)
