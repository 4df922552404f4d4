"""``curate eval``: a thin click wrapper over :func:`train.eval.run_eval` (benchmarks scored by
log-likelihood, held-out bits per byte per source), printing the table of
:mod:`curate.explore.evals`."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option(
    "--tasks",
    default="core",
    show_default=True,
    help="core (every bundled task), names (arc_easy,piqa), task files (.jsonl, .toml), or none.",
)
@click.option("--limit", type=int, default=None, help="Score the first N items of each task.")
@click.option("--shots", type=int, default=0, show_default=True, help="Solved examples in front of each item.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed of the few-shot draws.")
@click.option("--chat", is_flag=True, help="Question as the user turn, the choice as the assistant's reply.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Sequences per forward pass.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto (bf16 on CUDA, fp32 on CPU), float32, bf16.")
@click.option("--no-bpb", is_flag=True, help="Skip bits per byte on the mix's held-out documents.")
@click.option("--mix", default=None, help="The mix whose held-out documents to score (default: the model's).")
@click.option("--val-fraction", type=float, default=None, help="Held-out fraction (default: pretraining's).")
@click.option("--text", multiple=True, metavar="[NAME=]PATH", help="More text to score (Parquet, JSONL); repeatable.")
@click.option("--stride", type=int, default=None, help="New tokens scored per window (default: the block size).")
@click.option("--bpb-docs", type=int, default=None, help="At most N documents per source for bits per byte.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Default: STEP_DIR/eval.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--list-tasks", is_flag=True, help="List the bundled tasks with their sources and licences.")
def eval_cmd(checkpoint, no_bpb, output, as_json, list_tasks, **options) -> None:
    """Evaluate CHECKPOINT (a run or step folder of any language model: base, sft, rlhf, dpo).

    Multiple-choice tasks are scored by the log-likelihood of each choice (acc, acc_norm per
    byte, acc_char per character, centered accuracy and their mean, the CORE score); held-out
    bits per byte are computed per source on the documents pretraining held out. Results are
    printed and written to eval.json in the checkpoint's step folder.

    \b
      curate eval work/ckpt/base --tasks arc_easy,piqa --limit 200
      curate eval work/ckpt/sft --chat --shots 5 --tasks mmlu --limit 500
      curate eval work/ckpt/base --tasks my_task.toml --text held=work/heldout
    """
    from curate.core.errors import ConfigError

    if list_tasks:
        _list_tasks()
        return
    if checkpoint is None:
        raise ConfigError("give a checkpoint folder (or --list-tasks)")
    from curate.core.config import from_dict
    from curate.explore.evals import format_eval
    from train.eval import EvalConfig, run_eval

    values = {k: v for k, v in options.items() if v is not None}
    values["text"] = list(options["text"])
    values["bpb"] = not no_bpb
    config = from_dict(EvalConfig, values, where="eval")
    results = run_eval(checkpoint, config, output=output, note=None)
    if as_json:
        click.echo(json.dumps(results, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(format_eval(results)))
    click.echo(f"written: {results['file']}", err=True)


def _list_tasks() -> None:
    from curate.core.tasks import BUNDLED

    for task in BUNDLED.values():
        splits = task.eval_split + (f" (few-shot: {task.fewshot_split})" if task.fewshot_split else "")
        click.echo(f"{task.name:16s} {splits:26s} {task.source} ({task.licence})")
