"""How a :class:`~train.model.GPT` is initialized: GPT-2's normal draws (``INIT_STD``), the
smaller std of each residual branch's output projection, and :func:`initial_parameters`, which
replays the constructor's draws one tensor at a time so that a model built on the meta device
(train/fsdp.py) gets the very weights ``GPT(config)`` would have, without ever holding them
all."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .model import GPTConfig

INIT_STD = 0.02  # the weights' initial standard deviation (GPT-2's)


def residual_init_std(config: GPTConfig) -> float:
    """The smaller std of each residual branch's output projection: INIT_STD / sqrt(2L)."""
    return INIT_STD / math.sqrt(2 * config.n_layer)


def is_residual_projection(name: str) -> bool:
    return name.endswith("attn.proj.weight") or name.endswith("mlp.down.weight")


def initial_parameters(config: GPTConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full CPU tensor) for each parameter of ``GPT(config)``, with the value its
    constructor gives it, one tensor at a time.

    The draws come from torch's global generator exactly as the constructor makes them: the
    same sizes, in the same order, including the module constructors' own initialization that
    ``GPT.__init__`` later overwrites (and the untied ``lm_head`` matrix that tying discards).
    After the same ``torch.manual_seed`` the values therefore equal ``GPT(config)``'s bit for
    bit, and the generator ends in the same state. A model built on the meta device takes its
    weights from here (train/fsdp.py): each rank keeps its shard of each tensor and drops the
    rest, so it never holds more than the tensor being drawn beyond its shards. Names are
    those of ``named_parameters()`` (a tied matrix once, as ``tok_emb.weight``).
    """
    dtype = torch.get_default_dtype()
    C, V = config.n_embd, config.vocab_size
    qkv = (config.n_head + 2 * config.n_kv_head) * config.head_dim
    linears: list[tuple[str, tuple[int, int]]] = []  # each block's Linear weights, built in this order
    for i in range(config.n_layer):
        linears += [
            (f"blocks.{i}.attn.qkv.weight", (qkv, C)),
            (f"blocks.{i}.attn.proj.weight", (C, C)),
            (f"blocks.{i}.mlp.gate.weight", (config.mlp_hidden, C)),
            (f"blocks.{i}.mlp.up.weight", (config.mlp_hidden, C)),
            (f"blocks.{i}.mlp.down.weight", (C, config.mlp_hidden)),
        ]

    def normal(shape: tuple[int, int], std: float) -> torch.Tensor:
        return nn.init.normal_(torch.empty(shape, dtype=dtype), mean=0.0, std=std)

    def linear_default(shape: tuple[int, int]) -> None:
        nn.init.kaiming_uniform_(torch.empty(shape, dtype=dtype), a=math.sqrt(5))  # nn.Linear's own

    # 1. The modules' constructors: nn.Embedding draws N(0, 1), each nn.Linear its default.
    normal((V, C), 1.0)
    for _, shape in linears:
        linear_default(shape)
    linear_default((V, C))  # lm_head
    # 2. self.apply(_init_weights): children before parents, in registration order.
    embedding = normal((V, C), INIT_STD)
    if not config.tie_embeddings:
        yield "tok_emb.weight", embedding
    del embedding
    for name, shape in linears:
        weight = normal(shape, INIT_STD)
        if not is_residual_projection(name):
            yield name, weight
        del weight
    # lm_head comes last; tied, it is the embedding matrix, drawn again.
    yield ("tok_emb.weight" if config.tie_embeddings else "lm_head.weight"), normal((V, C), INIT_STD)
    # 3. The residual projections' smaller std, in named_parameters() order.
    for name, shape in linears:
        if is_residual_projection(name):
            yield name, normal(shape, residual_init_std(config))
    if config.norm_weight:
        for i in range(config.n_layer):
            yield f"blocks.{i}.attn_norm.weight", torch.ones(C, dtype=dtype)
            yield f"blocks.{i}.mlp_norm.weight", torch.ones(C, dtype=dtype)
        yield "norm_f.weight", torch.ones(C, dtype=dtype)
