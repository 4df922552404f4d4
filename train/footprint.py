"""Will the model fit? The memory a model needs, estimated from its config before anything is
allocated, against the memory the machine has free.

A typo such as ``--set model.block_size=1000000000000`` would otherwise ask PyTorch for
terabytes of RoPE tables and die in the allocator (or in the kernel's OOM killer) with a
traceback. :func:`check_fits` turns it into one line naming the estimate and what is
available. The estimate is a lower bound (parameters, gradients and AdamW's two moments, the
tables sized by ``block_size``, and the activations of a single sequence), so it never refuses
a run that could have fitted; it only catches runs that cannot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from curate.core.errors import ConfigError

from .model import GPTConfig

FP32 = 4  # bytes: weights, gradients and optimizer state are kept in fp32


def param_count(cfg: GPTConfig) -> int:
    """Parameters of ``GPT(cfg)`` (a tied embedding counted once), from the config alone."""
    head_dim = cfg.n_embd // cfg.n_head
    qkv = cfg.n_embd * (cfg.n_head + 2 * cfg.n_kv_head) * head_dim
    block = qkv + cfg.n_embd * cfg.n_embd + 3 * cfg.n_embd * cfg.mlp_hidden
    norms = (2 * cfg.n_layer + 1) * cfg.n_embd if cfg.norm_weight else 0
    embeddings = cfg.vocab_size * cfg.n_embd * (1 if cfg.tie_embeddings else 2)
    return embeddings + cfg.n_layer * block + norms


@dataclass(frozen=True)
class Footprint:
    """The bytes a model needs: its fp32 weights, what training adds to them (gradients and
    AdamW's two moments), the RoPE tables, and one sequence's activations."""

    params: int
    weights: int
    optimizer: int
    tables: int
    activations: int

    def building(self, shards: int = 1) -> int:
        """Host memory for a process to build the model (made on the CPU, then moved; under
        FSDP built on the meta device, each process allocating only its ``shards``-th)."""
        return self.weights // shards + self.tables

    def training(self, shards: int = 1) -> int:
        """Device memory to train it; weights and optimizer state split over ``shards`` (FSDP)."""
        return (self.weights + self.optimizer) // shards + self.tables + self.activations


def footprint(cfg: GPTConfig, activation_bytes: int = FP32) -> Footprint:
    """Lower-bound memory of ``GPT(cfg)``; activations counted at ``activation_bytes`` per value."""
    params = param_count(cfg)
    head_dim = cfg.n_embd // cfg.n_head
    tables = 2 * cfg.block_size * (head_dim // 2) * FP32  # cos and sin, one row per position
    # Per position: what each layer keeps for the backward pass (its input, the attention
    # output, the SwiGLU gate and up projections) and the logits over the vocabulary.
    per_position = cfg.n_layer * (2 * cfg.n_embd + 2 * cfg.mlp_hidden) + cfg.vocab_size
    return Footprint(
        params=params,
        weights=params * FP32,
        optimizer=params * 3 * FP32,  # gradients and AdamW's two moments
        tables=tables,
        activations=cfg.block_size * per_position * activation_bytes,
    )


def _cgroup_free() -> int | None:
    """What the memory limit of this process's cgroup (v2) leaves, when there is one."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def host_available() -> int | None:
    """Bytes the host can still give this process: MemAvailable (or free pages where there is
    no /proc), capped by a container's memory limit; None when nothing says."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = None
    limited = _cgroup_free()
    if limited is not None:
        free = limited if free is None else min(free, limited)
    return free


def device_available(device: torch.device) -> int | None:
    """Free bytes on ``device``: the host's for the CPU, ``mem_get_info`` for a CUDA GPU."""
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except RuntimeError:
            return None
        return int(free)
    if device.type == "cpu":
        return host_available()
    return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_fits(
    cfg: GPTConfig, device: torch.device, *, train: bool = True, shards: int = 1, activation_bytes: int = FP32
) -> None:
    """ConfigError (one line) when the model cannot fit: building it needs host memory for its
    weights (split over ``shards``: FSDP builds on the meta device) and tables; training it
    (``train``) needs device memory for weights, optimizer state, tables and one sequence's
    activations (weights and state split over ``shards``).
    Where the free memory is unknown nothing is refused."""
    need = footprint(cfg, activation_bytes)
    checks = []
    if not (train and device.type == "cpu"):  # on the CPU, training needs more of the same memory
        checks.append(("the host", need.building(shards), host_available(), "to build it (weights, RoPE tables)"))
    if train:
        where = "the host" if device.type == "cpu" else str(device)
        why = "to train it (weights, gradients, AdamW state, RoPE tables, one sequence's activations)"
        checks.append((where, need.training(shards), device_available(device), why))
    for where, needed, free, why in checks:
        if free is not None and needed > free:
            raise ConfigError(
                f"the model (block_size {cfg.block_size:,}, {need.params:,} parameters) needs at least "
                f"{human_bytes(needed)} {why}, but {where} has {human_bytes(free)} available; "
                "lower model.block_size or choose a smaller model"
            )
