"""Building the ``decontaminate`` filter's :class:`~filters.ngram_index.NgramIndex` from tasks.

Which benchmark text is indexed (:func:`item_sequences`):

- every text of an item (question, passage, each answer) with at least ``ngram`` words gives
  all its n-grams;
- a question shorter than that is joined with each of its answers: the joined text gives its
  n-grams when it reaches ``ngram`` words, or counts whole, as one *short sequence* of its own
  length, when it has at least ``min_words``;
- an item with a single text (Winogrande's sentence with its answer filled in) counts whole
  the same way when it is short.

Shorter answers are never matched alone ("wind", "carbon dioxide" are everywhere), and neither
is a short question without an answer. An n-gram (or short sequence) found in more than
``max_items`` items is a template of the benchmark ("For which of these two scenarios does the
main character ...", 900 MMLU questions), not evidence of any one item, and is left out.

Everything is hashed in batches over concatenated word arrays: about 100,000 texts of the
bundled tasks in a few seconds, once per process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from curate.core.tasks import Task
from curate.core.text import token_hashes, tokenize_batch

from .ngram_index import NgramIndex, prefix_sums, spans, windows

_BATCH = 4000  # texts tokenized, and sequences hashed, together


@dataclass
class _Items:
    """Every item's texts, flattened: text ``t`` belongs to item ``text_item[t]``."""

    texts: list[str] = field(default_factory=list)
    text_item: list[int] = field(default_factory=list)
    first_text: list[int] = field(default_factory=list)  # per item: index of its first text
    item_task: list[int] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)


def _collect(tasks: list[Task]) -> _Items:
    """Every item of every split of every task. Items of a split other than the scored one are
    reported as ``split:id`` (MMLU's dev and test ids overlap)."""
    out = _Items()
    for t, task in enumerate(tasks):
        for split in task.files:
            prefix = "" if split == task.eval_split else f"{split}:"
            for item in task.items(split):
                out.first_text.append(len(out.texts))
                out.item_task.append(t)
                out.item_ids.append(prefix + item.id)
                for text in item.texts:
                    out.texts.append(text)
                    out.text_item.append(len(out.item_ids) - 1)
    return out


def _tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of all texts, concatenated, and where each text's words start (len + 1)."""
    parts, counts = [], []
    for i in range(0, len(texts), _BATCH):
        batch = tokenize_batch(texts[i : i + _BATCH])
        parts.append(token_hashes(batch))
        counts.append(np.diff(batch.doc_first_token))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if texts:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    words = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return words, offsets


def item_sequences(
    lengths: np.ndarray, first_text: np.ndarray, n_texts: int, ngram: int, min_words: int
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """``(item, texts)`` of every word sequence to index (see the module docstring): a text on
    its own, or an item's short first text joined with one of its other texts. ``lengths`` are
    the texts' word counts; sequences too short to count are not yielded."""
    ends = np.append(first_text[1:], n_texts).tolist()
    lengths = lengths.tolist()
    for item, (first, end) in enumerate(zip(first_text.tolist(), ends)):
        q = lengths[first] if end > first else 0
        for t in range(first, end):
            if lengths[t] >= ngram:
                yield item, (t,)
        if end - first == 1 and min_words <= q < ngram:
            yield item, (first,)
        elif q < ngram:
            for t in range(first + 1, end):
                if q + lengths[t] >= min_words:
                    yield item, (first, t)


@dataclass
class _Hashed:
    """Per batch: n-grams ``(hashes, items)`` and short sequences ``(first, whole, length, item)``."""

    grams: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    short: list[tuple[np.ndarray, ...]] = field(default_factory=list)


def _hash_sequences(
    words: np.ndarray, offsets: np.ndarray, seqs: list[tuple[int, tuple[int, ...]]], ngram: int, min_words: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]:
    """The n-grams of the sequences of at least ``ngram`` words, and the first ``min_words``
    words and whole hash of each shorter one: the values the document side computes."""
    seq_item = np.array([item for item, _ in seqs], dtype=np.int64)
    pieces = [(int(offsets[t]), int(offsets[t + 1])) for _, texts in seqs for t in texts]
    flat = words[np.concatenate([np.arange(a, b) for a, b in pieces])]
    n_pieces = np.array([len(texts) for _, texts in seqs], dtype=np.int64)
    piece_len = np.array([b - a for a, b in pieces], dtype=np.int64)
    seq_len = np.add.reduceat(piece_len, np.concatenate(([0], np.cumsum(n_pieces)[:-1])))
    seq_start = np.concatenate(([0], np.cumsum(seq_len)[:-1])).astype(np.int64)
    prefix = prefix_sums(flat)
    # n-grams that lie inside one sequence
    seq_of = np.repeat(np.arange(len(seqs)), seq_len)
    grams = windows(prefix, ngram) if len(flat) >= ngram else np.zeros(0, dtype=np.uint64)
    inside = np.flatnonzero(seq_of[: len(grams)] == seq_of[ngram - 1 :]) if len(grams) else np.zeros(0, np.int64)
    # short sequences, whole and by their first words
    short = np.flatnonzero(seq_len < ngram)
    a, n = seq_start[short], seq_len[short]
    first = spans(prefix, a, a + min_words)
    whole = spans(prefix, a, a + n)
    return (grams[inside], seq_item[seq_of[inside]]), (first, whole, n, seq_item[short])


def _distinct_rows(keys: np.ndarray, items: np.ndarray, max_items: int) -> tuple[np.ndarray, int]:
    """Rows of the distinct (key, item) pairs, sorted by key then item, without the keys of more
    than ``max_items`` items (templates; ``max_items <= 0``: none dropped), and how many keys
    were dropped."""
    order = np.lexsort((items, keys))
    k, it = keys[order], items[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (it[1:] != it[:-1])
    order, k = order[new], k[new]
    first = np.ones(len(order), dtype=bool)
    first[1:] = k[1:] != k[:-1]
    counts = np.diff(np.append(np.flatnonzero(first), len(order)))
    template = counts > max_items if max_items > 0 else np.zeros(len(counts), dtype=bool)
    return order[np.repeat(~template, counts)], int(template.sum())


def build_index(tasks: list[Task], ngram: int, min_words: int, max_items: int) -> NgramIndex:
    """The index of every item of ``tasks`` (all splits); ``max_items <= 0``: no template rule."""
    collected = _collect(tasks)
    words, offsets = _tokenize(collected.texts)
    lengths = np.diff(offsets)
    first_text = np.array(collected.first_text, dtype=np.int64)
    seqs = list(item_sequences(lengths, first_text, len(collected.texts), ngram, min_words))
    hashed = _Hashed()
    for i in range(0, len(seqs), _BATCH):
        grams, short = _hash_sequences(words, offsets, seqs[i : i + _BATCH], ngram, min_words)
        hashed.grams.append(grams)
        hashed.short.append(short)
    gram_hashes, gram_items = _concat(hashed.grams, 0, np.uint64), _concat(hashed.grams, 1)
    rows, templates = _distinct_rows(gram_hashes, gram_items, max_items)
    gram_hashes, gram_items = gram_hashes[rows], gram_items[rows]
    starts = np.flatnonzero(np.append(True, gram_hashes[1:] != gram_hashes[:-1]))
    # Short sequences: the template rule on their whole hash, then sorted by their first words.
    first, whole = _concat(hashed.short, 0, np.uint64), _concat(hashed.short, 1, np.uint64)
    length, item = _concat(hashed.short, 2), _concat(hashed.short, 3)
    rows, short_templates = _distinct_rows(whole, item, max_items)
    rows = rows[np.argsort(first[rows], kind="stable")]
    index = NgramIndex(
        ngram=ngram,
        min_words=min_words,
        hashes=gram_hashes[starts],
        offsets=np.append(starts, len(gram_hashes)).astype(np.int64),
        items=gram_items.astype(np.int32),
        short_first=first[rows],
        short_whole=whole[rows],
        short_length=length[rows].astype(np.int32),
        short_item=item[rows].astype(np.int32),
        tasks=[t.name for t in tasks],
        item_task=np.array(collected.item_task, dtype=np.int64),
        item_ids=collected.item_ids,
    )
    index.stats = _stats(index, {item for item, _ in seqs}, templates + short_templates)
    return index


def _concat(parts: list[tuple], k: int, dtype: type = np.int64) -> np.ndarray:
    return np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype=dtype)


def _stats(index: NgramIndex, indexed: set[int], templates: int) -> dict[str, dict[str, int]]:
    """Per task: items, and items with something to match (the others are too short); in
    ``all`` also the n-grams and short sequences indexed and the templates left out."""
    per_task = np.bincount(index.item_task, minlength=len(index.tasks))
    matchable = np.bincount(index.item_task[sorted(indexed)], minlength=len(index.tasks))
    out = {name: {"items": int(per_task[t]), "matchable": int(matchable[t])} for t, name in enumerate(index.tasks)}
    out["all"] = {
        "items": int(per_task.sum()),
        "matchable": len(indexed),
        "ngrams": len(index.hashes),
        "short_sequences": len(index.short_first),
        "templates_dropped": templates,
    }
    return out
