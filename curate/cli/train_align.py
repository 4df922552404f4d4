"""``curate train sft | sample-pairs | reward | score | rlhf | dpo``: the alignment stages.

Thin click wrappers: a TOML ``--config``, then the common flags (``--lr``, ``--steps`` ...),
then ``--set key=value`` overrides become the stage's config dataclass (train/sft.py,
reward.py, rlhf.py, dpo.py), whose library function does the work. Rerunning a command into
the same ``-o`` resumes from its newest checkpoint; ``--overwrite`` starts over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from curate.cli.common import output_dir_option, overwrite_option, quiet_option
from curate.core.config import deep_merge, from_dict, load_toml, parse_set


def _common_options(f: Callable) -> Callable:
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


def _build_config(cls: type, config_path: str | None, overrides: tuple[str, ...], flags: dict[str, Any]):
    data = load_toml(config_path) if config_path else {}
    flat = {k: v for k, v in flags.items() if v is not None}
    if "lr" in flat:
        data = deep_merge(data, {"optim": {"lr": flat.pop("lr")}})
    data = deep_merge(data, flat)
    data = deep_merge(data, parse_set(list(overrides)))
    config = from_dict(cls, data, where=config_path or f"{cls.__name__}")
    config.validate()
    return config


def _note(msg: str) -> None:
    click.echo(f"note: {msg}", err=True)


def _fmt(metrics: dict[str, float], keys: list[str]) -> str:
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in keys if metrics.get(k) is not None)


def _report(result, first_keys: list[str], eval_keys: list[str]) -> None:
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


@click.command()
@click.option("--base", required=True, type=click.Path(), help="Checkpoint to fine-tune (a run or step directory).")
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="JSONL/Parquet (file or directory): prompt/response or a messages list.",
)
@click.option("--epochs", type=float, default=None, help="Passes over the data (when --steps is not given).")
@_common_options
def sft(
    base,
    data,
    epochs,
    config_path,
    overrides,
    lr,
    batch_size,
    max_steps,
    seed,
    device,
    stop_at_step,
    output,
    overwrite,
    quiet,
):
    """Supervised fine-tuning in the chat template; loss on assistant tokens only.

    \b
    curate train sft --base work/ckpt/base --data samples/sft/qa.jsonl -o work/ckpt/sft
    """
    from train.align.sft import SFTConfig
    from train.align.sft import sft as run_sft

    config = _build_config(
        SFTConfig,
        config_path,
        overrides,
        dict(lr=lr, batch_size=batch_size, max_steps=max_steps, seed=seed, device=device, epochs=epochs),
    )
    result = run_sft(
        config, base, data, output, overwrite=overwrite, stop_at_step=stop_at_step, progress=not quiet, on_message=_note
    )
    _report(result, ["loss"], ["val_loss"])


@click.command("sample-pairs")
@click.option("--model", required=True, type=click.Path(), help="Policy checkpoint to sample from.")
@click.option("--prompts", required=True, type=click.Path(), help="Prompts: JSONL/Parquet with 'prompt', or .txt.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .parquet file.")
@click.option("--max-new-tokens", "-n", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(
    "--temperatures",
    nargs=2,
    type=click.FloatRange(min=0),
    default=(0.7, 1.0),
    show_default=True,
    help="Sampling temperature of the first and second answer.",
)
@click.option("--seeds", nargs=2, type=int, default=(1, 2), show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--device", default="auto", show_default=True)
def sample_pairs(model, prompts, output, max_new_tokens, temperatures, seeds, top_k, top_p, batch_size, device):
    """Sample two answers per prompt for people to compare (pairs Parquet for `curate rate`).

    \b
    curate train sample-pairs --model work/ckpt/sft --prompts samples/prompts.jsonl -o work/pairs.parquet
    """
    from train.align.sampling import sample_pairs as run

    result = run(
        model,
        prompts,
        output,
        max_new_tokens=max_new_tokens,
        temperatures=tuple(temperatures),
        seeds=tuple(seeds),
        top_k=top_k,
        top_p=top_p,
        batch_size=batch_size,
        device=device,
    )
    for line in result.skipped.lines():
        _note(line)
    click.echo(
        f"sample-pairs: {result.written:,} pair(s) from {result.prompts:,} prompt(s) "
        f"({result.identical:,} with identical answers left out) -> {result.output}",
        err=True,
    )


@click.command()
@click.option("--base", required=True, type=click.Path(), help="Trunk to start from (LM, policy or reward checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Comparisons: JSONL/Parquet file or directory.")
@click.option("--epochs", type=float, default=None)
@click.option("--margin", type=float, default=None, help="Bradley-Terry margin for rows without a 'margin' field.")
@_common_options
def reward(
    base,
    data,
    epochs,
    margin,
    config_path,
    overrides,
    lr,
    batch_size,
    max_steps,
    seed,
    device,
    stop_at_step,
    output,
    overwrite,
    quiet,
):
    """Train a reward model (trunk + scalar head, Bradley-Terry) on comparisons.

    \b
    curate train reward --base work/ckpt/sft --data samples/comparisons.jsonl -o work/ckpt/rm
    """
    from train.align.reward import RewardConfig, train_reward

    config = _build_config(
        RewardConfig,
        config_path,
        overrides,
        dict(lr=lr, batch_size=batch_size, max_steps=max_steps, seed=seed, device=device, epochs=epochs, margin=margin),
    )
    result = train_reward(
        config, base, data, output, overwrite=overwrite, stop_at_step=stop_at_step, progress=not quiet, on_message=_note
    )
    _report(result, ["loss", "accuracy"], ["val_accuracy", "val_loss"])


@click.command()
@click.argument("reward_model", type=click.Path())
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="prompt/response rows, or comparisons (prompt/chosen/rejected): JSONL/Parquet.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the rows with their scores added (.jsonl); default: print a summary only.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--print", "print_rows", is_flag=True, help="Also print one score per row to stdout.")
def score(reward_model, data, output, batch_size, device, print_rows):
    """Score responses (or both sides of comparisons) with a reward model.

    \b
    curate train score work/ckpt/rm --data samples/comparisons.jsonl
    curate train score work/ckpt/rm --data answers.jsonl -o scored.jsonl
    """
    import tempfile
    from pathlib import Path

    from curate.core.files import iter_jsonl
    from train.align.score import score_file

    target = output
    scratch = None
    if print_rows and output is None:
        scratch = tempfile.TemporaryDirectory()
        target = str(Path(scratch.name) / "scores.jsonl")
    try:
        result = score_file(reward_model, data, target, batch_size=batch_size, device=device)
        if print_rows:
            with open(target, encoding="utf-8") as fh:
                for _, row, _ in iter_jsonl(fh, objects_only=True):  # rows score_file just wrote
                    if result.kind == "comparisons":
                        click.echo(f"{row['chosen_score']:.4f}\t{row['rejected_score']:.4f}")
                    else:
                        click.echo(f"{row['score']:.4f}")
    finally:
        if scratch is not None:
            scratch.cleanup()
    for line in result.skipped.lines():
        _note(line)
    summary = f"score: {result.rows:,} {result.kind} row(s), mean score {result.mean_score:.4f}"
    if result.accuracy is not None:
        summary += f", chosen scored higher in {result.accuracy:.1%}"
    if result.output is not None:
        summary += f" -> {result.output}"
    click.echo(summary, err=True)


@click.command()
@click.option("--policy", required=True, type=click.Path(), help="Policy checkpoint to improve (usually SFT).")
@click.option("--reward", "reward_model", required=True, type=click.Path(), help="Reward model checkpoint.")
@click.option("--prompts", required=True, type=click.Path(), help="Prompts: JSONL/Parquet with 'prompt', or .txt.")
@click.option("--algo", type=click.Choice(["ppo", "rloo"]), default=None, help="ppo (default) or rloo.")
@click.option("--kl-coef", type=click.FloatRange(min=0), default=None, help="Weight of the KL penalty.")
@click.option("--kl-estimator", type=click.Choice(["k1", "k3"]), default=None)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None, help="Response length cap.")
@click.option("--rloo-k", type=click.IntRange(min=2), default=None, help="Samples per prompt (rloo).")
@_common_options
def rlhf(
    policy,
    reward_model,
    prompts,
    algo,
    kl_coef,
    kl_estimator,
    max_new_tokens,
    rloo_k,
    config_path,
    overrides,
    lr,
    batch_size,
    max_steps,
    seed,
    device,
    stop_at_step,
    output,
    overwrite,
    quiet,
):
    """RLHF against a reward model: PPO (value head, GAE, KL penalty) or RLOO.

    \b
    curate train rlhf --policy work/ckpt/sft --reward work/ckpt/rm --prompts samples/prompts.jsonl -o work/ckpt/rlhf
    curate train rlhf ... --algo rloo --kl-coef 0.05 --kl-estimator k3
    """
    from train.align.rlhf import RLHFConfig
    from train.align.rlhf import rlhf as run_rlhf

    config = _build_config(
        RLHFConfig,
        config_path,
        overrides,
        dict(
            lr=lr,
            batch_size=batch_size,
            max_steps=max_steps,
            seed=seed,
            device=device,
            algo=algo,
            kl_coef=kl_coef,
            kl_estimator=kl_estimator,
            max_new_tokens=max_new_tokens,
            rloo_k=rloo_k,
        ),
    )
    result = run_rlhf(
        config,
        policy,
        prompts,
        output,
        reward=reward_model,
        overwrite=overwrite,
        stop_at_step=stop_at_step,
        progress=not quiet,
        on_message=_note,
    )
    _report(result, ["score", "kl"], ["val_score", "val_kl"])


@click.command()
@click.option("--policy", required=True, type=click.Path(), help="Policy checkpoint to train (usually SFT).")
@click.option("--data", required=True, type=click.Path(), help="Comparisons: JSONL/Parquet file or directory.")
@click.option("--ref", "reference", type=click.Path(), default=None, help="Reference model (default: --policy).")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=None, help="DPO/IPO beta (default 0.1).")
@click.option("--loss", "loss_type", type=click.Choice(["dpo", "ipo"]), default=None, help="dpo (default) or ipo.")
@click.option("--epochs", type=float, default=None)
@_common_options
def dpo(
    policy,
    data,
    reference,
    beta,
    loss_type,
    epochs,
    config_path,
    overrides,
    lr,
    batch_size,
    max_steps,
    seed,
    device,
    stop_at_step,
    output,
    overwrite,
    quiet,
):
    """Direct preference optimisation (or IPO) on comparisons, against a frozen reference.

    \b
    curate train dpo --policy work/ckpt/sft --data samples/comparisons.jsonl -o work/ckpt/dpo --beta 0.1
    """
    from train.align.dpo import DPOConfig
    from train.align.dpo import dpo as run_dpo

    config = _build_config(
        DPOConfig,
        config_path,
        overrides,
        dict(
            lr=lr,
            batch_size=batch_size,
            max_steps=max_steps,
            seed=seed,
            device=device,
            beta=beta,
            loss=loss_type,
            epochs=epochs,
        ),
    )
    result = run_dpo(
        config,
        policy,
        data,
        output,
        reference_path=reference,
        overwrite=overwrite,
        stop_at_step=stop_at_step,
        progress=not quiet,
        on_message=_note,
    )
    _report(result, ["loss", "margin"], ["val_margin", "val_accuracy"])
