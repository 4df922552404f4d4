"""A language-model checkpoint as one GGUF file for llama.cpp (``general.architecture = llama``).

Tensor names come from the ``gguf`` package's own map of ``transformers`` Llama names (the
one llama.cpp's converter uses). q/k rows stay in our RoPE layout: llama.cpp's Llama rotates
channel pairs as we do (its converter permutes ``transformers``' halves back to pairs).
Norm gains (ones for a gain-free model) are stored as F32, as llama.cpp's converter does;
matrices as F16, or Q8_0 (32-value blocks with one scale) where rows divide into blocks.

The vocabulary is written as llama.cpp's "gpt2" model with the "gpt-2" pre-tokenizer, which
splits text as our byte-level BPE does; other tokenizers are refused (see
:func:`train.hf.tokenizer.gguf_vocabulary`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.core.errors import ConfigError
from curate.core.tokenizer import Tokenizer

from ..chat import END
from ..model import GPTConfig
from . import optional
from .layout import llama_tensors
from .output import staged_file
from .tokenizer import CHAT_TEMPLATE, gguf_vocabulary

TYPES = ("f16", "q8_0")


@dataclass
class GGUFExported:
    output: Path
    tensors: int
    file_bytes: int
    qtype: str


def _encode(gguf: Any, tensor: torch.Tensor, qtype: str) -> tuple[np.ndarray, Any]:
    """(data, GGML type) of one tensor: vectors F32; matrices F16 or Q8_0 (F16 when a row does
    not divide into Q8_0 blocks)."""
    data = tensor.detach().float().cpu().numpy()
    types = gguf.GGMLQuantizationType
    if data.ndim == 1:
        return data.astype(np.float32), types.F32
    block = gguf.GGML_QUANT_SIZES[types.Q8_0][0]
    if qtype == "q8_0" and data.shape[-1] % block == 0:
        return gguf.quants.quantize(data, types.Q8_0), types.Q8_0
    return data.astype(np.float16), types.F16


def _add_metadata(writer: Any, gguf: Any, cfg: GPTConfig, name: str, qtype: str) -> None:
    writer.add_type("model")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.mlp_hidden)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_kv_head)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)


def _add_vocabulary(writer: Any, tokenizer: Tokenizer, vocab_size: int) -> None:
    vocab = gguf_vocabulary(tokenizer, vocab_size)
    writer.add_vocab_size(len(vocab["tokens"]))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    # A document starts with <|endoftext|> (added before every prompt, as `curate generate`
    # does); generation ends at <|endoftext|> (plain text) or <|end|> (a chat reply).
    writer.add_bos_token_id(tokenizer.eot_id)
    writer.add_eos_token_id(tokenizer.eot_id)
    writer.add_eot_token_id(tokenizer.token_id(END))
    writer.add_pad_token_id(tokenizer.pad_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def write_gguf(
    out: Path,
    *,
    state: dict[str, torch.Tensor],
    cfg: GPTConfig,
    tokenizer: Tokenizer,
    name: str,
    qtype: str = "f16",
    overwrite: bool = False,
) -> GGUFExported:
    """Write ``out`` (atomically) from a language model's state dict and tokenizer."""
    if qtype not in TYPES:
        raise ConfigError(f"unknown GGUF type {qtype!r} (known: {', '.join(TYPES)})")
    gguf = optional("gguf", "GGUF export")
    tensors = llama_tensors(state, cfg, rope="pairs")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.n_layer)
    with staged_file(out, overwrite) as tmp:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        _add_metadata(writer, gguf, cfg, name, qtype)
        _add_vocabulary(writer, tokenizer, cfg.vocab_size)
        for hf_name, tensor in tensors.items():
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight",))
            data, ggml_type = _encode(gguf, tensor, qtype)
            # Quantized data is bytes per row; the writer derives the element shape from them.
            writer.add_tensor(gguf_name, data, raw_dtype=ggml_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        size = tmp.stat().st_size
    return GGUFExported(out, len(tensors), size, qtype)
