"""The state of one ``curate dedup`` run between its passes.

:class:`DedupState` is what the signature pass (:mod:`curate.stages.dedup.signature_pass`)
builds and every later step takes as a parameter: the corpus as that pass numbered it (inputs,
the first document of each, the inputs left out and the per-input error counts), the document
store and the key indexes, and one entry per document in the three arrays the decisions
(:mod:`curate.stages.dedup.decide`) update in place: ``alive`` (still kept), ``kind`` (:data:`KEPT`
or the kind of duplicate it was removed as) and ``dup_of`` (the document that removed it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.core.progress import Progress
from curate.stages.dedup.config import DedupConfig
from curate.stages.dedup.index import DocStore, KeyGroups, keep_groups
from curate.stages.dedup.inputs import InputInfo

KEPT, EXACT, NEAR, URL = 0, 1, 2, 3
KIND_NAMES = {EXACT: "exact", NEAR: "near", URL: "url"}


@dataclass
class DedupState:
    """One run's corpus, document store, key indexes and per-document decisions (work files
    live under ``work``, ``OUTPUT/.curate/work``)."""

    config: DedupConfig
    inputs: list[InputInfo]
    work: Path
    memory_bytes: int  # the budget of the key indexes, the exact verification and a Ray task
    progress: bool  # show progress bars
    n_docs: int
    offsets: dict[int, int]  # input index -> its first document
    failed: dict[int, str]  # input index -> why it is left out (counted as one read, one error)
    input_errors: dict[int, Counter]  # input index -> documents it could not use (or its failure), by reason
    error_examples: dict[int, dict[str, list[dict[str, Any]]]]  # input index -> reason -> examples
    store: DocStore
    indexes: dict[str, KeyGroups]  # "exact", "url", "band": the kinds of key that are on
    alive: np.ndarray  # u1 per document, memory-mapped (work/alive.bin): still kept
    kind: np.ndarray  # u1 per document: KEPT or the kind of duplicate it was removed as
    dup_of: np.ndarray  # i8 per document: the document that removed it (-1 while kept)
    counters: Counter = field(default_factory=Counter)  # removed_<kind>, candidate_pairs, verified_pairs

    def alive_groups(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(docs, group)`` of the named index restricted to documents still kept."""
        for docs, group in self.indexes[name].groups():
            kept = keep_groups(docs, group, self.alive[docs])
            if kept is not None:
                yield kept

    def progress_bar(self, title: str, total: int, unit: str) -> Progress:
        """A progress line, shown unless the run is quiet."""
        return Progress(f"dedup: {title}", total=total, unit=unit, enabled=None if self.progress else False)
