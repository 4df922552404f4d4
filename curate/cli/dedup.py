"""``curate dedup``: the command line over :func:`curate.stages.dedup.run` (and ``plan``)."""

from __future__ import annotations

import click

from curate.cli.common import engine_options, finish, overwrite_option, quiet_option, workers_option
from curate.core.config import parse_bytes
from curate.core.errors import ConfigError
from curate.runtime.executor import default_workers
from curate.stages.dedup.config import DEFAULT_MEMORY_GB, DedupConfig

DEFAULTS = DedupConfig()


@click.command("dedup")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(file_okay=False),
    help="Output directory: kept shards, removed/ and manifest.json (required unless --plan).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=DEFAULTS.threshold,
    show_default=True,
    help="Jaccard similarity of word n-grams above which two documents are near duplicates.",
)
@click.option(
    "--ngram", type=click.IntRange(min=1), default=DEFAULTS.ngram, show_default=True, help="Words per shingle."
)
@click.option(
    "--num-perm",
    type=click.IntRange(2, 4096),
    default=DEFAULTS.num_perm,
    show_default=True,
    help="MinHash permutations (signature length).",
)
@click.option(
    "--bands",
    type=click.IntRange(min=1),
    default=DEFAULTS.bands,
    help="LSH bands (with --rows; default: derived from the threshold and --num-perm).",
)
@click.option("--rows", type=click.IntRange(min=1), default=DEFAULTS.rows, help="Signature values per LSH band.")
@click.option(
    "--verify-threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=DEFAULTS.verify_threshold,
    help="Jaccard (per --verify) a candidate pair needs to be merged [default: --threshold].",
)
@click.option(
    "--verify",
    "verify",
    default=DEFAULTS.verify,
    show_default=True,
    metavar="estimate|exact",
    help="How candidate pairs are verified: estimate (MinHash agreement; fastest) or exact "
    "(true shingle Jaccard: one more pass over the documents that have a candidate; "
    "more recall just above the threshold, no merges below it).",
)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of the MinHash permutations.")
@click.option(
    "--url/--no-url",
    "url",
    default=DEFAULTS.url,
    show_default=True,
    help="Also remove documents with the same normalized URL (the newest fetch is kept).",
)
@click.option(
    "--exact/--no-exact",
    "exact",
    default=DEFAULTS.exact,
    show_default=True,
    help="Remove documents with identical normalized text.",
)
@click.option(
    "--near/--no-near", "near", default=DEFAULTS.near, show_default=True, help="Remove MinHash near duplicates."
)
@click.option(
    "--hash",
    "shingle_hash",
    type=click.Choice(["fast", "sha1"]),
    default=DEFAULTS.shingle_hash,
    show_default=True,
    help="Shingle hash: fast, or sha1 (signatures identical to datasketch.MinHash defaults; slower).",
)
@click.option(
    "--memory-gb",
    type=click.FloatRange(min=0.0, min_open=True),
    default=DEFAULT_MEMORY_GB,
    show_default=True,
    help="Memory for the duplicate index; past it, band buckets are spilled to disk.",
)
# Not DEFAULTS.shard_bytes (256 MiB): the command has always meant 256 MB (10**6 bytes), and its
# outputs and configuration hashes depend on it.
@click.option("--shard-size", default="256MB", show_default=True, help="Target text size of each output shard.")
@click.option(
    "--plan", "plan_only", is_flag=True, help="Print the estimated peak memory, disk and time for the input, and exit."
)
@workers_option
@overwrite_option
@engine_options
@quiet_option
def dedup(
    inputs,
    output,
    threshold,
    ngram,
    num_perm,
    bands,
    rows,
    verify_threshold,
    verify,
    seed,
    url,
    exact,
    near,
    shingle_hash,
    memory_gb,
    shard_size,
    plan_only,
    workers,
    overwrite,
    engine,
    ray_address,
    quiet,
):
    """Remove URL, exact and near-duplicate documents across all INPUTS (Parquet files,
    directories or globs).

    Kept documents go to OUTPUT in input order; removed ones to OUTPUT/removed with dup_of
    (id of the kept document), dup_kind (exact, near, url) and dup_similarity. The kept
    document of a group is the earliest (by date), then the one with the higher quality_score,
    then the smaller id. Rerunning a finished job with the same inputs and options does nothing.

    With --engine ray, signatures and near-duplicate pairs are computed as Ray tasks (with
    --memory-gb the budget of each task) and the result is the local engine's; OUTPUT must be
    storage every node sees.

    \b
    Example:
      curate dedup work/filtered -o work/dedup --threshold 0.8 --workers 8
      curate dedup work/filtered -o work/dedup --verify exact
      curate dedup work/filtered --plan
      curate dedup /mnt/shared/filtered -o /mnt/shared/dedup --engine ray --ray-address auto
    """
    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext

    config = DedupConfig(
        threshold=threshold,
        ngram=ngram,
        num_perm=num_perm,
        seed=seed,
        bands=bands,
        rows=rows,
        verify_threshold=verify_threshold,
        verify=verify,
        exact=exact,
        near=near,
        url=url,
        shingle_hash=shingle_hash,
        shard_bytes=parse_bytes(shard_size),
    )
    ctx = StageContext(
        inputs=list(inputs),
        output=output or "",
        executor=Executor(engine, workers or default_workers(), ray_address),
        overwrite=overwrite,
        progress=not quiet,
        log=lambda message: click.echo(message, err=True),
        memory_bytes=int(memory_gb * 1024**3),
    )
    _plan_or_run(config, ctx, plan_only, quiet)


def _plan_or_run(config: DedupConfig, ctx, plan_only: bool, quiet: bool) -> None:
    """``--plan``: print the plan; else run the stage (its plan first, unless ``quiet``)."""
    from curate.stages import dedup as stage

    if plan_only:
        click.echo("\n".join(stage.plan(config, ctx).lines()))
        return
    if not ctx.output:
        raise ConfigError("missing -o/--output (or use --plan)")

    def show_plan(plan) -> None:
        if not quiet:
            click.echo("\n".join(plan.lines()), err=True)

    manifest = stage.run(config, ctx, on_plan=show_plan)
    finish(manifest, stage.summarize(manifest))
