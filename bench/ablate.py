#!/usr/bin/env python3
"""The ablation loop's figures: does a data recipe change make a better model?

    python bench/ablate.py                        # samples/ablate.toml: its comparison table
    python bench/ablate.py --real                 # real text from ../shared/corpus (see below)
    python bench/ablate.py --real --seeds 3 --steps 300 --workdir work-ablate-real

Without ``--real`` this runs ``curate ablate samples/ablate.toml`` into a work folder and
prints the comparison table and the time it took.

``--real`` builds the same question on real text instead of the bundled samples:

* **web**: a Common-Crawl-style WARC of the 181 real article pages of the scrapinghub
  extraction benchmark (``extraction/scrapinghub-aeb``), plus the real CC captures
  ``warc/resiliparse/warcfile.warc.gz`` and ``warc/commoncrawl-whirlwind/whirlwind.warc.gz``,
  through crawl -> filter -> dedup;
* **books**: the Gutenberg books of ``corpora/books`` (one edition of each), cut into
  documents of about 4,000 characters at paragraph breaks;
* **papers**: the arXiv extracts of ``corpora/papers`` and Whitehead's LaTeX source, cut the
  same way; **code**: the StackExchange sample of ``corpora/code``.

Two recipes, each with ``--seeds`` proxy models (``tiny`` preset, ``--steps`` steps): the
default chain (``samples/filters.toml``) and the same chain without its quality rules
(``samples/filters-no-quality.toml``). Every proxy is scored on the *same* text: the base
mix's held-out slice (documents held out by a hash of their id, so no variant trained on
them), per source, in bits per byte. The table puts each variant's difference beside the
base's seed-to-seed range; "beyond noise" means the difference is larger than that range.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from curate.workflow.ablate import load_ablation, run_ablation  # noqa: E402
from curate.workflow.ablate_report import format_table  # noqa: E402

BOOKS = ("11-0.txt.gz", "1342-0.txt.gz", "2701-0.txt.gz", "972.txt.gz", "44157-0.txt.gz")
CHUNK_CHARS = 4000


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """``text`` cut at paragraph breaks into pieces of about ``size`` characters."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    out, current = [], ""
    for p in paragraphs:
        if current and len(current) + len(p) > size:
            out.append(current)
            current = ""
        current = f"{current}\n\n{p}" if current else p
    if current:
        out.append(current)
    return out


def write_jsonl(path: Path, name: str, texts: list[tuple[str, str]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, (origin, text) in enumerate(texts):
            fh.write(json.dumps({"id": f"{name}-{origin}-{i:05d}", "text": text}, ensure_ascii=False) + "\n")
    return len(texts)


def prepare_real(corpus: Path, inputs: Path) -> dict[str, int]:
    """The real inputs under ``inputs`` (web WARCs, books/papers/code JSONL); document counts."""
    counts = {}
    web = inputs / "web"
    web.mkdir(parents=True, exist_ok=True)
    spec = importlib.util.spec_from_file_location("bench_crawl", HERE / "crawl.py")
    crawl_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crawl_bench)
    aeb = corpus / "extraction" / "scrapinghub-aeb"
    if not (web / "aeb.warc.gz").exists():
        truth, pages = crawl_bench.load_aeb(aeb)
        crawl_bench.write_aeb_warc(truth, pages, web / "aeb.warc.gz")
    for rel in ("warc/resiliparse/warcfile.warc.gz", "warc/commoncrawl-whirlwind/whirlwind.warc.gz"):
        target = web / Path(rel).name
        if not target.exists():
            target.write_bytes((corpus / rel).read_bytes())
    counts["web WARC files"] = len(list(web.iterdir()))

    books = []
    for name in BOOKS:
        text = gzip.open(corpus / "corpora/books/gutenberg" / name, "rt", encoding="utf-8-sig").read()
        books += [(name.split(".")[0], c) for c in chunks(text)]
    counts["books"] = write_jsonl(inputs / "books" / "books.jsonl", "books", books)

    papers = []
    with open(corpus / "corpora/papers/data-juicer-arxiv.jsonl", encoding="utf-8") as fh:
        for line in fh:
            papers += [("arxiv", c) for c in chunks(json.loads(line)["text"])]
    tex = gzip.open(corpus / "corpora/papers/gutenberg-41568-intro-to-mathematics.tex.gz", "rt", encoding="latin-1")
    papers += [("whitehead", c) for c in chunks(tex.read())]
    counts["papers"] = write_jsonl(inputs / "papers" / "papers.jsonl", "papers", papers)

    code = []
    with gzip.open(corpus / "corpora/code/data-juicer-stack_exchange.jsonl.gz", "rt", encoding="utf-8") as fh:
        code = [("stackexchange", json.loads(line)["text"]) for line in fh]
    counts["code"] = write_jsonl(inputs / "code" / "code.jsonl", "code", code)
    return counts


PIPELINE = """\
# Written by bench/ablate.py --real: real text from ../shared/corpus.
seed = 0
[crawl]
inputs = ["inputs/web"]
[filter]
config = "{samples}/filters.toml"
[dedup]
threshold = 0.8
[tokenizer]
vocab_size = 4096
[mix]
tokens = "{tokens}"
max_epochs = 8
sources = [
  {{ name = "web", paths = ["{{dedup}}"], weight = 0.55 }},
  {{ name = "books", paths = ["inputs/books"], weight = 0.25 }},
  {{ name = "papers", paths = ["inputs/papers"], weight = 0.1 }},
  {{ name = "code", paths = ["inputs/code"], weight = 0.1 }},
]
[pretrain]
config = "{samples}/train/pretrain_tiny.toml"
data = {{ val_fraction = 0.1 }}
"""

ABLATE = """\
# Written by bench/ablate.py --real.
base = "pipeline.toml"
workdir = "out"
seeds = {seeds}
variant_seeds = {seeds}
[proxy]
max_steps = {steps}
eval_every = {steps}
checkpoint_every = {steps}
[eval]
tasks = "{tasks}"
limit = {limit}
[[variants]]
name = "no-quality-filters"
set = {{ filter = {{ config = "{samples}/filters-no-quality.toml" }} }}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="real text from ../shared/corpus instead of the samples")
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=3, help="--real: proxies per recipe")
    ap.add_argument("--steps", type=int, default=300, help="--real: proxy training steps")
    ap.add_argument("--tokens", default="600k", help="--real: the mix's token budget")
    ap.add_argument("--tasks", default="core", help="--real: benchmark tasks")
    ap.add_argument("--limit", type=int, default=100, help="--real: items per task")
    ap.add_argument("-j", "--workers", type=int, default=None)
    args = ap.parse_args()

    print(f"# bench/ablate.py  {date.today().isoformat()}  {machine()}")
    started = time.monotonic()
    if args.real:
        if not args.corpus.is_dir():
            print(f"error: {args.corpus} not found (give --corpus DIR)", file=sys.stderr)
            return 2
        work = (args.workdir or Path("work-ablate-real")).resolve()
        counts = prepare_real(args.corpus, work / "inputs")
        print("inputs: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        samples = ROOT / "samples"
        (work / "pipeline.toml").write_text(PIPELINE.format(samples=samples, tokens=args.tokens))
        seeds = list(range(args.seeds))
        (work / "ablate.toml").write_text(
            ABLATE.format(seeds=seeds, steps=args.steps, tasks=args.tasks, limit=args.limit, samples=samples)
        )
        ab = load_ablation(work / "ablate.toml", workers=args.workers)
    else:
        workdir = str(args.workdir) if args.workdir else None
        ab = load_ablation(ROOT / "samples" / "ablate.toml", workdir=workdir, workers=args.workers)
    result = run_ablation(ab, log=lambda m: print(m, file=sys.stderr))
    print(format_table(result))
    print(f"\n{len(result['runs'])} proxies, {time.monotonic() - started:.0f} s wall; {ab.workdir / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
