"""What the training commands share: the common options (--config, --set, --lr, --steps ...),
turning them into a stage's config dataclass, and the closing lines they print."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from curate.cli.common import output_dir_option, overwrite_option, quiet_option
from curate.core.config import deep_merge, from_dict, load_toml, parse_set


def common_options(f: Callable) -> Callable:
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="TOML config for the stage (keys as in its config dataclass).",
        ),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override a config value, e.g. --set optim.warmup_steps=0 (repeatable).",
        ),
        click.option("--lr", type=float, default=None, help="Peak learning rate."),
        click.option(
            "--batch-size", type=click.IntRange(min=1), default=None, help="Examples (pairs, prompts) per step."
        ),
        click.option("--steps", "max_steps", type=click.IntRange(min=1), default=None, help="Optimizer steps."),
        click.option("--seed", type=int, default=None, help="Random seed."),
        click.option("--device", default=None, help="auto | cpu | cuda | cuda:N."),
        click.option(
            "--stop-at-step",
            type=click.IntRange(min=1),
            default=None,
            help="Checkpoint and stop after this step, keeping the full run's schedule.",
        ),
        output_dir_option,
        overwrite_option,
        quiet_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_config(cls: type, config_path: str | None, overrides: tuple[str, ...], flags: dict[str, Any]):
    data = load_toml(config_path) if config_path else {}
    flat = {k: v for k, v in flags.items() if v is not None}
    if "lr" in flat:
        data = deep_merge(data, {"optim": {"lr": flat.pop("lr")}})
    data = deep_merge(data, flat)
    data = deep_merge(data, parse_set(list(overrides)))
    config = from_dict(cls, data, where=config_path or f"{cls.__name__}")
    config.validate()
    return config


def note(msg: str) -> None:
    click.echo(f"note: {msg}", err=True)


def _fmt(metrics: dict[str, float], keys: list[str]) -> str:
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys if metrics.get(k) is not None)


def report(result, first_keys: list[str], eval_keys: list[str]) -> None:
    if result.status == "up-to-date":
        click.echo(
            f"{result.output}: already trained to step {result.step:,}; nothing to do (raise --steps to continue)",
            err=True,
        )
        return
    parts = [
        f"{result.stage}: steps {result.start_step:,} -> {result.step:,} of {result.max_steps:,}",
        f"{result.examples:,} training / {result.held_out:,} held-out",
        f"{result.elapsed_s:,.1f}s",
    ]
    if result.first and result.last:
        parts.append(" -> ".join(filter(None, [_fmt(result.first, first_keys), _fmt(result.last, first_keys)])))
    if result.first_eval and result.eval:
        parts.append(f"held-out {_fmt(result.first_eval, eval_keys)} -> {_fmt(result.eval, eval_keys)}")
    click.echo("; ".join(parts), err=True)
    if result.status == "stopped":
        click.echo(f"stopped at step {result.step:,}; rerun the same command to continue", err=True)
    if result.checkpoint is not None:
        click.echo(f"checkpoint: {result.checkpoint}", err=True)


def report_groups(result) -> None:
    """``train reward --by-group``: held-out accuracy per rater group, from the last eval."""
    groups = [k[len("val_accuracy[") : -1] for k in result.eval if k.startswith("val_accuracy[")]
    if groups:
        parts = [f"{g} {result.eval[f'val_accuracy[{g}]']:.1%} of {result.eval[f'val_pairs[{g}]']:,}" for g in groups]
        click.echo(f"held-out accuracy by rater group: {', '.join(parts)}", err=True)


def report_holdout(result) -> None:
    """``train rlhf --holdout-reward``: the best eval by held-out reward (the run's result)."""
    if result.eval.get("best_step") is not None and result.status != "up-to-date":
        click.echo(
            f"best by held-out reward: step {result.eval['best_step']:,} "
            f"(held-out score {result.eval['best_val_holdout_score']:.4g})",
            err=True,
        )
