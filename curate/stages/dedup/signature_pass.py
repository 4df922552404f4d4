"""Pass 1 of ``curate dedup`` on the driver: the inputs cut into units (one row group each), the
units' signatures computed by the engine (:mod:`curate.stages.dedup.engine`: worker processes or
Ray tasks, results consumed in unit order so that nothing depends on the number of workers) and
added, in document order, to the document store and the key indexes. The result is the run's
:class:`~curate.stages.dedup.state.DedupState`, every readable document alive.

An input with a unit that fails (unreadable, a value that cannot be cast) is left out entirely:
its documents keep their numbers with placeholder columns but are never alive, and its error
counts are dropped.
"""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.progress import Progress
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.engine import Engine
from curate.stages.dedup.index import DocStore
from curate.stages.dedup.inputs import InputInfo
from curate.stages.dedup.signatures import Unit, placeholder
from curate.stages.dedup.state import DedupState

EXAMPLES_PER_REASON = 5  # units quoted per input and error reason


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
    could not use (failures, error counts and examples)."""

    def __init__(self, config: DedupConfig, inputs: list[InputInfo], store: DocStore, engine: Engine):
        self.config = config
        self.inputs = inputs
        self.store = store
        self.engine = engine
        self.failed: dict[int, str] = {i.index: i.error for i in inputs if i.error}
        self.input_errors: dict[int, Counter] = {}
        self.error_examples: dict[int, dict[str, list[dict[str, Any]]]] = {}

    def add(self, unit: Unit, result: dict[str, Any]) -> None:
        if "error" in result:
            if unit.input not in self.failed:
                self.failed[unit.input] = result["error"]
            result = placeholder(result["n"], self.config)
        else:
            # Kept per input: an input that fails later on is left out of every count.
            self.input_errors.setdefault(unit.input, Counter()).update(result["errors"])
            for reason in result["errors"]:
                bucket = self.error_examples.setdefault(unit.input, {}).setdefault(reason, [])
                if len(bucket) < EXAMPLES_PER_REASON:
                    bucket.append({"file": self.inputs[unit.input].path, "ids": result["error_examples"]})
        n = result["n"]
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
            input=np.full(n, unit.input, dtype=np.int32),
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
    collector = _Collector(config, inputs, store, engine)
    bar = Progress("dedup: signatures", total=n, unit="docs", enabled=None if progress else False)
    try:
        with closing(engine.signature_results(units)) as results:
            for unit, result in zip(units, results):
                collector.add(unit, result)
                bar.advance(result["n"])
    finally:
        bar.close()
    store.finish()
    alive = store["valid"].astype(bool)
    if collector.failed and n:
        alive &= ~np.isin(store["input"], np.fromiter(collector.failed, dtype=np.int32))
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
