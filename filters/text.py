"""Shared text analysis for the filters: word splitting, lines, paragraphs, computed once.

Every heuristic filter needs the same views of a document (its lines, its words, how many of
the words contain a letter ...). :func:`view` computes them lazily and caches the result for
the document's current text, so a chain of five filters splits a document into words once,
not five times. A transform that changes ``doc.text`` (``c4``, ``pii``) gets a fresh view
automatically, because the cache is keyed on the identity of the text string.

Word splitting
--------------
A *word* is a maximal run of letters, digits and combining marks, allowing the connectors
``' ’ - . , : / _ @ &`` between two such characters (``don't``, ``well-known``, ``3.14``,
``example.com/path`` are one word each). Punctuation on its own is never a word: the Gopher
"80 % of words contain a letter" rule must not count a dash or a closing quote as a word
without a letter.

Scripts written without spaces (Chinese, Japanese kana, Thai, Lao, Khmer, Myanmar) have no
whitespace words to count. There each character (with its combining marks) counts as one
word, so a Chinese page of 500 characters has 500 "words" and is not dropped for having too
few. Rules calibrated on English word lengths (Gopher's mean word length) are computed over
the space-delimited words only and skipped when those are a minority of the words; see
:attr:`TextView.mean_word_length`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cached_property
from typing import Any

import numpy as np

from curate.core.text import in_no_space_script


def _ranges_to_class(ranges: list[tuple[int, int]]) -> str:
    parts = []
    for lo, hi in ranges:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


def _build_classes() -> tuple[str, str, str]:
    """Character classes (as regex fragments) for word characters, no-space-script base
    characters and combining marks, generated from the Unicode database once at import."""
    word: list[tuple[int, int]] = []
    base: list[tuple[int, int]] = []
    marks: list[tuple[int, int]] = []

    def add(ranges: list[tuple[int, int]], cp: int) -> None:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))

    # The BMP is enumerated; supplementary planes only matter for CJK extensions (covered by
    # the explicit range) and rare scripts, which we accept as word characters wholesale.
    for cp in range(0x30, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat[0] == "M":
            add(marks, cp)
        if cat[0] in "LNM":
            if in_no_space_script(cp):
                if cat[0] != "M":
                    add(base, cp)
            else:
                add(word, cp)
    word.append((0x10000, 0x1FFFF))
    base.append((0x20000, 0x3134F))
    return _ranges_to_class(word), _ranges_to_class(base), _ranges_to_class(marks)


_WORD_CLASS, _NO_SPACE_CLASS, _MARK_CLASS = _build_classes()
_CONNECTORS = r"['’\-.,:/_@&]"
# A no-space-script character with its marks, or a run of word characters with connectors.
WORD_RE = re.compile(rf"[{_NO_SPACE_CLASS}][{_MARK_CLASS}]*|[{_WORD_CLASS}]+(?:{_CONNECTORS}[{_WORD_CLASS}]+)*")
_NO_SPACE_CHAR_RE = re.compile(rf"[{_NO_SPACE_CLASS}]")
_LETTER_RE = re.compile(r"[^\W\d_]")

# Characters that end a sentence, across scripts: Latin/Greek/Cyrillic . ! ?, CJK full-width
# marks, Devanagari/Bengali danda, Arabic question mark and Urdu full stop, Armenian,
# Ethiopic, Myanmar, Khmer and Tibetan marks, and the ellipsis.
TERMINAL_PUNCTUATION: tuple[str, ...] = tuple(".!?。！？｡．।॥؟۔։።፧။។།…")
# Closing quotes and brackets that may follow the mark: `He said "yes."` and `(see above.)`
# end sentences too (datatrove's set has no closing quotes, so dialogue lines fail its rule).
CLOSERS = "\"'”’»」』)]）›"


def ends_with_terminal(line: str, ellipsis_ok: bool = True) -> bool:
    """True when a (stripped) line ends a sentence: a terminal mark, optionally followed by
    closing quotes/brackets. With ``ellipsis_ok=False`` a trailing ``...``/``…`` does not
    count (C4's rule)."""
    core = line.rstrip(CLOSERS)
    if not core.endswith(TERMINAL_PUNCTUATION):
        return False
    return ellipsis_ok or not core.endswith(("...", "…"))


BULLETS: tuple[str, ...] = ("•", "-", "*", "·", "‣", "◦", "▪", "►", "▸", "●", "○", "■", "□", "–", "—", "➢", "✓", "✔")
# Sentence ends: Latin-script marks followed by optional closers and whitespace/end; CJK and
# other full-width marks need no following space.
SENTENCE_END_RE = re.compile(r"[.!?]+[\"'”’»)\]]*(?=\s|$)|[。！？｡।॥؟۔։።፧။។]+")


class TextView:
    """Lazily computed views of one text. Attributes are computed on first use and kept."""

    def __init__(self, text: str):
        self.text = text or ""

    @cached_property
    def lines(self) -> list[str]:
        """Lines as the text splits them (``str.splitlines``), unstripped."""
        return self.text.splitlines()

    @cached_property
    def nonempty_lines(self) -> list[str]:
        """Stripped lines with something on them."""
        return [s for s in (line.strip() for line in self.lines) if s]

    @cached_property
    def paragraphs(self) -> list[str]:
        """Blocks separated by blank lines."""
        stripped = self.text.strip()
        return list(re.split(r"\n\s*\n", stripped)) if stripped else []

    @cached_property
    def words(self) -> list[str]:
        return WORD_RE.findall(self.text)

    @cached_property
    def n_words(self) -> int:
        return len(self.words)

    @cached_property
    def words_lower(self) -> list[str]:
        return [w.lower() for w in self.words]

    @cached_property
    def n_no_space_words(self) -> int:
        """Words that are single characters of scripts written without spaces."""
        if not _NO_SPACE_CHAR_RE.search(self.text):
            return 0
        return sum(1 for w in self.words if _NO_SPACE_CHAR_RE.match(w))

    @cached_property
    def n_alpha_words(self) -> int:
        """Words with at least one letter (digits-only tokens such as ``2021`` have none)."""
        has_letter = _LETTER_RE.search
        return sum(1 for w in self.words if w.isalpha() or has_letter(w))

    @cached_property
    def mean_word_length(self) -> float | None:
        """Mean length of the space-delimited words; None when there are no words, or when
        most words are characters of a no-space script (the rule's thresholds are calibrated
        on space-delimited languages and would reject every such page)."""
        n = self.n_words
        if n == 0:
            return None
        n_cjk = self.n_no_space_words
        if n_cjk == 0:
            return sum(map(len, self.words)) / n
        if n_cjk * 2 >= n:
            return None
        spaced = [w for w in self.words if not _NO_SPACE_CHAR_RE.match(w)]
        return sum(map(len, spaced)) / len(spaced)

    @cached_property
    def word_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): an int64 id per word (equal words, equal ids; case-sensitive) and
        word lengths, for the vectorised n-gram statistics. Ids number the distinct words in
        order of first appearance: exact (no collisions) and, unlike Python's per-process
        randomized ``hash``, the same in every process, so ties between equally frequent
        n-grams break the same way on every worker and engine."""
        words = self.words
        vocab: dict[str, int] = {}
        ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        return ids, lengths

    def sentence_count(self, text: str | None = None) -> int:
        """Sentences, counted by sentence-ending punctuation; a final unpunctuated fragment
        with words counts as one more."""
        text = self.text if text is None else text
        ends = list(SENTENCE_END_RE.finditer(text))
        n = len(ends)
        tail = text[ends[-1].end() :] if ends else text
        if WORD_RE.search(tail):
            n += 1
        return n


_last_view: TextView | None = None


def view(text_or_doc: Any) -> TextView:
    """The cached :class:`TextView` of a document (or string). The cache holds the last text
    seen, keyed by identity, which is exactly the access pattern of a filter chain."""
    global _last_view
    text = text_or_doc if isinstance(text_or_doc, str) else (text_or_doc.text or "")
    last = _last_view
    if last is not None and last.text is text:
        return last
    _last_view = TextView(text)
    return _last_view


# ------------------------------------------------------------------ repeated n-grams

# Odd 64-bit multiplier for the rolling n-gram hash (wrapping uint64 arithmetic). Two distinct
# n-grams share a hash with probability ~2^-64 per pair; a collision could only make a
# document look slightly more repetitive than it is.
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def ngram_hashes(ids: np.ndarray, n_max: int) -> dict[int, np.ndarray]:
    """Hashes of every n-gram for n = 1..n_max (key n -> array of len(ids) - n + 1)."""
    out: dict[int, np.ndarray] = {}
    if len(ids) == 0:
        return out
    h = ids.astype(np.uint64) + np.uint64(1)
    out[1] = h
    with np.errstate(over="ignore"):
        for n in range(2, min(n_max, len(ids)) + 1):
            h = h[:-1] * _HASH_MUL + (ids[n - 1 :].astype(np.uint64) + np.uint64(1))
            out[n] = h
    return out


def _coverage(starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """Boolean mask of word positions covered by n-grams starting at ``starts``."""
    if len(starts) == 0:
        return np.zeros(length, dtype=bool)
    delta = (
        np.bincount(starts, minlength=length + 1)[: length + 1]
        - np.bincount(starts + n, minlength=length + 1)[: length + 1]
    )
    return np.cumsum(delta[:length]) > 0


class NgramGroups:
    """Occurrences of equal n-grams, from one sort of their hashes."""

    def __init__(self, hashes: np.ndarray):
        self.order = np.argsort(hashes)
        ordered = hashes[self.order]
        # same[i]: the (i+1)-th n-gram in sorted order equals the i-th one.
        self.same = ordered[1:] == ordered[:-1]

    def _runs(self) -> tuple[np.ndarray, np.ndarray]:
        run_starts = np.concatenate(([0], np.flatnonzero(~self.same) + 1))
        sizes = np.diff(np.append(run_starts, len(self.order)))
        return run_starts, sizes

    def repeat_starts(self) -> np.ndarray:
        """Start positions of n-grams that repeat an earlier one (every occurrence of a
        repeated n-gram but its first in the text)."""
        if not self.same.any():
            return self.order[:0]
        run_starts, sizes = self._runs()
        in_repeated_run = np.repeat(sizes >= 2, sizes)
        first_in_text = np.minimum.reduceat(self.order, run_starts)
        is_first = np.zeros(len(self.order) + 1, dtype=bool)
        is_first[first_in_text] = True
        positions = self.order[in_repeated_run]
        return positions[~is_first[positions]]

    def top_starts(self) -> np.ndarray:
        """Start positions of every occurrence of the most frequent n-gram (empty when no
        n-gram occurs twice; the first such n-gram in sorted order wins a tie)."""
        if not self.same.any():
            return self.order[:0]
        run_starts, sizes = self._runs()
        best = int(np.argmax(sizes))
        return self.order[run_starts[best] : run_starts[best] + sizes[best]]


def top_ngram_chars(hashes: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters (of words) covered by all occurrences of the most frequent n-gram, when it
    occurs at least twice (an n-gram seen once is not repetition); overlaps count once."""
    if len(hashes) < 2:
        return 0
    starts = NgramGroups(hashes).top_starts()
    if len(starts) == 0:
        return 0
    return int(lengths[_coverage(starts, n, len(lengths))].sum())


def duplicate_ngram_chars(hashes: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters (of words) covered by n-grams that repeat an n-gram seen earlier in the
    text (the first occurrence is not counted; overlapping copies count once)."""
    if len(hashes) < 2:
        return 0
    starts = NgramGroups(hashes).repeat_starts()
    if len(starts) == 0:
        return 0
    return int(lengths[_coverage(starts, n, len(lengths))].sum())


def duplicate_elements(items: list[str]) -> tuple[int, int]:
    """(number, characters) of items equal to an earlier item."""
    seen: set[str] = set()
    n = chars = 0
    for item in items:
        if item in seen:
            n += 1
            chars += len(item)
        else:
            seen.add(item)
    return n, chars


# ------------------------------------------------------------------ fastText input

_FT_PUNCT_RE = re.compile(r"([^\w\s])")


def normalize_for_fasttext(text: str, max_chars: int = 0, lowercase: bool = True, split_punct: bool = True) -> str:
    """One line of text for fastText: whitespace (newlines included; fastText's predict
    rejects them) collapsed to single spaces, optionally lower-cased and with punctuation
    split off words, truncated to ``max_chars`` (0 = no limit) at a space."""
    if max_chars and len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
    if lowercase:
        text = text.lower()
    if split_punct:
        text = _FT_PUNCT_RE.sub(r" \1 ", text)
    return " ".join(text.split())


def flatten_lines(text: str, max_chars: int = 0) -> str:
    """Text with line breaks as spaces (for language ID), truncated to ``max_chars``."""
    if max_chars and len(text) > max_chars:
        text = text[:max_chars]
    return " ".join(text.split())
