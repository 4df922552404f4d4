"""What ``curate dedup --engine ray`` runs on the cluster (:mod:`curate.stages.dedup.ray` is the
driver's side): the task functions (plain module-level functions of plain data, as
:meth:`curate.runtime.executor.Executor.map` wants them), over the partitioned files of
:mod:`curate.stages.dedup.partitioned` in the shared work directory.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from curate.stages.dedup.exact import jaccards, new_pair_stats, verify_partition
from curate.stages.dedup.exact_store import SetCache, ShingleReader
from curate.stages.dedup.index import (
    DocStore,
    UnionFind,
    candidate_pairs,
    group_records,
    keep_groups,
    verify_pairs,
)
from curate.stages.dedup.minhash import fmix64
from curate.stages.dedup.partitioned import (
    keys_ranges,
    read_ranges,
    write_key_records,
    write_partitioned,
)
from curate.stages.dedup.signature_pass import store_columns
from curate.stages.dedup.signatures import signature_unit, unit_key_records
from curate.stages.dedup.stars import Ranker, estimated_similarities, star_split

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
