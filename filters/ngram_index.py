"""The benchmark n-gram index of the ``decontaminate`` filter: 64-bit hashes of benchmark word
n-grams, each mapped to the items it comes from, and the lookup of a document's n-grams.

Words are :func:`curate.core.text.tokenize_batch`'s (the normalization dedup compares text by:
NFKC, lower case, punctuation, symbols and dashes as word breaks, quotes of every kind alike)
with their 64-bit :func:`~curate.core.text.token_hashes`. An n-gram's hash is the polynomial
``sum(w[k] * P**(L-1-k)) mod 2**64`` over its ``L`` word hashes, salted by ``L``. From one
prefix sum of ``w[m] * P**-m`` (P is odd, so invertible modulo 2**64) the hashes of every
window of any length are two array operations each: a document is hashed at ``ngram`` and at
the lengths of the short sequences (a question with its answer, shorter than n words, see
:func:`item_sequences`), and all of them are looked up at once.

Which benchmark text is indexed (:func:`item_sequences`): every text of an item (question,
passage, each answer) with at least ``ngram`` words gives all its n-grams; a question shorter
than that is joined with each of its answers, and the joined text gives its n-grams when it
reaches ``ngram`` words, or counts whole, as one n-gram of its own length, when it has at least
``min_words``. An item with a single text (Winogrande's sentence with its answer filled in)
counts whole the same way. Shorter answers are never matched alone ("wind", "carbon dioxide"
are everywhere), and neither is a short question without an answer.

An n-gram found in more than ``max_items`` items is a template of the benchmark ("For which of
these two scenarios does the main character ...", 900 MMLU questions), not evidence of any one
item, and is left out.

Lookup: a bitmap of the hashes' top bits rejects almost every document n-gram with one gather;
the few that pass are searched in the sorted hashes of their length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from curate.core.tasks import Task
from curate.core.text import token_hashes, tokenize_batch

# Odd multiplier of the n-gram hash (arbitrary; both sides use it), and its inverse mod 2**64.
_P = 0xD6E8FEB86659FD93
_P_INV = pow(_P, -1, 1 << 64)
_SALT = 0x9E3779B97F4A7C15  # length L's hashes are xor-ed with L * _SALT
_BITMAP_BITS = 26  # 2**26 bits (8 MB): ~1% of document n-grams go on to the search, ~840k keys for `core`
_SHIFT = np.uint64(64 - _BITMAP_BITS)
_BATCH = 4000  # texts tokenized together while building


class _Powers:
    """P**i and P**-i mod 2**64 for i < size, grown by doubling (documents of any length)."""

    def __init__(self) -> None:
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def ensure(self, size: int) -> None:
        while len(self.up) < size:
            k = len(self.up)
            up_k, down_k = np.uint64(pow(_P, k, 1 << 64)), np.uint64(pow(_P_INV, k, 1 << 64))
            self.up = np.concatenate((self.up, self.up * up_k))
            self.down = np.concatenate((self.down, self.down * down_k))


_M64 = (1 << 64) - 1
_POWERS = _Powers()


def window_hashes(words: np.ndarray, lengths: tuple[int, ...]) -> np.ndarray:
    """The salted hashes of every window of each of ``lengths`` words, concatenated."""
    m = len(words)
    _POWERS.ensure(m + 1)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    np.cumsum(words * _POWERS.down[:m], out=prefix[1:])
    out = []
    for length in lengths:
        if length <= m:
            h = (prefix[length:] - prefix[:-length]) * _POWERS.up[length - 1 : m]
            out.append(h ^ np.uint64((length * _SALT) & _M64))
    if not out:
        return np.zeros(0, dtype=np.uint64)
    return out[0] if len(out) == 1 else np.concatenate(out)


@dataclass
class NgramIndex:
    """Benchmark n-gram hashes (sorted, distinct) and, for each, its items
    (``items[offsets[i]:offsets[i + 1]]``), with the tasks and reported ids of the items."""

    ngram: int
    lengths: tuple[int, ...]  # the window lengths indexed (the short sequences' and ngram)
    hashes: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    tasks: list[str]
    item_task: np.ndarray  # task index of every item
    item_ids: list[str]
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        slot = (self.hashes >> _SHIFT).astype(np.intp)
        self.bitmap = np.zeros(1 << (_BITMAP_BITS - 3), dtype=np.uint8)
        np.bitwise_or.at(self.bitmap, slot >> 3, np.left_shift(1, slot & 7).astype(np.uint8))

    def find_text(self, text: str) -> np.ndarray:
        """Sorted indices of the items whose n-grams occur in ``text``."""
        return self.find(token_hashes(tokenize_batch([text])))

    def find(self, words: np.ndarray) -> np.ndarray:
        """Sorted indices of the items whose n-grams occur in the word-hash sequence ``words``."""
        if not self.lengths or len(words) < self.lengths[0]:
            return _EMPTY
        h = window_hashes(words, self.lengths)
        slot = (h >> _SHIFT).astype(np.intp)
        maybe = (self.bitmap[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1
        if not maybe.any():
            return _EMPTY
        candidates = h[maybe.astype(bool)]
        pos = np.searchsorted(self.hashes, candidates)
        pos[pos == len(self.hashes)] = 0
        pos = np.unique(pos[self.hashes[pos] == candidates])
        if len(pos) == 0:
            return _EMPTY
        found = [self.items[self.offsets[p] : self.offsets[p + 1]] for p in pos.tolist()]
        return np.unique(np.concatenate(found)).astype(np.int64)


_EMPTY = np.zeros(0, dtype=np.int64)


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
    """Word hashes of all texts, concatenated, and each text's first word (len + 1 offsets)."""
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
    lengths: np.ndarray, first_text: np.ndarray, text_item: np.ndarray, ngram: int, min_words: int
) -> Iterator[tuple[int, tuple[int, ...]]]:
    """``(item, texts)`` of every word sequence to index (see the module docstring): a text on
    its own, or an item's short first text joined with one of its other texts. ``lengths`` are
    the texts' word counts; sequences too short to count are not yielded."""
    n_items = len(first_text)
    ends = np.append(first_text[1:], len(text_item))
    for item in range(n_items):
        first, end = int(first_text[item]), int(ends[item])
        q = int(lengths[first]) if end > first else 0
        for t in range(first, end):
            if lengths[t] >= ngram:
                yield item, (t,)
        if end - first == 1 and min_words <= q < ngram:
            yield item, (first,)
        elif q < ngram:
            for t in range(first + 1, end):
                if q + lengths[t] >= min_words:
                    yield item, (first, t)


def _sequence_hashes(
    words: np.ndarray, offsets: np.ndarray, seqs: list[tuple[int, tuple[int, ...]]], ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes, items)``: the n-grams of the sequences of at least ``ngram`` words, and the
    whole (salted) hash of each shorter one, the same values :func:`window_hashes` gives."""
    seq_item = np.array([item for item, _ in seqs], dtype=np.int64)
    spans = [(int(offsets[t]), int(offsets[t + 1])) for _, texts in seqs for t in texts]
    gather = np.concatenate([np.arange(a, b) for a, b in spans])
    parts = np.array([len(texts) for _, texts in seqs], dtype=np.int64)
    span_len = np.array([b - a for a, b in spans], dtype=np.int64)
    seq_len = np.add.reduceat(span_len, np.concatenate(([0], np.cumsum(parts)[:-1])))
    seq_start = np.concatenate(([0], np.cumsum(seq_len)[:-1])).astype(np.int64)
    flat = words[gather]
    m = len(flat)
    _POWERS.ensure(m + 1)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    np.cumsum(flat * _POWERS.down[:m], out=prefix[1:])
    # n-grams that lie inside one sequence
    seq_of = np.repeat(np.arange(len(seqs)), seq_len)
    grams = window_hashes(flat, (ngram,))
    inside = np.flatnonzero(seq_of[: len(grams)] == seq_of[ngram - 1 :]) if len(grams) else grams.astype(np.int64)
    # whole short sequences, each at its own length
    short = np.flatnonzero(seq_len < ngram)
    a, b = seq_start[short], seq_start[short] + seq_len[short]
    whole = (prefix[b] - prefix[a]) * _POWERS.up[b - 1] ^ (seq_len[short].astype(np.uint64) * np.uint64(_SALT))
    hashes = np.concatenate((grams[inside], whole))
    items = np.concatenate((seq_item[seq_of[inside]], seq_item[short]))
    return hashes, items


def _group(hashes: np.ndarray, items: np.ndarray, max_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Distinct (hash, item) pairs grouped by hash: ``(hashes, offsets, items, templates)``;
    hashes of more than ``max_items`` items (templates) are dropped and counted."""
    order = np.lexsort((items, hashes))
    hashes, items = hashes[order], items[order]
    keep = np.ones(len(hashes), dtype=bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (items[1:] != items[:-1])
    hashes, items = hashes[keep], items[keep]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    counts = np.diff(np.append(np.flatnonzero(first), len(hashes)))
    templates = 0
    if max_items > 0:
        template = counts > max_items
        templates = int(template.sum())
        keep_rows = np.repeat(~template, counts)
        hashes, items, counts = hashes[keep_rows], items[keep_rows], counts[~template]
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return hashes[offsets[:-1]], offsets, items.astype(np.int32), templates


def build_index(tasks: list[Task], ngram: int, min_words: int, max_items: int) -> NgramIndex:
    """The index of every item of ``tasks`` (all splits); ``max_items <= 0``: no template rule."""
    collected = _collect(tasks)
    words, offsets = _tokenize(collected.texts)
    lengths = np.diff(offsets)
    first_text = np.array(collected.first_text, dtype=np.int64)
    text_item = np.array(collected.text_item, dtype=np.int64)
    seqs = list(item_sequences(lengths, first_text, text_item, ngram, min_words))
    parts = [_sequence_hashes(words, offsets, seqs[i : i + _BATCH], ngram) for i in range(0, len(seqs), _BATCH)]
    all_hashes = np.concatenate([h for h, _ in parts]) if parts else np.zeros(0, dtype=np.uint64)
    all_items = np.concatenate([i for _, i in parts]) if parts else np.zeros(0, dtype=np.int64)
    hashes, offsets_, items, templates = _group(all_hashes, all_items, max_items)
    seq_lengths = {sum(int(lengths[t]) for t in texts) for _, texts in seqs}
    window_lengths = tuple(sorted({n for n in seq_lengths if n < ngram} | {ngram}))
    index = NgramIndex(
        ngram,
        window_lengths,
        hashes,
        offsets_,
        items,
        [t.name for t in tasks],
        np.array(collected.item_task, dtype=np.int64),
        collected.item_ids,
    )
    index.stats = _stats(index, {item for item, _ in seqs}, templates)
    return index


def _stats(index: NgramIndex, indexed: set[int], templates: int) -> dict[str, dict[str, int]]:
    """Per task: items, and items with something to match (the others are too short); in
    ``all`` also the n-grams indexed and the template n-grams left out."""
    per_task = np.bincount(index.item_task, minlength=len(index.tasks))
    matchable = np.bincount(index.item_task[sorted(indexed)], minlength=len(index.tasks))
    out = {name: {"items": int(per_task[t]), "matchable": int(matchable[t])} for t, name in enumerate(index.tasks)}
    out["all"] = {
        "items": int(per_task.sum()),
        "matchable": len(indexed),
        "ngrams": len(index.hashes),
        "templates_dropped": templates,
    }
    return out
