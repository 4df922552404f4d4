"""A checkpoint's ``model.safetensors`` read a piece at a time, for ranks that hold shards.

:class:`WeightsFile` parses the safetensors header once and then reads any tensor, or any run
of rows of one, with plain file reads: no memory map, so a process's resident memory grows by
what it read and nothing more (the page cache is the kernel's, shared by the ranks of a node).
:class:`LazyTensor` stands for one tensor of the file in a state dict: it has the tensor's
``shape`` and ``dtype``, slicing its first dimension reads just those rows, and :meth:`full`
reads it whole. ``train.fsdp.fill_shards`` takes such a state dict, so a resumed (or
``--init-from``) FSDP rank reads its own rows of each matrix, never the whole model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from curate.core.errors import InputError

# safetensors' dtype names -> torch dtypes (the file is little-endian, as torch is here).
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "C64": torch.complex64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit


class WeightsFile:
    """The tensors of one safetensors file, read on demand (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                if not 0 < size <= MAX_HEADER_BYTES:
                    raise ValueError(f"header length {size}")
                header = json.loads(fh.read(size))
                if not isinstance(header, dict):
                    raise ValueError("the header is not a JSON object")
            file_size = self.path.stat().st_size
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: unreadable weights ({exc})") from None
        self.data_start = 8 + size
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype = DTYPES[entry["dtype"]]
                shape = tuple(int(d) for d in entry["shape"])
                begin, end = (int(x) for x in entry["data_offsets"])
                if any(d < 0 for d in shape):
                    raise ValueError(shape)
            except KeyError:
                dtype_name = entry.get("dtype") if isinstance(entry, dict) else None
                raise InputError(
                    f"{self.path}: unreadable weights ({name!r}: dtype {dtype_name!r} unknown or entry incomplete)"
                ) from None
            except (AttributeError, TypeError, ValueError):
                raise InputError(f"{self.path}: unreadable weights (bad header entry for {name!r})") from None
            nbytes = math.prod(shape) * dtype.itemsize
            if end - begin != nbytes or begin < 0 or self.data_start + end > file_size:
                raise InputError(f"{self.path}: unreadable weights ({name!r} lies outside the file; truncated?)")
            self.entries[name] = (dtype, shape, begin, end)

    def keys(self) -> list[str]:
        return list(self.entries)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of the named tensor's first dimension (a 0-d tensor: itself)."""
        dtype, shape, begin, _ = self.entries[name]
        if not shape:
            start, stop, row_elems, out_shape = 0, 1, 1, ()
        else:
            start, stop = max(0, min(start, shape[0])), max(0, min(stop, shape[0]))
            stop = max(start, stop)
            row_elems = math.prod(shape[1:])
            out_shape = (stop - start, *shape[1:])
        nbytes = (stop - start) * row_elems * dtype.itemsize
        buf = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            with open(self.path, "rb") as fh:
                fh.seek(self.data_start + begin + start * row_elems * dtype.itemsize)
                if fh.readinto(memoryview(buf.numpy())) != nbytes:
                    raise InputError(f"{self.path}: unreadable weights ({name!r} is cut short)")
        return buf.view(dtype).reshape(out_shape)

    def tensor(self, name: str) -> torch.Tensor:
        shape = self.entries[name][1]
        return self.rows(name, 0, shape[0] if shape else 1)

    def lazy_state(self) -> dict[str, LazyTensor]:
        return {name: LazyTensor(self, name) for name in self.entries}

    def first_non_finite(self) -> str | None:
        """The first floating-point tensor holding NaN or inf (read one tensor at a time)."""
        for name, (dtype, _, _, _) in self.entries.items():
            if dtype.is_floating_point and not bool(torch.isfinite(self.tensor(name)).all()):
                return name
        return None


class LazyTensor:
    """One tensor of a :class:`WeightsFile`, read when sliced (first dimension) or :meth:`full`."""

    def __init__(self, file: WeightsFile, name: str):
        self.file, self.name = file, name
        self.dtype = file.entries[name][0]
        self.shape = torch.Size(file.entries[name][1])

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1) or not self.shape:
            return self.full()[index]
        start, stop, _ = index.indices(self.shape[0])
        return self.file.rows(self.name, start, stop)

    def full(self) -> torch.Tensor:
        return self.file.tensor(self.name)

    def __repr__(self) -> str:
        return f"LazyTensor({self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype})"


def materialize(value: torch.Tensor | LazyTensor) -> torch.Tensor:
    """The tensor itself, read whole if it is a :class:`LazyTensor`."""
    return value.full() if isinstance(value, LazyTensor) else value
