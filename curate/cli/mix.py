"""``curate mix`` and ``curate tokenizer train``: thin click wrappers over curate.stages.mix.run and
curate.core.tokenizer."""

from __future__ import annotations

import json

import click

from curate.cli.common import engine_options, finish, overwrite_option, quiet_option, workers_option
from curate.core.errors import CurateError


@click.command()
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    metavar="NAME=PATH[,PATH]:WEIGHT",
    help="A source and its target share of output tokens (repeatable). PATH: Parquet shards "
    "of an earlier stage, or JSONL / text / Markdown / code files or folders.",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config with [[sources]] tables (name, paths, weight, optional format, "
    "text_field, max_epochs) and any option below; options given here win.",
)
@click.option("--tokens", "-t", default=None, help="Token budget of the mix, e.g. 2M, 500k, 1.5B.")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (not needed with --plan).",
)
@click.option(
    "--tokenizer",
    default=None,
    metavar="DIR",
    help="Trained tokenizer directory (curate tokenizer train); default: UTF-8 bytes.",
)
@click.option(
    "--max-epochs",
    type=float,
    default=None,
    help="Most times a source may be repeated [default: 4, Muennighoff et al. 2023].",
)
@click.option(
    "--max-doc-tokens",
    type=int,
    default=None,
    help="Cut longer documents into chunks the mix samples (0: keep documents whole) [default: 8192].",
)
@click.option("--seed", type=int, default=None, help="Seed of the sampling and the shuffle [default: 0].")
@click.option(
    "--strict",
    is_flag=True,
    default=None,
    help="Fail instead of redistributing when a source cannot fill its share within its epoch cap.",
)
@click.option("--shard-size", default=None, help="Text bytes per output shard [default: 64MB].")
@click.option("--shuffle-memory", default=None, help="Memory for one shuffle bucket [default: 512MB].")
@click.option(
    "--pretokenize",
    is_flag=True,
    default=None,
    help="Also write token ids per shard (tokens/*.bin) so training can skip tokenizing.",
)
@click.option("--plan", "plan_only", is_flag=True, help="Count and plan only: print shares and epochs, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (or plan) as JSON on stdout.")
@workers_option
@engine_options
@overwrite_option
@quiet_option
def mix(
    sources,
    config_path,
    tokens,
    output,
    tokenizer,
    max_epochs,
    max_doc_tokens,
    seed,
    strict,
    shard_size,
    shuffle_memory,
    pretokenize,
    plan_only,
    as_json,
    workers,
    engine,
    ray_address,
    overwrite,
    quiet,
) -> None:
    """Mix sources into shards holding an exact token budget, by weight.

    \b
    curate mix -s web=work/dedup:0.55 -s books=samples/books:0.2 \\
               -s papers=samples/papers:0.15 -s code=samples/code:0.1 --tokens 2M -o work/mix
    curate mix --config samples/mix.toml

    Sources are counted and sampled by one task per source and the shuffle's buckets sorted
    by one task per bucket: on local worker processes (--workers), or with --engine ray as
    Ray tasks (the output folder must then be storage every node sees); the shards are the
    same either way. --shuffle-memory is per worker.
    """
    from curate.runtime.executor import Executor, default_workers
    from curate.runtime.stage import StageContext
    from curate.stages import mix as stage
    from curate.stages.mix.plan import shortfall_note

    specs = [stage.parse_source_option(s) for s in sources]
    overrides = {
        "tokens": tokens,
        "tokenizer": tokenizer,
        "max_epochs": max_epochs,
        "max_doc_tokens": max_doc_tokens,
        "seed": seed,
        "strict": strict,
        "shard_size": shard_size,
        "shuffle_memory": shuffle_memory,
        "pretokenize": pretokenize,
    }
    cfg = stage.load_mix_config(config_path, overrides, specs)
    output = output or cfg.output
    if not output and not plan_only:
        raise CurateError("no output directory: give -o DIR (or --plan to only plan)")
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    executor = Executor(engine, workers or default_workers(), ray_address)
    ctx = StageContext([], output or "", executor, overwrite=overwrite, progress=not quiet, log=log)
    manifest = stage.plan(cfg, ctx) if plan_only else stage.run(cfg, ctx)
    if as_json:
        click.echo(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    tokens = manifest["tokens"]
    note = shortfall_note(tokens["realized"], tokens["budget"])
    if quiet and note:  # the mix is not what was asked for: said even with --quiet
        click.echo(f"note: {note}", err=True)
    # Exit 1 when a file could not be read (the others are mixed), as for the other stages.
    finish(manifest, stage.summarize_mix(manifest))


@click.group()
def tokenizer() -> None:
    """Train the byte-level BPE tokenizer used by mix and train."""


@tokenizer.command("train")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(file_okay=False), help="Directory for tokenizer.json."
)
@click.option("--vocab-size", type=click.IntRange(min=262), default=32000, show_default=True)
@click.option(
    "--min-frequency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Pairs seen fewer times are not merged.",
)
@click.option("--max-docs", type=str, default=None, help="Train on at most this many documents (e.g. 100k).")
@click.option(
    "--max-chars", type=str, default="1G", show_default=True, help="Train on at most this many characters (e.g. 200M)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "parquet", "jsonl", "text", "code"]),
    default="auto",
    show_default=True,
    help="Format of the inputs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample drawn within the caps.")
@workers_option
@engine_options
@quiet_option
def train_tokenizer(
    inputs, output, vocab_size, min_frequency, max_docs, max_chars, fmt, seed, workers, engine, ray_address, quiet
) -> None:
    """Train a byte-level BPE on INPUTS (shard folders, JSONL, text or code files).

    Within --max-docs / --max-chars it trains on a seeded sample of the whole corpus, drawn
    by one task per input file: on local worker processes (--workers), or with --engine ray
    as Ray tasks; tokenizer.json is the same either way.

    Special tokens for end of text and chat turns are reserved; `curate mix --tokenizer DIR`
    and `curate train` load the result from DIR.
    """
    from curate.core.config import parse_count
    from curate.runtime.executor import Executor, default_workers
    from curate.runtime.stage import StageContext
    from curate.stages import tokenize

    config = tokenize.TokenizeConfig(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        max_docs=parse_count(max_docs) if max_docs else None,
        max_chars=parse_count(max_chars) if max_chars else None,
        format=fmt,
        seed=seed,
    )
    executor = Executor(engine, workers or default_workers(), ray_address)
    stats = tokenize.run(config.validate(), StageContext(list(inputs), output, executor, progress=not quiet))
    if not quiet:
        click.echo(
            f"tokenizer: vocab {stats['vocab_size']:,} trained on {stats['docs']:,} documents "
            f"({stats['chars']:,} characters); {stats['bytes_per_token']:.2f} bytes/token on that text "
            f"-> {output}",
            err=True,
        )
