"""Filter throughput and behaviour on real documents: docs/s per filter and for the chain.

Usage::

    python bench/filters.py                      # builds ~5,000 docs from ../shared/corpus
    python bench/filters.py --input work/crawl   # or any Parquet shards
    python bench/filters.py --docs 2000 --no-datatrove

Prints, on one core: docs/s for each filter run alone and for the default chain (FineWeb's
order: language, Gopher repetition, Gopher quality, C4, FineWeb), drop rates per reason, the
language filter's accuracy on labelled sentences (``langid/lingua-testdata``), and, when
datatrove can be imported (``--datatrove-path`` adds a directory to ``sys.path``), the same
figures for datatrove's filters measured in the same run, as ratios, with the agreement of
keep/drop decisions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curate.core.document import Document  # noqa: E402
from filters.registry import build_chain, build_filter  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpus"
CHAIN = ["language", "gopher_repetition", "gopher_quality", "c4", "fineweb"]


def _paragraph_docs(text: str, source: str, target_chars: int = 3000) -> list[Document]:
    """Consecutive paragraphs of a book grouped into documents of about ``target_chars``."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    docs, block, size = [], [], 0
    for p in paragraphs:
        block.append(p)
        size += len(p)
        if size >= target_chars:
            docs.append("\n\n".join(block))
            block, size = [], 0
    if block:
        docs.append("\n\n".join(block))
    return [Document(id=f"{source}-{i}", text=t, source=source) for i, t in enumerate(docs)]


def _jsonl(path: Path, source: str, field: str = "text") -> list[Document]:
    opener = gzip.open if path.suffix == ".gz" else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            row = json.loads(line)
            text = row.get(field) or ""
            if text.strip():
                url = row.get("url") or (row.get("id") if str(row.get("id", "")).startswith("http") else None)
                docs.append(Document(id=f"{source}-{i}", text=text, url=url, source=source))
    return docs


def build_corpus(n_docs: int) -> list[Document]:
    """About ``n_docs`` real documents: web (CCNet, RedPajama), Q&A, papers, Wikipedia
    markup, article bodies in several languages, book passages, and multilingual documents
    of labelled sentences."""
    c = CORPUS / "corpora"
    docs: list[Document] = []
    for p in sorted((c / "web").glob("*.jsonl.gz")):
        docs += _jsonl(p, "web")
    for p in sorted((c / "mixture" / "data-juicer").glob("*.jsonl")):
        docs += _jsonl(p, p.stem)
    docs += _jsonl(c / "code" / "data-juicer-stack_exchange.jsonl.gz", "stackexchange")
    docs += _jsonl(c / "papers" / "data-juicer-arxiv.jsonl", "arxiv")
    gt = CORPUS / "extraction" / "scrapinghub-aeb" / "ground-truth.json"
    if gt.exists():
        for key, item in sorted(json.loads(gt.read_text()).items()):
            docs.append(
                Document(id=f"article-{key[:12]}", text=item["articleBody"], url=item.get("url"), source="articles")
            )
    wiki = c / "wikipedia" / "wtf_wikipedia-wikitext.tar.gz"
    if wiki.exists():
        with tarfile.open(wiki) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if m.isfile():
                    text = tar.extractfile(m).read().decode("utf-8", "replace")
                    docs.append(Document(id=f"wiki-{len(docs)}", text=text, source="wikipedia-markup"))
    langid = CORPUS / "langid" / "lingua-testdata" / "sentences"
    multi: list[Document] = []
    for p in sorted(langid.glob("*.txt")):
        sents = [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]
        for i in range(0, len(sents) - 7, 8):
            multi.append(
                Document(id=f"sent-{p.stem}-{i}", text=" ".join(sents[i : i + 8]), source=f"sentences-{p.stem}")
            )
    books: list[Document] = []
    for p in sorted((c / "books" / "gutenberg").glob("*.txt.gz")):
        raw = gzip.decompress(p.read_bytes())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        books += _paragraph_docs(text, f"book-{p.name.split('.')[0]}")
    # Web-like material first, then books and multilingual documents interleaved up to n.
    rest = [d for pair in zip(books, multi[: len(books)]) for d in pair] + multi[len(books) :] + books[len(multi) :]
    docs += rest
    return docs[:n_docs]


def load_parquet(inputs: list[str], n_docs: int) -> list[Document]:
    from curate.core.shards import read_documents

    docs = []
    for doc in read_documents(inputs):
        docs.append(doc)
        if len(docs) >= n_docs:
            break
    return docs


def fresh(docs: list[Document]) -> list[Document]:
    # New text objects so that no filter benefits from another's cached analysis.
    return [d.replace(text="".join(d.text), scores={}, reject_reason=None) for d in docs]


def spec_of(name: str) -> dict:
    return {"name": name, **EXTRA_PARAMS.get(name, {})}


# Parameters for filters that need some (set in main: the quality model is trained there).
EXTRA_PARAMS: dict[str, dict] = {
    "url_blocklist": {"domains": ["example.com", "wikipedia.org"], "patterns": ["*/tag/*"]}
}


def train_bench_quality_model(docs: list[Document], tmp: str) -> str:
    """A quality model for timing the quality filter: book passages and article bodies as
    positives, CCNet/RedPajama web and Q&A as negatives (tiny, so the metrics are only a
    sanity check)."""
    from filters.quality_train import train_quality_model

    pos = [d.text for d in docs if (d.source or "").startswith(("book", "articles"))][:1500]
    neg = [
        d.text for d in docs if (d.source or "").startswith(("web", "redpajama", "stackexchange", "the", "wikipedia"))
    ]
    paths = []
    for name, texts in (("pos.jsonl", pos), ("neg.jsonl", neg)):
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8") as fh:
            for t in texts:
                fh.write(json.dumps({"text": t}) + "\n")
        paths.append(path)
    model = os.path.join(tmp, "quality.bin")
    report = train_quality_model([paths[0]], [paths[1]], model, dim=32, bucket=100_000, epoch=5, lr=0.1)
    print("  quality model (bench only): " + "; ".join(report.lines()[-3:-1]))
    return model


def time_ours(name_or_chain, docs: list[Document]) -> tuple[float, Counter]:
    chain = (
        build_chain([spec_of(n) for n in name_or_chain])
        if isinstance(name_or_chain, list)
        else build_chain([spec_of(name_or_chain)])
    )
    chain.process(Document(id="warm", text="warm up the model " * 20))  # model load outside the timing
    chain.reset_stats()
    batch = fresh(docs)
    reasons: Counter = Counter()
    start = time.perf_counter()
    for d in batch:
        r = chain.process(d)
        reasons[r or "kept"] += 1
    return len(batch) / (time.perf_counter() - start), reasons


def language_accuracy(per_lang: int = 100) -> tuple[float, dict[str, float]]:
    lang = build_filter({"name": "language", "min_score": 0.0})
    lang.setup()
    folder = CORPUS / "langid" / "lingua-testdata" / "sentences"
    aliases = {"nb": "no"}
    acc: dict[str, float] = {}
    for p in sorted(folder.glob("*.txt")):
        sents = [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()][:per_lang]
        want = aliases.get(p.stem, p.stem)
        ok = sum(1 for s in sents if lang.predict(s)[0][0] == want)
        acc[p.stem] = ok / len(sents) if sents else 0.0
    return sum(acc.values()) / len(acc), acc


def datatrove_filters():
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )

    language = LanguageFilter()
    # datatrove downloads lid.176.bin at run time; give it the same bundled model as ours
    # (no network here, and the same model makes the comparison fair).
    from filters.language import DEFAULT_LID_MODEL, load_fasttext

    language.model._model = load_fasttext(DEFAULT_LID_MODEL)
    return {
        "language": language,
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4": C4QualityFilter(filter_no_terminal_punct=True),
        "fineweb": FineWebQualityFilter(),
    }


def time_datatrove(filters: list, docs: list[Document]) -> tuple[float, list[bool]]:
    from datatrove.data import Document as DTDoc

    batch = [DTDoc(text=d.text, id=d.id, metadata={}) for d in docs]
    warm = DTDoc(text="warm up the model " * 20, id="w", metadata={})
    for f in filters:
        f.filter(warm)
    decisions = []
    start = time.perf_counter()
    for d in batch:
        keep = True
        for f in filters:
            r = f.filter(d)
            if not (r is True or (isinstance(r, tuple) and r[0])):
                keep = False
                break
        decisions.append(keep)
    return len(batch) / (time.perf_counter() - start), decisions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", nargs="*", help="Parquet shards to use instead of ../shared/corpus")
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument(
        "--datatrove-path",
        default=os.environ.get("DATATROVE_PATH", ""),
        help="directory appended to sys.path to find datatrove (e.g. a pip --target dir)",
    )
    args = ap.parse_args()

    docs = load_parquet(args.input, args.docs) if args.input else build_corpus(args.docs)
    n_chars = sum(len(d.text) for d in docs)
    print(f"{len(docs):,} documents, {n_chars / len(docs):,.0f} characters on average, one core")
    sources = Counter(d.source.split("-")[0] if d.source else "?" for d in docs)
    print("  sources: " + ", ".join(f"{k}={v}" for k, v in sources.most_common()))

    dt = None
    if not args.no_datatrove:
        if args.datatrove_path:
            sys.path.append(args.datatrove_path)
        try:
            dt = datatrove_filters()
        except Exception as exc:
            print(f"  (datatrove not available: {type(exc).__name__}: {exc}; ours only)")

    print(f"\n{'filter':<20}{'ours docs/s':>12}{'datatrove':>12}{'ratio':>8}{'agree':>8}  our drops")
    ours_decisions: dict[str, list[bool]] = {}
    import tempfile

    tmp = tempfile.mkdtemp(prefix="curate-bench-")
    EXTRA_PARAMS["quality"] = {"model": train_bench_quality_model(docs, tmp), "threshold": 0.5}
    for name in CHAIN + ["quality", "url_blocklist", "bad_words", "pii"]:
        rate, reasons = time_ours(name, docs)
        chain = build_chain([spec_of(name)])
        kept = [chain.process(d) is None for d in fresh(docs)]
        ours_decisions[name] = kept
        dropped = {k: v for k, v in reasons.items() if k != "kept"}
        drops = ", ".join(f"{k.split('/', 1)[1]}={v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])[:4])
        line = f"{name:<20}{rate:>12,.0f}"
        if dt is not None and name in dt:
            dt_rate, dt_kept = time_datatrove([dt[name]], docs)
            agree = sum(a == b for a, b in zip(kept, dt_kept)) / len(kept)
            line += f"{dt_rate:>12,.0f}{rate / dt_rate:>7.1f}x{agree:>8.1%}"
        else:
            line += f"{'-':>12}{'-':>8}{'-':>8}"
        print(f"{line}  {drops}")

    rate, reasons = time_ours(CHAIN, docs)
    kept = reasons.get("kept", 0)
    line = f"{'chain (FineWeb order)':<20}{rate:>12,.0f}"
    if dt is not None:
        dt_rate, dt_kept = time_datatrove([dt[n] for n in CHAIN], docs)
        chain = build_chain([{"name": n} for n in CHAIN])
        ours = [chain.process(d) is None for d in fresh(docs)]
        agree = sum(a == b for a, b in zip(ours, dt_kept)) / len(ours)
        line += f"{dt_rate:>12,.0f}{rate / dt_rate:>7.1f}x{agree:>8.1%}"
        line += f"  kept ours {kept / len(docs):.1%}, datatrove {sum(dt_kept) / len(docs):.1%}"
    else:
        line += f"{'-':>12}{'-':>8}{'-':>8}  kept {kept / len(docs):.1%}"
    print(line)
    print("  chain drops: " + ", ".join(f"{k}={v}" for k, v in reasons.most_common(12) if k != "kept"))
    by_source: dict[str, Counter] = {}
    chain = build_chain([{"name": n} for n in CHAIN])
    for d in fresh(docs):
        src = (d.source or "?").split("-")[0]
        by_source.setdefault(src, Counter())["kept" if chain.process(d) is None else "dropped"] += 1
    print(
        "  kept by source: "
        + ", ".join(f"{s} {c['kept']}/{c['kept'] + c['dropped']}" for s, c in sorted(by_source.items()))
    )

    if (CORPUS / "langid").exists():
        mean, acc = language_accuracy()
        lang = build_filter({"name": "language"})
        lang.setup()
        known = {label.replace("__label__", "") for label in lang._model_obj.get_labels()} | {"nb"}
        supported = {k: v for k, v in acc.items() if k in known}
        worst = sorted(supported.items(), key=lambda kv: kv[1])[:6]
        print(
            f"\nlanguage ID on single lingua sentences (100 per language): mean accuracy {mean:.1%} over all "
            f"{len(acc)} languages; {sum(supported.values()) / len(supported):.1%} over the {len(supported)} "
            f"that lid.176 knows (unknown: {', '.join(sorted(set(acc) - known))})"
        )
        print("  lowest: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
        ten = ["en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ar", "hi", "th", "ko", "tr", "vi"]
        print("  " + ", ".join(f"{k} {acc[k]:.0%}" for k in ten if k in acc))


if __name__ == "__main__":
    main()
