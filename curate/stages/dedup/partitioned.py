"""The partitioned files of ``curate dedup --engine ray`` in the shared work directory: key
records (:func:`write_key_records`), candidate pairs and edges (:func:`write_partitioned`), the
ranges a task reads back (:func:`read_ranges`), and one kind of key's index over every unit's
file (:class:`PartitionedKeys`, the offsets a table in files that tasks read, :func:`keys_ranges`).

A partitioned file holds records grouped by partition, the top bits of a uniform 64-bit hash
(the key itself, or a hash of the pair), with the partition offsets returned to the driver; a
partition of an index or of the candidate pairs is the union of its slice of every file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curate.stages.dedup.index import RECORD, group_records


def _partition_bits(partitions: int) -> int:
    return int(math.log2(partitions))


def write_partitioned(path: str, records: np.ndarray, hashes: np.ndarray, partitions: int) -> np.ndarray:
    """Write ``records`` to ``path`` grouped by partition (the top bits of their uniform 64-bit
    ``hashes``; order kept inside each) and return the ``partitions + 1`` record offsets."""
    if partitions > 1:
        part = (hashes >> np.uint64(64 - _partition_bits(partitions))).astype(np.int64)
        order = np.argsort(part, kind="stable")
        records, part = records[order], part[order]
        bounds = np.searchsorted(part, np.arange(partitions + 1))
    else:
        bounds = np.array([0, len(records)])
    tmp = f"{path}.tmp"
    records.tofile(tmp)
    os.replace(tmp, path)  # a retried task rewrites the same file whole
    # An array (8 bytes a partition), as the driver keeps one per file: (files x partitions).
    return np.asarray(bounds, dtype=np.int64)


def write_key_records(path: str, keys: np.ndarray, docs: np.ndarray, partitions: int) -> np.ndarray:
    """``(key, doc)`` records partitioned by key (band keys and text/URL hashes are uniform)."""
    rec = np.empty(len(keys), dtype=RECORD)
    rec["key"] = keys
    rec["doc"] = docs
    return write_partitioned(path, rec, rec["key"], partitions)


def read_ranges(ranges: list[tuple[str, int, int]], dtype: np.dtype = RECORD) -> np.ndarray:
    """The records ``[lo, hi)`` of each file, concatenated in the order given."""
    dtype = np.dtype(dtype)
    parts = [np.fromfile(path, dtype=dtype, count=hi - lo, offset=lo * dtype.itemsize) for path, lo, hi in ranges]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def partition_ranges(files: list[tuple[str, np.ndarray]], partition: int) -> list[tuple[str, int, int]]:
    """``(path, lo, hi)`` of one partition in each ``(path, bounds)`` file that has records of it."""
    return [(path, int(b[partition]), int(b[partition + 1])) for path, b in files if b[partition + 1] > b[partition]]


TABLE_CHUNK_BYTES = 8 << 20  # bounds rows turned into the by-partition table at once


class PartitionedKeys:
    """The key index of one kind of key, as the signature tasks left it: one file per unit,
    each ordered by partition. A :class:`~curate.stages.dedup.index.KeyGroups`, as the decisions
    want a key index.

    Where each partition lies in each unit's file (``partitions + 1`` offsets a unit) is kept
    in files, not in the driver's memory: appended a unit at a time, then turned into a table
    by partition (:meth:`spec` names it), from which a task reads its partition's slice of
    every unit's file itself (:func:`keys_ranges`): at a billion documents in 100k units and
    256 partitions the offsets are ~200 MB a kind of key, and a task's list of ranges as long
    as the units."""

    def __init__(self, directory: Path, name: str, partitions: int):
        self.directory = directory
        self.name = name
        self.partitions = partitions
        self.units = 0  # units that wrote a file, in unit (= document) order
        self.records = 0
        self.spilled_bytes = 0
        self._rows: Any = None  # the offsets, a unit per row, while units are added
        self._ids: Any = None  # the unit numbers of those rows
        self._done = False

    def unit_path(self, unit: int) -> str:
        return _unit_path(str(self.directory), self.name, unit)

    def add_unit(self, unit: int, bounds: np.ndarray) -> None:
        bounds = np.asarray(bounds, dtype="<i8")
        if self._rows is None:
            self._rows = open(_table_path(str(self.directory), self.name, "rows"), "wb")
            self._ids = open(_table_path(str(self.directory), self.name, "units"), "wb")
        self._rows.write(bounds.tobytes())
        self._ids.write(np.array([unit], dtype="<i8").tobytes())
        self.units += 1
        self.records += int(bounds[-1])
        self.spilled_bytes += int(bounds[-1]) * RECORD.itemsize

    def spec(self) -> tuple[str, str, int, int]:
        """What :func:`keys_ranges` needs (the offsets turned into a table by partition first)."""
        if not self._done:
            self._finish()
        return str(self.directory), self.name, self.partitions, self.units

    def _finish(self) -> None:
        self._done = True
        if self._rows is None:
            return
        self._rows.close()
        self._ids.close()
        width = self.partitions + 1
        rows_path = _table_path(str(self.directory), self.name, "rows")
        rows = np.memmap(rows_path, dtype="<i8", mode="r", shape=(self.units, width))
        table = np.memmap(
            _table_path(str(self.directory), self.name, "table"), dtype="<i8", mode="w+", shape=(width, self.units)
        )
        step = max(1, TABLE_CHUNK_BYTES // (8 * width))
        for lo in range(0, self.units, step):
            table[:, lo : lo + step] = rows[lo : lo + step].T
        table.flush()
        del rows, table
        Path(rows_path).unlink(missing_ok=True)

    def partition_records(self) -> np.ndarray:
        """Records per partition, over every unit (a row of the table at a time)."""
        directory, name, partitions, units = self.spec()
        out = np.zeros(partitions, dtype=np.int64)
        if units:
            table = np.memmap(
                _table_path(directory, name, "table"), dtype="<i8", mode="r", shape=(partitions + 1, units)
            )
            for p in range(partitions):
                out[p] = int(np.asarray(table[p + 1]).sum() - np.asarray(table[p]).sum())
        return out

    def ranges(self, partition: int) -> list[tuple[str, int, int]]:
        return keys_ranges(self.spec(), partition)

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """As :meth:`KeyIndex.groups`: units were added in document order, so every group
        lists its documents in increasing order."""
        for p in range(self.partitions):
            grouped = group_records(read_ranges(self.ranges(p)))
            if grouped is not None:
                yield grouped

    def close(self) -> None:
        directory, name = str(self.directory), self.name
        self.spec()  # the rows file closed and folded into the table
        ids = _table_path(directory, name, "units")
        if os.path.exists(ids):
            for unit in np.fromfile(ids, dtype="<i8").tolist():
                Path(_unit_path(directory, name, unit)).unlink(missing_ok=True)
        for what in ("table", "units", "rows"):
            Path(_table_path(directory, name, what)).unlink(missing_ok=True)
        self.units = 0


def _unit_path(directory: str, name: str, unit: int) -> str:
    return os.path.join(directory, f"{name}-u{unit:06d}.bin")


def _table_path(directory: str, name: str, what: str) -> str:
    return os.path.join(directory, f"{name}-{what}.bin")


def keys_ranges(spec: tuple[str, str, int, int], partition: int) -> list[tuple[str, int, int]]:
    """``(unit file, lo, hi)`` of one partition in every unit file of a
    :class:`PartitionedKeys` (``spec``) that holds records of it, in unit order."""
    directory, name, partitions, units = spec
    if units == 0:
        return []
    table = np.memmap(_table_path(directory, name, "table"), dtype="<i8", mode="r", shape=(partitions + 1, units))
    lo, hi = np.asarray(table[partition]), np.asarray(table[partition + 1])
    ids = np.fromfile(_table_path(directory, name, "units"), dtype="<i8")
    return [(_unit_path(directory, name, int(ids[i])), int(lo[i]), int(hi[i])) for i in np.flatnonzero(hi > lo)]
