"""On-disk structures of ``curate dedup``: a key -> documents index that spills to disk, the
per-document column store, and a union-find over document indices.

:class:`KeyIndex` groups ``(key, doc)`` records by key (LSH band keys, exact-text hashes,
URL hashes). When the expected records fit the memory budget they stay in memory; otherwise
records are buffered and spilled as runs into ``2**k`` partition files by the key's top bits,
and each partition (sized to fit the budget) is then sorted on its own. Every key lives in
exactly one partition, so no merge across files is needed and the groups are exactly those of
the in-memory index, only visited partition by partition.

:class:`DocStore` keeps fixed-width per-document columns (signatures, dates, quality, hashes)
in flat files written sequentially during the signature pass and read back as memory maps,
so random access by document index costs page cache, not process memory.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

RECORD = np.dtype([("key", "<u8"), ("doc", "<i8")])
MAX_PARTITIONS = 1024
VERIFY_CHUNK = 32_768  # candidate pairs (or removed documents) compared on signatures at once
COPY_BLOCK = 1 << 20  # bytes of a unit file copied into the store at once


class KeyGroups(Protocol):
    """What the decisions need of a key index: :class:`KeyIndex`, or the Ray engine's
    :class:`~curate.stages.dedup.partitioned.PartitionedKeys`."""

    partitions: int
    records: int
    spilled_bytes: int

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def close(self) -> None: ...


class KeyIndex:
    """Group ``(key, doc)`` records by key within ``memory_bytes``.

    Records must be added in increasing ``doc`` order; each group then lists its documents in
    increasing order whatever the number of partitions.
    """

    def __init__(self, directory: str | os.PathLike, name: str, memory_bytes: int, expected_records: int):
        self.directory = Path(directory)
        self.name = name
        self.memory_bytes = max(int(memory_bytes), 1)
        self.expected_records = int(expected_records)
        self.partitions = plan_partitions(expected_records, memory_bytes)
        self.bits = int(math.log2(self.partitions))
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        # Spilled runs are flushed once the buffer holds a quarter of the budget.
        self._buffer_limit = max(4096, self.memory_bytes // 4 // RECORD.itemsize)
        self.records = 0
        self.spilled_bytes = 0
        if self.spills:
            self.directory.mkdir(parents=True, exist_ok=True)
            for p in range(self.partitions):
                self._path(p).unlink(missing_ok=True)

    @property
    def spills(self) -> bool:
        return self.partitions > 1

    def _path(self, partition: int) -> Path:
        return self.directory / f"{self.name}-{partition:04d}.bin"

    def add(self, keys: np.ndarray, docs: np.ndarray) -> None:
        if len(keys) == 0:
            return
        rec = np.empty(len(keys), dtype=RECORD)
        rec["key"] = keys
        rec["doc"] = docs
        self._chunks.append(rec)
        self._buffered += len(rec)
        self.records += len(rec)
        if self.spills and self._buffered >= self._buffer_limit:
            self._flush()

    def _flush(self) -> None:
        if not self._chunks:
            return
        rec = np.concatenate(self._chunks)
        self._chunks, self._buffered = [], 0
        part = (rec["key"] >> np.uint64(64 - self.bits)).astype(np.int64)
        order = np.argsort(part, kind="stable")  # keeps doc order inside each partition
        rec, part = rec[order], part[order]
        bounds = np.searchsorted(part, np.arange(self.partitions + 1))
        for p in range(self.partitions):
            lo, hi = bounds[p], bounds[p + 1]
            if hi > lo:
                with open(self._path(p), "ab") as fh:
                    fh.write(rec[lo:hi].tobytes())
                self.spilled_bytes += int(hi - lo) * RECORD.itemsize

    def _partitions(self) -> Iterator[np.ndarray]:
        if not self.spills:
            yield np.concatenate(self._chunks) if self._chunks else np.empty(0, dtype=RECORD)
            return
        self._flush()
        for p in range(self.partitions):
            path = self._path(p)
            yield np.fromfile(path, dtype=RECORD) if path.exists() else np.empty(0, dtype=RECORD)

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per partition: ``(docs, group)`` for the records of groups with 2+ records: ``docs``
        sorted by key then document, ``group`` a non-decreasing group number per record."""
        for rec in self._partitions():
            grouped = group_records(rec)
            if grouped is not None:
                yield grouped

    def close(self) -> None:
        self._chunks = []
        if self.spills:
            for p in range(self.partitions):
                self._path(p).unlink(missing_ok=True)


def group_records(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(docs, group)`` of the groups with 2+ records among ``RECORD`` records (in increasing
    doc order): ``docs`` sorted by key then document, ``group`` a non-decreasing group number;
    None when there is no such group."""
    if len(rec) < 2:
        return None
    order = np.argsort(rec["key"], kind="stable")
    keys = rec["key"][order]
    docs = rec["doc"][order]
    del rec, order
    new_group = np.empty(len(keys), dtype=bool)
    new_group[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new_group[1:])
    group = np.cumsum(new_group) - 1
    sizes = np.bincount(group)
    multi = sizes[group] >= 2
    if not multi.any():
        return None
    return docs[multi], group[multi]


def keep_groups(docs: np.ndarray, group: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The records of ``(docs, group)`` where ``keep`` holds, in groups still of 2+ records."""
    keep = np.asarray(keep, dtype=bool)
    docs, group = docs[keep], group[keep]
    if len(group) == 0:
        return None
    multi = np.bincount(group)[group] >= 2
    if not multi.any():
        return None
    return docs[multi], group[multi]


def candidate_pairs(members: np.ndarray, gid: np.ndarray, n_docs: int) -> np.ndarray:
    """Candidate pairs of documents sharing a bucket, encoded ``lo * n_docs + hi`` and unique.

    ``members`` are grouped by ``gid`` (non-decreasing). Each member is paired with its
    group's first member and with its predecessor: a star plus a chain, linear in the group
    size instead of quadratic, and enough to connect every verified cluster."""
    first_of_group = np.concatenate(([True], gid[1:] != gid[:-1]))
    head = members[np.maximum.accumulate(np.where(first_of_group, np.arange(len(members)), 0))]
    prev = np.concatenate(([-1], members[:-1]))
    left = np.concatenate((head[~first_of_group], prev[~first_of_group]))
    right = np.concatenate((members[~first_of_group], members[~first_of_group]))
    ok = left != right
    lo, hi = np.minimum(left[ok], right[ok]), np.maximum(left[ok], right[ok])
    return np.unique(lo * n_docs + hi)


def verify_pairs(
    pairs: np.ndarray, n_docs: int, sig: np.ndarray, accept: float, chunk: int = VERIFY_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(a, b)`` of the encoded ``pairs`` whose signatures agree on at least ``accept`` of
    their values (estimated Jaccard), in chunks that bound memory."""
    for i in range(0, len(pairs), chunk):
        part = pairs[i : i + chunk]
        a, b = part // n_docs, part % n_docs
        good = (sig[a] == sig[b]).mean(axis=1) >= accept
        yield a[good], b[good]


def plan_partitions(expected_records: int, memory_bytes: int) -> int:
    """A power of two such that one partition, sorted (about 3x its size while sorting), fits
    ``memory_bytes``: 1 when all the records do."""
    need = int(expected_records) * RECORD.itemsize
    if 3 * need <= memory_bytes:
        return 1
    parts = 2 ** math.ceil(math.log2(max(2.0, 3.0 * need / max(memory_bytes, 1))))
    return int(min(parts, MAX_PARTITIONS))


class DocStore:
    """Fixed-width per-document columns in flat files, appended in document order.

    ``columns`` maps a name to ``(dtype, width)``; after :meth:`finish`, ``store[name]`` is a
    read-only memory map of shape ``(n_docs, width)`` (or ``(n_docs,)`` for width 1). Document
    ids are variable-length strings kept in a blob with an offsets column.
    """

    def __init__(self, directory: str | os.PathLike, columns: dict[str, tuple[str, int]]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        self._files = {name: open(self.directory / f"{name}.bin", "wb") for name in columns}
        self._ids = open(self.directory / "ids.bin", "wb")
        self._id_offsets = open(self.directory / "id_offsets.bin", "wb")  # written as it goes
        self._id_offsets.write(np.zeros(1, dtype=np.int64).tobytes())
        self._id_bytes = 0
        self.n_docs = 0
        self._maps: dict[str, np.ndarray] = {}

    def append(self, ids: list[str], **arrays: np.ndarray) -> None:
        n = len(ids)
        for name, (dtype, width) in self.columns.items():
            arr = np.ascontiguousarray(arrays[name], dtype=dtype)
            if arr.size != n * width:
                raise ValueError(f"column {name}: {arr.size} values for {n} documents")
            self._files[name].write(arr.tobytes())
        encoded = [(i or "").encode("utf-8", "surrogatepass") for i in ids]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n)
        self._ids.write(b"".join(encoded))
        self._id_offsets.write((self._id_bytes + np.cumsum(lengths)).astype(np.int64).tobytes())
        self._id_bytes += int(lengths.sum())
        self.n_docs += n

    @staticmethod
    def write_unit(
        path: str | os.PathLike, columns: dict[str, tuple[str, int]], ids: list[str], **arrays: np.ndarray
    ) -> None:
        """One unit's documents as a file :meth:`append_unit` adds to a store: the ``columns``
        given in ``arrays`` (in ``columns``' order), the ids' byte lengths, then the ids. Written
        whole by an atomic rename, so a retried task rewrites it."""
        n = len(ids)
        encoded = [(i or "").encode("utf-8", "surrogatepass") for i in ids]
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as fh:
            for name, (dtype, width) in columns.items():
                if name in arrays:
                    arr = np.ascontiguousarray(arrays[name], dtype=dtype)
                    if arr.size != n * width:
                        raise ValueError(f"column {name}: {arr.size} values for {n} documents")
                    fh.write(arr.tobytes())
            fh.write(np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n).tobytes())
            fh.write(b"".join(encoded))
        os.replace(tmp, path)

    def append_unit(self, path: str | os.PathLike, n: int, **arrays: np.ndarray) -> None:
        """Append the ``n`` documents of a :meth:`write_unit` file, copied a block at a time
        (the unit is never all in memory), with the columns the file lacks from ``arrays``."""
        with open(path, "rb") as fh:
            for name, (dtype, width) in self.columns.items():
                if name in arrays:
                    arr = np.ascontiguousarray(arrays[name], dtype=dtype)
                    if arr.size != n * width:
                        raise ValueError(f"column {name}: {arr.size} values for {n} documents")
                    self._files[name].write(arr.tobytes())
                else:
                    _copy(fh, self._files[name], n * width * np.dtype(dtype).itemsize, name, path)
            lengths = np.fromfile(fh, dtype=np.int64, count=n)
            if len(lengths) != n:
                raise ValueError(f"unit file {path}: {len(lengths)} id lengths for {n} documents")
            self._id_offsets.write((self._id_bytes + np.cumsum(lengths)).astype(np.int64).tobytes())
            blob = int(lengths.sum())
            _copy(fh, self._ids, blob, "ids", path)
        self._id_bytes += blob
        self.n_docs += n

    def finish(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._ids.close()
        self._id_offsets.close()
        self._map()

    @classmethod
    def open(cls, directory: str | os.PathLike, columns: dict[str, tuple[str, int]], n_docs: int) -> DocStore:
        """A finished store in ``directory`` (of ``n_docs`` documents), read-only: how the Ray
        tasks read the driver's store in the shared work directory."""
        store = cls.__new__(cls)
        store.directory, store.columns, store.n_docs = Path(directory), columns, n_docs
        store._id_bytes = (store.directory / "ids.bin").stat().st_size
        store._map()
        return store

    def _map(self) -> None:
        self._maps = {}
        for name, (dtype, width) in self.columns.items():
            shape = (self.n_docs, width) if width > 1 else (self.n_docs,)
            path = self.directory / f"{name}.bin"
            if self.n_docs == 0:
                self._maps[name] = np.zeros(shape, dtype=dtype)
            else:
                self._maps[name] = np.memmap(path, dtype=dtype, mode="r", shape=shape)
        # Memory-mapped, as the columns: the driver's memory does not grow with the corpus.
        self._offsets = np.memmap(self.directory / "id_offsets.bin", dtype=np.int64, mode="r")
        self._blob = (
            np.memmap(self.directory / "ids.bin", dtype=np.uint8, mode="r") if self._id_bytes else np.zeros(0, np.uint8)
        )

    def __getitem__(self, name: str) -> np.ndarray:
        return self._maps[name]

    def doc_id(self, doc: int) -> str:
        lo, hi = self._offsets[doc], self._offsets[doc + 1]
        return bytes(self._blob[lo:hi]).decode("utf-8", "surrogatepass")

    def doc_ids(self, docs: np.ndarray) -> list[str]:
        return [self.doc_id(int(d)) for d in docs]

    def bytes_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.directory.glob("*.bin"))

    def close(self) -> None:
        self._maps = {}
        self._blob = np.zeros(0, np.uint8)


def _copy(src: BinaryIO, dst: BinaryIO, size: int, what: str, path: str | os.PathLike) -> None:
    """Copy exactly ``size`` bytes from ``src`` to ``dst``, a block at a time."""
    left = size
    while left:
        block = src.read(min(left, COPY_BLOCK))
        if not block:
            raise ValueError(f"unit file {path}: {what} ends {left} bytes short")
        dst.write(block)
        left -= len(block)


class UnionFind:
    """Union-find over the (few) document indices that take part in verified pairs."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            nxt = parent.get(x, x)
            parent[x] = root
            x = nxt
        return root

    def union_many(self, left: np.ndarray, right: np.ndarray) -> None:
        find = self.find
        for a, b in zip(left.tolist(), right.tolist()):
            ra, rb = find(a), find(b)
            if ra != rb:
                # The smaller index becomes the root: components do not depend on edge order.
                if ra < rb:
                    self.parent[rb] = ra
                else:
                    self.parent[ra] = rb

    def forest(self) -> tuple[np.ndarray, np.ndarray]:
        """``(member, root)`` for every non-root member: a spanning forest with the same
        components as all the edges given so far (at most one edge per member)."""
        members = np.fromiter(self.parent.keys(), dtype=np.int64, count=len(self.parent))
        roots = np.fromiter((self.find(int(m)) for m in members), dtype=np.int64, count=len(members))
        keep = members != roots
        return members[keep], roots[keep]

    def components(self) -> Iterator[np.ndarray]:
        """Every component with 2+ members, as sorted document indices, by smallest member."""
        members = np.fromiter(self.parent.keys(), dtype=np.int64, count=len(self.parent))
        if len(members) == 0:
            return
        roots = np.fromiter((self.find(int(m)) for m in members), dtype=np.int64, count=len(members))
        everyone = np.concatenate((members, np.unique(roots)))
        labels = np.concatenate((roots, np.unique(roots)))
        everyone, idx = np.unique(everyone, return_index=True)
        labels = labels[idx]
        order = np.lexsort((everyone, labels))
        everyone, labels = everyone[order], labels[order]
        starts = np.concatenate(([0], np.flatnonzero(labels[1:] != labels[:-1]) + 1, [len(labels)]))
        for lo, hi in itertools.pairwise(starts):
            if hi - lo >= 2:
                yield everyone[lo:hi]


def remove_tree(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)
