"""On-disk structures of ``curate dedup``'s exact verification (:mod:`curate.stages.dedup.exact`):
the shingle sets of the documents in candidate pairs, one flat file read back set by set
(:class:`ShingleStore`, and :class:`ShingleReader` for another process), a bounded cache of
loaded sets, and the candidate pairs spilled to a flat file and read back in sorted partitions
that fit the budget (:class:`PairSpill`)."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SHINGLE = np.dtype("<u8")  # one shingle of a stored set
_PAIR_BYTES = 8
# Sorting a partition of pairs (np.unique) needs about three times its size.
_SORT_FACTOR = 3
_SAMPLE_PAIRS = 65_536
# Partition files open at once while pairs are spread over them: a budget too small for the
# pairs gives bigger partitions rather than more files than a process may open (often 1,024).
MAX_PAIR_PARTITIONS = 256


class SetFile:
    """Reading sets back from the three files of a :class:`ShingleStore`: ``shingles.bin``
    (the values), ``shingle_start.bin`` and ``shingle_count.bin`` (per document)."""

    start: np.ndarray
    count: np.ndarray
    _fd: int | None

    def set_bytes(self, docs: np.ndarray) -> np.ndarray:
        return np.asarray(self.count[docs]) * SHINGLE.itemsize

    def load(self, doc: int) -> np.ndarray:
        n = int(self.count[doc])
        if n == 0:
            return np.zeros(0, SHINGLE)
        raw = os.pread(self._fd, n * SHINGLE.itemsize, int(self.start[doc]) * SHINGLE.itemsize)
        return np.frombuffer(raw, dtype=SHINGLE)


class ShingleStore(SetFile):
    """Shingle sets of the marked documents in one flat file, appended in document order;
    read back set by set with ``pread`` (so a batch holds only what it asked for)."""

    def __init__(self, directory: Path, n_docs: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "shingles.bin"
        size = max(n_docs, 1)
        self._start_map = np.memmap(directory / "shingle_start.bin", dtype="<i8", mode="w+", shape=(size,))
        self._count_map = np.memmap(directory / "shingle_count.bin", dtype="<i8", mode="w+", shape=(size,))
        self.start, self.count = self._start_map[:n_docs], self._count_map[:n_docs]
        self._fh = open(self.path, "wb")
        self._written = 0  # values
        self._fd: int | None = None
        self.docs = 0

    def append(self, docs: np.ndarray, values: np.ndarray, counts: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(values, dtype=SHINGLE).tobytes())
        starts = self._written + np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else counts
        self.start[docs] = starts
        self.count[docs] = counts
        self._written += int(counts.sum())
        self.docs += len(docs)

    def append_file(self, docs: np.ndarray, path: str | os.PathLike) -> None:
        """:meth:`append` from a :func:`~curate.stages.dedup.exact.shingle_unit` file (the
        sets' counts, then their values), the values copied a block at a time."""
        with open(path, "rb") as src:
            counts = np.fromfile(src, dtype="<i8", count=len(docs))
            if len(counts) != len(docs):
                raise ValueError(f"{path}: {len(counts)} shingle set sizes for {len(docs)} documents")
            left = int(counts.sum()) * SHINGLE.itemsize
            while left:
                block = src.read(min(left, 1 << 20))
                if not block:
                    raise ValueError(f"{path}: shingle values end {left} bytes short")
                self._fh.write(block)
                left -= len(block)
        starts = self._written + np.concatenate(([0], np.cumsum(counts)[:-1])) if len(counts) else counts
        self.start[docs] = starts
        self.count[docs] = counts
        self._written += int(counts.sum())
        self.docs += len(docs)

    def finish(self) -> None:
        self._fh.close()
        # Flushed so that other processes (Ray verification tasks, possibly on other nodes of
        # a shared filesystem) read the offsets from the files, not from this page cache.
        self._start_map.flush()
        self._count_map.flush()
        self._fd = os.open(self.path, os.O_RDONLY)

    @property
    def bytes(self) -> int:
        return self._written * SHINGLE.itemsize

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ShingleReader(SetFile):
    """Read-only view of a finished :class:`ShingleStore` in ``directory``, for another process
    (a Ray verification task)."""

    def __init__(self, directory: str | os.PathLike, n_docs: int):
        directory = Path(directory)
        size = max(n_docs, 1)
        self.start = np.memmap(directory / "shingle_start.bin", dtype="<i8", mode="r", shape=(size,))[:n_docs]
        self.count = np.memmap(directory / "shingle_count.bin", dtype="<i8", mode="r", shape=(size,))[:n_docs]
        self._fd = os.open(directory / "shingles.bin", os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SetCache:
    """Loaded shingle sets, least recently used dropped first past ``budget`` bytes."""

    def __init__(self, store: ShingleStore, budget: int):
        self.store = store
        self.budget = budget
        self._sets: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.loads = 0

    def get(self, doc: int) -> np.ndarray:
        found = self._sets.get(doc)
        if found is not None:
            self._sets.move_to_end(doc)
            return found
        values = self.store.load(doc)
        self.loads += 1
        self._sets[doc] = values
        self._bytes += values.nbytes
        while self._bytes > self.budget and len(self._sets) > 1:
            _, dropped = self._sets.popitem(last=False)
            self._bytes -= dropped.nbytes
        return values

    def clear(self) -> None:
        self._sets.clear()
        self._bytes = 0


class PairSpill:
    """Candidate pairs appended to a flat file; read back unique and sorted, in partitions of
    consecutive encoded values that each fit ``memory_bytes``."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / "pairs.bin"
        self._fh = open(self.path, "wb")
        self.records = 0
        self.partitions = 0

    def add(self, pairs: np.ndarray) -> None:
        if len(pairs):
            self._fh.write(np.ascontiguousarray(pairs, dtype="<i8").tobytes())
            self.records += len(pairs)

    def sorted_partitions(self, memory_bytes: int) -> Iterator[np.ndarray]:
        self._fh.close()
        if self.records == 0:
            return
        need = self.records * _PAIR_BYTES * _SORT_FACTOR
        if need <= memory_bytes:
            self.partitions = 1
            yield np.unique(np.fromfile(self.path, dtype="<i8"))
            return
        parts = min(math.ceil(need / max(memory_bytes, 1)), MAX_PAIR_PARTITIONS)
        spilled = np.memmap(self.path, dtype="<i8", mode="r")
        sample = np.sort(spilled[:: max(1, self.records // _SAMPLE_PAIRS)])
        cuts = np.unique(sample[(np.arange(1, parts) * len(sample)) // parts])
        self.partitions = len(cuts) + 1
        paths = [self.directory / f"pairs-{p:04d}.bin" for p in range(self.partitions)]
        handles = [open(p, "wb") for p in paths]
        try:
            step = max(1, memory_bytes // (_PAIR_BYTES * 4))
            for i in range(0, self.records, step):
                chunk = np.sort(spilled[i : i + step])
                bounds = np.searchsorted(chunk, cuts, side="left")
                for fh, lo, hi in zip(handles, np.concatenate(([0], bounds)), np.concatenate((bounds, [len(chunk)]))):
                    if hi > lo:
                        fh.write(chunk[lo:hi].tobytes())
        finally:
            for fh in handles:
                fh.close()
        del spilled
        self.path.unlink(missing_ok=True)
        for path in paths:
            part = np.fromfile(path, dtype="<i8")
            path.unlink()
            if len(part):
                yield np.unique(part)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
