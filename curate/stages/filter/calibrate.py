"""``keep_top`` calibration for a quality filter at the end of a chain.

A ``quality`` filter with ``keep_top`` keeps that fraction of the documents that reach it,
which needs the score distribution first: :func:`calibrate_keep_top` scores every such
document once (in the executor's workers, scores cached on disk per input), finds the exact
cut with :func:`kth_largest` in bounded memory, and the stage then runs with the cut fixed as
the filter's ``keep_top_threshold``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np

from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.errors import InputError
from curate.core.shards import drop_null_rows, read_tables
from curate.runtime.executor import Executor
from curate.stages.filter.chain import cached_chain


def _calibration_scores(args: tuple[str, list[dict[str, Any]], str]) -> tuple[str, int]:
    """Score the documents of one input that reach the last filter of ``specs`` (a quality
    filter); the scores go to ``out_path`` as a float64 .npy file (disk, not memory)."""
    path, specs, out_path = args
    chain = cached_chain(specs)
    prefix, quality = chain.filters[:-1], chain.filters[-1]
    scores: list[float] = []
    try:
        for table in read_tables(path):
            # Rows without an id or text are errors of the filter pass, not scored here.
            for row in drop_null_rows(table, Stats(), path, 0).to_pylist():
                doc = Document.from_row(row)
                if not any(f(doc) is not None and f.mode == "filter" for f in prefix):
                    scores.append(quality.predict(doc.text or ""))
    except InputError:
        return out_path, -1  # the filter pass counts it as a failed input; nothing is cached
    tmp = f"{out_path}.tmp.npy"
    np.save(tmp, np.asarray(scores, dtype=np.float64))
    os.replace(tmp, out_path)
    return out_path, len(scores)


def kth_largest(files: list[str], k: int, bins: int = 1 << 16) -> float:
    """The exact k-th largest value (1-based) of the scores in ``files`` (values in [0, 1]),
    reading them twice with memory bounded by one file plus one histogram bin: a histogram
    locates the bin holding the k-th value, then only that bin's values are sorted."""
    counts = np.zeros(bins, dtype=np.int64)
    for f in files:
        s = np.load(f, mmap_mode="r")
        if len(s):
            counts += np.bincount(np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(np.int64), bins - 1), minlength=bins)
    from_top = np.cumsum(counts[::-1])
    top_bin_index = int(np.searchsorted(from_top, k))  # first position where >= k from the top
    b = bins - 1 - top_bin_index
    above = int(from_top[top_bin_index - 1]) if top_bin_index > 0 else 0
    inside: list[np.ndarray] = []
    for f in files:
        s = np.load(f, mmap_mode="r")
        if len(s):
            idx = np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
            inside.append(np.asarray(s[idx == b]))
    values = np.sort(np.concatenate(inside))[::-1]
    return float(values[k - above - 1])


def calibrate_keep_top(
    inputs: list[str], specs: list[dict[str, Any]], work_dir: str, executor: Executor
) -> dict[str, Any]:
    """Fix the score cut of the quality filter at the end of ``specs`` so that it keeps its
    ``keep_top`` fraction of the documents reaching it. Scores of an input are cached in
    ``work_dir`` keyed by the chain, so an interrupted run does not score them again."""
    keep_top = float(specs[-1]["keep_top"])
    key = hashlib.sha256(json.dumps(specs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    os.makedirs(work_dir, exist_ok=True)
    jobs = []
    files = []
    for path in inputs:
        st = os.stat(path)
        ident = hashlib.sha256(f"{key}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
        out = os.path.join(work_dir, f"scores-{ident}.npy")
        files.append(out)
        if not os.path.exists(out):
            jobs.append((path, specs, out))
    for out_path, n_scored in executor.map(_calibration_scores, jobs, ordered=False):
        if n_scored < 0:
            files.remove(out_path)
    n = sum(len(np.load(f, mmap_mode="r")) for f in files)
    if n == 0:
        threshold = 1.0
        kept = 0
    else:
        k = max(1, math.ceil(keep_top * n))
        threshold = kth_largest(files, k)
        kept = sum(int((np.load(f, mmap_mode="r") >= threshold).sum()) for f in files)
    return {
        "label": specs[-1].get("label") or specs[-1]["name"],
        "keep_top": keep_top,
        "scored": n,
        "keep_top_threshold": threshold,
        "expected_kept": kept,
    }
