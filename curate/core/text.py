"""Text facts shared by the filters and dedup: scripts without spaces, and the one word
normalization and tokenization that dedup and the ``decontaminate`` filter compare text by.

Scripts written without spaces between words (Chinese, Japanese kana, Thai, Lao, Khmer,
Myanmar) have no word boundaries to split on; both the filters' word counts and dedup's
shingles take one character there as one word.

Normalization (:func:`tokenize_batch`): Unicode NFKC, lower case, then every punctuation,
symbol, separator and control character becomes a word break (so curly and straight quotes,
all dashes and ellipses compare equal: ``don’t``, ``don‘t`` and ``don't`` are all ``don t``),
format characters (soft hyphen, zero-width joiners, BOM) are dropped, and runs of whitespace
collapse; a character of a script without spaces is a word on its own. Each word gets a 64-bit
hash (:func:`token_hashes`), computed on code-point arrays for a whole batch at once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NO_SPACE_RANGES: list[tuple[int, int]] = [
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
]


def in_no_space_script(cp: int) -> bool:
    """Whether code point ``cp`` belongs to a script written without spaces."""
    return any(lo <= cp <= hi for lo, hi in NO_SPACE_RANGES)


_M64 = (1 << 64) - 1
# Constants of the token hash (odd, arbitrary, fixed forever: changing one changes every dedup
# signature).
_TOKEN_BASE = 0x100000001B3
_TOKEN_LEN_MUL = 0x9E3779B97F4A7C15
_POW_BITS = 16  # token positions wrap at 65,536 characters (see _token_pow)

# Character classes of the normalization table. A MARK (combining character) belongs to the
# word before it; one that follows a separator is a separator too (NFKC turns spacing accents
# such as ´ into a space plus a combining accent, which must not glue onto the next word).
WORD, SEPARATOR, IGNORED, SINGLE, MARK = 0, 1, 2, 3, 4


@lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """Class of every code point (WORD, SEPARATOR, IGNORED or SINGLE), built once per process."""
    table = np.zeros(0x110000, dtype=np.uint8)
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        if cat == "Cf":
            table[cp] = IGNORED
        elif cat[0] in "PSZ" or cat in ("Cc", "Cs"):
            table[cp] = SEPARATOR
        elif cat[0] == "M":
            table[cp] = MARK
    # Scripts without spaces between words: one character = one token. (Text is NFKC-normalized
    # first, so half-width katakana arrive as full-width.)
    for lo, hi in NO_SPACE_RANGES:
        block = table[lo : hi + 1]
        block[(block == WORD) | (block == MARK)] = SINGLE
    return table


@lru_cache(maxsize=1)
def _token_pow() -> np.ndarray:
    """B**e mod 2**64 for e < 2**_POW_BITS (the weight of a token's e-th character)."""
    out = np.empty(1 << _POW_BITS, dtype=np.uint64)
    value = 1
    for e in range(out.size):
        out[e] = value
        value = (value * _TOKEN_BASE) & _M64
    return out


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer on a uint64 array (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M64
    return h ^ (h >> 33)


@dataclass
class TokenizedBatch:
    """Tokens of a batch of documents, as positions in one concatenated code-point array."""

    codepoints: np.ndarray  # uint32, documents joined by a separator, ignored chars removed
    starts: np.ndarray  # int64 token start positions
    ends: np.ndarray  # int64 token end positions (exclusive)
    doc_first_token: np.ndarray  # int64, len n_docs + 1: tokens of doc d are [f[d], f[d+1])

    @property
    def n_docs(self) -> int:
        return len(self.doc_first_token) - 1

    @property
    def tokens(self) -> list[str]:
        text = self.codepoints.tobytes().decode("utf-32-le", "surrogatepass")
        return [text[a:b] for a, b in zip(self.starts.tolist(), self.ends.tolist())]


def _prepare(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def tokenize_batch(texts: Sequence[str]) -> TokenizedBatch:
    """Normalize and tokenize documents together (see the module docstring for the rules).

    Works on the code points of the whole batch at once: a class lookup per character, then
    token starts and ends from the classes of neighbouring characters. (Measured faster than
    replacing separators and calling ``str.split`` per document, even with token hashes
    memoized.)
    """
    prepared = [_prepare(t) for t in texts]
    lengths = np.fromiter((len(t) for t in prepared), dtype=np.int64, count=len(prepared))
    # A newline between documents is a separator, so no token spans two documents.
    joined = "\n".join(prepared)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    classes = char_classes()[cps]
    doc_starts = np.zeros(len(prepared) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=doc_starts[1:])
    if (classes == IGNORED).any():
        keep = classes != IGNORED
        removed_before = np.concatenate(([0], np.cumsum(~keep)))
        doc_starts = doc_starts - removed_before[np.minimum(doc_starts, len(cps))]
        cps, classes = cps[keep], classes[keep]
    marks = classes == MARK
    if marks.any():
        # Class of the last non-mark character at or before each position.
        last = np.maximum.accumulate(np.where(marks, -1, np.arange(len(classes))))
        base = np.where(last >= 0, classes[np.maximum(last, 0)], SEPARATOR)
        classes = np.where(marks, np.where(base == SEPARATOR, SEPARATOR, WORD), classes).astype(np.uint8)
    word = classes != SEPARATOR
    single = classes == SINGLE
    n = len(cps)
    prev_word = np.zeros(n, dtype=bool)
    prev_word[1:] = word[:-1]
    next_word = np.zeros(n, dtype=bool)
    next_word[:-1] = word[1:]
    is_start = word & ~prev_word
    is_end = word & ~next_word
    if single.any():  # every single-script character is a token on its own
        prev_single = np.zeros(n, dtype=bool)
        prev_single[1:] = single[:-1]
        next_single = np.zeros(n, dtype=bool)
        next_single[:-1] = single[1:]
        is_start |= word & (single | prev_single)
        is_end |= word & (single | next_single)
    starts = np.flatnonzero(is_start).astype(np.int64)
    ends = np.flatnonzero(is_end).astype(np.int64) + 1
    doc_first_token = np.searchsorted(starts, doc_starts, side="left").astype(np.int64)
    doc_first_token[-1] = len(starts)
    return TokenizedBatch(cps, starts, ends, doc_first_token)


def token_hashes(batch: TokenizedBatch) -> np.ndarray:
    """64-bit hash of every token: fmix64(sum(cp_e * B**(e mod 2**16)) xor len * K)."""
    cps, starts, ends = batch.codepoints, batch.starts, batch.ends
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    # Offset of every position inside its token (positions outside tokens get weight 0).
    marker = np.zeros(len(cps), dtype=np.int64)
    marker[starts] = starts
    token_start = np.maximum.accumulate(marker)
    offset = (np.arange(len(cps), dtype=np.int64) - token_start) & ((1 << _POW_BITS) - 1)
    weighted = cps.astype(np.uint64) * _token_pow()[offset]
    prefix = np.zeros(len(cps) + 1, dtype=np.uint64)
    np.cumsum(weighted, out=prefix[1:])
    sums = prefix[ends] - prefix[starts]
    lengths = (ends - starts).astype(np.uint64)
    return fmix64(sums ^ (lengths * np.uint64(_TOKEN_LEN_MUL)))


def token_hash(token: str) -> int:
    """:func:`token_hashes` for one token (pure Python: for tests and one-off hashes)."""
    pows = _token_pow()
    total = 0
    for e, ch in enumerate(token):
        total = (total + ord(ch) * int(pows[e & ((1 << _POW_BITS) - 1)])) & _M64
    return _fmix64_int(total ^ ((len(token) * _TOKEN_LEN_MUL) & _M64))
