"""``curate lineage``: a thin click wrapper over train/lineage.py (no torch)."""

from __future__ import annotations

import json

import click


@click.command("lineage")
@click.argument("checkpoint")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write every consumed document (or example) with its crawl columns to this Parquet file.",
)
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="Most-consumed rows printed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def lineage(checkpoint, output, top, as_json) -> None:
    """The documents CHECKPOINT (a run or step folder) has seen: per mix row the tokens it
    consumed and how many times, joined with the mix shards' id, source, url, crawl,
    warc_path, warc_offset and date; a summary by source and by month of document date, and
    the training cutoff of what was consumed beside the whole mix's. For SFT, reward, RLHF and
    DPO checkpoints: the examples they read, and the parent chain (base -> sft -> rm/rlhf).

    \b
      curate lineage work/ckpt/base -o work/lineage.parquet
      duckdb -c "SELECT url, tokens FROM 'work/lineage.parquet' ORDER BY tokens DESC LIMIT 5"
    """
    from train.lineage import format_lineage
    from train.lineage import lineage as find_lineage

    found = find_lineage(checkpoint, output, head=top)
    if as_json:
        shown = {"checkpoint": str(found.step_dir), "chain": found.chain, "mix": found.mix, **found.summary}
        click.echo(json.dumps({**shown, "notes": found.notes}, indent=2, default=str))
    else:
        click.echo(format_lineage(found))
    if output is not None:
        click.echo(f"lineage: {output} ({found.summary['rows']:,} rows)", err=True)
