"""``curate forget``: remove a URL, a domain or listed documents from new copies of the stage
outputs and say which training runs to redo (thin CLI over :mod:`curate.workflow.forget`)."""

from __future__ import annotations

import json

import click

from curate.cli.trace import stage_folder_options


@click.command("forget")
@click.option("--url", default=None, help="Every capture of this URL.")
@click.option("--domain", default=None, help="Every document of this domain (and its subdomains).")
@click.option(
    "--ids", "ids_file", default=None, type=click.Path(dir_okay=False), help="A file of document ids, one a line."
)
@click.option(
    "--workdir",
    default="work",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The pipeline's work directory.",
)
@click.option(
    "--name", default=None, help="The request's name (default: the domain, url-<hash> or the ids file's name)."
)
@stage_folder_options
@click.option(
    "--checkpoints",
    "checkpoint_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Where to look for checkpoint step folders (repeatable; default: WORKDIR).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def forget_cmd(
    url, domain, ids_file, workdir, name, crawl_dir, filter_dir, dedup_dir, mix_dir, checkpoint_roots, as_json
):
    """Forget documents: list every stage output and checkpoint that holds them, write new
    filter, dedup and mix outputs without them in WORKDIR/forget-NAME/ (the filter's with
    reason forgotten/NAME), and print the training runs to redo with their commands. Nothing is
    deleted: the old outputs stay until you remove them.

    \b
      curate forget --domain example.com --workdir work
      curate forget --ids removal-42.txt --workdir work --name request-42
    """
    from pathlib import Path

    from curate.explore.trace import make_selector, read_ids_file
    from curate.workflow.forget import forget, format_forget, request_name, stage_folders

    if url and "://" not in url:
        raise click.BadParameter(f"{url!r} is not a URL (scheme://host/...)", param_hint="--url")
    ids = read_ids_file(ids_file) if ids_file else None
    selector = make_selector(url, domain, ids)
    request = request_name(selector, name, ids_file)
    overrides = {"crawl": crawl_dir, "filter": filter_dir, "dedup": dedup_dir, "mix": mix_dir}
    roots = [Path(p) for p in checkpoint_roots] or [Path(workdir)]
    result = forget(
        workdir, selector, request, stage_folders(workdir, overrides), roots, log=lambda m: click.echo(m, err=True)
    )
    click.echo(json.dumps(result, indent=2, default=str) if as_json else format_forget(result))
