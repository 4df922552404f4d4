"""``curate filter`` and ``curate quality train``: thin click wrappers over
:mod:`curate.stages.filter` and :mod:`filters.quality_train`."""

from __future__ import annotations

import click

from curate.cli.common import engine_options, finish, overwrite_option, quiet_option, workers_option
from curate.core.errors import ConfigError
from curate.runtime.executor import default_workers


@click.command("filter")
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-o", "--output", "output", type=click.Path(file_okay=False), help="Output directory.")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Filter chain (TOML with [[filters]] tables). Default: language, Gopher "
    "repetition and quality, C4, FineWeb, PII.",
)
@click.option("--annotate", is_flag=True, help="Compute scores and would-be reasons for every filter; drop nothing.")
@click.option("--list", "list_filters", is_flag=True, help="List the filters, their parameters and reasons.")
@workers_option
@overwrite_option
@engine_options
@quiet_option
def filter_cmd(
    inputs, output, config_path, annotate, list_filters, workers, overwrite, engine, ray_address, quiet
) -> None:
    """Filter document shards: keep good ones in OUTPUT, dropped ones in OUTPUT/rejected.

    INPUTS are Parquet shards, directories of shards or globs (e.g. work/crawl).
    Every dropped document has reject_reason = "<filter>/<reason>"; OUTPUT/manifest.json
    counts documents and characters per filter and reason.
    """
    from filters.registry import describe_filters

    if list_filters:
        click.echo(describe_filters())
        return
    if not inputs:
        raise ConfigError("give input shards or directories (or --list)")
    if not output:
        raise ConfigError("missing -o/--output directory")

    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext, summarize
    from curate.stages import filter as stage

    ctx = StageContext(
        inputs=list(inputs),
        output=output,
        executor=Executor(engine, workers or default_workers(), ray_address),
        overwrite=overwrite,
        progress=not quiet,
    )
    manifest = stage.run(stage.load_config(config_path, annotate=annotate), ctx)
    finish(manifest, summarize(manifest) + "\n" + stage.summarize_filters(manifest))


@click.group("quality")
def quality() -> None:
    """Train the fastText quality classifier used by the `quality` filter."""


@quality.command("train")
@click.option(
    "--positive",
    "-p",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Reference text (books, papers, Wikipedia): Parquet shards/dirs, JSONL or text files. Repeatable.",
)
@click.option(
    "--negative",
    "-n",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Random crawl text, same formats. Repeatable.",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (e.g. quality.bin)."
)
@click.option("--holdout", default=0.1, show_default=True, type=float, help="Fraction held out for evaluation.")
@click.option("--max-docs", type=int, default=None, help="At most this many documents per side.")
@click.option("--text-field", default="text", show_default=True, help="JSONL field holding the text.")
@click.option(
    "--txt-unit",
    type=click.Choice(["line", "paragraph"]),
    default="line",
    show_default=True,
    help="In .txt files, one document per line or per blank-line-separated paragraph.",
)
@click.option("--epoch", default=5, show_default=True, type=int)
@click.option("--lr", default=0.1, show_default=True, type=float)
@click.option("--dim", default=64, show_default=True, type=int)
@click.option("--word-ngrams", default=2, show_default=True, type=int)
@click.option("--min-count", default=1, show_default=True, type=int)
@click.option(
    "--bucket", default=200_000, show_default=True, type=int, help="Hash buckets for word n-grams (model size)."
)
@click.option("--max-chars", default=20_000, show_default=True, type=int, help="Characters of each document used.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=int, help="Training threads (1 = deterministic).")
def quality_train(
    positive,
    negative,
    output,
    holdout,
    max_docs,
    text_field,
    txt_unit,
    epoch,
    lr,
    dim,
    word_ngrams,
    min_count,
    bucket,
    max_chars,
    seed,
    threads,
) -> None:
    """Train a positive-vs-negative fastText classifier; print held-out precision, recall, ROC AUC."""
    from filters.quality_train import train_quality_model

    report = train_quality_model(
        list(positive),
        list(negative),
        output,
        holdout=holdout,
        seed=seed,
        max_docs=max_docs,
        max_chars=max_chars,
        text_field=text_field,
        txt_unit=txt_unit,
        epoch=epoch,
        lr=lr,
        dim=dim,
        word_ngrams=word_ngrams,
        min_count=min_count,
        bucket=bucket,
        threads=threads,
    )
    for line in report.lines():
        click.echo(line)
