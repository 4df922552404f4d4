"""Benchmark decontamination: documents that contain a benchmark's questions or answers.

A model trained on a benchmark's test items scores well on it without being better; GPT-3
(Brown et al. 2020, appendix C) and OLMo/Dolma (Groeneveld et al. 2024; Soldaini et al. 2024)
remove training documents that share a long word n-gram (13 words, after lower-casing and
stripping punctuation) with an evaluation item. This filter does the same for the benchmark
tasks of :mod:`curate.core.tasks`: every bundled set by default (``core``), or the named tasks
and user task files (JSONL, or a TOML field mapping).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.ranges import Range
from curate.core.tasks import BUNDLED, CORE, Task, load_task

from .base import Filter, file_digest, register
from .ngram_build import build_index
from .ngram_index import NgramIndex

# One index per process and configuration: chains rebuilt in the same worker, or several
# filter objects with the same tasks (tests, benches), share it.
_INDEXES: dict[tuple, NgramIndex] = {}
_MAX_INDEXES = 4


def _tasks_of(spec: str) -> list[Task]:
    """``core`` (every bundled task), a bundled task's name or a task file."""
    return [BUNDLED[name] for name in CORE] if spec == "core" else [load_task(spec)]


@register
@dataclass
class Decontaminate(Filter):
    """Drops documents sharing a long word n-gram with a benchmark item -> ``<task>``.

    ``tasks``: bundled task names (``arc_easy``, ``mmlu`` ...; ``core`` is all of them) and user
    task files (``my_task.jsonl``, ``my_task.toml``; in a chain file relative to its folder).
    Every split of every task is searched (MMLU's dev split as well as its test split).

    Words are normalized as ``curate dedup`` normalizes them: NFKC, lower case, punctuation,
    symbols and dashes as word breaks, curly and straight quotes alike, whitespace collapsed.
    A document is flagged when it contains an n-gram of ``ngram`` consecutive words (13, as in
    GPT-3 and OLMo) of any item's question, passage or answer. Texts shorter than that: a
    question shorter than ``ngram`` words is joined with each of its answers; the joined text
    counts whole when it has at least ``min_words`` words (8, GPT-3's smallest n), so "Which
    technology was developed most recently? Cellular telephone." is found while a short answer
    alone ("cellular telephone") or a short question alone never flags a page. N-grams shared by more than ``max_items_per_ngram``
    items are a benchmark's template wording and are ignored (-1: never).

    The reason names the task (``decontaminate/arc_easy``; with several, the first in
    ``tasks`` order). Counters: ``docs.<task>`` (documents with an item of the task) and
    ``items.<task>``, the distinct items found over the whole run (their ids are in the
    manifest's ``distinct``); score ``decontaminate.items`` (items found, on flagged documents).
    """

    name = "decontaminate"
    paths = ("tasks",)
    summary = "drop documents sharing a 13-word n-gram with a benchmark question or answer (reason: the task)"
    reasons = (*CORE, "<task file's name>")

    tasks: list[str] = field(default_factory=lambda: ["core"])
    ngram: int = 13
    min_words: int = 8
    max_items_per_ngram: int = 10

    bounds = {
        "ngram": Range(5, 64),
        "min_words": Range(2, 64),
        "max_items_per_ngram": Range(1).or_off(),
    }
    ordered = (("min_words", "ngram"),)

    @classmethod
    def is_name(cls, value: str) -> bool:
        return value == "core" or value in BUNDLED

    def validate(self) -> None:
        if not isinstance(self.tasks, list) or not self.tasks:
            raise ConfigError(f"{self.who}: tasks must be a non-empty list of task names or task files")
        try:  # one entry at a time (resolve_tasks would split a file name with a comma)
            resolved = [task for spec in self.tasks for task in _tasks_of(spec)]
        except CurateError as exc:
            raise ConfigError(f"{self.who}: {exc}") from None
        # "_cache": user tasks convert records with closures, so they are not pickled (see
        # Filter.__getstate__); setup() resolves them again in a process that lacks them.
        self._cache_tasks: list[Task] = []
        for task in resolved:
            same = [t for t in self._cache_tasks if t.name == task.name]
            if same and same[0] is not task:
                raise ConfigError(f"{self.who}: two tasks are named {task.name!r}; rename one (a TOML task's 'name')")
            if not same:
                self._cache_tasks.append(task)
        for task in self._cache_tasks:
            for path in task.files.values():
                if not os.path.isfile(path):
                    raise ConfigError(f"{self.who}: task {task.name!r}: file {path!r} not found")

    def _resolved(self) -> list[Task]:
        if self._cache_tasks is None:
            self.validate()
        return self._cache_tasks

    def fingerprint(self) -> dict[str, Any]:
        data = {
            f"task_sha256.{task.name}.{split}": file_digest(path)
            for task in self._resolved()
            for split, path in sorted(task.files.items())
        }
        mappings = {f"task_mapping_sha256.{spec}": file_digest(spec) for spec in self.tasks if spec.endswith(".toml")}
        return {**data, **mappings}

    def _key(self) -> tuple:
        files = tuple(
            (path, os.stat(path).st_mtime_ns, os.stat(path).st_size)
            for task in self._resolved()
            for path in sorted(task.files.values())
        )
        names = tuple(task.name for task in self._resolved())
        return names, files, self.ngram, self.min_words, self.max_items_per_ngram

    def setup(self) -> None:
        key = self._key()
        index = _INDEXES.get(key)
        if index is None:
            try:
                index = build_index(self._resolved(), self.ngram, self.min_words, self.max_items_per_ngram)
            except CurateError as exc:  # a task file that is not what it says
                raise ConfigError(f"{self.who}: {exc}") from None
            while len(_INDEXES) >= _MAX_INDEXES:
                _INDEXES.pop(next(iter(_INDEXES)))
            _INDEXES[key] = index
        self._cache_index = index

    @property
    def index(self) -> NgramIndex:
        """The benchmark n-gram index (built on first use)."""
        if not self._ready:
            self.setup()
            self._ready = True
        return self._cache_index

    def apply(self, doc: Document) -> str | None:
        index = self._cache_index
        found = index.find_text(doc.text or "")
        if len(found) == 0:
            return None
        task_of = index.item_task[found]
        for item, t in zip(found.tolist(), task_of.tolist()):
            self.collect(f"items.{index.tasks[t]}", index.item_ids[item])
        tasks = np.unique(task_of)
        for t in tasks.tolist():
            self.count(f"docs.{index.tasks[t]}")
        self.score(doc, "items", len(found))
        return index.tasks[int(tasks[0])]
