"""Pure MinHash helpers for ``curate dedup``: normalization, shingles, signatures.

Everything here works on whole batches of documents with numpy, so the per-document Python
cost is a Unicode normalization and a lower-casing; tokenization, token hashing, shingling and
the permutations run as array operations over the concatenated batch.

Normalization and tokenization are :func:`curate.core.text.tokenize_batch` (shared with the
``decontaminate`` filter; :func:`normalize_text` shows the result): Unicode NFKC, lower case,
then every punctuation, symbol, separator and control character becomes a word break (so curly
and straight quotes, all dashes and ellipses compare equal: ``don’t``, ``don‘t`` and ``don't``
are all ``don t``), format characters (soft hyphen, zero-width joiners, BOM) are dropped, and
runs of whitespace collapse. Scripts written without spaces (CJK ideographs, kana, Thai, Lao,
Khmer, Myanmar) count one character as one word, so shingles work for them too.

Signatures use datasketch's ``affine32`` scheme (its default since 2.0): each shingle is hashed
once to 32 bits, mixed by the MurmurHash3 finalizer and mapped by ``num_perm`` permutations
``a*h + b mod 2**32`` drawn from ``np.random.RandomState(seed)``; the signature is the minimum
per permutation. Two shingle hashes are offered:

* ``fast`` (default): a token hash computed on code-point arrays, combined over the ``ngram``
  tokens of a shingle. :func:`shingle_hash32` computes the same value for one shingle string,
  so ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash32)`` fed our :func:`shingles`
  gives exactly our signatures.
* ``sha1``: datasketch's default ``sha1_hash32`` of the UTF-8 shingle; signatures are
  identical to a plain ``datasketch.MinHash(num_perm, seed)`` fed our shingles (slower).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from curate.core.text import TokenizedBatch, fmix64, token_hash, token_hashes, tokenize_batch

MAX_HASH32 = np.uint32(0xFFFFFFFF)
_M64 = (1 << 64) - 1
# Constants of the shingle hash (odd, arbitrary, fixed forever: changing one changes every
# signature; the token hash's are in curate.core.text).
_SHINGLE_INIT = 0xC2B2AE3D27D4EB4F
_SHINGLE_MUL = 0x165667B19E3779F9


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer on a uint32 array (datasketch applies it before permuting)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


# --------------------------------------------------------------------------- shingles


def _combine_step(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    return fmix64((s ^ t) * np.uint64(_SHINGLE_MUL))


def shingle_hash32(shingle: bytes | str) -> int:
    """The ``fast`` 32-bit hash of one shingle (tokens joined by single spaces).

    A datasketch ``hashfunc``: ``MinHash(num_perm, seed, hashfunc=shingle_hash32)`` updated with
    :func:`shingles` reproduces :meth:`MinHasher.signatures` exactly.
    """
    if isinstance(shingle, bytes):
        shingle = shingle.decode("utf-8", "surrogatepass")
    tokens = shingle.split(" ")
    s = np.array([_SHINGLE_INIT], dtype=np.uint64)
    for tok in tokens:
        s = _combine_step(s, np.array([token_hash(tok)], dtype=np.uint64))
    return int(s[0] >> np.uint64(32))


def shingle_ranges(doc_first_token: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first token, token count, document) of every shingle in a batch.

    A document with at least ``ngram`` tokens has ``len - ngram + 1`` shingles; a shorter
    non-empty one has a single shingle of all its tokens; an empty one has none.
    """
    first = doc_first_token[:-1]
    counts = np.diff(doc_first_token)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    doc_of = np.repeat(np.arange(len(counts), dtype=np.int64), per_doc)
    shingle_starts = np.zeros(len(doc_of), dtype=np.int64)
    if len(doc_of):
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(per_doc, out=offsets[1:])
        shingle_starts = first[doc_of] + (np.arange(len(doc_of)) - offsets[doc_of])
    lengths = np.minimum(counts[doc_of], ngram)
    return shingle_starts, lengths, doc_of


def fast_shingle_hashes64(tok_hashes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ngram: int) -> np.ndarray:
    """Full 64-bit ``fast`` hash of every shingle (the 32-bit one is its top half)."""
    s = np.full(len(starts), _SHINGLE_INIT, dtype=np.uint64)
    for k in range(ngram):
        active = lengths > k
        if active.all():
            s = _combine_step(s, tok_hashes[starts + k])
        elif active.any():
            s[active] = _combine_step(s[active], tok_hashes[starts[active] + k])
    return s


def fast_shingle_hashes(tok_hashes: np.ndarray, starts: np.ndarray, lengths: np.ndarray, ngram: int) -> np.ndarray:
    return (fast_shingle_hashes64(tok_hashes, starts, lengths, ngram) >> np.uint64(32)).astype(np.uint32)


def shingle_sets(texts: Sequence[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The shingle set of every document as sorted unique 64-bit hashes: ``(values, counts)``,
    document ``d``'s set being ``values[sum(counts[:d]) : sum(counts[:d + 1])]``.

    Same normalization and shingles as the signatures (:func:`shingles`), so the Jaccard of two
    such sets is the figure a signature estimates; the 64-bit ``fast`` hash identifies a shingle
    whatever ``shingle_hash`` the signatures use (a collision between two distinct shingles of a
    pair has odds ~ n**2 / 2**64)."""
    batch = tokenize_batch(texts)
    tok = token_hashes(batch)
    starts, lengths, doc_of = shingle_ranges(batch.doc_first_token, ngram)
    values = fast_shingle_hashes64(tok, starts, lengths, ngram)
    order = np.lexsort((values, doc_of))
    values, doc_of = values[order], doc_of[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = (values[1:] != values[:-1]) | (doc_of[1:] != doc_of[:-1])
    values, doc_of = values[first], doc_of[first]
    return values, np.bincount(doc_of, minlength=batch.n_docs).astype(np.int64)


def sorted_set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sorted arrays of unique values (1.0 for two empty sets)."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) == 0:
        return 1.0 if len(b) == 0 else 0.0
    where = np.searchsorted(b, a)
    where[where == len(b)] = 0
    inter = int(np.count_nonzero(b[where] == a))
    return inter / (len(a) + len(b) - inter)


def sha1_shingle_hashes(batch: TokenizedBatch, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """datasketch's sha1_hash32 (first 4 bytes of SHA-1, little endian) of each shingle string."""
    tokens = batch.tokens
    sha1 = hashlib.sha1
    digests = b"".join(
        sha1(" ".join(tokens[a : a + n]).encode("utf-8", "surrogatepass")).digest()[:4]
        for a, n in zip(starts.tolist(), lengths.tolist())
    )
    return np.frombuffer(digests, dtype="<u4").astype(np.uint32)


def normalize_text(text: str) -> str:
    """The normalized form dedup compares: tokens joined by single spaces."""
    return " ".join(tokenize_batch([text]).tokens)


def shingles(text: str, ngram: int = 5) -> list[str]:
    """The word n-gram shingles of one document (strings; for tests and interop)."""
    batch = tokenize_batch([text])
    tokens = batch.tokens
    starts, lengths, _ = shingle_ranges(batch.doc_first_token, ngram)
    return [" ".join(tokens[a : a + n]) for a, n in zip(starts.tolist(), lengths.tolist())]


# --------------------------------------------------------------------------- signatures


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters datasketch's affine32 MinHash draws for ``seed`` and ``num_perm``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


@dataclass
class BatchSignatures:
    signatures: np.ndarray  # (n_docs, num_perm) uint32; all MAX_HASH32 for an empty document
    n_shingles: np.ndarray  # (n_docs,) int64
    exact: np.ndarray  # (n_docs, 2) uint64: 128-bit hash of the normalized token sequence
    n_tokens: np.ndarray  # (n_docs,) int64


class MinHasher:
    """Batch signatures for documents: ``MinHasher(...).signatures(texts)``."""

    # Permutation x shingle products are computed in blocks of this many cells (4 MB).
    CHUNK_CELLS = 1_000_000

    def __init__(self, num_perm: int = 112, seed: int = 1, ngram: int = 5, hash_name: str = "fast"):
        if num_perm < 1:
            raise ValueError("num_perm must be at least 1")
        if ngram < 1:
            raise ValueError("ngram must be at least 1")
        if hash_name not in ("fast", "sha1"):
            raise ValueError(f"unknown shingle hash {hash_name!r} (fast or sha1)")
        self.num_perm, self.seed, self.ngram, self.hash_name = num_perm, seed, ngram, hash_name
        self.a, self.b = permutations(num_perm, seed)

    def signatures(self, texts: Sequence[str]) -> BatchSignatures:
        batch = tokenize_batch(texts)
        n_docs = batch.n_docs
        tok_hashes = token_hashes(batch)
        starts, lengths, doc_of = shingle_ranges(batch.doc_first_token, self.ngram)
        if self.hash_name == "fast":
            hv = fast_shingle_hashes(tok_hashes, starts, lengths, self.ngram)
        else:
            hv = sha1_shingle_hashes(batch, starts, lengths)
        hv = fmix32(hv)
        sig = np.full((n_docs, self.num_perm), MAX_HASH32, dtype=np.uint32)
        n_shingles = np.bincount(doc_of, minlength=n_docs).astype(np.int64)
        if len(hv):
            # Shingles of a document are contiguous. Permutations x shingles blocks (permutation
            # rows, so the min runs along contiguous memory) of ~4 MB stay in cache.
            step = max(1, self.CHUNK_CELLS // self.num_perm)
            b_col = self.b[:, None]
            for i in range(0, len(hv), step):
                j = min(len(hv), i + step)
                block = np.multiply.outer(self.a, hv[i:j])
                block += b_col
                docs = doc_of[i:j]
                seg_starts = np.concatenate(([0], np.flatnonzero(np.diff(docs)) + 1))
                mins = np.minimum.reduceat(block, seg_starts, axis=1).T
                rows = docs[seg_starts]
                # A document cut by a chunk boundary appears in two chunks: keep the smaller.
                sig[rows] = np.minimum(sig[rows], mins)
        exact = np.empty((n_docs, 2), dtype=np.uint64)
        first = batch.doc_first_token
        for d in range(n_docs):
            digest = hashlib.blake2b(tok_hashes[first[d] : first[d + 1]].tobytes(), digest_size=16).digest()
            exact[d] = struct.unpack("<QQ", digest)
        return BatchSignatures(sig, n_shingles, exact, np.diff(first))


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Fraction of agreeing permutations (rows of 2-D arrays, or two 1-D signatures)."""
    eq = np.asarray(sig_a) == np.asarray(sig_b)
    return eq.mean(axis=-1)
