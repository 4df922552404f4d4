"""Options and helpers shared by the sub-command modules, and the lazy command group."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

import click

from curate.core.errors import CurateError
from curate.core.files import is_write_failure, output_error


def workers_option(f: Callable) -> Callable:
    return click.option(
        "--workers",
        "-j",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes (default: all cores).",
    )(f)


def overwrite_option(f: Callable) -> Callable:
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Delete earlier output in the directory and start over (default: resume).",
    )(f)


def output_dir_option(f: Callable) -> Callable:
    return click.option(
        "-o",
        "--output",
        "output",
        required=True,
        type=click.Path(file_okay=False),
        help="Output directory.",
    )(f)


def quiet_option(f: Callable) -> Callable:
    return click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f)


def finish(manifest: dict[str, Any], summary: str) -> None:
    """Print a stage summary; exit 1 when some input could not be read at all."""
    click.echo(summary, err=True)
    if manifest.get("inputs_failed"):
        raise CurateError(
            f"{manifest['inputs_failed']} input(s) could not be read; the others were processed "
            "(see manifest.json); rerun to retry them",
            exit_code=1,
        )


def engine_options(
    f: Callable | None = None,
    *,
    default: str | None = "local",
    engine_help: str = "Run on local worker processes, or as Ray tasks (needs the `ray` extra).",
) -> Callable:
    """``--engine local|ray`` and ``--ray-address``: where the stage's work runs. Used bare
    (``@engine_options``) or with another default and help (``@engine_options(default=None, ...)``)."""

    def decorate(f: Callable) -> Callable:
        f = click.option(
            "--ray-address",
            default=None,
            metavar="ADDR",
            help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local Ray instance.",
        )(f)
        return click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default=default,
            show_default=default is not None,
            help=engine_help,
        )(f)

    return decorate(f) if f is not None else decorate


class LazyGroup(click.Group):
    """A group whose sub-commands are named ``"module:attribute"`` and imported on first use
    (so ``curate crawl`` never imports torch), and which turns every
    :class:`~curate.core.errors.CurateError` into a one-line ``error: ...`` and its exit code."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        available = [n for n, target in self.lazy_commands.items() if _importable(target)]
        return available + sorted(set(super().list_commands(ctx)) - set(available))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = self.lazy_commands.get(name)
        if target is None:
            return super().get_command(ctx, name)
        if not _importable(target):
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CurateError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if not is_write_failure(exc):
                raise
            # A write that failed below the layers that name their outputs (numpy, pyarrow).
            error = output_error(exc, exc.filename or "the output")
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: completed work is kept; rerun the same command to resume", err=True)
            ctx.exit(130)


def _importable(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None
