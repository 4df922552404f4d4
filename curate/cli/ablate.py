"""``curate ablate``: variants of a pipeline's data recipe, each with proxy models trained and
evaluated, compared beside the base's seed-to-seed spread (thin CLI)."""

from __future__ import annotations

import click


@click.command("ablate")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--workdir", default=None, help="Work directory (default: the file's `workdir`, else ./work-ablate).")
@click.option(
    "--workers", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores)."
)
def ablate(config, workdir, workers):
    """Run the ablation in CONFIG: the base pipeline and its variants, proxy models, evals.

    Data stages a variant leaves unchanged are shared with the base, never recomputed; a rerun
    resumes. The comparison is printed and written as WORKDIR/ablation.json and ablation.html.

    \b
    Example:
      curate ablate samples/ablate.toml
    """
    from curate.workflow.ablate import load_ablation, run_ablation
    from curate.workflow.ablate_report import format_table

    ab = load_ablation(config, workdir=workdir, workers=workers)
    result = run_ablation(ab, log=lambda m: click.echo(m, err=True))
    click.echo(format_table(result))
    click.echo(f"\n{ab.workdir / 'ablation.json'}\n{ab.workdir / 'ablation.html'}")
