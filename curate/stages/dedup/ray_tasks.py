"""What ``curate dedup --engine ray`` runs on the cluster (:mod:`curate.stages.dedup.ray` is the
driver's side): the partitioned key and pair files the tasks write and read in the shared work
directory, and the task functions themselves (plain module-level functions of plain data, as
:meth:`curate.runtime.executor.Executor.map` wants them).

A partitioned file holds records grouped by partition, the top bits of a uniform 64-bit hash
(the key itself, or a hash of the pair), with the partition offsets returned to the driver; a
partition of an index or of the candidate pairs is the union of its slice of every file.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curate.stages.dedup.exact import jaccards, new_pair_stats, verify_partition
from curate.stages.dedup.exact_store import SetCache, ShingleReader
from curate.stages.dedup.index import (
    RECORD,
    DocStore,
    UnionFind,
    candidate_pairs,
    group_records,
    keep_groups,
    verify_pairs,
)
from curate.stages.dedup.minhash import fmix64
from curate.stages.dedup.signature_pass import store_columns
from curate.stages.dedup.signatures import signature_unit, unit_key_records
from curate.stages.dedup.stars import Ranker, estimated_similarities, star_split

# --------------------------------------------------------------------------- partitioned key files


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


# --------------------------------------------------------------------------- Ray tasks


def signature_task(args: tuple[int, int, tuple, dict[str, str], dict[str, int], str]) -> dict[str, Any]:
    """Pass 1 for one row group: signatures, with the key records written to partitioned files
    (``paths[name]``) and the per-document columns and ids to ``store_path`` (a
    :meth:`~curate.stages.dedup.index.DocStore.write_unit` file), so that what comes back
    through Ray, and so into the driver, is a few counters and paths whatever the unit's size."""
    _unit, doc_offset, unit_args, paths, partitions, store_path = args
    result = signature_unit(unit_args)
    if "error" in result:
        return result
    docs = np.arange(doc_offset, doc_offset + result["n"], dtype=np.int64)
    files = {}
    for name, keys, key_docs in unit_key_records(result, docs, unit_args[3]):
        files[name] = (paths[name], write_key_records(paths[name], keys, key_docs, partitions[name]))
    columns = store_columns(unit_args[3].num_perm)
    DocStore.write_unit(store_path, columns, result["ids"], **{k: result[k] for k in columns if k in result})
    return {
        "unit": _unit,
        "n": result["n"],
        "errors": result["errors"],
        "error_examples": result["error_examples"],  # at most MAX_EXAMPLES per reason
        "index_files": files,
        "store_file": store_path,
    }


def _band_partition_pairs(ranges: list[tuple[str, int, int]], alive_path: str, n_docs: int) -> np.ndarray:
    """Encoded candidate pairs of one band partition among documents still kept."""
    pairs = np.zeros(0, np.int64)
    grouped = group_records(read_ranges(ranges))
    if grouped is not None:
        alive = np.memmap(alive_path, dtype=np.uint8, mode="r", shape=(n_docs,))
        grouped = keep_groups(grouped[0], grouped[1], alive[grouped[0]])
        if grouped is not None:
            pairs = candidate_pairs(grouped[0], grouped[1], n_docs).astype(np.int64)
    return pairs


def pairs_task(args: tuple[tuple[str, str, int, int], int, str, int, str, int]) -> np.ndarray:
    """Candidate pairs of one band partition (of the :class:`PartitionedKeys` ``keys``) among
    documents still kept, written to ``out_path`` partitioned by a hash of the pair (so that
    each pair, whichever bands it shares, is verified by one task only); returns the
    partition offsets."""
    keys, band, alive_path, n_docs, out_path, partitions = args
    pairs = _band_partition_pairs(keys_ranges(keys, band), alive_path, n_docs)
    return write_partitioned(out_path, pairs, fmix64(pairs.view(np.uint64)), partitions)


def exact_pairs_task(args: tuple[tuple[str, str, int, int], int, str, int, str, int]) -> dict[str, Any]:
    """:func:`pairs_task` for ``verify = "exact"``: also returns the documents of the pairs
    (at most the partition's records), which the driver marks for the shingle pass."""
    keys, band, alive_path, n_docs, out_path, partitions = args
    pairs = _band_partition_pairs(keys_ranges(keys, band), alive_path, n_docs)
    bounds = write_partitioned(out_path, pairs, fmix64(pairs.view(np.uint64)), partitions)
    return {"bounds": bounds, "docs": np.unique(np.concatenate((pairs // n_docs, pairs % n_docs)))}


def verify_task(args: tuple[list[tuple[str, int, int]], str, int, int, float, str, int]) -> dict[str, Any]:
    """Verified edges among the candidate pairs of one pair partition, written to ``out_path``
    in both directions and partitioned by their source (the input of
    :func:`large_star_task`); returns the counters and the partition offsets."""
    ranges, sig_path, n_docs, num_perm, accept, out_path, partitions = args
    pairs = np.unique(read_ranges(ranges, np.int64))
    verified = 0
    left, right = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if len(pairs):
        sig = np.memmap(sig_path, dtype="<u4", mode="r", shape=(n_docs, num_perm))
        for a, b in verify_pairs(pairs, n_docs, sig, accept):
            verified += len(a)
            left.append(a)
            right.append(b)
    a, b = np.concatenate(left), np.concatenate(right)
    bounds = write_edges(out_path, np.concatenate((a, b)), np.concatenate((b, a)), partitions)
    return {"candidates": len(pairs), "verified": verified, "bounds": bounds}


# --------------------------------------------------------------------------- connected components

EDGE = np.dtype([("src", "<i8"), ("dst", "<i8")])  # an edge, or a (label, document) record


def write_edges(path: str, src: np.ndarray, dst: np.ndarray, partitions: int) -> np.ndarray:
    """``(src, dst)`` records written to ``path`` partitioned by a hash of ``src``."""
    rec = np.empty(len(src), dtype=EDGE)
    rec["src"], rec["dst"] = src, dst
    return write_partitioned(path, rec, fmix64(rec["src"].view(np.uint64)), partitions)


def _grouped_edges(ranges: list[tuple[str, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct edges of one partition sorted by ``(src, dst)``: ``src``, ``dst``, the start
    of each source's run and, per edge, the smallest of its source and the source's
    destinations (``min(u, min N(u))``)."""
    edges = np.unique(read_ranges(ranges, EDGE))
    src, dst = edges["src"], edges["dst"]
    starts = np.flatnonzero(np.concatenate(([True], src[1:] != src[:-1]))) if len(src) else np.zeros(0, np.int64)
    low = np.minimum(src[starts], dst[starts])  # destinations are sorted within a source
    sizes = np.diff(np.concatenate((starts, [len(src)])))
    return src, dst, starts, np.repeat(low, sizes)


def edge_digest(src: np.ndarray, dst: np.ndarray) -> tuple[int, int]:
    """An order-independent digest of a set of distinct edges, ``(xor, sum modulo 2**64)`` of
    a 64-bit hash of each, combined over partitions the same way: two rounds with the same
    count and digest have the same edges."""
    if len(src) == 0:
        return 0, 0
    mixed = fmix64(fmix64(src.view(np.uint64)) ^ dst.view(np.uint64))
    return int(np.bitwise_xor.reduce(mixed)), int(mixed.sum(dtype=np.uint64))


def large_star_task(args: tuple[list[tuple[str, int, int]], str, int]) -> dict[str, Any]:
    """Large-star over one partition of an undirected edge set stored in both directions: every
    node ``u`` links each neighbour ``v > u`` to ``m(u) = min(u, min N(u))``. Writes the new
    edges ``(v, m(u))``, stored once at their larger end, partitioned for
    :func:`small_star_task`; returns the offsets, and the count and digest of the distinct
    input edges (the driver stops when a round's input equals the previous round's)."""
    ranges, out_path, partitions = args
    src, dst, _, low = _grouped_edges(ranges)
    up = dst > src
    bounds = write_edges(out_path, dst[up], low[up], partitions)
    return {"bounds": bounds, "edges": len(src), "digest": edge_digest(src, dst)}


def small_star_task(args: tuple[list[tuple[str, int, int]], str, int]) -> dict[str, Any]:
    """Small-star over one partition of edges stored at their larger end: every node ``u`` and
    its smaller neighbours are linked to ``m = min(u, min N(u))``. Writes the new edges in both
    directions, partitioned for the next :func:`large_star_task`."""
    ranges, out_path, partitions = args
    src, dst, starts, low = _grouped_edges(ranges)
    other = dst != low
    a = np.concatenate((dst[other], src[starts]))  # (v, m) for v != m, and (u, m): u > v >= m
    b = np.concatenate((low[other], low[starts]))
    return {"bounds": write_edges(out_path, np.concatenate((a, b)), np.concatenate((b, a)), partitions)}


def labels_task(args: tuple[list[tuple[str, int, int]], str, int]) -> np.ndarray:
    """Component labels from one partition of the converged edges (stars around each
    component's smallest node, in both directions): ``(label, document)`` of every node,
    partitioned by label for :func:`stars_task`."""
    ranges, out_path, partitions = args
    src, _, starts, low = _grouped_edges(ranges)
    return write_edges(out_path, low[starts], src[starts], partitions)


STAR = np.dtype([("doc", "<i8"), ("center", "<i8"), ("sim", "<f8")])  # a removal by the star split


def stars_task(
    args: tuple[list[tuple[str, int, int]], str, dict[str, tuple[str, int]], int, float, str, str | None, int],
) -> int:
    """The star split (:func:`curate.stages.dedup.stars.star_split`) of every component of one
    label partition, on estimated Jaccard, or on exact Jaccard with ``shingle_dir`` (the
    shingle store, read through a cache of ``set_budget`` bytes): ``(removed, centre,
    similarity)`` records written to ``out_path``; returns their number."""
    ranges, store_dir, columns, n_docs, accept, out_path, shingle_dir, set_budget = args
    records = np.sort(read_ranges(ranges, EDGE), order=["src", "dst"])
    label, docs = records["src"], records["dst"]
    parts = [np.zeros(0, dtype=STAR)]
    if len(docs):
        store = DocStore.open(store_dir, columns, n_docs)
        ranker = Ranker(store)
        reader = None
        if shingle_dir is None:
            sims = estimated_similarities(store["sig"])
        else:
            reader = ShingleReader(shingle_dir, n_docs)
            cache = SetCache(reader, set_budget)

            def sims(center: int, rest: np.ndarray) -> np.ndarray:
                return jaccards(np.full(len(rest), center, dtype=np.int64), rest, cache.get)

        try:
            starts = np.flatnonzero(np.concatenate(([True], label[1:] != label[:-1])))
            for lo, hi in itertools.pairwise([*starts.tolist(), len(docs)]):
                for members, center, sim in star_split(docs[lo:hi], ranker, sims, accept):
                    part = np.empty(len(members), dtype=STAR)
                    part["doc"], part["center"], part["sim"] = members, center, sim
                    parts.append(part)
        finally:
            if reader is not None:
                reader.close()
    out = np.concatenate(parts)
    write_partitioned(out_path, out, out["doc"].view(np.uint64), 1)
    return len(out)


def exact_verify_task(
    args: tuple[list[tuple[str, int, int]], str, str, int, int, float, int, str, int],
) -> dict[str, Any]:
    """Exact verification of the candidate pairs of one pair partition
    (:func:`curate.stages.dedup.exact.verify_partition`): the shingle sets of each batch are read from
    the driver's shingle store in the shared work directory, at most ``set_budget`` bytes at
    once. Writes a spanning forest of the accepted pairs (the same components, at most one edge
    a document) as :func:`verify_task` writes its edges; returns the counters and the offsets."""
    ranges, shingle_dir, sig_path, n_docs, num_perm, accept, set_budget, out_path, partitions = args
    pairs = np.unique(read_ranges(ranges, np.int64))
    uf = UnionFind()
    stats = new_pair_stats()
    if len(pairs):
        sig = np.memmap(sig_path, dtype="<u4", mode="r", shape=(n_docs, num_perm))
        sets = ShingleReader(shingle_dir, n_docs)
        try:
            verify_partition(pairs, n_docs, sets, sig, accept, set_budget, uf, stats)
        finally:
            sets.close()
    a, b = uf.forest()
    bounds = write_edges(out_path, np.concatenate((a, b)), np.concatenate((b, a)), partitions)
    return {"stats": stats, "bounds": bounds}
