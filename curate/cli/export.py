"""``curate export hf | gguf``: a checkpoint for other tools (``transformers``, llama.cpp,
lm-evaluation-harness). Thin click wrappers over :mod:`train.export`."""

from __future__ import annotations

import click

from curate.cli.common import overwrite_option

_CHECKPOINT_HELP = "A run or step directory (or hf:DIR)."


@click.group()
def export() -> None:
    """Export a checkpoint: a transformers folder (hf) or a llama.cpp file (gguf)."""


@export.command("hf")
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="Precision of the saved weights.",
)
@click.option(
    "--max-shard-size", default="5GB", show_default=True, help="Split the weights into files of at most this size."
)
@overwrite_option
def export_hf(checkpoint, output, dtype, max_shard_size, overwrite):
    """CHECKPOINT as a folder transformers loads without custom code (LlamaForCausalLM, or
    LlamaForSequenceClassification for a reward model), with tokenizer, chat template and model card.

    \b
    curate export hf work/ckpt/sft -o work/hf/sft
    python -c 'from transformers import AutoModelForCausalLM as M; M.from_pretrained("work/hf/sft")'
    """
    from train.export import export_hf as run

    result = run(checkpoint, output, dtype=dtype, max_shard_size=max_shard_size, overwrite=overwrite)
    for line in result.notes:
        click.echo(f"note: {line}", err=True)
    shards = sum(1 for f in result.files if f.endswith(".safetensors"))
    click.echo(
        f"export hf: {result.architecture}, {shards} weight file(s), {result.tensor_bytes / 1e6:,.1f} MB "
        f"-> {result.output}",
        err=True,
    )


@export.command("gguf")
@click.argument("checkpoint", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="GGUF file to write.")
@click.option(
    "--type",
    "qtype",
    type=click.Choice(["f16", "q8_0"]),
    default="f16",
    show_default=True,
    help="Matrix precision: f16, or q8_0 (8-bit blocks, about half the size).",
)
@overwrite_option
def export_gguf(checkpoint, output, qtype, overwrite):
    """CHECKPOINT (a language model) as one GGUF file for llama.cpp.

    \b
    curate export gguf work/ckpt/sft -o work/sft.gguf --type q8_0
    llama-cli -m work/sft.gguf -p "The history of" -n 64
    """
    from train.export import export_gguf as run

    result = run(checkpoint, output, qtype=qtype, overwrite=overwrite)
    click.echo(
        f"export gguf: {result.tensors} tensors ({result.qtype}), {result.file_bytes / 1e6:,.1f} MB -> {result.output}",
        err=True,
    )
