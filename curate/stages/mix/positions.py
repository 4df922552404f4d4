"""The driver's per-position arrays of a ``curate mix`` run (token counts, the sampling order,
the partial-epoch flags) in files of a temporary directory, memory-mapped: what is touched stays
in page cache, not in the driver's heap, so its memory does not grow with the corpus (13 bytes
a position of local disk instead: about 39 GB for 3 billion documents; ``TMPDIR`` says where).

:class:`Positions` makes the arrays; :func:`chunked` walks one a bounded slice at a time.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CHUNK = 1 << 16  # positions handled at once by the chunked passes over the arrays (~40 bytes each)


class Positions:
    """Per-position arrays of one run, each a file of a temporary directory removed by
    :meth:`close`. ``Positions(None)`` keeps them in memory (tests, tiny runs)."""

    def __init__(self, directory: str | None = "", prefix: str = "curate-mix-"):
        self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir=directory or None)) if directory is not None else None
        self._count = 0

    def array(self, name: str, dtype: str | np.dtype, n: int, fill: int | None = 0) -> np.ndarray:
        """A new array of ``n`` values (zero, unless ``fill`` is another value or None)."""
        if self.directory is None:
            return np.full(n, fill, dtype=dtype) if fill is not None else np.empty(n, dtype=dtype)
        self._count += 1
        path = self.directory / f"{self._count:04d}-{name}.bin"
        arr = np.memmap(path, dtype=dtype, mode="w+", shape=(max(n, 1),))[:n]  # a new file reads as zeros
        if fill:
            for lo, hi in chunked(n):
                arr[lo:hi] = fill
        return arr

    def writer(self, name: str, dtype: str | np.dtype) -> ArrayWriter:
        """An array appended to piece by piece (its length unknown until the end)."""
        return ArrayWriter(self, name, np.dtype(dtype))

    def close(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


class ArrayWriter:
    """Appends pieces to a file and maps it when done (in memory: concatenates them)."""

    def __init__(self, positions: Positions, name: str, dtype: np.dtype):
        self.positions, self.name, self.dtype = positions, name, dtype
        self.n = 0
        self._pieces: list[np.ndarray] = []
        self._path: Path | None = None
        self._fh = None
        if positions.directory is not None:
            positions._count += 1
            self._path = positions.directory / f"{positions._count:04d}-{name}.bin"
            self._fh = open(self._path, "wb")

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.n += len(values)
        if self._fh is None:
            self._pieces.append(values)
        else:
            self._fh.write(values.tobytes())

    def finish(self) -> np.ndarray:
        if self._fh is None:
            return np.concatenate(self._pieces) if self._pieces else np.zeros(0, self.dtype)
        self._fh.close()
        if self.n == 0:
            return np.zeros(0, self.dtype)
        return np.memmap(self._path, dtype=self.dtype, mode="r", shape=(self.n,))


def chunked(n: int, chunk: int | None = None) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` slices covering ``0 .. n`` at most ``chunk`` (:data:`CHUNK`) long."""
    chunk = chunk or CHUNK
    for lo in range(0, n, chunk):
        yield lo, min(n, lo + chunk)
