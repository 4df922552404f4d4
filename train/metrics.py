"""Training metrics: the JSONL log every run writes (optionally mirrored to TensorBoard),
reading it back and cutting it at a resume step, and the GPUs' peak FLOPs behind the MFU
(model FLOPs utilisation) figure in logs and in ``curate train estimate``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.core.errors import InputError
from curate.core.files import iter_jsonl

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
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for number, record, problem in iter_jsonl(lines, objects_only=True):
        if problem is not None:
            continue  # a line cut short by a kill
        if int(record.get("step", 0)) <= after_step:
            kept.append(lines[number - 1])  # the line as written, not re-serialised
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The records of a metrics log, in order; a line that is not a JSON object is an InputError."""
    with open(path, encoding="utf-8") as fh:
        for number, record, problem in iter_jsonl(fh, objects_only=True):
            if problem is not None:
                raise InputError(f"{path}:{number}: {problem}")
            yield record
