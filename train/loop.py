"""Pieces every training loop shares: device and precision, seeding and RNG state, the
learning-rate schedule, AdamW, gradient clipping, metrics logging, peak FLOPs for MFU, and
the ``torch.distributed`` setup used when a run is launched with ``torchrun``.

The pretraining loop (``train/pretrain.py``) and the alignment stages (SFT, reward, RLHF,
DPO) import these instead of growing their own copies.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from curate.core.errors import ConfigError

# ------------------------------------------------------------------------------- device


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> the process's CUDA device when there is one (``cuda:LOCAL_RANK``), else CPU."""
    if name in ("auto", "", None):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"process {local_rank} has no GPU: {torch.cuda.device_count()} visible; "
                "start at most one process per GPU"
            )
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Compute dtype: ``auto`` is bf16 on CUDA (where supported) and fp32 elsewhere."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in table:
        raise ConfigError(f"unknown dtype {name!r}; known: auto, {', '.join(table)}")
    return table[name]


def autocast_context(device: torch.device, dtype: torch.dtype | str = "auto"):
    """Mixed precision for forward passes: autocast to bf16/fp16 on CUDA; nothing on CPU,
    where fp32 is both the fastest and the reproducible choice. Weights stay fp32."""
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype, device)
    if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the OS.

    glibc serves blocks above its mmap threshold (128 KiB to start) with fresh mmaps and
    unmaps them on free, so each CPU training step page-faults all of its activations back
    in: on a busy machine that costs more than the arithmetic of a small model. Raising the
    mmap and trim thresholds (to glibc's 32 MiB maximum) lets the heap reuse them. A no-op
    on other C libraries; returns whether it applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    ok = bool(mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024))
    _ALLOCATOR_TUNED = ok
    return ok


# ------------------------------------------------------------------------------- seeding


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from, in a form ``torch.load(weights_only=True)``
    accepts (tensors, lists, ints): saved in checkpoints for exact resume."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device's generator
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------- optimisation


def lr_at(step: int, *, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Linear warmup over ``warmup_steps`` then cosine decay to ``min_lr`` at ``max_steps``
    (``step`` counts from 0; constant ``min_lr`` after ``max_steps``)."""
    if warmup_steps > 0 and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    span = max(1, max_steps - warmup_steps)
    progress = (step - warmup_steps) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    device: torch.device | None = None,
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norm gains, biases, 1-D params):
    decaying a gain towards 0 fights the normalisation instead of regularising."""
    decay, no_decay = [], []
    for param in model.parameters():  # yields a tied matrix once
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused implementation (CUDA and, since torch 2.4, CPU) updates each parameter in one
    # kernel; PyTorch's CPU default is a Python loop of ~10 ops per parameter, which costs a
    # small model a noticeable share of its step. Fall back where a device lacks it.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to ``max_norm`` (0 = no clipping); returns the norm
    before clipping (a loss spike usually shows here first) as a 0-d tensor on the device:
    reading it (``float``) waits for the GPU, so callers do that only when they log."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    if max_norm and max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0)


# ------------------------------------------------------------------------------- peak FLOPs

# Dense bf16 tensor-core peak per GPU (no sparsity), from the vendors' data sheets. Used for
# MFU (model FLOPs utilisation) in training logs and for `curate train estimate`.
GPU_PEAK_FLOPS: dict[str, float] = {
    "b200": 2250e12,
    "h200": 989e12,
    "h100": 989e12,  # SXM
    "h100-pcie": 756e12,
    "gh200": 989e12,
    "a100": 312e12,
    "l40s": 362e12,
    "l4": 121e12,
    "a10": 125e12,
    "rtx4090": 165e12,
    "rtx3090": 71e12,
    "v100": 125e12,  # fp16: V100 has no bf16
    "mi300x": 1307e12,
    "mi250x": 383e12,
}


# How CUDA device names map onto the table, most specific first ("l40s" before "l4",
# "a100" before "a10"); names are compared lower-cased with spaces removed.
_NAME_PATTERNS: list[tuple[str, str]] = [
    ("b200", "b200"),
    ("gh200", "gh200"),
    ("h200", "h200"),
    ("h100pcie", "h100-pcie"),
    ("h100", "h100"),
    ("a100", "a100"),
    ("l40s", "l40s"),
    ("l4", "l4"),
    ("a10g", ""),
    ("a10", "a10"),
    ("4090", "rtx4090"),
    ("3090", "rtx3090"),
    ("v100", "v100"),
    ("mi300x", "mi300x"),
    ("mi250x", "mi250x"),
]


def peak_flops_for_name(device_name: str) -> float | None:
    """Peak FLOPs for a CUDA device name such as 'NVIDIA H100 80GB HBM3'; None if unknown."""
    name = device_name.lower().replace(" ", "")
    for pattern, key in _NAME_PATTERNS:
        if pattern in name:
            return GPU_PEAK_FLOPS.get(key)
    return None


def device_peak_flops(device: torch.device) -> float | None:
    """Peak bf16 FLOPs of ``device``; None on CPU or unknown GPUs (MFU is then not logged)."""
    if device.type != "cuda":
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device))


# ------------------------------------------------------------------------------- metrics


class MetricsLogger:
    """One JSON object per line in ``path`` (flushed per line, so `tail -f` works and a killed
    run keeps what it logged), and optionally TensorBoard scalars when it is installed."""

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._fh = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: tensorboard is not a dependency
                self._tb = None
            else:
                self._tb = SummaryWriter(str(tensorboard_dir))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **record}
        self._fh.write(json.dumps(record, sort_keys=False, default=_json_default) + "\n")
        self._fh.flush()
        if self._tb is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def truncate_metrics(path: str | os.PathLike, after_step: int) -> None:
    """Drop log lines for steps after ``after_step``: a run killed after its last checkpoint
    logged steps that the resumed run will log again."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if int(record.get("step", 0)) <= after_step:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


# ------------------------------------------------------------------------------- stopping


class StopRequest:
    """``requested`` turns true on SIGINT/SIGTERM, so a loop can finish its step, write a
    checkpoint and stop cleanly (a preempted cluster job, Ctrl-C). A second SIGINT interrupts
    at once. Handlers are installed only in the main thread and restored on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes: equal on all ranks while DDP is in sync."""
    h = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(param.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------- distributed


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1): gloo on CPU,
    nccl on CUDA; otherwise a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name, local_rank)
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            kwargs: dict[str, Any] = {"backend": backend, "timeout": _dt.timedelta(minutes=30)}
            if device.type == "cuda":
                kwargs["device_id"] = device
            dist.init_process_group(**kwargs)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown_distributed(synchronize: bool = False) -> None:
    """Leave the process group. ``synchronize`` (only after a run that ended normally on every
    rank: a rank that failed would never arrive) waits for all ranks first.

    Wrappers such as DistributedDataParallel sit in reference cycles and may still be alive
    here; destroying the gloo group under them aborted the process now and then ("terminate
    called without an active exception"), so they are collected first.
    """
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (no-op in a single process)."""
    if ctx.distributed:
        import torch.distributed as dist

        values = values.to(ctx.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank ([obj] in a single process)."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()
