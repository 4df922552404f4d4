"""``curate crawl``: web archives -> Parquet shards of extracted documents (thin CLI)."""

from __future__ import annotations

import click

from curate.cli.common import engine_options, finish, output_dir_option, overwrite_option, quiet_option, workers_option
from curate.runtime.executor import default_workers


@click.command("crawl")
@click.argument("inputs", nargs=-1, required=True)
@output_dir_option
@workers_option
@overwrite_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="crawl.toml with settings (see curate.stages.crawl.CrawlConfig).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set extract.mode=full (repeatable).",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=1),
    default=None,
    help="Process at most N input files (after expansion of snapshots, listings, dirs).",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Skip the first N input files (after expansion).",
)
@click.option(
    "--cc-base-url",
    default=None,
    metavar="URL",
    help="Base URL for CC-MAIN-... snapshot names and relative listing lines [default: https://data.commoncrawl.org].",
)
@engine_options
@quiet_option
def crawl(
    inputs,
    output,
    workers,
    overwrite,
    config_path,
    overrides,
    max_files,
    offset,
    cc_base_url,
    engine,
    ray_address,
    quiet,
):
    """Extract documents from WARC/ARC/WET INPUTS into Parquet shards in OUTPUT.

    INPUTS are files, directories, globs, http(s):// or s3:// URLs, Common Crawl snapshot names
    (CC-MAIN-2024-10) and *.paths(.gz) listings. Rerunning the same command resumes.

    With --engine ray every input file is one Ray task; OUTPUT must then be storage that every
    node of the cluster sees (NFS, a mounted bucket). Output and resume are those of the local
    engine.
    """
    from curate.core.config import parse_set
    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext, summarize
    from curate.stages import crawl as stage
    from curate.stages.crawl.sources import DEFAULT_CC_BASE_URL

    cfg = stage.load_config(config_path, parse_set(overrides) if overrides else None)
    ctx = StageContext(
        inputs=list(inputs),
        output=output,
        executor=Executor(engine, workers or default_workers(), ray_address),
        overwrite=overwrite,
        progress=not quiet,
    )
    manifest = stage.run(cfg, ctx, max_files=max_files, offset=offset, cc_base_url=cc_base_url or DEFAULT_CC_BASE_URL)
    summary = summarize(manifest)
    summary += f"\n  output: {output} ({len(manifest['shards'])} shard(s), {manifest['counts']['kept']:,} documents)"
    finish(manifest, summary)
