"""``curate trace``: one document's (or one URL's, or one domain's) way through the stages
(thin CLI over :mod:`curate.explore.trace`)."""

from __future__ import annotations

import json

import click

_FOLDER_HELP = "Instead of WORKDIR's {}: this folder."


def stage_folder_options(f):
    """--crawl, --filter, --dedup, --mix: explicit stage folders (shared with `curate forget`)."""
    for stage in reversed(("crawl", "filter", "dedup", "mix")):
        f = click.option(
            f"--{stage}",
            f"{stage}_dir",
            default=None,
            type=click.Path(file_okay=False),
            help=_FOLDER_HELP.format(stage),
        )(f)
    return f


@click.command("trace")
@click.argument("target", required=False)
@click.option("--domain", default=None, help="Every document of this domain (and its subdomains) instead.")
@click.option(
    "--workdir",
    default="work",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The pipeline's work directory.",
)
@stage_folder_options
@click.option(
    "--checkpoints",
    "checkpoint_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Where to look for checkpoint step folders (repeatable; default: WORKDIR).",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Documents shown in full.")
@click.option("--json", "as_json", is_flag=True, help="Print everything found as JSON.")
def trace_cmd(target, domain, workdir, crawl_dir, filter_dir, dedup_dir, mix_dir, checkpoint_roots, limit, as_json):
    """Everything that happened to one document (TARGET: its id), to every capture of a URL
    (TARGET: the URL) or to a domain (--domain): its crawl record, the filter's verdict and
    scores, its dedup cluster, its rows in the mix and the checkpoints that consumed it.

    \b
      curate trace https://example.com/page --workdir work
      curate trace --domain example.com --workdir work --limit 5
    """
    from pathlib import Path

    from curate.core.errors import InputError
    from curate.explore.trace import make_selector, trace
    from curate.explore.trace_text import format_trace
    from curate.workflow.forget import stage_folders

    selector = make_selector(target, domain)
    overrides = {"crawl": crawl_dir, "filter": filter_dir, "dedup": dedup_dir, "mix": mix_dir}
    roots = [Path(p) for p in checkpoint_roots] or [Path(workdir)]
    folders = stage_folders(workdir, overrides)
    if not any(path.is_dir() for path in folders.values()):
        raise InputError(
            f"{workdir}: no crawl, filter, dedup or mix output here; give the work directory of a "
            "pipeline run, or the stage folders with --crawl/--filter/--dedup/--mix"
        )
    found = trace(selector, folders, roots)
    click.echo(json.dumps(found.to_json(), indent=2, default=str) if as_json else format_trace(found, limit=limit))
