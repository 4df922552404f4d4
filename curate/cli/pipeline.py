"""``curate pipeline``: the whole path from raw crawl to an RLHF-tuned model (thin CLI)."""

from __future__ import annotations

import click


@click.command("pipeline")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--workdir", default=None, help="Work directory (default: the config's `workdir`, else ./work).")
@click.option("--until", "until", default=None, metavar="STAGE", help="Stop after this stage.")
@click.option(
    "--from",
    "from_stage",
    default=None,
    metavar="STAGE",
    help="Start at this stage; the ones before must have completed with the settings they have now.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete the folders of the stages this run covers (within --from/--until) and redo them "
    "from scratch, even if up to date; stages before --from are kept.",
)
@click.option(
    "--workers", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores)."
)
def pipeline(config, workdir, until, from_stage, overwrite, workers):
    """Run crawl -> filter -> dedup -> tokenizer -> mix -> pretrain -> sft -> reward -> rlhf (-> eval).

    Each stage writes its own folder under the work directory; stages already complete with
    the same settings are skipped, so an interrupted pipeline resumes where it stopped, and a
    stage whose settings changed is redone with every stage after it.

    \b
    Examples:
      curate pipeline samples/pipeline.toml --until dedup
      curate pipeline samples/pipeline.toml --from pretrain      # data stages must be up to date
      curate pipeline samples/pipeline.toml --overwrite --from sft --until sft
    """
    from curate.workflow import format_summary, load_pipeline, run_pipeline

    pipe = load_pipeline(config, workdir=workdir, workers=workers)
    outcomes = run_pipeline(
        pipe, until=until, from_stage=from_stage, overwrite=overwrite, log=lambda m: click.echo(m, err=True)
    )
    click.echo(format_summary(pipe, outcomes))
