"""LSH banding of ``curate dedup``'s MinHash signatures: the band count and rows for a
threshold (the same search and integrals as datasketch's ``MinHashLSH``), the probability that
a pair becomes a candidate, and the band keys documents are grouped by."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from curate.stages.dedup.minhash import _M64, _SHINGLE_MUL, fmix64

_BAND_MUL = 0xD6E8FEB86659FD93


def _false_positive(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)[0]


def _false_negative(threshold: float, b: int, r: int) -> float:
    from scipy.integrate import quad

    return quad(lambda s: 1 - (1 - (1 - s ** float(r)) ** float(b)), threshold, 1.0)[0]


@lru_cache(maxsize=64)
def optimal_bands(
    threshold: float, num_perm: int, false_positive_weight: float = 0.5, false_negative_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive + false negative probability mass
    (the same search and integrals as datasketch's ``MinHashLSH``)."""
    best, best_error = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            error = false_positive_weight * _false_positive(threshold, b, r) + false_negative_weight * _false_negative(
                threshold, b, r
            )
            if error < best_error:
                best, best_error = (b, r), error
    return best


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents of Jaccard ``similarity`` share at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64 keys: a hash of each band's ``rows`` values and the band number,
    so keys of all bands can share one index (a collision only adds a candidate, which
    verification then rejects)."""
    n = signatures.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    sig64 = signatures.astype(np.uint64)
    for band in range(bands):
        h = np.full(n, (band + 1) * _BAND_MUL & _M64, dtype=np.uint64)
        for col in range(band * rows, (band + 1) * rows):
            h = (h ^ sig64[:, col]) * np.uint64(_SHINGLE_MUL)
            h ^= h >> np.uint64(29)
        keys[:, band] = fmix64(h)
    return keys
