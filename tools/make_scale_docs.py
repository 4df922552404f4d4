"""Realistic documents at any count, with planted duplicates at a known rate, as Parquet shards.

    python tools/make_scale_docs.py OUT --docs 100000 [--dup-rate 0.1] [--seed 0]
                                    [--extra DIR ...] [--docs-per-shard 10000]

Paragraphs come from the real texts in ``samples/``: the books, the papers, the assistant and
user turns of the conversations, and the ``text`` of any Parquet shards under each ``--extra``
folder (a crawl or filter output, for instance). Short paragraphs are joined until each holds at
least 200 characters. A document is 3-7 paragraphs drawn without replacement, so two originals
share all their paragraphs (and look like duplicates) with negligible probability even at 10M.

Each document after the first is, with probability ``--dup-rate``, a planted duplicate of an
earlier original (uniformly chosen): a third of them exact copies, the rest near copies with
1% of the words replaced and a trailing "Share this page" line (5-gram Jaccard about 0.9). Its
``meta`` records ``{"planted_dup_of": ID, "planted_kind": "exact"|"near"}``.

Everything about document ``i`` comes from a generator seeded with ``(seed, i)``, so output is
deterministic by seed, independent of the shard size, and a duplicate regenerates its original
instead of keeping it in memory: documents stream to ``part-NNNNN.parquet`` files in the project
schema (curate/core/document.py) with memory bounded by one shard.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate.core.document import SCHEMA  # noqa: E402

SAMPLES = ROOT / "samples"
MIN_PARAGRAPH = 200
MAX_PARAGRAPH = 3000
EXACT_SHARE = 1 / 3
NEAR_EDIT_RATE = 0.01
SUBSTITUTES = ["river", "stone", "window", "harbour", "winter", "engine", "letter", "garden", "market", "lantern"]


def _split(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def _merge(parts: list[str]) -> list[str]:
    """Join short consecutive paragraphs until each holds MIN_PARAGRAPH characters."""
    out: list[str] = []
    buf = ""
    for p in parts:
        buf = f"{buf}\n{p}" if buf else p
        if len(buf) >= MIN_PARAGRAPH:
            out.append(buf[:MAX_PARAGRAPH])
            buf = ""
    return out


def paragraph_pool(extra: list[str] | None = None) -> list[str]:
    """The real paragraphs documents are resampled from, in a fixed order."""
    pool: list[str] = []
    for pattern in ("books/*.txt", "papers/*.md"):
        for f in sorted(SAMPLES.glob(pattern)):
            pool += _merge(_split(f.read_text(encoding="utf-8")))
    for f in sorted(SAMPLES.glob("conversations/*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                turns = [m["content"] for m in json.loads(line).get("messages", [])]
                pool += _merge([" ".join(t.split()) for t in turns if t.strip()])
    for folder in extra or []:
        for path in sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True)):
            schema = pq.read_schema(path)
            if "text" in schema.names:
                for text in pq.read_table(path, columns=["text"]).column("text").to_pylist():
                    if text:
                        pool += _merge(_split(text))
    if len(pool) < 50:
        raise SystemExit(f"only {len(pool)} paragraphs found; need at least 50")
    return pool


class Generator:
    """Document ``i`` of a corpus seeded ``seed`` as ``(id, url, text, meta)``."""

    def __init__(self, pool: list[str], seed: int = 0, dup_rate: float = 0.1):
        if not 0 <= dup_rate < 1:
            raise ValueError(f"dup_rate must be in [0, 1), got {dup_rate}")
        self.pool, self.seed, self.dup_rate = pool, seed, dup_rate

    def _rng(self, i: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + i * 7_919 + 17)

    def doc_id(self, i: int) -> str:
        return f"scale-{self.seed}-{i:010d}"

    def plan(self, i: int) -> tuple[int | None, str | None]:
        """``(original, kind)`` of a planted duplicate; ``(None, None)`` for an original."""
        rng = self._rng(i)
        if i == 0 or rng.random() >= self.dup_rate:
            return None, None
        target = rng.randrange(i)
        while (up := self.plan(target)[0]) is not None:
            target = up
        return target, "exact" if rng.random() < EXACT_SHARE else "near"

    def original_text(self, i: int) -> str:
        rng = self._rng(i)
        rng.random()  # the draw plan() made
        k = rng.randint(3, 7)
        return "\n\n".join(self.pool[j] for j in rng.sample(range(len(self.pool)), k))

    def document(self, i: int) -> tuple[str, str, str, str | None]:
        target, kind = self.plan(i)
        site = self._rng(i).randrange(5_000)
        url = f"https://site{site}.example/page/{i}"
        if target is None:
            return self.doc_id(i), url, self.original_text(i), None
        text = self.original_text(target)
        if kind == "near":
            rng = random.Random(f"near:{self.seed}:{i}")
            words = text.split(" ")
            inside = [k for k, w in enumerate(words) if "\n" not in w]  # paragraph breaks stay
            for k in rng.sample(inside, max(1, int(len(words) * NEAR_EDIT_RATE))):
                words[k] = rng.choice(SUBSTITUTES)
            text = " ".join(words) + "\n\nShare this page"
        meta = json.dumps({"planted_dup_of": self.doc_id(target), "planted_kind": kind})
        return self.doc_id(i), url, text, meta

    def documents(self, n: int) -> Iterator[tuple[str, str, str, str | None]]:
        for i in range(n):
            yield self.document(i)


def _table(rows: list[tuple[str, str, str, str | None]]) -> pa.Table:
    ids, urls, texts, metas = (list(c) for c in zip(*rows, strict=True))
    n = len(rows)
    columns = {
        "id": ids,
        "url": urls,
        "domain": [u.split("/")[2] for u in urls],
        "source": ["scale"] * n,
        "text": texts,
        "n_chars": [len(t) for t in texts],
        "meta": metas,
    }
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def write(
    out: str | os.PathLike,
    docs: int,
    *,
    seed: int = 0,
    dup_rate: float = 0.1,
    docs_per_shard: int = 10_000,
    extra: list[str] | None = None,
) -> dict:
    """Write ``docs`` documents to ``out/part-NNNNN.parquet``; returns counts and bytes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = Generator(paragraph_pool(extra), seed=seed, dup_rate=dup_rate)
    planted = {"exact": 0, "near": 0}
    chars = shards = 0
    rows: list[tuple[str, str, str, str | None]] = []

    def flush() -> None:
        nonlocal shards
        tmp = out / f".part-{shards:05d}.parquet.tmp"
        pq.write_table(_table(rows), tmp, compression="zstd")
        os.replace(tmp, out / f"part-{shards:05d}.parquet")
        shards += 1
        rows.clear()

    for row in gen.documents(docs):
        rows.append(row)
        chars += len(row[2])
        if row[3] is not None:
            planted[json.loads(row[3])["planted_kind"]] += 1
        if len(rows) >= docs_per_shard:
            flush()
    if rows:
        flush()
    return {
        "docs": docs,
        "shards": shards,
        "paragraphs": len(gen.pool),
        "chars": chars,
        "planted": planted,
        "bytes": sum(f.stat().st_size for f in out.glob("part-*.parquet")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--docs-per-shard", type=int, default=10_000)
    ap.add_argument("--extra", action="append", default=[], help="folder with more Parquet shards to sample from")
    args = ap.parse_args()
    info = write(
        args.out,
        args.docs,
        seed=args.seed,
        dup_rate=args.dup_rate,
        docs_per_shard=args.docs_per_shard,
        extra=args.extra,
    )
    print(json.dumps(info))


if __name__ == "__main__":
    main()
