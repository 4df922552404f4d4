"""``curate rate``: serve the rating page, export the choices, print rater statistics.

    curate rate PAIRS -o DIR [--port 8765] [--host H --raters raters.toml] [--overlap 0.1]
        [--flag-words FILE] [--flag-filters CHAIN.toml] [--max-flagged N] [--max-flagged-per-day N]
        [--break-after MINUTES]
    curate rate export DIR -o comparisons.parquet
    curate rate stats DIR [--by rater|group]

The bare form is ``curate rate serve``: :class:`RateGroup` routes a first word that is not a
sub-command name to ``serve``, so a pairs file and the sub-commands share one command name.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from curate.core.errors import ConfigError, CurateError


class RateGroup(click.Group):
    """A group whose unknown first word (a pairs file, or an option) means ``serve``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["serve", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "PAIRS -o DIR [OPTIONS]  (see: serve --help)")
        formatter.write_usage(
            ctx.command_path, "export DIR -o comparisons.parquet | stats DIR [--by group]", prefix="   or: "
        )


@click.group(cls=RateGroup)
def rate() -> None:
    """People compare two answers in a browser; their choices train the reward model.

    Start a session with `curate rate work/pairs.parquet -o work/ratings/` (pairs from
    `curate train sample-pairs`), open the printed address, then
    `curate rate export work/ratings -o comparisons.parquet` for `curate train reward` / `dpo`.
    """


@rate.command("serve")
@click.argument("pairs", type=click.Path())
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Rating directory (created; rerun with the same one to resume).",
)
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 = any free port).",
)
@click.option(
    "--host", default=None, help="Address to listen on (default 127.0.0.1). Any other address needs --raters."
)
@click.option(
    "--raters",
    "raters_path",
    type=click.Path(dir_okay=False),
    help="TOML file with [[raters]] name = ..., token = ... (one secret token per rater).",
)
@click.option(
    "--overlap",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Share of pairs rated by several raters, for agreement statistics (default 0, "
    "or the value this directory was started with).",
)
@click.option(
    "--overlap-raters",
    type=click.IntRange(min=2),
    default=None,
    help="How many raters rate each overlap pair (default 2).",
)
@click.option(
    "--rater",
    "rater_name",
    default="local",
    show_default=True,
    help="Name recorded for the single rater when there is no --raters file.",
)
@click.option(
    "--flag-words",
    type=click.Path(dir_okay=False),
    default=None,
    help="Words or phrases (one per line) that give a pair a content note, besides the bundled "
    "bad-words list and the PII detectors (default: the file this directory was started with).",
)
@click.option(
    "--flag-filters",
    type=click.Path(dir_okay=False),
    default=None,
    help="Filter chain (e.g. samples/filters.toml) whose url_blocklist, bad_words and pii tables "
    "also flag pairs (default: the file this directory was started with).",
)
@click.option(
    "--max-flagged",
    type=click.IntRange(min=0),
    default=None,
    help="At most N flagged pairs per rater per session (a session ends after 30 minutes "
    "without a rating); the rest wait. Default: no cap.",
)
@click.option(
    "--max-flagged-per-day",
    type=click.IntRange(min=0),
    default=None,
    help="At most N flagged pairs per rater in any 24 hours. Default: no cap.",
)
@click.option(
    "--break-after",
    type=click.FloatRange(min=0),
    default=50.0,
    show_default=True,
    help="Pause the page after this many minutes of rating without a 5-minute pause (0 = never).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every request (tokens are never logged).")
def serve(
    pairs: str,
    output: str,
    port: int,
    host: str | None,
    raters_path: str | None,
    overlap: float | None,
    overlap_raters: int | None,
    rater_name: str,
    flag_words: str | None,
    flag_filters: str | None,
    max_flagged: int | None,
    max_flagged_per_day: int | None,
    break_after: float,
    verbose: bool,
) -> None:
    """Serve the rating page for PAIRS, recording choices in -o DIR."""
    from curate.rate.server import RateServer, is_loopback
    from curate.rate.session import RatingSession
    from curate.rate.wellbeing import Limits

    host = host or "127.0.0.1"
    loopback = is_loopback(host)
    raters = _raters(host, loopback, raters_path, rater_name)
    limits = Limits(max_flagged, max_flagged_per_day, break_after * 60 if break_after > 0 else None)
    session = RatingSession(
        output,
        pairs,
        raters,
        overlap,
        overlap_raters,
        require_tokens=not loopback,
        flag_words=flag_words,
        flag_filters=flag_filters,
        limits=limits,
    )
    try:
        click.echo(session.import_stats.summary(), err=True)
        click.echo(_flag_summary(session), err=True)
        if not session.pair_ids:
            raise CurateError(f"{pairs}: no pairs to rate")
        if session.overlap > 0 and len(raters) < 2:
            click.echo(
                "note: --overlap needs two or more raters (--raters); every pair goes to the one rater", err=True
            )
        server = RateServer(session, host, port, verbose)
    except BaseException:
        session.close()
        raise

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Both set here: a process started in the background of a script inherits SIGINT ignored,
    # and Ctrl-C (or `kill -INT`) must still stop it cleanly.
    previous_handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _print_start(session, raters, server)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        server.server_close()
        lines = sum(state.ratings for state in session.log.raters.values())
        session.close()
    click.echo(
        f"stopped: {lines} ratings in {session.log.path}, all on disk; rerun the same command to resume", err=True
    )


def _raters(host: str, loopback: bool, raters_path: str | None, rater_name: str) -> list[Any]:
    """The raters of a ``curate rate serve``: from ``--raters`` (needed off loopback: each a
    secret token), else the one ``--rater`` on this machine."""
    from curate.rate.session import EXAMPLE_TOKEN_PREFIX, RATER_NAME, Rater, load_raters

    if raters_path:
        raters = load_raters(raters_path, allow_example_tokens=loopback)
        if any(r.token and r.token.startswith(EXAMPLE_TOKEN_PREFIX) for r in raters):
            click.echo(f"warning: {raters_path} holds example tokens; fine on {host}, refused with --host", err=True)
        return raters
    if not loopback:
        raise ConfigError(
            f"--host {host} lets other machines reach the server: give --raters raters.toml "
            "with a secret token per rater (see samples/raters.toml)"
        )
    if not RATER_NAME.match(rater_name):
        raise ConfigError(f"--rater must be 1-64 letters, digits or _.@- (got {rater_name!r})")
    return [Rater(rater_name)]


def _print_start(session: Any, raters: list[Any], server: Any) -> None:
    """What a starting server prints: the pairs, the overlap, each rater's link or progress."""
    click.echo(f"rating {len(session.pair_ids)} pairs; choices are saved to {session.log.path}")
    if session.overlap > 0 and len(raters) > 1:
        click.echo(
            f"overlap: about {100 * session.overlap:.0f}% of the pairs go to "
            f"{min(session.overlap_raters, len(raters))} raters each (for `curate rate stats`)"
        )
    if session.require_tokens:
        click.echo("send each rater their own link:")
        for rater in raters:
            progress = session.progress(rater.name)
            click.echo(f"  {rater.name:<16} {progress['done']:>6}/{progress['total']:<6} {server.url(rater)}")
    else:
        progress = session.progress(raters[0].name)
        click.echo(f"  {raters[0].name}: {progress['done']}/{progress['total']} rated")
    click.echo(f"serving on {server.url()} (Ctrl-C to stop)")


def _flag_summary(session: Any) -> str:
    reasons: dict[str, int] = {}
    for found in session.flags.values():
        for reason in found:
            reasons[reason] = reasons.get(reason, 0) + 1
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
    line = f"content notes: {len(session.flags)} of {len(session.pair_ids)} pairs" + (f" ({detail})" if detail else "")
    caps = [
        f"{n} per {span}"
        for n, span in ((session.limits.max_flagged_session, "session"), (session.limits.max_flagged_day, "day"))
        if n is not None
    ]
    if caps:
        line += f"; at most {' and '.join(caps)} per rater"
    if session.limits.break_after_s:
        line += f"; break reminder after {session.limits.break_after_s / 60:g} minutes"
    return line


@rate.command("export")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Comparisons file to write (.parquet, or .jsonl).",
)
@click.option("--drop-disagreements", is_flag=True, help="Leave out pairs whose raters preferred different responses.")
def export(directory: str, output: str, drop_disagreements: bool) -> None:
    """Write the choices in DIRECTORY as comparisons (prompt, chosen, rejected, rater, date, reason)."""
    from curate.rate.export import export_ratings

    stats = export_ratings(directory, output, drop_disagreements=drop_disagreements)
    click.echo(stats.summary(), err=True)
    click.echo(f"wrote {stats.exported} comparisons to {output}")


@rate.command("stats")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--by",
    type=click.Choice(["rater", "group"]),
    default="rater",
    show_default=True,
    help="rater: one row per rater; group: per rater group (raters.toml), agreement within and across groups.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (rater and group figures).")
def stats(directory: str, by: str, as_json: bool) -> None:
    """Per rater: ratings, active time, flagged pairs seen, skips; agreement (Cohen's kappa)."""
    from curate.rate.stats import compute_stats, format_stats

    figures = compute_stats(directory)
    click.echo(json.dumps(figures, indent=2, sort_keys=True) if as_json else format_stats(figures, by=by))
