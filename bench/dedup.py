"""Benchmark ``curate dedup`` against a plain datasketch MinHash + MinHashLSH loop.

Builds a corpus from real text in ``../shared/corpus/corpora`` (books, papers, web, Wikipedia,
Q&A): documents are paragraph-aligned chunks of 50-400 words; a share of them get a planted
variant (word edits, insertions, deletions, added boilerplate, reordered paragraphs,
truncation, plus case / quote-style / whitespace noise), and the Project Gutenberg
near-duplicate editions (UTF-8 vs ASCII, old vs new releases) are added as whole books. The
true 5-gram Jaccard of every planted pair is computed exactly on our normalization.

Both systems then run on the same Parquet shards, each in a fresh subprocess (so peak RSS is
its own): ``curate dedup`` (library call, full run: read, signatures, index, write), once with
``verify="estimate"`` (the default) and once with ``verify="exact"``, and a
plain per-document loop of ``datasketch.MinHash`` + ``MinHashLSH`` (threshold 0.8, num_perm
112, keep-first). Printed: recall by true-Jaccard bin, removals by true Jaccard of the removed
document with the one it was merged into (precision), documents/s, peak RSS and the speed
ratio, all measured in this run.

    python bench/dedup.py [--corpus ../shared/corpus/corpora] [--workers 1] [--max-docs 20000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC
from pathlib import Path

BINS = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)]
BIN_NAMES = ["<0.5", "0.5-0.7", "0.7-0.8", "0.8-0.9", ">=0.9"]
EDITIONS = [
    ("1342-0", "1342"),
    ("11-0", "11"),
    ("972", "old-dvldc10"),
    ("2701-0", "old-moby10b"),
    ("44157-0", "44157-8"),
]
PRIMARY_BOOKS = ["1342-0", "11-0", "972", "2701-0", "2000-8", "22367-8", "44157-0"]


# --------------------------------------------------------------------------- corpus


def _read_book(path: Path) -> str:
    raw = gzip.open(path, "rb").read()
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(enc).replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def _jsonl_texts(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            try:
                text = json.loads(line).get("text")
            except json.JSONDecodeError:
                continue
            if text:
                out.append(text)
    return out


def load_sources(root: Path) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(source, long text) pairs to chunk, and the whole-book editions by name."""
    texts: list[tuple[str, str]] = []
    books = {p.name[: -len(".txt.gz")]: p for p in (root / "books" / "gutenberg").glob("*.txt.gz")}
    editions = {name: _read_book(p) for name, p in books.items()}
    for name in PRIMARY_BOOKS:
        if name in editions:
            texts.append(("books", editions[name]))
    for p in sorted((root / "papers").glob("*")):
        if p.name.endswith(".tex.gz"):
            texts.append(("papers", _read_book(p)))
        elif p.name.endswith(".jsonl"):
            texts += [("papers", t) for t in _jsonl_texts(p)]
    for p in sorted(list((root / "web").glob("*.jsonl*")) + list((root / "mixture").rglob("*.jsonl*"))):
        texts += [("web", t) for t in _jsonl_texts(p)]
    for p in sorted((root / "code").glob("*.jsonl*")):
        texts += [("qa", t) for t in _jsonl_texts(p)]
    wiki = root / "wikipedia" / "wtf_wikipedia-wikitext.tar.gz"
    if wiki.exists():
        with tarfile.open(wiki) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile():
                    texts.append(("wikipedia", tar.extractfile(member).read().decode("utf-8", "replace")))
    return texts, editions


def chunk(text: str, rng: random.Random) -> list[str]:
    """Paragraph-aligned pieces of 50-400 words."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    out, current, words, target = [], [], 0, rng.randint(50, 400)
    for p in paragraphs:
        current.append(p)
        words += len(p.split())
        if words >= target:
            out.append("\n\n".join(current))
            current, words, target = [], 0, rng.randint(50, 400)
    if words >= 40:
        out.append("\n\n".join(current))
    return out


BOILERPLATE = [
    "Share",
    "this",
    "article",
    "on",
    "Facebook",
    "Twitter",
    "and",
    "LinkedIn.",
    "Subscribe",
    "to",
    "our",
    "newsletter",
    "to",
    "get",
    "the",
    "latest",
    "stories",
    "delivered",
    "to",
    "your",
    "inbox",
    "every",
    "week.",
    "All",
    "rights",
    "reserved.",
]


def plant(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split(" ")
    strength = rng.random() ** 1.5
    kind = rng.choice(["edit", "insert", "delete", "boilerplate", "reorder", "truncate"])
    n = 1 + int(strength * len(words) * 0.2)
    if kind == "edit":
        for _ in range(n):
            words[rng.randrange(len(words))] = rng.choice(vocab)
    elif kind == "insert":
        for _ in range(n):
            words.insert(rng.randrange(len(words)), rng.choice(vocab))
    elif kind == "delete":
        for _ in range(min(n, len(words) - 5)):
            del words[rng.randrange(len(words))]
    elif kind == "boilerplate":
        words = BOILERPLATE[: rng.randint(8, len(BOILERPLATE))] + words + BOILERPLATE * (1 + int(strength * 3))
    elif kind == "truncate":
        words = words[: max(30, int(len(words) * (1 - 0.7 * strength)))]
    out = " ".join(words)
    if kind == "reorder":
        paras = out.split("\n\n")
        rng.shuffle(paras)
        out = "\n\n".join(paras)
    noise = rng.random()
    if noise < 0.2:
        out = out.upper()
    elif noise < 0.4:
        out = out.replace("'", "\u2019").replace('"', "\u201d")
    elif noise < 0.5:
        out = re.sub(r" +", "  ", out)
    return out


def build_corpus(root: Path, out_dir: Path, max_docs: int, seed: int) -> list[tuple[str, str]]:
    """Write the corpus as Parquet shards; return the planted (id_a, id_b) pairs."""
    from datetime import datetime, timedelta

    from curate.core.document import Document
    from curate.core.shards import ShardWriter

    rng = random.Random(seed)
    texts, editions = load_sources(root)
    pieces = [(src, c) for src, t in texts for c in chunk(t, rng)]
    rng.shuffle(pieces)
    vocab = sorted({w for _, c in pieces[:300] for w in c.split()})
    docs, pairs = [], []
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    for i, (src, text) in enumerate(pieces):
        if len(docs) >= max_docs:
            break
        base = Document(
            id=f"{src}-{i:06d}", text=text, source=src, url=f"https://{src}.example/{i}", date=t0 + timedelta(hours=i)
        )
        docs.append(base)
        if rng.random() < 0.6:
            var = Document(
                id=f"{src}-{i:06d}-v",
                text=plant(text, rng, vocab),
                source=src,
                url=f"https://mirror.example/{i}",
                date=t0 + timedelta(days=1000, hours=i),
            )
            docs.append(var)
            pairs.append((base.id, var.id))
    for a, b in EDITIONS:
        if a in editions and b in editions:
            docs.append(Document(id=f"book-{a}", text=editions[a], source="books", date=t0))
            docs.append(Document(id=f"book-{b}", text=editions[b], source="books", date=t0 + timedelta(days=1)))
            pairs.append((f"book-{a}", f"book-{b}"))
    order = list(range(len(docs)))
    rng.shuffle(order)
    with ShardWriter(out_dir, prefix="part-00000", shard_bytes=8 << 20, row_group_bytes=2 << 20) as w:
        for k in order:
            w.write(docs[k])
    return pairs


# --------------------------------------------------------------------------- children


def _peak_rss_mb() -> tuple[float, float]:
    """(this process, largest worker) peak RSS in MB. VmHWM, because getrusage's ru_maxrss
    survives exec on Linux and would report the launching process's peak instead."""
    own = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def child_ours(
    data: str,
    workdir: str,
    workers: int,
    threshold: float,
    num_perm: int,
    verify_threshold: float | None = None,
    verify: str = "estimate",
) -> dict:
    import pyarrow.parquet as pq

    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext
    from curate.stages import dedup

    start = time.perf_counter()
    out = os.path.join(workdir, f"ours-{verify}")
    ctx = StageContext(
        [data],
        out,
        Executor("local", workers),
        overwrite=True,
        progress=False,
        memory_bytes=int(dedup.DEFAULT_MEMORY_GB * 1024**3),
    )
    config = dedup.DedupConfig(threshold=threshold, num_perm=num_perm, verify_threshold=verify_threshold, verify=verify)
    manifest = dedup.run(config, ctx)
    seconds = time.perf_counter() - start
    removed = {}
    for f in sorted(Path(out, "removed").glob("*.parquet")):
        t = pq.read_table(f, columns=["id", "dup_of"])
        removed.update(zip(t.column("id").to_pylist(), t.column("dup_of").to_pylist()))
    own, children = _peak_rss_mb()
    return {
        "seconds": seconds,
        "signature_seconds": manifest["seconds"]["signatures"],
        "docs": manifest["counts"]["read"],
        "rss_mb": own,
        "worker_rss_mb": children,
        "removed": removed,
        "pairs": manifest["pairs"],
    }


_WORD = re.compile(r"\w+")


def child_datasketch(data: str, threshold: float, num_perm: int) -> dict:
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    removed, docs, minhash_seconds = {}, 0, 0.0
    for f in sorted(Path(data).glob("*.parquet")):
        for batch in pq.ParquetFile(f).iter_batches(columns=["id", "text"], batch_size=1024):
            for doc_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
                docs += 1
                t = time.perf_counter()
                words = _WORD.findall(text.lower())
                shingles = {" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4))}
                m = MinHash(num_perm=num_perm)
                m.update_batch([s.encode("utf-8") for s in shingles])
                minhash_seconds += time.perf_counter() - t
                found = lsh.query(m)
                if found:
                    removed[doc_id] = min(found)
                else:
                    lsh.insert(doc_id, m)
    seconds = time.perf_counter() - start
    own, _ = _peak_rss_mb()
    return {
        "seconds": seconds,
        "signature_seconds": minhash_seconds,
        "docs": docs,
        "rss_mb": own,
        "worker_rss_mb": 0.0,
        "removed": removed,
    }


def run_child(mode: str, args: argparse.Namespace, data: str, workdir: str, verify: str = "estimate") -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--data",
        data,
        "--workdir",
        workdir,
        "--workers",
        str(args.workers),
        "--threshold",
        str(args.threshold),
        "--num-perm",
        str(args.num_perm),
        "--verify",
        verify,
    ]
    if args.verify_threshold is not None:
        cmd += ["--verify-threshold", str(args.verify_threshold)]
    env = {**os.environ, "CURATE_PROGRESS": "0"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- scoring


def representative(removed: dict[str, str], doc: str) -> str:
    seen = 0
    while doc in removed and seen < 16:
        doc, seen = removed[doc], seen + 1
    return doc


def score(name: str, result: dict, pairs: list[tuple[str, str, float]], texts: dict[str, str], jaccard) -> dict:
    removed = result["removed"]
    recall = []
    for lo, hi in BINS:
        in_bin = [(a, b) for a, b, j in pairs if lo <= j < hi]
        hit = sum(representative(removed, a) == representative(removed, b) for a, b in in_bin)
        recall.append((hit, len(in_bin)))
    removal_bins = [0] * len(BINS)
    for doc, rep in removed.items():
        j = jaccard(doc, representative(removed, rep))
        removal_bins[next(k for k, (lo, hi) in enumerate(BINS) if lo <= j < hi)] += 1
    editions = [(a, b, j) for a, b, j in pairs if a.startswith("book-")]
    caught = [(a, b, j) for a, b, j in editions if representative(removed, a) == representative(removed, b)]
    return {
        "name": name,
        "recall": recall,
        "removals": removal_bins,
        "editions": (caught, editions),
        "pairs": result.get("pairs"),
        **{k: result[k] for k in ("seconds", "signature_seconds", "docs", "rss_mb", "worker_rss_mb")},
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--corpus", default=str(here.parent / "shared" / "corpus" / "corpora"))
    parser.add_argument("--max-docs", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=112)
    parser.add_argument(
        "--verify-threshold",
        type=float,
        default=None,
        help="curate dedup's --verify-threshold (default: the threshold)",
    )
    parser.add_argument(
        "--verify", choices=["estimate", "exact"], default="estimate", help=argparse.SUPPRESS
    )  # set by the parent for each child run
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["ours", "datasketch"])
    parser.add_argument("--data")
    parser.add_argument("--workdir")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child == "ours":
        print(
            json.dumps(
                child_ours(
                    args.data,
                    args.workdir,
                    args.workers,
                    args.threshold,
                    args.num_perm,
                    args.verify_threshold,
                    args.verify,
                )
            )
        )
        return
    if args.child == "datasketch":
        print(json.dumps(child_datasketch(args.data, args.threshold, args.num_perm)))
        return
    print_report(measure(args), args)


def measure(args: argparse.Namespace) -> list[dict]:
    """Build the corpus, run curate (estimate, exact) and the datasketch loop on it, score them."""
    import pyarrow.parquet as pq

    from curate.stages.dedup.minhash import shingles

    root = Path(args.corpus)
    if not root.is_dir():
        sys.exit(f"corpus not found: {root} (pass --corpus)")
    with tempfile.TemporaryDirectory(prefix="curate-bench-dedup-") as tmp:
        data = os.path.join(tmp, "data")
        t = time.perf_counter()
        raw_pairs = build_corpus(root, Path(data), args.max_docs, args.seed)
        texts = {}
        for f in sorted(Path(data).glob("*.parquet")):
            tb = pq.read_table(f, columns=["id", "text"])
            texts.update(zip(tb.column("id").to_pylist(), tb.column("text").to_pylist()))
        cache: dict[str, set] = {}

        def jaccard(a: str, b: str) -> float:
            """Exact 5-gram Jaccard of two documents (by id) on curate's normalization."""
            for doc in (a, b):
                if doc not in cache:
                    cache[doc] = set(shingles(texts[doc]))
            sa, sb = cache[a], cache[b]
            return len(sa & sb) / len(sa | sb) if sa | sb else 1.0

        pairs = [(a, b, jaccard(a, b)) for a, b in raw_pairs]
        print(
            f"corpus: {len(texts):,} documents ({sum(map(len, texts.values())) / 1e6:.1f} M chars), "
            f"{len(pairs):,} planted pairs; built in {time.perf_counter() - t:.1f} s"
        )
        print(
            "planted pairs by true 5-gram Jaccard: "
            + ", ".join(f"{name} {sum(lo <= j < hi for _, _, j in pairs)}" for name, (lo, hi) in zip(BIN_NAMES, BINS))
        )
        label = f"curate (w={args.workers}" + ("" if args.verify_threshold is None else f", vt {args.verify_threshold}")
        results = [
            score(label + ", estimate)", run_child("ours", args, data, tmp), pairs, texts, jaccard),
            score(label + ", exact)", run_child("ours", args, data, tmp, verify="exact"), pairs, texts, jaccard),
            score("datasketch loop", run_child("datasketch", args, data, tmp), pairs, texts, jaccard),
        ]
    return results


def print_report(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\nrecall by true Jaccard of the planted pair (threshold {args.threshold}, num_perm {args.num_perm}):")
    print(f"  {'':28s}" + "".join(f"{n:>16s}" for n in BIN_NAMES))
    for r in results:
        cells = "".join(f"{100 * h / n if n else 0:5.1f}% {h}/{n}".rjust(16) for h, n in r["recall"])
        print(f"  {r['name']:28s}{cells}")
    print("\nremovals by true Jaccard with the document kept in their place (precision):")
    print(f"  {'':28s}" + "".join(f"{n:>10s}" for n in BIN_NAMES) + "   precision(J>=0.8)   removed below 0.5")
    for r in results:
        total = sum(r["removals"])
        good = r["removals"][3] + r["removals"][4]
        print(
            f"  {r['name']:28s}"
            + "".join(f"{c:>10d}" for c in r["removals"])
            + f"   {100 * good / total if total else 100:17.1f}%   {r['removals'][0]:>17d}"
        )
    print("\nProject Gutenberg editions (whole books: UTF-8 vs ASCII quotes, old vs new releases):")
    for r in results:
        caught, editions = r["editions"]
        detail = ", ".join(
            f"{a[5:]}/{b[5:]} J={j:.2f}{'' if (a, b, j) in caught else ' MISSED'}" for a, b, j in editions
        )
        print(f"  {r['name']:28s} {len(caught)}/{len(editions)} merged: {detail}")
    print("\nspeed and memory (same corpus, same machine, this run):")
    for r in results:
        print(
            f"  {r['name']:28s} {r['docs'] / r['seconds']:9,.0f} docs/s end to end, "
            f"{r['docs'] / max(r['signature_seconds'], 1e-9):9,.0f} docs/s signatures; "
            f"peak RSS {r['rss_mb']:,.0f} MB"
            + (f" (+ workers {r['worker_rss_mb']:,.0f} MB)" if r["worker_rss_mb"] else "")
        )
    ours, exact, peer = results
    print(
        f"  speed ratio curate / datasketch: {peer['seconds'] / ours['seconds']:.1f}x end to end, "
        f"{peer['signature_seconds'] / max(ours['signature_seconds'], 1e-9):.1f}x signatures "
        f"(per worker: {peer['signature_seconds'] / max(ours['signature_seconds'] * args.workers, 1e-9):.1f}x)"
    )
    print(
        f"  exact verification costs {exact['seconds'] / ours['seconds']:.2f}x the estimate's end-to-end time "
        f"({peer['seconds'] / exact['seconds']:.1f}x datasketch's speed)"
    )
    ex = (exact.get("pairs") or {}).get("exact")
    if ex:
        print(
            f"  exact verification: {ex['candidates']:,} candidate pairs, {ex['accepted']:,} accepted "
            f"({ex['accepted_below_estimate']:,} below the estimate's cut), {ex['rejected']:,} rejected "
            f"({ex['rejected_above_estimate']:,} above it); {ex['documents_hashed']:,} documents re-read, "
            f"{ex['shingle_bytes'] / 1e6:.1f} MB of shingle sets on disk"
        )


if __name__ == "__main__":
    main()
