"""The transformer's building blocks: rotary position tables, RMSNorm, the KV cache used in
generation, causal self-attention (grouped-query when ``n_kv_head < n_head``), the SwiGLU MLP
and the pre-norm residual block that stacks them. train/model.py assembles them into
:class:`~train.model.GPT`; the element-wise kernels they call live in train/kernels.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import rms_norm, rotary_qkv, swiglu

if TYPE_CHECKING:  # annotations only: model.py imports this module
    from .model import GPTConfig


def rope_tables(
    head_dim: int, length: int, theta: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each (position, frequency) pair: (length, head_dim/2), float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


class RMSNorm(nn.Module):
    """x / rms(x), times a learned gain vector when ``weight`` is true: LayerNorm without
    centring or bias; cheaper and as good."""

    def __init__(self, dim: int, eps: float, weight: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class KVCache:
    """Pre-allocated keys and values for every layer, filled as generation proceeds.

    ``valid`` (B, capacity) marks which cached positions are real tokens (not left padding),
    so decoding steps can mask padding keys without re-reading the prompt.
    """

    def __init__(self, config: GPTConfig, batch: int, capacity: int, device: torch.device, dtype: torch.dtype):
        shape = (batch, config.n_kv_head, capacity, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.capacity = capacity
        self.length = 0  # positions filled so far (the same for every row)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.head_dim
        # One fused projection for q, k and v: one matmul instead of three.
        self.qkv = nn.Linear(config.n_embd, (config.n_head + 2 * config.n_kv_head) * config.head_dim, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, C = x.shape
        H, KV = self.n_head, self.n_kv_head
        q, k, v = rotary_qkv(self.qkv(x).view(B, T, H + 2 * KV, self.head_dim), *rope, H, KV)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            start = cache.length
            cache.k[layer][:, :, start : start + T] = k
            cache.v[layer][:, :, start : start + T] = v
            k = cache.k[layer][:, :, : start + T]
            v = cache.v[layer][:, :, : start + T]
        if self.n_kv_head != self.n_head:
            # Each group of query heads shares one key/value head.
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
        dropout = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class SwiGLU(nn.Module):
    """silu(x W_gate) * (x W_up), projected back: the gated MLP of PaLM / LLaMA."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        # Two matmuls rather than one fused and split: the split halves are strided views, which
        # make the element-wise silu/multiply (and the backward's concatenation) measurably
        # slower than the matmul saved (see bench/train.py).
        self.gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.up = nn.Linear(config.n_embd, config.mlp_hidden, bias=False)
        self.down = nn.Linear(config.mlp_hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(swiglu(self.gate(x), self.up(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps, config.norm_weight)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps, config.norm_weight)
        self.mlp = SwiGLU(config)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x, rope, mask, cache=None, layer=0):
        x = x + self.drop(self.attn(self.attn_norm(x), rope, mask, cache, layer))
        return x + self.drop(self.mlp(self.mlp_norm(x)))
