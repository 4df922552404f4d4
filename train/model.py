"""A decoder-only transformer (GPT) in plain PyTorch.

The architecture is the one most open models settled on after GPT-2: rotary position
embeddings (RoPE) instead of learned positions, RMSNorm before each sub-block (without
learned gains unless ``norm_weight``), a SwiGLU MLP,
optional grouped-query attention (fewer key/value heads than query heads, which shrinks the
KV cache), ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where the
device has them) and optionally tied input/output embeddings. The blocks live in layers.py;
their element-wise pieces (RMSNorm, the rotation, the SwiGLU gate) in kernels.py, with
backward passes written for fewer trips through memory.

Everything the trainer and the alignment stages need from a model is here:

* ``GPT.forward(idx, targets, attention_mask=..., loss_mask=...)`` -> (logits, loss);
* ``GPT.hidden_states(idx)`` for reward / value heads;
* ``GPT.generate(...)`` with a KV cache, batched over left-padded prompts;
* ``GPT.num_params()`` and ``GPT.flops_per_token()`` for MFU and cost estimates.

Padding convention: ``attention_mask`` is (B, T) with 1 for real tokens and 0 for padding.
Padding keys are never attended to, and each row's RoPE positions are counted from its first
real token, so a left-padded prompt sees exactly the positions it would see unpadded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import Block, KVCache, RMSNorm, rope_tables
from .model_init import INIT_STD, is_residual_projection, residual_init_std

IGNORE_INDEX = -100


@dataclass
class GPTConfig:
    vocab_size: int = 262  # the byte tokenizer's size; the trainer sets it from the tokenizer
    block_size: int = 128  # longest sequence the model is trained on
    n_layer: int = 2
    n_head: int = 4
    n_kv_head: int | None = None  # grouped-query attention; None = n_head (plain multi-head)
    n_embd: int = 128
    mlp_hidden: int | None = None  # SwiGLU hidden size; None = 8/3 * n_embd rounded up
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # Learned gains in the RMSNorms. Off by default, as in nanochat and modded-nanoGPT: before
    # a linear layer a gain can be folded into that layer's weights, and leaving it out saves a
    # third of the norm's memory passes (bench/train.py).
    norm_weight: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.mlp_hidden is None:
            # 8/3 keeps SwiGLU's three matrices at the parameter count of a 4x GELU MLP;
            # rounding to a multiple of 64 (32 for toy widths) keeps matmuls aligned.
            multiple = 64 if self.n_embd >= 256 else 32
            self.mlp_hidden = multiple * math.ceil(8 * self.n_embd / 3 / multiple)
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be at least 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"model.n_head ({self.n_head}) must be divisible by model.n_kv_head ({self.n_kv_head})")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError("model.n_embd / model.n_head must be even (RoPE rotates pairs of channels)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        """Build from a saved dict, ignoring keys a newer version may have added."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("norm_weight", True)  # saved before the option existed: norms had gains
        return cls(**values)


# Model sizes. vocab_size is left out: it always comes from the tokenizer.
PRESETS: dict[str, dict[str, Any]] = {
    # A few hundred steps in seconds on a laptop CPU: tests and smoke runs.
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, block_size=128),
    # GPT-2 small dimensions (~124M parameters with a 50k vocabulary).
    "small": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    # GPT-2 medium dimensions (~350M).
    "medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
    # TinyLlama-1.1B shape: deep-and-narrow with 4 KV heads (GQA) for a small KV cache.
    "1b": dict(n_layer=22, n_head=32, n_kv_head=4, n_embd=2048, mlp_hidden=5632, block_size=2048),
}


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        # Identity when dropout is off: nn.Dropout(0.0) still runs a kernel per call in training.
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = RMSNorm(config.n_embd, config.norm_eps, config.norm_weight)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # One matrix both embeds tokens and scores them: fewer parameters, and the
            # checkpoint code stores it once.
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(config.head_dim, config.block_size, config.rope_theta)
        # Not persistent: derived from the config, so checkpoints don't carry them.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        # Every random draw below is mirrored, in the same order, by initial_parameters (the
        # meta-device initialization of train/fsdp.py): change one, change the other.
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual branch's output projection gets std / sqrt(2L), so
        # the residual stream's variance does not grow with depth.
        for name, param in self.named_parameters():
            if is_residual_projection(name):
                nn.init.normal_(param, mean=0.0, std=residual_init_std(config))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def reset_buffers(self) -> None:
        """Recompute the RoPE tables in place (after ``to_empty`` left them uninitialized)."""
        cos, sin = rope_tables(self.config.head_dim, self.config.block_size, self.config.rope_theta)
        with torch.no_grad():
            self.rope_cos.copy_(cos)
            self.rope_sin.copy_(sin)

    # ----------------------------------------------------------------------------- sizes

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, counting a tied embedding once; ``non_embedding`` drops the token
        embedding (the usual count in scaling-law papers)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied matrix once
        if non_embedding:
            n -= self.tok_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix:
        6 per matmul weight, plus 12 * layers * width * context for attention scores/values.
        The embedding lookup is not a matmul; the output projection is (tied or not)."""
        cfg = self.config
        T = seq_len or cfg.block_size
        matmul_params = self.num_params(non_embedding=True) + cfg.vocab_size * cfg.n_embd
        return 6.0 * matmul_params + 12.0 * cfg.n_layer * cfg.n_embd * T

    # ----------------------------------------------------------------------------- forward

    def _rope_for(self, positions: torch.Tensor | None, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for the positions: (T, 1, D/2) each, or (B, T, 1, D/2) per row."""
        cos, sin = self.rope_cos, self.rope_sin
        if positions is None:
            return cos[:T].unsqueeze(1), sin[:T].unsqueeze(1)
        # Positions past the precomputed table only happen in long generation; compute them.
        if int(positions.max()) >= cos.shape[0]:
            cos, sin = rope_tables(
                self.config.head_dim, int(positions.max()) + 1, self.config.rope_theta, positions.device
            )
        return cos[positions].unsqueeze(2), sin[positions].unsqueeze(2)

    @staticmethod
    def _padding_mask(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions and a boolean (B, 1, T, T) attention mask for a padded batch."""
        valid = attention_mask.bool()
        T = valid.shape[1]
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
        allowed = causal & valid[:, None, :]
        # A padding query has no valid key; letting it see itself keeps softmax finite (its
        # output is never used).
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=valid.device)
        return positions, allowed.unsqueeze(1)

    def _trunk(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-normed hidden states (B, T, C)."""
        _B, T = idx.shape
        mask = None
        if cache is None and self.config.block_size < T:
            raise ValueError(f"sequence length {T} exceeds the model's block_size {self.config.block_size}")
        if cache is not None:
            # Prefill or decode step: positions and key validity come from the caller/cache.
            start = cache.length
            if start + T > cache.capacity:
                raise ValueError(f"KV cache full ({cache.capacity} positions)")
            cache.valid[:, start : start + T] = attention_mask.bool() if attention_mask is not None else True
            keys_valid = cache.valid[:, : start + T]
            q_pos = torch.arange(start, start + T, device=idx.device)
            k_pos = torch.arange(start + T, device=idx.device)
            allowed = (k_pos[None, :] <= q_pos[:, None])[None] & keys_valid[:, None, :]
            allowed = allowed | (k_pos[None, :] == q_pos[:, None])[None]
            mask = allowed.unsqueeze(1)
            if positions is None:
                positions = (cache.valid[:, : start + T].long().cumsum(-1) - 1).clamp(min=0)[:, start:]
        elif attention_mask is not None and not bool(attention_mask.all()):
            positions, mask = self._padding_mask(attention_mask)
        rope = self._rope_for(positions, T)
        x = self.drop(self.tok_emb(idx))
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, cache, i)
        if cache is not None:
            cache.length += T
        return self.norm_f(x)

    def hidden_states(self, idx: torch.Tensor, *, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-normed hidden states (B, T, n_embd), before the LM head (reward/value heads)."""
        return self._trunk(idx, attention_mask)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, given targets (-100 = ignore), the mean cross-entropy over
        the targets that count (``loss_mask`` 0 drops a position too)."""
        logits = self.lm_head(self._trunk(idx, attention_mask))
        if targets is None:
            return logits, None
        if loss_mask is not None:
            targets = targets.masked_fill(~loss_mask.bool(), IGNORE_INDEX)
        targets = targets.reshape(-1)
        total = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        # Sum / count rather than reduction="mean": a batch with no target at all gives 0 (with
        # a graph) instead of NaN, and the count needs no host sync (a stall on GPU).
        count = (targets != IGNORE_INDEX).sum().clamp(min=1)
        return logits, total / count

    # ----------------------------------------------------------------------------- sampling

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        generator: torch.Generator | None = None,
        attention_mask: torch.Tensor | None = None,
        pad_id: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Continue each row of ``idx`` (B, T) by up to ``max_new_tokens`` tokens.

        ``temperature`` 0 is greedy. Prompts of different lengths are left-padded, with
        ``attention_mask`` marking real tokens. A row that emits ``eos_id`` stops, and is
        filled with ``pad_id`` (default: ``eos_id``) until every row is done or the budget
        is spent. Pass a seeded ``generator`` for reproducible samples.
        """
        was_training = self.training
        self.eval()
        try:
            return self._generate(
                idx, max_new_tokens, temperature, top_k, top_p, eos_id, generator, attention_mask, pad_id, use_cache
            )
        finally:
            self.train(was_training)

    def _generate(
        self, idx, max_new_tokens, temperature, top_k, top_p, eos_id, generator, attention_mask, pad_id, use_cache
    ):
        B, T = idx.shape
        device = idx.device
        block = self.config.block_size
        mask = (
            attention_mask.to(device=device, dtype=torch.long) if attention_mask is not None else torch.ones_like(idx)
        )
        fill = pad_id if pad_id is not None else eos_id
        done = torch.zeros(B, dtype=torch.bool, device=device)
        out, out_mask = idx, mask
        # The cache holds the prompt plus the continuation while that fits in the context the
        # model was trained on; past that, fall back to re-running the last block_size tokens.
        cache = None
        if use_cache and block > T:
            capacity = min(block, T + max_new_tokens)
            dtype = self.tok_emb.weight.dtype
            if device.type == "cuda" and torch.is_autocast_enabled("cuda"):
                dtype = torch.get_autocast_dtype("cuda")  # match the k/v the projections produce
            cache = KVCache(self.config, B, capacity, device, dtype)
        for step in range(max_new_tokens):
            if cache is not None and cache.length + (1 if step else T) <= cache.capacity:
                if step == 0:
                    hidden = self._trunk(out, mask, cache)
                else:
                    hidden = self._trunk(out[:, -1:], out_mask[:, -1:], cache)
            else:
                cache = None
                window, window_mask = out[:, -block:], out_mask[:, -block:]
                hidden = self._trunk(window, window_mask)
            logits = self.lm_head(hidden[:, -1, :]).float()
            next_id = sample_next(logits, temperature, top_k, top_p, generator)
            if eos_id is not None:
                if fill is not None:
                    next_id = torch.where(done, torch.full_like(next_id, fill), next_id)
                done = done | (next_id == eos_id)
            out = torch.cat([out, next_id[:, None]], dim=1)
            # Tokens after a row stopped are padding: no later token attends to them.
            out_mask = torch.cat([out_mask, (~done | (next_id == eos_id)).long()[:, None]], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return out


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row from (B, vocab) logits: greedy at temperature 0, else softmax
    sampling restricted to the top-k ids and/or the smallest set holding top-p probability."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already hold top_p; the best one stays.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
