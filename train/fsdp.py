"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the pretraining
loop: ``distributed = "fsdp"`` in the pretraining config, for models whose weights, gradients
and AdamW state do not fit one GPU next to their activations.

Each transformer block is sharded on its own, then the root (embedding, final norm, tied
head), so a forward or backward pass holds one block's full weights at a time: the block's
shards are all-gathered just before it runs and freed after. Gradients are reduce-scattered,
so each rank keeps 1/N of the gradients and of the optimizer state. On CUDA the all-gathered
weights are cast to bf16 (fp16) for compute while the sharded master weights, the gradient
reduction and the optimizer stay fp32.

The model is built on the meta device (shapes, no storage), sharded, and only then given
memory: each rank allocates its shards and nothing more (``build_sharded_model``). A fresh
run's weights come from ``model_init.initial_parameters``, which replays the constructor's random
draws in order, one full tensor at a time, so a rank's shard holds exactly the values it
would hold had the full model been built under the same seed and then sharded: FSDP starts
from the same weights as DDP and a single process, bit for bit. Host memory per rank is
therefore its 1/N of the weights plus the one tensor being drawn, not the whole model; every
rank still draws every tensor (the generator must advance the same way everywhere). A resumed
or ``--init-from`` run copies each rank's slice of the full tensors it loaded.

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
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import Checkpoint, model_tensors
from .model import GPT, GPTConfig
from .model_init import initial_parameters
from .runtime import DistContext
from .weights_file import LazyTensor, materialize


def _is_dtensor(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def shard_model(model: nn.Module, ctx: DistContext, compute_dtype: torch.dtype) -> nn.Module:
    """Shard ``model`` (a GPT on the meta device, the CPU or its device) across all ranks, in
    place.

    A model on the meta device stays there (``build_sharded_model`` then allocates the shards);
    one in host memory is moved to the process's device block by block as it is sharded, so
    no GPU ever holds the whole model at once.
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


def build_sharded_model(
    config: GPTConfig,
    ctx: DistContext,
    compute_dtype: torch.dtype,
    state: Mapping[str, torch.Tensor] | None = None,
) -> GPT:
    """A GPT sharded across all ranks whose full weights never exist on any one of them.

    Built on the meta device, sharded, then each rank's shards are allocated on its device
    and filled: from ``state`` (a full state dict: a checkpoint being resumed, --init-from)
    when given, else with the initial weights ``GPT(config)`` would get from torch's global
    generator in its current state (``initial_parameters``; the generator advances the same).
    """
    with torch.device("meta"):
        model = GPT(config)
    shard_model(model, ctx, compute_dtype)
    model.to_empty(device=ctx.device)
    model.reset_buffers()
    if state is None:
        fill_shards(model, initial_parameters(config))
    else:
        fill_shards(model, _checked_state(model, state))
    return model


def model_weights(ckpt: Checkpoint, config: GPTConfig) -> dict[str, Any]:
    """The weights of a checkpoint (loaded with ``lazy=True``) that a GPT of ``config`` has,
    for :func:`build_sharded_model`, checked as ``load_lm`` checks them (``model_tensors``)
    against the model's shapes on the meta device."""
    with torch.device("meta"):
        wanted = GPT(config).state_dict()
    return model_tensors(ckpt, wanted)


def _checked_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> Iterable[tuple[str, torch.Tensor]]:
    """``state``'s tensors, one per parameter, after checking it is exactly the model's (as
    ``load_state_dict(strict=True)`` would); a tied matrix may appear under both names."""
    names = set(model.state_dict())  # every name a tied matrix goes by, persistent buffers
    missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
    if missing or unexpected:
        raise RuntimeError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}")
    return ((name, state[name]) for name, _ in model.named_parameters())


def fill_shards(model: nn.Module, values: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Copy each (name, full tensor) into this rank's shard of the parameter of that name.

    Every parameter must be given exactly once. Only the rank's slice of each tensor is moved
    to the device, so a GPU never holds a full tensor either; a full tensor may be a
    :class:`~train.weights_file.LazyTensor`, of which only that slice is read.
    """
    params = dict(model.named_parameters())
    filled: set[str] = set()
    with torch.no_grad():
        for name, full in values:
            param = params[name]
            if tuple(full.shape) != tuple(param.shape):
                raise RuntimeError(f"{name}: shape {tuple(full.shape)}, the model expects {tuple(param.shape)}")
            if _is_dtensor(param):
                local = param.to_local()
                local.copy_(_local_slice(full, param))
            else:
                param.copy_(materialize(full))
            filled.add(name)
    if filled != set(params):
        raise RuntimeError(f"no values for {sorted(set(params) - filled)}")


def _local_slice(full: torch.Tensor | LazyTensor, param: Any) -> torch.Tensor:
    """This rank's part of ``full`` for a sharded parameter, on the parameter's device (of a
    :class:`~train.weights_file.LazyTensor`, only those rows are read)."""
    from torch.distributed.tensor import Shard, distribute_tensor

    local = param.to_local()
    placements = tuple(param.placements)
    if len(placements) == 1 and isinstance(placements[0], Shard) and placements[0].dim == 0:
        # FSDP2's even sharding of dim 0 (torch.chunk's): ceil(rows / N) rows per rank, the
        # last ranks short or empty.
        rows, ranks = full.shape[0], param.device_mesh.size()
        per_rank = -(-rows // ranks)
        start = min(per_rank * param.device_mesh.get_local_rank(), rows)
        part = full[start : start + per_rank]
        if part.shape == local.shape:
            return part.to(local.device)
    # Any other layout: let DTensor cut it (no communication; the full tensor goes to the device).
    full = materialize(full)
    return distribute_tensor(full.to(param.device), param.device_mesh, param.placements, src_data_rank=None).to_local()


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
    sharded parameters: each rank cuts its own shard out of it, with no communication (from
    a memory-mapped file, ``load_checkpoint(lazy=True)``, it reads only those rows)."""
    from torch.distributed.tensor import DTensor

    params = [p for group in optimizer.param_groups for p in group["params"]]
    sharded: dict[int, dict[str, Any]] = {}
    for index, entry in full_state["state"].items():
        param = params[int(index)]
        out = {}
        for key, value in entry.items():
            if _is_dtensor(param) and isinstance(value, torch.Tensor) and value.shape == param.shape:
                local = _local_slice(value, param).clone()  # its own memory, not the file's pages
                value = DTensor.from_local(
                    local,
                    param.device_mesh,
                    param.placements,
                    run_check=False,
                    shape=param.shape,
                    stride=param.stride(),
                )
            elif isinstance(value, torch.Tensor):
                value = value.clone()  # a step count: not a view that keeps the file mapped
            out[key] = value
        sharded[int(index)] = out
    optimizer.load_state_dict({"state": sharded, "param_groups": full_state["param_groups"]})
