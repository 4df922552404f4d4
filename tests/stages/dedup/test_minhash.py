"""curate.stages.dedup.minhash, lsh and urls: normalization, shingles, signatures (vs datasketch), LSH
bands, URLs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from curate.stages.dedup import minhash as mh
from curate.stages.dedup.lsh import band_keys, optimal_bands
from curate.stages.dedup.urls import normalize_url

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It's a “classic” — isn’t it…",
    "",
    "!!! ... ---",
    "two words",
    "Ünïcödé ﬁne ＦＵＬＬＷＩＤＴＨ 東京は日本の首都です。 ภาษาไทย soft\u00adhyphen zero\u200bwidth",
    " ".join(f"w{i % 37}" for i in range(400)),
]


def test_quotes_dashes_ellipses_case_and_spaces_normalize_alike():
    variants = [
        "“Don’t panic,” she said — calmly…",
        '"Don\'t PANIC", she said -- calmly...',
        "‘Don‘t panic,’ she said – calmly . . .",
        "«Don`t panic» she   said\u00a0― calmly\n",
        "″Don´t panic″ she said — calmly…",
    ]
    normalized = {mh.normalize_text(v) for v in variants}
    assert normalized == {"don t panic she said calmly"}


def test_nfkc_format_characters_and_scripts_without_spaces():
    assert mh.normalize_text("ﬁne ＡＢＣ ①") == "fine abc 1"
    assert mh.normalize_text("soft\u00adhyphen\ufeff zero\u200djoiner") == "softhyphen zerojoiner"
    assert mh.normalize_text("東京タワー") == "東 京 タ ワ ー"
    # Combining marks stay inside their word (no split in Devanagari).
    assert mh.normalize_text("हिन्दी भाषा") == "हिन्दी भाषा"
    assert mh.normalize_text("snake_case a+b=c") == "snake case a b c"
    assert mh.normalize_text("café ¨x") == "café x"  # an accent after a space is no letter


def test_shingles_short_and_empty_documents():
    assert mh.shingles("a b c d e f", 5) == ["a b c d e", "b c d e f"]
    assert mh.shingles("Only three words!", 5) == ["only three words"]
    assert mh.shingles("  ...  ", 5) == []
    assert mh.shingles("a b c", 1) == ["a", "b", "c"]


@pytest.mark.parametrize("num_perm,seed,ngram", [(112, 1, 5), (64, 7, 3), (128, 42, 1)])
def test_fast_signatures_equal_datasketch_with_our_shingle_hash(num_perm, seed, ngram):
    out = mh.MinHasher(num_perm, seed, ngram, "fast").signatures(TEXTS)
    for i, text in enumerate(TEXTS):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=mh.shingle_hash32)
        m.update_batch([s.encode("utf-8") for s in mh.shingles(text, ngram)])
        assert np.array_equal(m.hashvalues, out.signatures[i]), (i, text[:30])
        assert out.n_shingles[i] == len(mh.shingles(text, ngram))


@pytest.mark.parametrize("num_perm,seed", [(112, 1), (32, 3)])
def test_sha1_signatures_equal_plain_datasketch(num_perm, seed):
    out = mh.MinHasher(num_perm, seed, 5, "sha1").signatures(TEXTS)
    for i, text in enumerate(TEXTS):
        m = MinHash(num_perm=num_perm, seed=seed)  # datasketch's defaults: sha1_hash32, affine32
        m.update_batch([s.encode("utf-8") for s in mh.shingles(text)])
        assert np.array_equal(m.hashvalues, out.signatures[i]), i


def test_signatures_do_not_depend_on_batching(monkeypatch):
    rng = random.Random(3)
    texts = [
        " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "eps", "zeta"]) for _ in range(rng.randrange(0, 90)))
        for _ in range(40)
    ] + ["", "x"]
    hasher = mh.MinHasher(112, 1, 5)
    together = hasher.signatures(texts)
    # Tiny permutation blocks: documents are cut across blocks.
    monkeypatch.setattr(mh.MinHasher, "CHUNK_CELLS", 112 * 7)
    cut = hasher.signatures(texts)
    alone = [hasher.signatures([t]) for t in texts]
    assert np.array_equal(together.signatures, cut.signatures)
    for i, single in enumerate(alone):
        assert np.array_equal(single.signatures[0], together.signatures[i])
        assert np.array_equal(single.exact[0], together.exact[i])
    empty = [i for i, t in enumerate(texts) if not t]
    assert empty and all((together.signatures[i] == mh.MAX_HASH32).all() for i in empty)


def test_exact_hash_is_the_hash_of_the_normalized_text():
    out = mh.MinHasher(16, 1, 5).signatures(["Hello, World!", "hello world", "HELLO   world...", "hello worlds"])
    assert (out.exact[0] == out.exact[1]).all() and (out.exact[1] == out.exact[2]).all()
    assert not (out.exact[2] == out.exact[3]).all()


def test_estimated_jaccard_tracks_true_jaccard():
    rng = random.Random(0)
    vocab = [f"v{i}" for i in range(3000)]
    base = [rng.choice(vocab) for _ in range(600)]
    hasher = mh.MinHasher(256, 1, 5)
    errors = []
    for rate in (0.0, 0.01, 0.03, 0.06, 0.12):
        words = [w if rng.random() > rate else rng.choice(vocab) for w in base]
        a, b = set(mh.shingles(" ".join(base))), set(mh.shingles(" ".join(words)))
        true = len(a & b) / len(a | b)
        sig = hasher.signatures([" ".join(base), " ".join(words)]).signatures
        errors.append(abs(mh.estimated_jaccard(sig[0], sig[1]) - true))
    assert errors[0] == 0.0
    assert max(errors) < 0.1  # 256 permutations: standard error <= 0.031


@pytest.mark.parametrize(
    "threshold,num_perm,fp,fn",
    [
        (0.8, 112, 0.5, 0.5),
        (0.8, 112, 0.05, 0.95),
        (0.7, 64, 0.5, 0.5),
        (0.9, 128, 0.3, 0.7),
        (0.5, 32, 0.5, 0.5),
    ],
)
def test_optimal_bands_matches_datasketch(threshold, num_perm, fp, fn):
    assert optimal_bands(threshold, num_perm, fp, fn) == _optimal_param(threshold, num_perm, fp, fn)


def test_band_keys_equal_only_for_equal_bands():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 12), dtype=np.uint64).astype(np.uint32)
    sig[1, :4] = sig[0, :4]  # band 0 shared by docs 0 and 1
    sig[2] = np.roll(sig[0], 4)  # same values, other bands
    keys = band_keys(sig, 3, 4)
    assert keys.shape == (3, 3) and keys.dtype == np.uint64
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert keys[2, 1] != keys[0, 0]  # the band number is part of the key
    assert len(set(keys.ravel().tolist())) == 8


def test_normalize_url():
    same = [
        "https://www.Example.com/a/b/?y=2&x=1#frag",
        "http://example.com:80/a/b?x=1&y=2",
        "HTTPS://example.com:443/a/b?x=1&utm_source=feed&y=2",
    ]
    assert len({normalize_url(u) for u in same}) == 1
    assert normalize_url("https://example.com/a/b?x=1&y=3") != normalize_url(same[0])
    assert normalize_url("https://example.com:8080/") != normalize_url("https://example.com/")
    assert normalize_url("not a url") is None and normalize_url(None) is None
