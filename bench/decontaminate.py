"""Decontamination speed and behaviour on real documents, with every bundled benchmark loaded.

Usage::

    python bench/decontaminate.py                     # ~5,000 real docs from ../shared/corpus
    python bench/decontaminate.py --input work/crawl  # or any Parquet shards
    python bench/decontaminate.py --tasks arc_easy,piqa --docs 2000 --plant 300

Prints the date and machine; the setup time (the tokenizer's character table, loading the
tasks and building the n-gram index); docs/s of the ``decontaminate`` filter on one core (CPU
time of this process, so other jobs on the machine do not count, and wall time beside it);
the documents flagged per task, each with the items it matched; the recall on benchmark items
planted into real pages (re-cased, with typographic quotes and dashes); and, in the same run, a
plain-Python reference (GPT-3's recipe: lower case, punctuation stripped, a set of 13-word
tuples, no short-text rule) with its speed and agreement.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curate.core.document import Document  # noqa: E402
from curate.core.tasks import resolve_tasks  # noqa: E402
from curate.core.text import char_classes, token_hashes, tokenize_batch  # noqa: E402
from filters import decontaminate as decon_module  # noqa: E402
from filters.registry import build_chain  # noqa: E402


def real_documents(n_docs: int) -> list[Document]:
    """bench/filters.py's corpus (web, Q&A, papers, Wikipedia markup, articles, books, sentences)."""
    # Loaded by path: a plain import of bench/filters.py would shadow the filters package.
    spec = importlib.util.spec_from_file_location("bench_filters", HERE / "filters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.build_corpus(n_docs)


def load_parquet(inputs: list[str], n_docs: int) -> list[Document]:
    from curate.core.shards import read_documents

    docs = []
    for doc in read_documents(inputs):
        docs.append(doc)
        if len(docs) >= n_docs:
            break
    return docs


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} CPUs, load average {load:.1f}, Python {platform.python_version()}"


def fresh(docs: list[Document]) -> list[Document]:
    return [d.replace(text="".join(d.text), scores={}, reject_reason=None) for d in docs]


def time_chain(spec: dict, docs: list[Document], repeat: int) -> tuple[list[float], list[float], Counter, object]:
    """docs/s by CPU time and by wall time per repeat, the reasons, and the chain."""
    chain = build_chain([spec])
    chain.process(Document(id="warm", text="warm up " * 20))
    cpu_rates, wall_rates = [], []
    reasons: Counter = Counter()
    for _ in range(repeat):
        chain.reset_stats()
        batch = fresh(docs)
        reasons = Counter()
        c0, w0 = time.process_time(), time.perf_counter()
        for d in batch:
            reasons[chain.process(d) or "kept"] += 1
        cpu_rates.append(len(batch) / (time.process_time() - c0))
        wall_rates.append(len(batch) / (time.perf_counter() - w0))
    return cpu_rates, wall_rates, reasons, chain


def flagged_details(chain, docs: list[Document], limit: int) -> None:
    """Each flagged document: its source, the items it matched (task:id) and the first words
    that matched (normalized)."""
    index = chain.filters[0].index
    shown = 0
    for d in docs:
        batch = tokenize_batch([d.text])
        words = token_hashes(batch)
        found = index.find(words)
        if len(found) == 0 or shown >= limit:
            continue
        items = [f"{index.tasks[index.item_task[i]]}:{index.item_ids[i]}" for i in found[:3]]
        more = f" (+{len(found) - 3})" if len(found) > 3 else ""
        spans = index.matches(words)
        start, end = spans[0][0], spans[0][0] + spans[0][1]
        for s, n in spans[1:]:  # overlapping windows: one stretch of matching words
            if s > end:
                break
            end = max(end, s + n)
        print(f"    {d.id} ({d.source}, {len(d.text):,} chars): {', '.join(items)}{more}")
        print(f'      "{" ".join(batch.tokens[start:end])}"')
        shown += 1


def planted_recall(chain, docs: list[Document], n: int, seed: int = 0) -> None:
    """Plant one item (question with its right answer, or its only text) into each of ``n`` real
    pages, disguised, and count how many come back with the planted item among those found."""
    f = chain.filters[0]
    index = f.index
    rng = random.Random(seed)
    tasks = resolve_tasks(",".join(index.tasks))
    items = [(t.name, it) for t in tasks for it in t.items()]
    picks = rng.sample(items, min(n, len(items)))
    hits, per_task, total = 0, Counter(), Counter()
    for (task, item), page in zip(picks, rng.choices(docs, k=len(picks))):
        answer = item.texts[1 + item.label] if task not in ("boolq", "winogrande") else ""
        planted = disguise(f"{item.texts[0]} {answer}", rng)
        cut = len(page.text) // 2
        doc = Document(id="planted", text=f"{page.text[:cut]}\n{planted}\n{page.text[cut:]}")
        ids = {index.item_ids[i] for i in index.find_text(doc.text) if index.tasks[index.item_task[i]] == task}
        ok = item.id in ids
        hits += ok
        per_task[task] += ok
        total[task] += 1
    print(f"  planted items found: {hits}/{len(picks)} ({hits / max(len(picks), 1):.1%})")
    print("    " + ", ".join(f"{t} {per_task[t]}/{total[t]}" for t in sorted(total)))


def disguise(text: str, rng: random.Random) -> str:
    """Re-case, typographic quotes and dashes, doubled spaces, a line break: what copying a
    question into a web page does to it."""
    text = text.upper() if rng.random() < 0.3 else text
    text = text.replace("'", "\u2019").replace('"', "\u201c").replace(" - ", " \u2014 ")
    words = text.split(" ")
    if len(words) > 4:
        words[len(words) // 2] = "\n" + words[len(words) // 2]
    return "  ".join(words) if rng.random() < 0.5 else " ".join(words)


_WORD = re.compile(r"[^\W_]+")


def reference_words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("'", "").replace("\u2019", ""))


def reference(docs: list[Document], tasks: str, n: int) -> tuple[float, float, list[bool]]:
    """GPT-3's recipe in plain Python: returns (setup seconds, docs/s by CPU time, flags)."""
    start = time.perf_counter()
    grams: set[int] = set()
    for task in resolve_tasks(tasks):
        for split in task.files:
            for item in task.items(split):
                for text in item.texts:
                    w = reference_words(text)
                    grams.update(hash(" ".join(w[i : i + n])) for i in range(len(w) - n + 1))
    setup = time.perf_counter() - start
    flags = []
    c0 = time.process_time()
    for d in docs:
        w = reference_words(d.text)
        flags.append(any(hash(" ".join(w[i : i + n])) in grams for i in range(len(w) - n + 1)))
    return setup, len(docs) / (time.process_time() - c0), flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", nargs="*", help="Parquet shards to use instead of ../shared/corpus")
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--tasks", default="core")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plant", type=int, default=1000, help="items planted into real pages (0: none)")
    ap.add_argument("--show", type=int, default=25, help="flagged documents listed")
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()

    print(f"{date.today().isoformat()}, {machine()}")
    docs = load_parquet(args.input, args.docs) if args.input else real_documents(args.docs)
    words = sum(len(reference_words(d.text)) for d in docs)
    print(
        f"{len(docs):,} documents, {sum(len(d.text) for d in docs) / len(docs):,.0f} characters and "
        f"{words / len(docs):,.0f} words on average"
    )
    sources = Counter((d.source or "?").split("-")[0] for d in docs)
    print("  sources: " + ", ".join(f"{k}={v}" for k, v in sources.most_common()))

    tasks = [t.strip() for t in args.tasks.split(",")]
    spec = {"name": "decontaminate", "tasks": tasks}
    start = time.perf_counter()
    char_classes()
    table = time.perf_counter() - start
    decon_module._INDEXES.clear()
    start = time.perf_counter()
    index = build_chain([spec]).filters[0].index
    build = time.perf_counter() - start
    stats = index.stats["all"]
    print(
        f"\nsetup: character table {table:.2f}s (once per process, shared with dedup), tasks and n-gram "
        f"index {build:.2f}s: {stats['items']:,} items ({stats['matchable']:,} long enough to match), "
        f"{stats['ngrams']:,} distinct {index.ngram}-grams and {stats['short_sequences']:,} short sequences "
        f"({index.min_words}-{index.ngram - 1} words), "
        f"{stats['templates_dropped']} template n-grams left out"
    )

    cpu, wall, reasons, chain = time_chain(spec, docs, args.repeat)
    print(
        f"\ndecontaminate, one core: {statistics.median(cpu):,.0f} docs/s by CPU time "
        f"(runs: {', '.join(f'{r:,.0f}' for r in cpu)}); {statistics.median(wall):,.0f} docs/s wall"
    )
    flagged = {k: v for k, v in reasons.items() if k != "kept"}
    print(
        f"  flagged {sum(flagged.values())} of {len(docs):,}: "
        + (", ".join(f"{k.split('/', 1)[1]}={v}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1])) or "none")
    )
    counters = chain.report()[0]["counters"]
    print("  counters: " + (", ".join(f"{k}={v}" for k, v in counters.items()) or "none"))
    flagged_details(chain, docs, args.show)

    if args.plant:
        planted_recall(chain, docs, args.plant)

    if not args.no_reference:
        setup, rate, ref_flags = reference(docs, args.tasks, chain.filters[0].ngram)
        ours = [chain.filters[0].index.find_text(d.text).size > 0 for d in docs]
        agree = sum(a == b for a, b in zip(ours, ref_flags))
        print(
            f"\nreference (plain Python, 13-word tuples, no short-text rule): setup {setup:.2f}s, "
            f"{rate:,.0f} docs/s by CPU time -> ours {statistics.median(cpu) / rate:.1f}x; "
            f"flags {sum(ref_flags)} vs ours {sum(ours)}, same decision on {agree / len(docs):.2%}"
        )
        for d, a, b in zip(docs, ours, ref_flags):
            if a != b:
                print(f"    differs: {d.id} ({d.source}) ours={a} reference={b}")


if __name__ == "__main__":
    main()
