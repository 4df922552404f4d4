"""Checkpoints exported for other tools: ``curate export hf`` and ``curate export gguf``.

Reads the checkpoint and its tokenizer (any path :func:`train.checkpoint.resolve_checkpoint`
takes, ``hf:DIR`` included) and hands them to the writers in :mod:`train.hf`.
"""

from __future__ import annotations

import os
from pathlib import Path

from curate.core.config import parse_bytes
from curate.core.errors import ConfigError

from .checkpoint import load_checkpoint, load_checkpoint_tokenizer, model_config_of
from .hf.gguf_file import GGUFExported, write_gguf
from .hf.writer import Exported, write_hf_folder


def export_hf(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    dtype: str = "float32",
    max_shard_size: str | int = "5GB",
    overwrite: bool = False,
) -> Exported:
    """The checkpoint as a ``transformers`` folder (see :mod:`train.hf.writer`)."""
    max_bytes = parse_bytes(max_shard_size)
    ckpt = load_checkpoint(checkpoint)
    return write_hf_folder(
        Path(output),
        state=ckpt.model_state,
        cfg=model_config_of(ckpt),
        kind=ckpt.kind,
        meta=ckpt.meta,
        tokenizer=load_checkpoint_tokenizer(ckpt.path),
        dtype=dtype,
        max_shard_bytes=max_bytes,
        overwrite=overwrite,
    )


def export_gguf(
    checkpoint: str | os.PathLike, output: str | os.PathLike, *, qtype: str = "f16", overwrite: bool = False
) -> GGUFExported:
    """A language model checkpoint as a GGUF file for llama.cpp (see :mod:`train.hf.gguf_file`)."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.kind == "reward":
        raise ConfigError(
            f"{ckpt.path}: is a reward model; llama.cpp runs language models (export it with `curate export hf`)"
        )
    output = Path(output)
    return write_gguf(
        output,
        state=ckpt.model_state,
        cfg=model_config_of(ckpt),
        tokenizer=load_checkpoint_tokenizer(ckpt.path),
        name=output.stem,
        qtype=qtype,
        overwrite=overwrite,
    )
