#!/usr/bin/env python3
"""Benchmark `curate crawl` against a plain warcio + trafilatura.extract loop, in one run.

    python bench/crawl.py [WARC ...] [--workers N] [--repeat N] [--aeb DIR]

Prints documents/s and input MB/s of our crawl stage and of the reference loop (one
process: warcio iteration over response records, ``trafilatura.extract`` on each payload
with the same settings as our default: favor_precision, no comments, tables kept), and the
ratio per core. Without WARC arguments the project's samples are used, repeated so that the
reference takes ~15 s. With ``--aeb`` (default: ../shared/corpus/extraction/scrapinghub-aeb
when present) it also prints token F1 against the human ground truth of that article
benchmark, for our extractor and for the reference call, with their pages/s, so that "as
fast" comes with "as good".
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CURATE_PROGRESS", "0")

import logging  # noqa: E402

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

import trafilatura  # noqa: E402
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from curate.crawl import CrawlConfig, crawl  # noqa: E402
from curate.extract import TextExtractor, decode_html  # noqa: E402

REF_SETTINGS = dict(favor_precision=True, include_comments=False, include_tables=True)


def reference_loop(paths: list[str]) -> tuple[int, int, float]:
    """The plain loop most crawl scripts start as. Returns (records, docs, seconds)."""
    records = docs = 0
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb") as fh:
            try:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type != "response":
                        continue
                    records += 1
                    try:
                        payload = rec.content_stream().read()
                    except Exception:  # e.g. a content encoding warcio cannot undo
                        continue
                    text = trafilatura.extract(payload, **REF_SETTINGS)
                    if text:
                        docs += 1
            except Exception:  # warcio stops at the first damaged record; so does this loop
                pass
    return records, docs, time.perf_counter() - t0


def run_ours(paths: list[str], workers: int) -> tuple[dict, float]:
    out = tempfile.mkdtemp(prefix="bench-crawl-")
    try:
        t0 = time.perf_counter()
        manifest, _ = crawl(paths, out, CrawlConfig(), workers=workers, overwrite=True)
        return manifest, time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


TOKEN = re.compile(r"\w+")


def f1(pred: str | None, ref: str) -> float:
    p, r = Counter(TOKEN.findall((pred or "").lower())), Counter(TOKEN.findall(ref.lower()))
    overlap = sum((p & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def extraction_quality(aeb: Path) -> None:
    truth = json.loads((aeb / "ground-truth.json").read_text())
    pages = {k: gzip.open(aeb / "html" / f"{k}.html.gz").read() for k in sorted(truth)}
    ours = TextExtractor()
    print(f"\nextraction quality on {len(pages)} pages of {aeb.name} (token F1 vs ground truth):")
    for name, fn in (
        ("curate (adaptive)", lambda raw: ours.extract(decode_html(raw)[0])),
        ("trafilatura.extract", lambda raw: trafilatura.extract(raw, **REF_SETTINGS)),
    ):
        t0 = time.perf_counter()
        score = sum(f1(fn(raw), truth[k]["articleBody"]) for k, raw in pages.items()) / len(pages)
        dt = time.perf_counter() - t0
        print(f"  {name:22s} F1 {score:.4f}   {len(pages) / dt:6.1f} pages/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("warcs", nargs="*")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=0, help="copies of the inputs (default: auto for the samples)")
    ap.add_argument("--aeb", default=str(ROOT.parent / "shared" / "corpus" / "extraction" / "scrapinghub-aeb"))
    args = ap.parse_args()

    given = args.warcs or sorted(str(p) for p in (ROOT / "samples" / "warc").glob("*.warc.gz"))
    tmp = tempfile.mkdtemp(prefix="bench-inputs-")
    try:
        repeat = args.repeat
        if not repeat:
            if args.warcs:
                repeat = 1
            else:
                _, _, once = reference_loop(given)
                repeat = max(1, round(15 / max(once, 1e-3)))
        paths = []
        for i in range(repeat):
            for p in given:
                link = Path(tmp) / f"r{i:03d}-{Path(p).name}"
                os.symlink(os.path.abspath(p), link)
                paths.append(str(link))
        size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
        print(f"inputs: {len(given)} file(s) x {repeat} = {size_mb:.1f} MB; workers for curate: {args.workers}")

        rec, ref_docs, ref_s = reference_loop(paths)
        manifest, our_s = run_ours(paths, args.workers)
        c = manifest["counts"]
        ours_rate, ref_rate = c["kept"] / our_s, ref_docs / ref_s
        print(f"  reference loop   {ref_docs:6d} docs  {ref_s:7.2f} s  {ref_rate:7.1f} docs/s  {size_mb / ref_s:6.2f} MB/s  (1 process)")
        print(f"  curate crawl     {c['kept']:6d} docs  {our_s:7.2f} s  {ours_rate:7.1f} docs/s  {size_mb / our_s:6.2f} MB/s  "
              f"({args.workers} worker(s); read {c['read']}, rejected {sum(c['rejected'].values())}, errors {sum(c['errors'].values())})")
        print(f"  ratio per core (curate docs/s / workers) / reference docs/s: {ours_rate / args.workers / ref_rate:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    aeb = Path(args.aeb)
    if (aeb / "ground-truth.json").exists():
        extraction_quality(aeb)


if __name__ == "__main__":
    main()
