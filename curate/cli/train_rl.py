"""``curate train sample-pairs | score | rlhf``: the commands where models generate or score.

``sample-pairs`` writes two answers per prompt for people to compare (``curate rate``),
``score`` scores responses or comparisons with a reward model, ``rlhf`` runs PPO or RLOO
against one (``train.align.rlhf``). Options and printing are shared with the other training
commands (:mod:`curate.cli.train_options`).
"""

from __future__ import annotations

import click

from curate.cli.train_options import build_config, common_options, note, report, report_holdout


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
        note(line)
    click.echo(
        f"sample-pairs: {result.written:,} pair(s) from {result.prompts:,} prompt(s) "
        f"({result.identical:,} with identical answers left out) -> {result.output}",
        err=True,
    )


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
        note(line)
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
@click.option(
    "--holdout-reward",
    type=click.Path(),
    default=None,
    help="A second reward model that scores every rollout and eval, logged but never optimized "
    "(e.g. one trained with `curate train reward --half` on the other half).",
)
@click.option(
    "--stop-on-divergence",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Stop once the held-out reward has fallen for N evals in a row while the optimized one rose.",
)
@common_options
def rlhf(
    policy,
    reward_model,
    prompts,
    algo,
    kl_coef,
    kl_estimator,
    max_new_tokens,
    rloo_k,
    holdout_reward,
    stop_on_divergence,
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
    curate train rlhf ... --reward work/ckpt/rm-0 --holdout-reward work/ckpt/rm-1 --stop-on-divergence 3

    With --holdout-reward the run keeps the policy of its best eval by held-out reward in
    OUT/best/ and reports that checkpoint as its result.
    """
    from curate.core.errors import ConfigError
    from train.align.rlhf import RLHFConfig
    from train.align.rlhf import rlhf as run_rlhf

    config = build_config(
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
            stop_on_divergence=stop_on_divergence,
        ),
    )
    if config.stop_on_divergence and holdout_reward is None:
        raise ConfigError("--stop-on-divergence needs --holdout-reward (the reward it watches)")
    result = run_rlhf(
        config,
        policy,
        prompts,
        output,
        reward=reward_model,
        holdout_reward=holdout_reward,
        overwrite=overwrite,
        stop_at_step=stop_at_step,
        progress=not quiet,
        on_message=note,
    )
    report(result, ["score", "holdout_score", "kl"], ["val_score", "val_holdout_score", "val_kl"])
    report_holdout(result)
