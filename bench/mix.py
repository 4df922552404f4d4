"""Throughput of `curate mix` against a plain copy of the same shards, measured in one run.

    python bench/mix.py [--docs 40000] [--tokenizer DIR]

Builds synthetic document shards in a temporary directory, then times:

* reference: read every shard with pyarrow and write it again with ShardWriter (the least any
  stage that rewrites the data must do);
* mix: two sources (downsampled and repeated), counted, sampled, shuffled and written;
* mix with a small shuffle memory (many buckets), to show what the external shuffle costs;
* shares on real books (``--books``, the Project Gutenberg texts in ../shared/corpus): one
  eBook per number, mixed as books 0.3 with the synthetic shards as web 0.5 and other 0.2 at
  budgets from 100k tokens, with ``max_doc_tokens`` 8192 and off: realized vs requested shares
  and total vs budget, with the date and machine.

Figures are printed as documents per second and as ratios to the reference, so they compare
across machines.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.core.document import Document
from curate.core.shards import ShardWriter, expand_parquet_inputs, read_tables
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "it",
    "an",
    "which",
    "or",
    "river",
    "stone",
    "light",
    "paper",
    "garden",
    "window",
    "market",
    "station",
    "letter",
    "harbour",
    "winter",
    "engine",
]


def build(directory: Path, n: int, seed: int) -> int:
    rng = random.Random(seed)
    size = 0
    with ShardWriter(directory, prefix="part-00000", shard_bytes=16 << 20) as w:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400)))
            size += len(text)
            w.write(Document(id=f"{seed}-{i}", text=text, url=f"https://s{i % 50}.example/{i}"))
    return size


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


BOOKS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "corpora" / "books" / "gutenberg"


def real_books(src: Path, dest: Path) -> list[str]:
    """One plain-text file per eBook number (``11-0.txt.gz`` before ``11.txt.gz``), unzipped."""
    dest.mkdir()
    chosen: dict[str, Path] = {}
    for f in sorted(src.glob("*.txt.gz"), key=lambda p: (p.name.split("-")[0].split(".")[0], "-" not in p.name)):
        number = f.name.split("-")[0].split(".")[0]
        if number != "old" and number not in chosen:
            chosen[number] = f
    for number, f in chosen.items():
        (dest / f"{number}.txt").write_bytes(gzip.decompress(f.read_bytes()))
    return sorted(chosen)


def book_shares(root: Path, books_dir: Path, tokenizer: str | None) -> None:
    """Realized vs requested shares and total vs budget with book-length documents."""
    numbers = real_books(books_dir, root / "books")
    print(
        f"\nshares on real books: eBooks {', '.join(numbers)} ({books_dir}); "
        f"{datetime.date.today().isoformat()}, {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    weights = {"books": 0.3, "web": 0.5, "other": 0.2}
    paths = {"books": root / "books", "web": root / "big", "other": root / "small"}
    print(
        f"  {'max_doc_tokens':>14} {'budget':>10} {'realized':>10} {'vs budget':>9}   books / web / other (asked 30 / 50 / 20)"
    )
    for limit in (8192, 0):
        for budget in (100_000, 300_000, 1_000_000, 3_000_000):
            cfg = MixConfig(
                sources=[SourceSpec(n, [str(paths[n])], w) for n, w in weights.items()],
                tokens=budget,
                tokenizer=tokenizer,
                max_doc_tokens=limit,
                max_epochs=100,
            )
            m = mix.run(cfg, StageContext([], str(root / f"books-{limit}-{budget}"), progress=False))
            real = m["tokens"]["realized"]
            shares = " / ".join(f"{100 * s['share_realized']:.2f}" for s in m["sources"])
            print(f"  {limit or 'off':>14} {budget:>10,} {real:>10,} {100 * (real / budget - 1):>+8.2f}%   {shares}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=40_000)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--books", type=Path, default=BOOKS, help="Project Gutenberg *.txt.gz files (skipped if absent)")
    args = ap.parse_args()
    os.environ.setdefault("CURATE_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = build(root / "big", args.docs, 1)
        small = build(root / "small", args.docs // 10, 2)
        print(f"data: {args.docs:,} + {args.docs // 10:,} documents, {(big + small) / 1e6:.1f} MB of text")

        def copy() -> None:
            with ShardWriter(root / "copy", prefix="part-00000", shard_bytes=64 << 20) as w:
                for path in expand_parquet_inputs([str(root / "big"), str(root / "small")]):
                    for table in read_tables(path):
                        w.write_table(table)

        ref = timed(copy)
        total_docs = args.docs + args.docs // 10
        # 70 % from big (downsampled), 30 % from small (repeated ~2 times): a budget about the data size.
        budget = int((big + small) * 0.9)
        cfg = MixConfig(
            sources=[SourceSpec("big", [str(root / "big")], 0.7), SourceSpec("small", [str(root / "small")], 0.3)],
            tokens=budget,
            tokenizer=args.tokenizer,
        )
        t_mix = timed(lambda: mix.run(cfg, StageContext([], str(root / "mix"), progress=False)))
        cfg.shuffle_memory = "6MB"
        m = {}
        t_small = timed(lambda: m.update(mix.run(cfg, StageContext([], str(root / "mix2"), progress=False))))
        print(f"reference copy      {ref:7.2f} s  {total_docs / ref:>10,.0f} docs/s  1.00x")
        print(f"mix                 {t_mix:7.2f} s  {total_docs / t_mix:>10,.0f} docs/s  {t_mix / ref:.2f}x the copy")
        print(
            f"mix, {m['shuffle']['buckets']:>3} buckets     {t_small:7.2f} s  {total_docs / t_small:>10,.0f} docs/s  "
            f"{t_small / ref:.2f}x the copy"
        )
        print(
            f"realized {m['tokens']['realized']:,} of {budget:,} tokens; shares "
            + ", ".join(
                f"{s['name']} {100 * s['share_realized']:.2f}% (asked {100 * s['share_requested']:.0f}%)"
                for s in m["sources"]
            )
        )
        if args.books.is_dir():
            book_shares(root, args.books, args.tokenizer)


if __name__ == "__main__":
    main()
