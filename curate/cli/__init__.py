"""The ``curate`` command line: a thin click layer over the library.

Sub-commands live in sibling modules and are imported only when used, so ``curate crawl``
never pays for importing torch. Every :class:`~curate.core.errors.CurateError` raised below is
turned into a one-line ``error: ...`` message and its exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from curate import __version__
from curate.core.errors import CurateError

# name -> "module:attribute", in the order `curate --help` lists them.
COMMANDS: dict[str, str] = {
    "pipeline": "curate.cli.pipeline:pipeline",
    "crawl": "curate.cli.crawl:crawl",
    "filter": "curate.cli.filter:filter_cmd",
    "quality": "curate.cli.filter:quality",
    "dedup": "curate.cli.dedup:dedup",
    "tokenizer": "curate.cli.mix:tokenizer",
    "mix": "curate.cli.mix:mix",
    "inspect": "curate.cli.inspect:inspect_cmd",
    "sql": "curate.cli.inspect:sql",
    "report": "curate.cli.inspect:report",
    "train": "curate.cli.train:train",
    "generate": "curate.cli.train:generate",
    "rate": "curate.cli.rate:rate",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [n for n, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]
        return available + sorted(set(super().list_commands(ctx)) - set(available))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return super().get_command(ctx, name)
        module_name, attr = target.split(":")
        if importlib.util.find_spec(module_name) is None:
            return None
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CurateError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: completed work is kept; rerun the same command to resume", err=True)
            ctx.exit(130)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """curate: raw web crawls -> filtered, deduplicated training mix -> trained model."""


def main() -> None:  # pragma: no cover - thin wrapper for `python -m curate`
    cli(prog_name="curate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
