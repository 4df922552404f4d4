"""The benchmark n-gram index of the ``decontaminate`` filter: 64-bit hashes of benchmark word
n-grams, each mapped to the items it comes from, and the lookup of a document's n-grams.

Words are :func:`curate.core.text.tokenize_batch`'s (the normalization dedup compares text by:
NFKC, lower case, punctuation, symbols and dashes as word breaks, quotes of every kind alike)
with their 64-bit :func:`~curate.core.text.token_hashes`. The hash of ``L`` consecutive words
is the polynomial ``sum(w[k] * P**(L-1-k)) mod 2**64``, salted by ``L``. From one prefix sum of
``w[m] * P**-m`` (P is odd, so invertible modulo 2**64) the hashes of all windows of one
length are two array operations, and any single span is a subtraction and a product.

What is indexed (built by :mod:`filters.ngram_build`): the ``ngram``-word n-grams of the
benchmark texts, and *short sequences* (a short question joined with an answer, fewer than
``ngram`` words but at least ``min_words``) whole. A short sequence is looked up by its first
``min_words`` words and then checked whole, so a document is hashed at two lengths only.

Lookup: a bitmap of the hashes' top bits rejects almost every document window with one
gather; the few that pass are searched in the sorted hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from curate.core.text import token_hashes, tokenize_batch

# Odd multiplier of the n-gram hash (arbitrary; both sides use it), and its inverse mod 2**64.
_P = 0xD6E8FEB86659FD93
_P_INV = pow(_P, -1, 1 << 64)
_SALT = 0x9E3779B97F4A7C15  # the hashes of L words are xor-ed with L * _SALT
_BITMAP_BITS = 26  # 2**26 bits (8 MB): ~1% of document n-grams go on to the search for `core`
_SHORT_BITMAP_BITS = 20  # the short sequences' first words: ~10k keys for `core`
EMPTY = np.zeros(0, dtype=np.int64)


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


_POWERS = _Powers()


def prefix_sums(words: np.ndarray) -> np.ndarray:
    """``prefix[j] = sum(words[m] * P**-m for m < j)`` (len(words) + 1 values)."""
    m = len(words)
    _POWERS.ensure(m + 1)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    np.cumsum(words * _POWERS.down[:m], out=prefix[1:])
    return prefix


def windows(prefix: np.ndarray, length: int) -> np.ndarray:
    """The hash of every window of ``length`` words (index: the window's first word)."""
    m = len(prefix) - 1
    h = (prefix[length:] - prefix[:-length]) * _POWERS.up[length - 1 : m]
    return h ^ np.uint64((length * _SALT) & ((1 << 64) - 1))


def spans(prefix: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of each span ``words[starts[i]:ends[i]]`` (non-empty)."""
    lengths = (ends - starts).astype(np.uint64)
    return (prefix[ends] - prefix[starts]) * _POWERS.up[ends - 1] ^ (lengths * np.uint64(_SALT))


class _Sieve:
    """Sorted hashes behind a bitmap of their top bits: which of many values are among them."""

    def __init__(self, hashes: np.ndarray, bits: int):
        self.hashes = hashes
        self.shift = np.uint64(64 - bits)
        slot = (hashes >> self.shift).astype(np.intp)
        self.bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
        np.bitwise_or.at(self.bitmap, slot >> 3, np.left_shift(1, slot & 7).astype(np.uint8))

    def find(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(where, pos)``: the indices of the values that are among the hashes, and for each the
        position of its first equal hash."""
        slot = (values >> self.shift).astype(np.intp)
        maybe = np.flatnonzero((self.bitmap[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1)
        if len(maybe) == 0 or len(self.hashes) == 0:
            return EMPTY, EMPTY
        pos = np.searchsorted(self.hashes, values[maybe])
        pos[pos == len(self.hashes)] = 0
        equal = self.hashes[pos] == values[maybe]
        return maybe[equal], pos[equal]


@dataclass
class NgramIndex:
    """The n-gram hashes (sorted, distinct) with their items (``items[offsets[i]:offsets[i+1]]``),
    the short sequences sorted by the hash of their first ``min_words`` words (``short_first``)
    with their whole hash, length and item, and what the items are (task, reported id)."""

    ngram: int
    min_words: int
    hashes: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    short_first: np.ndarray
    short_whole: np.ndarray
    short_length: np.ndarray
    short_item: np.ndarray
    tasks: list[str]
    item_task: np.ndarray  # task index of every item
    item_ids: list[str]
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._grams = _Sieve(self.hashes, _BITMAP_BITS)
        self._short = _Sieve(self.short_first, _SHORT_BITMAP_BITS)

    def find_text(self, text: str) -> np.ndarray:
        """Sorted indices of the items found in ``text``."""
        return self.find(token_hashes(tokenize_batch([text])))

    def find(self, words: np.ndarray) -> np.ndarray:
        """Sorted indices of the items found in the word-hash sequence ``words``."""
        m = len(words)
        shortest = self.min_words if len(self.short_first) else self.ngram
        if m < shortest:
            return EMPTY
        prefix = prefix_sums(words)
        found = []
        if m >= self.ngram:
            _, pos = self._grams.find(windows(prefix, self.ngram))
            found += [self.items[self.offsets[p] : self.offsets[p + 1]] for p in np.unique(pos).tolist()]
        if len(self.short_first):
            found.append(self._short_hits(prefix)[2])
        found = [f for f in found if len(f)]
        if not found:
            return EMPTY
        return np.unique(np.concatenate(found)).astype(np.int64)

    def matches(self, words: np.ndarray) -> list[tuple[int, int]]:
        """``(first word, number of words)`` of every window of ``words`` that matched: what to
        show when asked why a document was flagged."""
        if len(words) < min(self.min_words, self.ngram):
            return []
        prefix = prefix_sums(words)
        out = []
        if len(words) >= self.ngram:
            where, _ = self._grams.find(windows(prefix, self.ngram))
            out += [(i, self.ngram) for i in where.tolist()]
        if len(self.short_first):
            start, end, _ = self._short_hits(prefix)
            out += list(zip(start.tolist(), (end - start).tolist()))
        return sorted(set(out))

    def _short_hits(self, prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start, end, item)`` of the short sequences found whole: looked up by their first
        ``min_words`` words, then compared whole."""
        m = len(prefix) - 1
        if m < self.min_words:
            return EMPTY, EMPTY, EMPTY
        where, pos = self._short.find(windows(prefix, self.min_words))
        if len(where) == 0:
            return EMPTY, EMPTY, EMPTY
        # Every sequence sharing the first words (equal hashes are adjacent), at each place.
        stop = np.searchsorted(self.short_first, self.short_first[pos], side="right")
        count = stop - pos
        start = np.repeat(where, count)
        entry = np.repeat(pos - np.cumsum(count) + count, count) + np.arange(count.sum())
        end = start + self.short_length[entry]
        inside = end <= m
        start, end, entry = start[inside], end[inside], entry[inside]
        whole = spans(prefix, start, end) == self.short_whole[entry]
        return start[whole], end[whole], self.short_item[entry[whole]]
