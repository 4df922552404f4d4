"""``curate train pretrain``, ``curate train estimate`` and ``curate generate``.

Thin click wrappers: options become a :class:`train.pretrain.PretrainConfig` (TOML file,
then ``--set`` overrides) or arguments of the library functions, which do the work.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click

from curate.cli.common import output_dir_option, overwrite_option, quiet_option
from curate.core.config import deep_merge, from_dict, load_toml, parse_set
from curate.core.errors import CurateError


def load_pretrain_config(config_path: str | None, overrides: tuple[str, ...]):
    from train.pretrain import PretrainConfig

    data = load_toml(config_path) if config_path else {}
    data = deep_merge(data, parse_set(list(overrides)))
    return from_dict(PretrainConfig, data, where=config_path or "pretrain config")


def _torchrun_argv(nproc: int, params: dict) -> list[str]:
    """The same command for torchrun to start ``nproc`` times (each joins the process group)."""
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "curate",
        "train",
        "pretrain",
        "--data",
        params["data"],
        "-o",
        params["output"],
    ]
    for flag, key in (
        ("--tokenizer", "tokenizer"),
        ("--config", "config_path"),
        ("--init-from", "init_from"),
        ("--stop-at-step", "stop_at_step"),
    ):
        if params.get(key) is not None:
            argv += [flag, str(params[key])]
    for item in params.get("overrides") or ():
        argv += ["--set", item]
    for flag in ("resume", "overwrite", "quiet"):
        if params.get(flag):
            argv.append(f"--{flag}")
    return argv


@click.command()
@click.option("--data", required=True, type=click.Path(), help="Mix directory written by `curate mix`.")
@click.option("--tokenizer", default=None, help="Tokenizer directory (default: the mix's tokenizer, else bytes).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config (e.g. samples/train/pretrain_tiny.toml).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set model.n_layer=4 --set optim.lr=1e-3 (repeatable).",
)
@output_dir_option
@click.option(
    "--resume", is_flag=True, help="Require a checkpoint in -o to continue from (rerunning into -o resumes anyway)."
)
@overwrite_option
@click.option(
    "--init-from",
    type=click.Path(),
    default=None,
    help="Start from another run's weights (continued pretraining; fresh optimizer).",
)
@click.option(
    "--stop-at-step",
    type=click.IntRange(min=1),
    default=None,
    help="Checkpoint and stop after this step, keeping the full run's schedule.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    help="Processes (GPUs) to train with: starts torchrun (gloo on CPU, nccl on GPU).",
)
@click.option(
    "--fsdp",
    is_flag=True,
    help="Shard weights, gradients and optimizer state across the processes (FSDP) instead of "
    "replicating the model (DDP); the same as --set distributed=fsdp.",
)
@quiet_option
def pretrain(
    data, tokenizer, config_path, overrides, output, resume, overwrite, init_from, stop_at_step, nproc, fsdp, quiet
):
    """Pretrain a GPT on a mix directory (next-token prediction), resumably.

    \b
    curate train pretrain --data work/mix --config samples/train/pretrain_tiny.toml -o work/ckpt/base
    curate train pretrain ... --nproc 2          # DDP over 2 processes via torchrun
    curate train pretrain ... --nproc 8 --fsdp   # FSDP: the model sharded over 8 GPUs
    torchrun --nproc_per_node=8 -m curate train pretrain ...   # the same, launched yourself
    """
    if fsdp:
        overrides = tuple(overrides) + ('distributed="fsdp"',)
    config = load_pretrain_config(config_path, overrides)  # fail fast, before starting processes
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        from train.mix import open_mix, resolve_tokenizer
        from train.rundir import RunDir

        config.validate()
        resolve_tokenizer(tokenizer, open_mix(data))  # a bad path: one line here, not one per process
        with RunDir(output, "pretrain", config).lock():
            pass  # a run already writing into -o: likewise (rank 0 takes the lock for real)
        argv = _torchrun_argv(
            nproc,
            dict(
                data=data,
                tokenizer=tokenizer,
                config_path=config_path,
                overrides=overrides,
                output=output,
                resume=resume,
                overwrite=overwrite,
                init_from=init_from,
                stop_at_step=stop_at_step,
                quiet=quiet,
            ),
        )
        rc = subprocess.run(argv).returncode  # an argv list: no shell, no quoting issues
        if rc != 0:
            raise CurateError(f"torchrun exited with status {rc} (see the messages above)", exit_code=rc)
        return

    from train.pretrain import pretrain as run_pretrain

    result = run_pretrain(
        config,
        data,
        output,
        tokenizer=tokenizer,
        resume=True if resume else None,
        overwrite=overwrite,
        init_from=init_from,
        stop_at_step=stop_at_step,
        progress=not quiet,
        on_message=lambda msg: click.echo(f"note: {msg}", err=True),
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.status == "up-to-date":
        click.echo(
            f"{output}: already trained to step {result.step:,}; nothing to do (raise max_steps to continue)", err=True
        )
        return
    losses = ""
    if result.first_loss is not None:
        losses = f"; loss {result.first_loss:.4f} -> {result.last_loss:.4f}"
    if result.val_loss is not None:
        import math

        losses += f"; val loss {result.val_loss:.4f} (ppl {math.exp(min(result.val_loss, 50)):.2f})"
    click.echo(
        f"pretrain: steps {result.start_step:,} -> {result.step:,} of {result.max_steps:,}, "
        f"{result.tokens_seen:,} tokens seen, {result.elapsed_s:,.1f}s{losses}",
        err=True,
    )
    if result.checkpoint is not None:
        click.echo(f"checkpoint: {result.checkpoint}", err=True)


@click.command()
@click.option("--params", default=None, help="Parameters: 7e9, 7B, 350M ...")
@click.option("--preset", default=None, help="Instead of --params: a model preset (tiny, small, medium, 1b).")
@click.option(
    "--vocab-size", type=click.IntRange(min=1), default=50304, show_default=True, help="Vocabulary size for --preset."
)
@click.option("--tokens", default=None, help="Training tokens: 2e12, 2T, 300B ... (default: ~20 per parameter).")
@click.option("--gpu", default="h100", show_default=True, help="GPU type (peak bf16 FLOP/s from a built-in table).")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="GPUs in parallel.")
@click.option("--mfu", type=float, default=0.4, show_default=True, help="Model FLOPs utilisation you expect.")
@click.option("--price", type=float, default=None, help="Price per GPU-hour (any currency).")
def estimate(params, preset, vocab_size, tokens, gpu, gpus, mfu, price):
    """Estimate training compute (6 x N x D), GPU-hours and cost, and the compute-optimal size.

    \b
    curate train estimate --params 7B --tokens 2T --gpu h100 --mfu 0.4 --price 2.5
    curate train estimate --preset small --tokens 10B --gpu a100
    """
    from train.estimate import estimate as run_estimate
    from train.estimate import preset_params

    if (params is None) == (preset is None):
        raise CurateError("give exactly one of --params or --preset")
    if preset is not None:
        params = preset_params(preset, vocab_size)
    result = run_estimate(params, tokens, gpu=gpu, mfu=mfu, gpus=gpus, price=price)
    for line in result.lines():
        click.echo(line)


@click.command()
@click.argument("checkpoint", type=click.Path())
@click.argument("prompt", required=False)
@click.option("--max-new-tokens", "-n", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--temperature", "-t", type=click.FloatRange(min=0), default=0.8, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=200, show_default=True, help="0 = off.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None, help="Nucleus sampling.")
@click.option("--seed", type=int, default=None, help="Seed for reproducible samples.")
@click.option("--chat", is_flag=True, help="Wrap the prompt in the chat template; stop at the end of the reply.")
@click.option("--system", default=None, help="System message (with --chat).")
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--echo", is_flag=True, help="Print the prompt before each completion.")
def generate(
    checkpoint, prompt, max_new_tokens, temperature, top_k, top_p, seed, chat, system, num_samples, device, echo
):
    """Continue PROMPT (or stdin) with the model in CHECKPOINT (a run or step directory).

    \b
    curate generate work/ckpt/base "The history of" --seed 1
    curate generate work/ckpt/sft "Name three rivers." --chat --temperature 0
    """
    from train.generate import generate_text

    if prompt is None:
        prompt = sys.stdin.read()
    result = generate_text(
        checkpoint,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k or None,
        top_p=top_p,
        seed=seed,
        chat=chat,
        system=system,
        num_samples=num_samples,
        device=device,
    )
    for i, text in enumerate(result.completions):
        if num_samples > 1:
            click.echo(f"--- sample {i + 1}")
        click.echo((prompt if echo else "") + text)
