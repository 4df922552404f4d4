"""``curate inspect``, ``curate sql`` and ``curate report``: thin click wrappers over
curate.explore.summary, curate.explore.query and curate.explore.report (DuckDB over the shards)."""

from __future__ import annotations

import json

import click


@click.command("inspect")
@click.argument("path")
@click.option(
    "--top", type=click.IntRange(min=1), default=15, show_default=True, help="Rows in the language and domain lists."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_cmd(path, top, as_json) -> None:
    """Summarize a stage's shards: documents, tokens, sources, languages, domains, lengths,
    score histograms, and drop reasons along the manifests of the stages that fed it. On a
    checkpoint (run or step folder): its metadata and evaluation results."""
    from curate.explore.checkpoint import checkpoint_summary, format_checkpoint, is_checkpoint
    from curate.explore.format import format_summary
    from curate.explore.summary import summarize

    if is_checkpoint(path):
        found = checkpoint_summary(path)
        click.echo(json.dumps(found, indent=2, default=str) if as_json else format_checkpoint(found))
        return
    summary = summarize(path, top=top)
    click.echo(json.dumps(summary, indent=2, default=str) if as_json else format_summary(summary))


@click.command()
@click.argument("path")
@click.argument("query")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Rows shown by --format table (csv and json print all).",
)
def sql(path, query, fmt, max_rows) -> None:
    """Run a DuckDB QUERY over PATH's shards.

    \b
    Views: docs (the shards), rejected and removed (PATH/rejected, PATH/removed) where present.
      curate sql work/mix "SELECT source, count(*), sum(n_tokens) FROM docs GROUP BY 1"
      curate sql work/filter "SELECT reject_reason, count(*) FROM rejected GROUP BY 1" -f csv
    """
    from curate.explore.format import format_rows
    from curate.explore.query import connect, run_query

    con = connect(path)
    names, rows = run_query(con, query)
    if not names:
        return
    for line in format_rows(names, rows, fmt, max_rows=max_rows):
        click.echo(line)


@click.command()
@click.argument("path")
@click.option(
    "-o",
    "--output",
    "output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="HTML file to write.",
)
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True)
def report(path, output, top) -> None:
    """Write one self-contained HTML page (plots embedded as PNG) about PATH's shards and the
    funnel from crawl to PATH; for a checkpoint, its metadata and evaluation results."""
    from curate.explore.checkpoint import is_checkpoint, write_checkpoint_report
    from curate.explore.report import write_report

    if is_checkpoint(path):
        written = write_checkpoint_report(path, output)
    else:
        written = write_report(path, output, top=top)
    click.echo(f"report: {written}", err=True)
