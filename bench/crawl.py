#!/usr/bin/env python3
"""Benchmark `curate crawl` against a plain warcio + trafilatura.extract loop, in one run.

    python bench/crawl.py [WARC ...] [--repeat N] [--rounds N] [--workers N] [--aeb DIR] [--aeb-warc]

Speed: documents/s and input MB/s of our crawl stage (``curate.stages.crawl.run``, Parquet shards
written) and of the reference loop (one process: warcio iteration over response records,
``trafilatura.extract`` on each payload with the same settings as our default:
favor_precision, no comments, tables kept), and the ratio per core. The machine this runs on
is shared and noisy, so the two are timed *alternately* (``--rounds`` rounds, the order
flipped every round, both warmed up first) and the best and the median of the rounds are
printed, as wall-clock and as CPU seconds of this process (with ``--workers 1`` our crawl runs
in this process, so CPU time is the per-core cost, unaffected by other jobs).

Without WARC arguments the project's samples are used, repeated to ~10 s of reference work per
round. ``--aeb-warc`` adds a CC-style WARC built (in a temp dir) from the 181 real article
pages of the scrapinghub benchmark. With ``--aeb`` (default:
../shared/corpus/extraction/scrapinghub-aeb when present) it also prints token F1 against the
human ground truth of that benchmark for our extractor (each mode) and for the plain
``trafilatura.extract`` call, with their pages/s (interleaved too), so that "faster" comes
with "as good".
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CURATE_PROGRESS", "0")

import logging  # noqa: E402

logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

import trafilatura  # noqa: E402
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from curate.runtime.executor import Executor  # noqa: E402
from curate.runtime.stage import StageContext  # noqa: E402
from curate.stages import crawl  # noqa: E402
from curate.stages.crawl.decode import decode_html  # noqa: E402
from curate.stages.crawl.extract import ExtractOptions, TextExtractor  # noqa: E402

REF_SETTINGS = dict(favor_precision=True, include_comments=False, include_tables=True)


def reference_loop(paths: list[str]) -> int:
    """The plain loop most crawl scripts start as. Returns the number of documents."""
    docs = 0
    for path in paths:
        with open(path, "rb") as fh:
            try:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type != "response":
                        continue
                    try:
                        payload = rec.content_stream().read()
                    except Exception:  # e.g. a content encoding warcio cannot undo
                        continue
                    if trafilatura.extract(payload, **REF_SETTINGS):
                        docs += 1
            except Exception:  # warcio stops at the first damaged record; so does this loop
                pass
    return docs


def run_ours(paths: list[str], workers: int) -> dict:
    out = tempfile.mkdtemp(prefix="bench-crawl-")
    try:
        ctx = StageContext(paths, out, Executor("local", workers), overwrite=True, progress=False)
        manifest = crawl.run(crawl.CrawlConfig(), ctx)
        return manifest
    finally:
        shutil.rmtree(out, ignore_errors=True)


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def interleaved(runners: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict]:
    """Run each runner once per round, alternating the order; keep every timing."""
    names = list(runners)
    out = {n: {"wall": [], "cpu": [], "result": None} for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result, wall, cpu = timed(runners[name])
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
            out[name]["result"] = result
    return out


TOKEN = re.compile(r"\w+")


def f1(pred: str | None, ref: str) -> float:
    p, r = Counter(TOKEN.findall((pred or "").lower())), Counter(TOKEN.findall(ref.lower()))
    overlap = sum((p & r).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def load_aeb(aeb: Path) -> tuple[dict, dict]:
    truth = json.loads((aeb / "ground-truth.json").read_text())
    pages = {k: gzip.open(aeb / "html" / f"{k}.html.gz").read() for k in sorted(truth)}
    return truth, pages


def write_aeb_warc(truth: dict, pages: dict, path: Path) -> None:
    """A CC-style WARC (per-record gzip, request + response + metadata) of the benchmark pages."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for key, raw in pages.items():
            url = truth[key].get("url") or f"https://example.org/{key}"
            http = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(raw)))], protocol="HTTP/1.1"
            )
            writer.write_record(
                writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"))
            )
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(raw), http_headers=http))
            writer.write_record(writer.create_warc_record(url, "metadata", payload=io.BytesIO(b"fetchTimeMs: 100\r\n")))


def extraction_quality(truth: dict, pages: dict, rounds: int) -> None:
    extractors = {mode: TextExtractor(ExtractOptions(mode=mode)) for mode in ("adaptive", "full", "fast")}
    for ex in extractors.values():
        ex.warm_up()
    funcs: dict[str, Callable[[bytes], str | None]] = {
        f"curate ({mode}{', default' if mode == ExtractOptions().mode else ''})": (
            lambda raw, ex=ex: ex.extract(decode_html(raw)[0])
        )
        for mode, ex in extractors.items()
    }
    funcs["trafilatura.extract"] = lambda raw: trafilatura.extract(raw, **REF_SETTINGS)
    outputs: dict[str, list] = {}

    def runner(name):
        def go():
            outputs[name] = [funcs[name](raw) for raw in pages.values()]

        return go

    timings = interleaved({name: runner(name) for name in funcs}, rounds)
    print(
        f"\nextraction quality on {len(pages)} pages of the scrapinghub benchmark (token F1 vs ground truth; "
        f"pages/s from the best of {rounds} interleaved CPU timings):"
    )
    for name in funcs:
        score = sum(f1(text, truth[k]["articleBody"]) for text, k in zip(outputs[name], pages)) / len(pages)
        rate = len(pages) / min(timings[name]["cpu"])
        print(f"  {name:30s} F1 {score:.4f}   {rate:6.1f} pages/s")
    ex = extractors["adaptive"]
    print(
        f"  (adaptive, per pass: {ex.direct_full // rounds} pages sent straight to the full cascade, "
        f"{ex.reruns // rounds} re-run after a short fast result, of {len(pages)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("warcs", nargs="*")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--repeat", type=int, default=0, help="copies of the inputs (default: 1 for given WARCs, auto for the samples)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best and median printed)")
    ap.add_argument("--aeb", default=str(ROOT.parent / "shared" / "corpus" / "extraction" / "scrapinghub-aeb"))
    ap.add_argument("--aeb-warc", action="store_true", help="also crawl a WARC built from the benchmark pages")
    args = ap.parse_args()

    aeb = Path(args.aeb)
    truth, pages = load_aeb(aeb) if (aeb / "ground-truth.json").exists() else ({}, {})
    tmp = tempfile.mkdtemp(prefix="bench-inputs-")
    try:
        given = [os.path.abspath(p) for p in args.warcs]
        if args.aeb_warc:
            if not pages:
                sys.exit(f"--aeb-warc: no benchmark at {aeb}")
            write_aeb_warc(truth, pages, Path(tmp) / "aeb.warc.gz")
            given.append(str(Path(tmp) / "aeb.warc.gz"))
        if not given:
            given = sorted(str(p) for p in (ROOT / "samples" / "warc").glob("*.warc.gz"))
        # Warm both up (imports, trafilatura's lazy tables) on one pass of the inputs.
        _, once, _ = timed(lambda: reference_loop(given))
        run_ours(given, 1)
        repeat = args.repeat or (1 if args.warcs or args.aeb_warc else max(1, round(10 / max(once, 1e-3))))
        paths = []
        for i in range(repeat):
            for p in given:
                link = Path(tmp) / f"r{i:03d}-{len(paths):03d}-{Path(p).name}"
                os.symlink(p, link)
                paths.append(str(link))
        size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
        print(
            f"inputs: {len(given)} file(s) x {repeat} = {size_mb:.2f} MB; curate workers: {args.workers}; "
            f"{args.rounds} interleaved rounds"
        )

        t = interleaved(
            {"reference": lambda: reference_loop(paths), "curate": lambda: run_ours(paths, args.workers)}, args.rounds
        )
        ref_docs = t["reference"]["result"]
        c = t["curate"]["result"]["counts"]
        our_docs = c["kept"]
        rates = {}
        for name, docs in (("reference", ref_docs), ("curate", our_docs)):
            wall, cpu = t[name]["wall"], t[name]["cpu"]
            rates[name] = {
                "best": docs / min(wall),
                "median": docs / statistics.median(wall),
                "cpu": docs / min(cpu),
            }
            label = "reference loop" if name == "reference" else "curate crawl"
            extra = (
                "(1 process)"
                if name == "reference"
                else (
                    f"({args.workers} worker(s); read {c['read']}, rejected {dict(c['rejected'])}, errors {dict(c['errors'])})"
                )
            )
            print(
                f"  {label:15s} {docs:6d} docs  best {min(wall):7.2f} s  {rates[name]['best']:7.1f} docs/s "
                f"(median {rates[name]['median']:6.1f}, per CPU s {rates[name]['cpu']:6.1f})  "
                f"{size_mb / min(wall):6.2f} MB/s  {extra}"
            )
        w = args.workers
        print(
            f"  ratio per core (curate docs/s / workers) / reference docs/s: "
            f"best {rates['curate']['best'] / w / rates['reference']['best']:.2f}x, "
            f"median {rates['curate']['median'] / w / rates['reference']['median']:.2f}x"
            + (f", CPU {rates['curate']['cpu'] / rates['reference']['cpu']:.2f}x" if w == 1 else "")
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if pages:
        extraction_quality(truth, pages, args.rounds)


if __name__ == "__main__":
    main()
