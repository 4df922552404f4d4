"""Where and how a training process runs: device and precision (autocast), the CPU
allocator, seeding and the RNG state saved for exact resume, a clean stop on SIGINT/SIGTERM,
and the ``torch.distributed`` setup and collectives used when a run is launched with
``torchrun``. Shared by pretraining (``train/pretrain.py``) and the alignment stages.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import random
import signal
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

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


def all_reduce_min(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise minimum of a tensor over ranks (no-op in a single process)."""
    if ctx.distributed:
        import torch.distributed as dist

        values = values.to(ctx.device)
        dist.all_reduce(values, op=dist.ReduceOp.MIN)
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
