"""The one mapping between curate's GPT and the Llama layout of ``transformers`` and llama.cpp.

Our GPT is a Llama (RMSNorm, SwiGLU, RoPE, GQA) stored differently:

* q, k and v are one fused projection (``attn.qkv``); Llama has three;
* our RoPE rotates channel pairs (2i, 2i+1) of each head (a complex multiply, as Meta's
  original code); ``transformers``' Llama rotates halves (i, i + D/2). The two are the same
  model once the rows of each q/k head are reordered, which is what :func:`rope_to_halves`
  and :func:`rope_to_pairs` do. llama.cpp keeps the pairs layout (its converter permutes
  ``transformers`` weights back), so GGUF files take our rows unchanged;
* our RMSNorms have no gains by default (``norm_weight = false``); Llama's always have one,
  written as ones. A folder whose gains are all exactly one imports as gain-free again, so
  export -> import -> export gives the same bytes.

:func:`llama_tensors` and :func:`curate_state` convert the weights (in ``transformers``' names,
with the RoPE layout chosen by the caller); :func:`hf_config` and :func:`gpt_config_from_hf`
the config, refusing in one line what our model cannot represent.
"""

from __future__ import annotations

from typing import Any

import torch

from curate.core.errors import InputError

from ..finite import first_non_finite
from ..model import GPTConfig

CAUSAL_LM = "LlamaForCausalLM"
SEQUENCE_CLASSIFIER = "LlamaForSequenceClassification"
# Causal LMs whose weights and config are a Llama's (possibly with biases, checked to be zero).
CAUSAL_ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"}
SUPPORTED = "Llama, Mistral (no sliding window), Qwen2 (zero biases), SmolLM, TinyLlama"


# ----------------------------------------------------------------------------- RoPE layout


def _halves_order(head_dim: int) -> torch.Tensor:
    """Channel ``order[j]`` of the pairs layout is channel j of the halves layout."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def rope_to_halves(weight: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Rows of a q/k projection (heads * head_dim, in) reordered from pairs to halves."""
    return weight.reshape(heads, head_dim, -1)[:, _halves_order(head_dim)].reshape(weight.shape)


def rope_to_pairs(weight: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """The inverse of :func:`rope_to_halves`."""
    inverse = torch.argsort(_halves_order(head_dim))
    return weight.reshape(heads, head_dim, -1)[:, inverse].reshape(weight.shape)


# ----------------------------------------------------------------------------- weights


def llama_tensors(state: dict[str, torch.Tensor], cfg: GPTConfig, rope: str = "halves") -> dict[str, torch.Tensor]:
    """Our trunk (and untied LM head) in ``transformers``' Llama names; q/k rows in ``rope``
    layout ("halves" for ``transformers``, "pairs" for llama.cpp); missing gains as ones."""
    H, KV, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    embed = state["tok_emb.weight"]

    def gain(name: str) -> torch.Tensor:
        return state[name] if name in state else torch.ones(cfg.n_embd, dtype=embed.dtype)

    def qk(weight: torch.Tensor, heads: int) -> torch.Tensor:
        return rope_to_halves(weight, heads, D) if rope == "halves" else weight

    out = {"model.embed_tokens.weight": embed}
    for i in range(cfg.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split([H * D, KV * D, KV * D])
        out[theirs + "input_layernorm.weight"] = gain(ours + "attn_norm.weight")
        out[theirs + "self_attn.q_proj.weight"] = qk(q, H)
        out[theirs + "self_attn.k_proj.weight"] = qk(k, KV)
        out[theirs + "self_attn.v_proj.weight"] = v
        out[theirs + "self_attn.o_proj.weight"] = state[ours + "attn.proj.weight"]
        out[theirs + "post_attention_layernorm.weight"] = gain(ours + "mlp_norm.weight")
        for name in ("gate", "up", "down"):
            out[theirs + f"mlp.{name}_proj.weight"] = state[ours + f"mlp.{name}.weight"]
    out["model.norm.weight"] = gain("norm_f.weight")
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    return out


def llama_names(cfg: GPTConfig) -> set[str]:
    """The tensor names :func:`curate_state` reads for ``cfg``."""
    layer = [
        "input_layernorm",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "post_attention_layernorm",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ]
    names = {f"model.layers.{i}.{part}.weight" for i in range(cfg.n_layer) for part in layer}
    names |= {"model.embed_tokens.weight", "model.norm.weight"}
    return names if cfg.tie_embeddings else names | {"lm_head.weight"}


def norms_are_ones(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether every RMSNorm gain of a Llama state dict is exactly 1 (a gain-free model)."""
    return all(bool((t == 1).all()) for name, t in tensors.items() if name.endswith("norm.weight"))


def curate_state(tensors: dict[str, torch.Tensor], cfg: GPTConfig, where: str) -> dict[str, torch.Tensor]:
    """Our state dict from a Llama one in ``transformers``' names and halves layout (the
    inverse of :func:`llama_tensors`). Gains are kept only when ``cfg.norm_weight``."""
    H, KV, D = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    E, M, V = cfg.n_embd, cfg.mlp_hidden, cfg.vocab_size

    def take(name: str, *shape: int) -> torch.Tensor:
        if name not in tensors:
            raise InputError(f"{where}: weights lack {name}")
        if tuple(tensors[name].shape) != shape:
            raise InputError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, config.json implies {shape}")
        return tensors[name]

    state = {"tok_emb.weight": take("model.embed_tokens.weight", V, E)}
    for i in range(cfg.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q = rope_to_pairs(take(theirs + "self_attn.q_proj.weight", H * D, E), H, D)
        k = rope_to_pairs(take(theirs + "self_attn.k_proj.weight", KV * D, E), KV, D)
        state[ours + "attn.qkv.weight"] = torch.cat([q, k, take(theirs + "self_attn.v_proj.weight", KV * D, E)])
        state[ours + "attn.proj.weight"] = take(theirs + "self_attn.o_proj.weight", E, H * D)
        for name, shape in (("gate", (M, E)), ("up", (M, E)), ("down", (E, M))):
            state[ours + f"mlp.{name}.weight"] = take(theirs + f"mlp.{name}_proj.weight", *shape)
        if cfg.norm_weight:
            state[ours + "attn_norm.weight"] = take(theirs + "input_layernorm.weight", E)
            state[ours + "mlp_norm.weight"] = take(theirs + "post_attention_layernorm.weight", E)
    if cfg.norm_weight:
        state["norm_f.weight"] = take("model.norm.weight", E)
    state["lm_head.weight"] = state["tok_emb.weight"] if cfg.tie_embeddings else take("lm_head.weight", V, E)
    bad = first_non_finite(state)
    if bad is not None:
        raise InputError(f"{where}: the weights hold NaN or infinite values (first in {bad})")
    return state


# ----------------------------------------------------------------------------- config


def hf_config(cfg: GPTConfig, *, reward: bool, ids: dict[str, int], dtype: str) -> dict[str, Any]:
    """config.json of a ``transformers`` Llama with our model's every setting. ``ids`` holds
    the bos, eos and pad token ids. Keys of both transformers 4 (``rope_theta``,
    ``rope_scaling``) and 5 (``rope_parameters``) are written, so either version loads it."""
    config: dict[str, Any] = {
        "architectures": [SEQUENCE_CLASSIFIER if reward else CAUSAL_LM],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,  # our RoPE has no scaling
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        # A reward model has no LM head to tie; ties are written so an import rebuilds the trunk.
        "tie_word_embeddings": cfg.tie_embeddings or reward,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
        "dtype": dtype,
    }
    if reward:
        # One label, read at the last token that is not padding: where our reward head reads.
        config.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}, problem_type="regression")
    return config


def _refuse(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}, which curate's model cannot represent")


def _rope_theta(config: dict[str, Any], where: str) -> float:
    """The RoPE base; any scaling (llama3, yarn, linear, dynamic ...) is refused."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise _refuse(where, f"RoPE scaling {kind!r}")
    if config.get("partial_rotary_factor", 1.0) != 1.0:
        raise _refuse(where, f"partial rotary embeddings ({config['partial_rotary_factor']})")
    return float(params.get("rope_theta") or config.get("rope_theta") or 10000.0)


def architecture_of(config: dict[str, Any], where: str) -> tuple[str, bool]:
    """(architecture, is a reward model) of a config.json; anything else is one line."""
    names = config.get("architectures") or []
    arch = names[0] if names else str(config.get("model_type") or "unknown")
    if arch in CAUSAL_ARCHITECTURES:
        return arch, False
    if arch == SEQUENCE_CLASSIFIER and len(config.get("id2label") or {"0": ""}) == 1:
        return arch, True
    raise InputError(f"{where}: architecture {arch} is not supported (curate imports {SUPPORTED})")


def gpt_config_from_hf(config: dict[str, Any], where: str) -> GPTConfig:
    """Our GPTConfig for a Llama-family config.json (``norm_weight`` set: the caller clears it
    when every gain is one). Settings our model has no place for are refused in one line."""
    architecture_of(config, where)
    if config.get("hidden_act", "silu") not in ("silu", "swish"):
        raise _refuse(where, f"activation {config['hidden_act']!r}")
    try:
        window = config.get("sliding_window")
        uses_window = config.get("use_sliding_window", config.get("model_type") == "mistral")
        positions = int(config.get("max_position_embeddings") or 0)
        if window is not None and uses_window and (not positions or int(window) < positions):
            raise _refuse(where, f"sliding-window attention ({window} of {positions or 'unbounded'} positions)")
        heads, width = int(config["num_attention_heads"]), int(config["hidden_size"])
        if heads < 1 or width < 1 or width % heads:
            raise InputError(
                f"{where}: unusable config.json (hidden_size {width} is not a positive multiple of "
                f"num_attention_heads {heads})"
            )
        if config.get("head_dim") not in (None, width // heads):
            raise _refuse(where, f"head_dim {config['head_dim']} != hidden_size / num_attention_heads")
        return GPTConfig(
            vocab_size=int(config["vocab_size"]),
            block_size=int(positions or 2048),
            n_layer=int(config["num_hidden_layers"]),
            n_head=heads,
            n_kv_head=int(config.get("num_key_value_heads") or heads),
            n_embd=width,
            mlp_hidden=int(config["intermediate_size"]),
            rope_theta=_rope_theta(config, where),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            norm_weight=True,
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"{where}: unusable config.json ({type(exc).__name__}: {exc})") from None
