"""The ``curate`` command line: a thin click layer over the library.

Sub-commands live in sibling modules and are imported only when used, so ``curate crawl``
never pays for importing torch. Every :class:`~curate.core.errors.CurateError` raised below is
turned into a one-line ``error: ...`` message and its exit code, never a traceback.
"""

from __future__ import annotations

import sys

import click

from curate.cli.common import LazyGroup
from curate.core.version import __version__

# name -> "module:attribute", in the order `curate --help` lists them.
COMMANDS: dict[str, str] = {
    "pipeline": "curate.cli.pipeline:pipeline",
    "ablate": "curate.cli.ablate:ablate",
    "crawl": "curate.cli.crawl:crawl",
    "filter": "curate.cli.filter:filter_cmd",
    "quality": "curate.cli.filter:quality",
    "dedup": "curate.cli.dedup:dedup",
    "tokenizer": "curate.cli.mix:tokenizer",
    "mix": "curate.cli.mix:mix",
    "inspect": "curate.cli.inspect:inspect_cmd",
    "sql": "curate.cli.inspect:sql",
    "report": "curate.cli.inspect:report",
    "lineage": "curate.cli.lineage:lineage",
    "trace": "curate.cli.trace:trace_cmd",
    "forget": "curate.cli.forget:forget_cmd",
    "train": "curate.cli.train:train",
    "generate": "curate.cli.train_pretrain:generate",
    "export": "curate.cli.export:export",
    "eval": "curate.cli.eval:eval_cmd",
    "rate": "curate.cli.rate:rate",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """curate: raw web crawls -> filtered, deduplicated training mix -> trained model."""


def main() -> None:  # pragma: no cover - thin wrapper for `python -m curate`
    cli(prog_name="curate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
