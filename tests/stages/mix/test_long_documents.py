"""curate.stages.mix with long documents (``max_doc_tokens``): where documents are cut, chunk
ids and order, exact shares and budget with book-length documents, determinism, accounting."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.core.errors import ConfigError
from curate.core.files import sha256_file
from curate.core.tokenizer import ByteTokenizer, load_tokenizer
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec
from curate.stages.mix.chunks import head, split_text

BYTES = ByteTokenizer()
WORDS = ["the", "whale", "river", "stone", "light", "paper", "garden", "window", "harbour", "winter", "engine"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize() + "."


def paragraph(rng: random.Random) -> str:
    lines, line = [], ""
    for s in (sentence(rng) for _ in range(rng.randint(2, 8))):
        if len(line) + len(s) > 70 and line:  # hard-wrapped like a Project Gutenberg text
            lines.append(line)
            line = ""
        line = f"{line} {s}".strip()
    return "\n".join([*lines, line])


def book(rng: random.Random, n_bytes: int) -> str:
    parts, size = [], 0
    while size < n_bytes:
        parts.append(paragraph(rng))
        size += len(parts[-1]) + 2
    return "\n\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Books of 60-250 kB (one document each), short web pages, mid-length papers."""
    root = tmp_path_factory.mktemp("long")
    rng = random.Random(7)
    out = {}
    for name, n, lo, hi in (("books", 5, 60_000, 250_000), ("web", 300, 300, 3_000), ("papers", 30, 4_000, 20_000)):
        folder = root / name
        folder.mkdir()
        for i in range(n):
            (folder / f"{name}-{i:03d}.txt").write_text(book(rng, rng.randint(lo, hi)))
        out[name] = folder
    return out


def mix_config(corpus, weights, tokens, **kw) -> MixConfig:
    return MixConfig(sources=[SourceSpec(n, [str(corpus[n])], w) for n, w in weights.items()], tokens=tokens, **kw)


def run(cfg: MixConfig, output: Path, workers: int = 1) -> dict:
    ctx = StageContext([], str(output), executor=Executor(workers=workers), progress=False)
    return mix.run(cfg, ctx)


def rows_of(directory: Path) -> list[dict]:
    columns = ["id", "source", "epoch", "n_tokens", "text", "meta"]
    return [r for f in sorted(directory.glob("*.parquet")) for r in pq.read_table(f, columns=columns).to_pylist()]


# --- where documents are cut ---------------------------------------------------------------


def test_split_at_paragraphs_first():
    rng = random.Random(1)
    text = book(rng, 20_000)
    chunks = split_text(text, 2_000, BYTES)
    assert "".join(chunks) == text and len(chunks) > 10
    assert all(len(c.encode()) <= 2_000 for c in chunks)
    # Every cut but the last falls just after a blank line: a chunk ends where a paragraph does.
    assert all(c.endswith("\n\n") for c in chunks[:-1])
    # Packing is greedy: no chunk would have room for the next paragraph.
    first_next = text[len(chunks[0]) :].split("\n\n")[0]
    assert len(chunks[0].encode()) + len(first_next.encode()) > 2_000


def test_split_falls_back_to_sentences_then_tokens():
    long_paragraph = "One short sentence here. " * 200 + "\n\nTail."
    chunks = split_text(long_paragraph, 300, BYTES)
    assert "".join(chunks) == long_paragraph
    assert all(len(c.encode()) <= 300 for c in chunks)
    assert all(c.endswith(". ") for c in chunks[:-2])  # cut after a sentence, not inside one
    # No boundary at all: token (here byte) cuts, never inside a character.
    blob = "é" * 1_000 + "x" * 101
    chunks = split_text(blob, 301, BYTES)
    assert "".join(chunks) == blob
    assert [len(c.encode()) for c in chunks] == [300] * 6 + [301]  # 150 "é" each, then 100 "é" + 101 "x"


def test_head_fills_to_the_token():
    rng = random.Random(2)
    text = book(rng, 5_000)
    for limit in (17, 300, 1_234, 4_000):
        cut = head(text, limit, BYTES)
        assert text.startswith(cut) and len(cut.encode()) == limit


def test_split_with_a_bpe_tokenizer(tmp_path):
    from curate.stages.tokenize import train_from_paths

    samples = Path(__file__).resolve().parents[3] / "samples" / "books"
    train_from_paths([str(samples)], tmp_path / "tok", vocab_size=400, max_chars=200_000)
    tok = load_tokenizer(str(tmp_path / "tok"))
    text = (samples / "alice-in-wonderland.txt").read_text()[:60_000]
    chunks = split_text(text, 1_000, tok)
    counts = tok.count(chunks)
    assert "".join(chunks) == text and max(counts) <= 1_000
    assert sum(counts) >= tok.count([text])[0] - len(chunks)  # cuts lose no text
    cut = head(text, 777, tok)
    assert text.startswith(cut) and 760 <= tok.count([cut])[0] <= 777


def test_max_doc_tokens_is_range_checked(corpus):
    for bad in (-1, 5, 15):
        with pytest.raises(ConfigError, match="max_doc_tokens"):
            mix_config(corpus, {"books": 1}, 1000, max_doc_tokens=bad).validate()
    for fine in (0, None, 16, 8192):
        mix_config(corpus, {"books": 1}, 1000, max_doc_tokens=fine).validate()


# --- the mix samples chunks ----------------------------------------------------------------


def test_chunk_ids_meta_and_accounting(corpus, tmp_path):
    m = run(mix_config(corpus, {"books": 0.5, "web": 0.5}, 200_000), tmp_path / "m")
    rows = rows_of(tmp_path / "m")
    books = [r for r in rows if r["source"] == "books"]
    assert books and all("#c" in r["id"] for r in books)  # every book is longer than 8,192 bytes
    for r in books:
        meta = json.loads(r["meta"])
        parent, index = r["id"].rsplit("#c", 1)
        assert meta["parent_id"] == parent and meta["chunk"] == int(index) < meta["chunks"]
        assert r["n_tokens"] == len(r["text"].encode()) <= 8192
    c = m["counts"]
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values()) == 305
    for s in m["sources"]:
        assert s["chunks_available"] == s["chunks"] + s["chunks_not_sampled"]
    by_name = {s["name"]: s for s in m["sources"]}
    assert by_name["books"]["split_documents"] == 5 and by_name["web"]["split_documents"] == 0
    assert by_name["books"]["chunks"] == len({r["id"] for r in books})
    assert m["chunking"]["max_doc_tokens"] == 8192 and m["chunking"]["cut_rows"] == sum(
        s["cut_rows"] for s in m["sources"]
    )


@pytest.mark.parametrize("budget", [100_000, 250_000, 1_000_000])
def test_shares_and_budget_with_long_documents(corpus, tmp_path, budget):
    weights = {"books": 0.3, "web": 0.5, "papers": 0.2}
    m = run(mix_config(corpus, weights, budget), tmp_path / "m")
    rows = rows_of(tmp_path / "m")
    tokens = Counter()
    for r in rows:
        tokens[r["source"]] += r["n_tokens"]
    total = sum(tokens.values())
    assert total == m["tokens"]["realized"]
    assert abs(total - budget) <= 0.005 * budget
    for name, w in weights.items():
        assert abs(tokens[name] / total - w) < 0.01, (name, tokens[name] / total)


def test_whole_documents_miss_the_budget_at_small_budgets(corpus, tmp_path):
    """What max_doc_tokens fixes: with documents whole, one book decides the books share."""
    m = run(mix_config(corpus, {"books": 0.3, "web": 0.7}, 100_000, max_doc_tokens=0), tmp_path / "m")
    assert m["tokens"]["realized"] > 1.2 * 100_000 and m["chunking"]["split_documents"] == 0


def test_deterministic_across_workers_and_buckets(corpus, tmp_path):
    digests = []
    for i, (workers, memory) in enumerate(((1, "512MB"), (2, "512MB"), (3, "200kB"))):
        cfg = mix_config(corpus, {"books": 0.3, "web": 0.5, "papers": 0.2}, 300_000, shuffle_memory=memory, seed=5)
        m = run(cfg, tmp_path / f"m{i}", workers=workers)
        digests.append([sha256_file(p) for p in sorted((tmp_path / f"m{i}").glob("*.parquet"))])
        if i == 2:
            assert m["shuffle"]["buckets"] > 1
    assert digests[0] == digests[1] == digests[2]


def test_chunks_stay_in_order_when_a_source_is_consumed_whole(corpus, tmp_path):
    books_tokens = sum(len(p.read_bytes()) for p in corpus["books"].glob("*.txt"))
    # books take 1.5 epochs: epoch 0 is the whole source (in book order), epoch 1 a sample.
    budget = int(1.5 * books_tokens / 0.6)
    m = run(mix_config(corpus, {"books": 0.6, "papers": 0.4}, budget, max_epochs=10), tmp_path / "m")
    assert next(s for s in m["sources"] if s["name"] == "books")["epochs"] == pytest.approx(1.5, abs=0.01)
    rows = rows_of(tmp_path / "m")
    whole = [(i, r) for i, r in enumerate(rows) if r["source"] == "books" and r["epoch"] == 0]
    by_book: dict[str, list[tuple[int, int]]] = {}
    for i, r in whole:
        parent, index = r["id"].rsplit("#c", 1)
        by_book.setdefault(parent, []).append((i, int(index)))
    assert len(by_book) == 5
    for parent, seen in by_book.items():
        places, indexes = zip(*seen)
        assert list(indexes) == list(range(len(indexes)))  # every chunk, in order
        assert list(places) == list(range(places[0], places[0] + len(places)))  # one after another
        text = "".join(rows[i]["text"] for i in places)
        assert text == (corpus["books"] / f"{text_name(parent, corpus)}").read_text()
    # The partial epoch is shuffled like any rows: its chunks are not laid out in book order.
    sampled = [i for i, r in enumerate(rows) if r["source"] == "books" and r["epoch"] == 1]
    assert len(sampled) > 10
    assert sum(1 for i, j in itertools.pairwise(sampled) if j == i + 1) < len(sampled) // 2


def text_name(parent_id: str, corpus: dict[str, Path]) -> str:
    """The file of a book from its document id (ids of text files are stable_id(source, path))."""
    from curate.core.readers import SourceReader

    for table in SourceReader("books", [str(corpus["books"])]).tables():
        for row in table.select(["id", "meta"]).to_pylist():
            if row["id"] == parent_id:
                return json.loads(row["meta"])["path"]
    raise AssertionError(parent_id)
