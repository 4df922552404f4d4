"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the pretraining
loop: ``distributed = "fsdp"`` in the pretraining config, for models whose weights, gradients
and AdamW state do not fit one GPU next to their activations.

Each transformer block is sharded on its own, then the root (embedding, final norm, tied
head), so a forward or backward pass holds one block's full weights at a time: the block's
shards are all-gathered just before it runs and freed after. Gradients are reduce-scattered,
so each rank keeps 1/N of the gradients and of the optimizer state. On CUDA the all-gathered
weights are cast to bf16 (fp16) for compute while the sharded master weights, the gradient
reduction and the optimizer stay fp32.

Checkpoints keep the single-file format of every other run (train/checkpoint.py): the full
weights are gathered one tensor at a time into rank 0's host memory for ``model.safetensors``,
and the optimizer state is gathered the same way into a full ``optimizer.pt`` keyed exactly
like a single-process ``optimizer.state_dict()``. The files are therefore the same whether a
run used one process, DDP or FSDP; ``curate generate``, SFT and the other stages read them
unchanged, and a run can resume under either strategy (with the same number of processes,
which the data positions need). Loading re-shards on every rank from its own full copy,
without communication.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn as nn

from .runtime import DistContext


def _is_dtensor(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def shard_model(model: nn.Module, ctx: DistContext, compute_dtype: torch.dtype) -> nn.Module:
    """Shard ``model`` (a GPT, on the CPU or its device) across all ranks, in place.

    The model may live in host memory when this is called: ``fully_shard`` moves each block to
    the process's device as it shards it, so no GPU ever holds the whole model at once.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    policy = MixedPrecisionPolicy()
    if ctx.device.type == "cuda" and compute_dtype in (torch.bfloat16, torch.float16):
        # Low-precision all-gathers and matmuls; gradients are reduced (and kept) in fp32.
        policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    # The root keeps its parameters unsharded after forward: its last user (the tied head)
    # runs first in backward, so freeing them would only all-gather them straight back.
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    return model


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Global gradient norm over the sharded gradients (clipped to ``max_norm`` unless 0).

    The norm is a DTensor with a pending sum over ranks; ``full_tensor`` completes it so every
    rank clips with the same coefficient. Returned as a 0-d tensor, like loop.clip_gradients.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if _is_dtensor(total):
        total = total.full_tensor()
    if max_norm and max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_([p for p in model.parameters() if p.grad is not None], max_norm, total)
    return total


def _full(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a shard (a collective: every rank must call it in the same order)."""
    return value.full_tensor() if _is_dtensor(value) else value


def gather_model_state(model: nn.Module, ctx: DistContext) -> tuple[dict[str, torch.Tensor], str]:
    """(full state dict on rank 0's CPU, {} elsewhere; sha256 of the full weights on every rank).

    Tensors are gathered one at a time, so a rank other than 0 holds at most one full tensor
    (and a tied matrix). A tied matrix is gathered once and appears under both names sharing
    one CPU tensor, which ``save_checkpoint`` then stores once. The digest is computed as ``weights_digest`` computes
    it for an unsharded model, so it can be compared with a DDP run's.
    """
    state = model.state_dict()
    # FSDP's state dict hands out a separate DTensor per name, even for one tied Parameter:
    # find aliases through the module's own parameters instead.
    canonical: dict[str, str] = {}
    first_name: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        canonical[name] = first_name.setdefault(id(param), name)
    shared = {source for name, source in canonical.items() if name != source}
    cache: dict[str, torch.Tensor] = {}  # full tensors that another name will reuse
    out: dict[str, torch.Tensor] = {}
    digest = hashlib.sha256()
    for name in sorted(state):
        source = canonical.get(name, name)
        full = cache.get(source)
        if full is None:
            full = _full(state[source]).detach().to("cpu")
            if source in shared:
                cache[source] = full
        digest.update(name.encode())
        digest.update(full.contiguous().view(torch.uint8).numpy().tobytes())
        if ctx.is_main:
            out[name] = full
    # The module's own order: checkpoint code keeps the first of two aliases (tok_emb.weight).
    out = {name: out[name] for name in state if name in out}
    return out, digest.hexdigest()


def gather_optimizer_state(optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict[str, Any] | None:
    """The optimizer's full state on rank 0 (None elsewhere), in ``Optimizer.state_dict()``'s
    own format: parameters numbered in param-group order, each sharded moment replaced by the
    whole tensor on the CPU."""
    state = optimizer.state_dict()
    full_state: dict[int, dict[str, Any]] = {}
    for index in sorted(state["state"]):
        entry = {}
        for key, value in state["state"][index].items():  # the same key order on every rank
            if isinstance(value, torch.Tensor):
                value = _full(value).detach().to("cpu")
            entry[key] = value
        if ctx.is_main:
            full_state[index] = entry
    if not ctx.is_main:
        return None
    return {"state": full_state, "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, full_state: dict[str, Any]) -> None:
    """Load a full optimizer state (any strategy's ``optimizer.pt``) into an optimizer over
    sharded parameters: each rank cuts its own shard out of its copy, with no communication."""
    from torch.distributed.tensor import distribute_tensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded: dict[int, dict[str, Any]] = {}
    for index, entry in full_state["state"].items():
        param = params[int(index)]
        out = {}
        for key, value in entry.items():
            if _is_dtensor(param) and isinstance(value, torch.Tensor) and value.shape == param.shape:
                value = distribute_tensor(
                    value.to(param.device), param.device_mesh, param.placements, src_data_rank=None
                )
            out[key] = value
        sharded[int(index)] = out
    optimizer.load_state_dict({"state": sharded, "param_groups": full_state["param_groups"]})
