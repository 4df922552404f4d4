"""The CLI as a whole: every command has help, unknown commands fail cleanly."""

import pytest
from click.testing import CliRunner

from curate import __version__
from curate.cli import COMMANDS, cli
from curate.cli.train import TRAIN_COMMANDS


def _all_commands(group, ctx, prefix=()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        yield prefix + (name,), cmd
        if hasattr(cmd, "list_commands"):
            yield from _all_commands(cmd, ctx, prefix + (name,))


def test_every_command_has_help():
    import click

    ctx = click.Context(cli)
    commands = list(_all_commands(cli, ctx))
    paths = {path for path, _ in commands}
    # Every registered command resolves (a typo in a "module:attribute" target would drop it).
    assert {p[0] for p in paths if len(p) == 1} == set(COMMANDS)
    assert {p[1] for p in paths if p[0] == "train" and len(p) == 2} == set(TRAIN_COMMANDS)
    assert {("rate", "serve"), ("rate", "export"), ("rate", "stats"), ("tokenizer", "train")} <= paths
    runner = CliRunner()
    for path, cmd in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        assert (cmd.help or cmd.short_help or "").strip(), f"{' '.join(path)} has no help text"


def test_version_and_unknown_command():
    runner = CliRunner()
    assert __version__ in runner.invoke(cli, ["--version"]).output
    result = runner.invoke(cli, ["nonsense"])
    assert result.exit_code == 2 and "No such command" in result.output


def test_registered_commands_point_at_real_modules():

    for name, target in {**COMMANDS, **TRAIN_COMMANDS}.items():
        module = target.split(":")[0]
        assert module.startswith("curate.cli."), name


def test_plain_duckdb_reads_the_shards(tmp_path, make_docs):
    """The README's `duckdb -c "... from 'DIR/*.parquet'"` recipes work on our shards."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from curate.core.shards import ShardWriter

    exe = shutil.which("duckdb") or str(Path(sys.executable).parent / "duckdb")
    if not Path(exe).exists():
        pytest.skip("the duckdb command (package duckdb-cli) is not installed")
    with ShardWriter(tmp_path) as w:
        for d in make_docs(7, source="books"):
            w.write(d)
    out = subprocess.run(
        [exe, "-csv", "-c", f"select source, count(*) n, max(n_chars) from '{tmp_path}/*.parquet' group by 1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[1].startswith("books,7,")
