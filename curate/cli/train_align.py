"""``curate train sft | reward | dpo``: the alignment stages that train on fixed data.

Thin click wrappers: a TOML ``--config``, then the common flags (``--lr``, ``--steps`` ...),
then ``--set key=value`` overrides become the stage's config dataclass (``train.align.sft``,
``reward``, ``dpo``), whose library function does the work. Rerunning a command into the same
``-o`` resumes from its newest checkpoint; ``--overwrite`` starts over.
"""

from __future__ import annotations

import click

from curate.cli.train_options import build_config, common_options, note, report, report_groups


@click.command()
@click.option("--base", required=True, type=click.Path(), help="Checkpoint to fine-tune (a run or step directory).")
@click.option(
    "--data",
    required=True,
    type=click.Path(),
    help="JSONL/Parquet (file or directory): prompt/response or a messages list.",
)
@click.option("--epochs", type=float, default=None, help="Passes over the data (when --steps is not given).")
@common_options
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

    config = build_config(
        SFTConfig,
        config_path,
        overrides,
        dict(lr=lr, batch_size=batch_size, max_steps=max_steps, seed=seed, device=device, epochs=epochs),
    )
    result = run_sft(
        config, base, data, output, overwrite=overwrite, stop_at_step=stop_at_step, progress=not quiet, on_message=note
    )
    report(result, ["loss"], ["val_loss"])


@click.command()
@click.option("--base", required=True, type=click.Path(), help="Trunk to start from (LM, policy or reward checkpoint).")
@click.option("--data", required=True, type=click.Path(), help="Comparisons: JSONL/Parquet file or directory.")
@click.option("--epochs", type=float, default=None)
@click.option("--margin", type=float, default=None, help="Bradley-Terry margin for rows without a 'margin' field.")
@click.option(
    "--half",
    type=click.IntRange(0, 1),
    default=None,
    help="Train on one half (0 or 1) of the comparisons, split by a hash of each prompt: "
    "two models on the two halves make a reward and a held-out reward for `train rlhf`.",
)
@click.option(
    "--half-seed", type=click.IntRange(min=0), default=None, help="Seed of the split into halves (default 0)."
)
@click.option(
    "--by-group",
    is_flag=True,
    default=None,
    help="Report held-out accuracy per rater group (the comparisons' 'group' or 'rater_group').",
)
@common_options
def reward(
    base,
    data,
    epochs,
    margin,
    half,
    half_seed,
    by_group,
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
    curate train reward ... --half 0 -o work/ckpt/rm-0   # and --half 1 -o work/ckpt/rm-1
    """
    from train.align.reward import RewardConfig, train_reward

    config = build_config(
        RewardConfig,
        config_path,
        overrides,
        dict(
            lr=lr,
            batch_size=batch_size,
            max_steps=max_steps,
            seed=seed,
            device=device,
            epochs=epochs,
            margin=margin,
            half=half,
            half_seed=half_seed,
            by_group=by_group,
        ),
    )
    result = train_reward(
        config, base, data, output, overwrite=overwrite, stop_at_step=stop_at_step, progress=not quiet, on_message=note
    )
    report(result, ["loss", "accuracy"], ["val_accuracy", "val_loss"])
    report_groups(result)


@click.command()
@click.option("--policy", required=True, type=click.Path(), help="Policy checkpoint to train (usually SFT).")
@click.option("--data", required=True, type=click.Path(), help="Comparisons: JSONL/Parquet file or directory.")
@click.option("--ref", "reference", type=click.Path(), default=None, help="Reference model (default: --policy).")
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=None, help="DPO/IPO beta (default 0.1).")
@click.option("--loss", "loss_type", type=click.Choice(["dpo", "ipo"]), default=None, help="dpo (default) or ipo.")
@click.option("--epochs", type=float, default=None)
@common_options
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

    config = build_config(
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
        on_message=note,
    )
    report(result, ["loss", "margin"], ["val_margin", "val_accuracy"])
