"""Pass 1 of ``curate dedup`` on the driver: the inputs cut into units (one row group each), the
units' signatures computed by the engine (:mod:`curate.stages.dedup.engine`: worker processes or
Ray tasks, results consumed in unit order so that nothing depends on the number of workers) and
added, in document order, to the document store and the key indexes. The result is the run's
:class:`~curate.stages.dedup.state.DedupState`, every readable document alive.

An input with a unit that fails (unreadable, a value that cannot be cast) is left out entirely:
its documents keep their numbers with placeholder columns but are never alive, and its counts
are one record read and one error (``bad_schema``, ``unreadable_file``), as in every stage.
"""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.accounting import MAX_EXAMPLES, failed_stats
from curate.core.progress import Progress
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.engine import Engine
from curate.stages.dedup.index import DocStore
from curate.stages.dedup.inputs import InputInfo
from curate.stages.dedup.signatures import Unit, placeholder
from curate.stages.dedup.state import DedupState

ALIVE_CHUNK = 1 << 20  # documents whose flags are set at once


def store_columns(num_perm: int) -> dict[str, tuple[str, int]]:
    """The document store's columns: ``name -> (dtype, values per document)``."""
    return {
        "sig": ("<u4", num_perm),
        "date": ("<i8", 1),
        "quality": ("<f4", 1),
        "exact": ("<u8", 2),
        "url": ("<u8", 2),
        "has_url": ("u1", 1),
        "n_shingles": ("<i8", 1),
        "valid": ("u1", 1),
        "input": ("<i4", 1),
    }


def index_records(config: DedupConfig, n_docs: int) -> dict[str, int]:
    """Expected records of each key index: one per kind of key that is on, even with no
    documents at all (an empty corpus then goes through every pass and writes empty outputs)."""
    bands, _ = config.lsh() if config.near else (0, 0)
    kinds = (("exact", n_docs, config.exact), ("url", n_docs, config.url), ("band", n_docs * bands, config.near))
    return {name: count for name, count, on in kinds if on}


def units_of(inputs: list[InputInfo], config: DedupConfig) -> tuple[list[Unit], dict[int, int]]:
    """The units of the readable inputs, in document order, and each input's first document."""
    units, offsets = [], {}
    offset = 0
    for info in inputs:
        if info.error:
            continue
        offsets[info.index] = offset
        for rg, rows in enumerate(info.row_groups):
            units.append(Unit(info.index, offset, (info.path, rg, rows, config)))
            offset += rows
    return units, offsets


class _Collector:
    """Adds the units' results to the store and the key indexes, and keeps what each input
    could not use: per input, its errors by reason with examples (file and row), or, for an
    input left out, the one error that says why."""

    def __init__(
        self, config: DedupConfig, inputs: list[InputInfo], offsets: dict[int, int], store: DocStore, engine: Engine
    ):
        self.config = config
        self.inputs = inputs
        self.offsets = offsets
        self.store = store
        self.engine = engine
        self.failed: dict[int, str] = {}
        self.input_errors: dict[int, Counter] = {}
        self.error_examples: dict[int, dict[str, list[dict[str, Any]]]] = {}
        for info in inputs:
            if info.error:
                self._fail(info.index, info.error_reason or "unreadable_file", info.error)

    def _fail(self, index: int, reason: str, message: str) -> None:
        """Input ``index`` is left out: its counts so far are replaced by one error."""
        if index in self.failed:
            return
        self.failed[index] = message
        stats = failed_stats(self.inputs[index].path, reason, message)
        self.input_errors[index] = stats.errors
        self.error_examples[index] = stats.examples

    def add(self, unit: Unit, result: dict[str, Any]) -> None:
        if "error" in result:
            self._fail(unit.input, result["reason"], result["error"])
            result = placeholder(result["n"], self.config)
        elif unit.input not in self.failed:
            self.input_errors.setdefault(unit.input, Counter()).update(result["errors"])
            first_row = unit.offset - self.offsets[unit.input]  # the unit's first row in its file
            path = self.inputs[unit.input].path
            examples = self.error_examples.setdefault(unit.input, {})
            for row, reason, doc_id in result["error_examples"]:
                bucket = examples.setdefault(reason, [])
                if len(bucket) < MAX_EXAMPLES:
                    bucket.append({"file": path, "row": first_row + row, **({"id": doc_id} if doc_id else {})})
        n = result["n"]
        unit_input = np.full(n, unit.input, dtype=np.int32)
        if "store_file" in result:  # a Ray task wrote the columns to the shared work directory
            self.store.append_unit(result["store_file"], n, input=unit_input)
            Path(result["store_file"]).unlink(missing_ok=True)
            self.engine.add_keys(np.arange(unit.offset, unit.offset + n, dtype=np.int64), result, self.config)
            return
        self.store.append(
            result["ids"],
            sig=result["sig"],
            date=result["date"],
            quality=result["quality"],
            exact=result["exact"],
            url=result["url"],
            has_url=result["has_url"],
            n_shingles=result["n_shingles"],
            valid=result["valid"],
            input=unit_input,
        )
        self.engine.add_keys(np.arange(unit.offset, unit.offset + n, dtype=np.int64), result, self.config)


def signature_pass(
    config: DedupConfig, inputs: list[InputInfo], work: Path, memory_bytes: int, engine: Engine, progress: bool
) -> DedupState:
    """Pass 1 over ``inputs`` with its work files under ``work`` (see the module docstring)."""
    n = sum(i.rows for i in inputs if not i.error)
    indexes = engine.make_indexes(work / "index", index_records(config, n), memory_bytes)
    store = DocStore(work / "store", store_columns(config.num_perm))
    units, offsets = units_of(inputs, config)
    collector = _Collector(config, inputs, offsets, store, engine)
    bar = Progress("dedup: signatures", total=n, unit="docs", enabled=None if progress else False)
    try:
        with closing(engine.signature_results(units)) as results:
            for unit, result in zip(units, results):
                collector.add(unit, result)
                bar.advance(result["n"])
    finally:
        bar.close()
    store.finish()
    # Memory-mapped, as the store: one byte a document in page cache, not in the driver's heap.
    alive = np.memmap(work / "alive.bin", dtype="u1", mode="w+", shape=(max(n, 1),))[:n]
    failed = np.fromiter(collector.failed, dtype=np.int32) if collector.failed else None
    for lo in range(0, n, ALIVE_CHUNK):
        hi = min(n, lo + ALIVE_CHUNK)
        keep = np.asarray(store["valid"][lo:hi], dtype=bool)
        if failed is not None:
            keep &= ~np.isin(store["input"][lo:hi], failed)
        alive[lo:hi] = keep
    kind = np.memmap(work / "kind.bin", dtype="u1", mode="w+", shape=(max(n, 1),))[:n]
    dup_of = np.memmap(work / "dup_of.bin", dtype="<i8", mode="w+", shape=(max(n, 1),))[:n]
    dup_of[:] = -1
    return DedupState(
        config=config,
        inputs=inputs,
        work=work,
        memory_bytes=memory_bytes,
        progress=progress,
        n_docs=n,
        offsets=offsets,
        failed=collector.failed,
        input_errors=collector.input_errors,
        error_examples=collector.error_examples,
        store=store,
        indexes=indexes,
        alive=alive,
        kind=kind,
        dup_of=dup_of,
    )
