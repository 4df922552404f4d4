"""Writes samples/books/: public-domain books from Project Gutenberg, whole or their first
chapters, with Project Gutenberg's header and licence removed.

Project Gutenberg's licence lets anyone use a public-domain eBook for any purpose once its
licence and every reference to Project Gutenberg are stripped from the file; that is what this
script does (the text between the ``*** START OF`` and ``*** END OF`` lines, nothing else).
samples/books/NOTICE.md names the sources. The same inputs give byte-identical files.

    python tools/make_books.py [--corpus ../shared/corpus/corpora/books/gutenberg]
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "samples" / "books"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "corpora" / "books" / "gutenberg"

# (file written, eBook file, title, author, first publication, first line kept, first line
# left out or None): the text runs from the last line starting with the one to the last line
# starting with the other (the last, because a table of contents repeats the headings).
BOOKS = [
    (
        "alice-in-wonderland.txt",
        "11-0.txt.gz",
        "Alice's Adventures in Wonderland",
        "Lewis Carroll",
        "1865-11-26",
        "ALICE’S ADVENTURES IN WONDERLAND",
        None,
    ),
    (
        "pride-and-prejudice.txt",
        "1342-0.txt.gz",
        "Pride and Prejudice",
        "Jane Austen",
        "1813-01-28",
        "PRIDE AND PREJUDICE",
        "Chapter 13",
    ),
    (
        "moby-dick.txt",
        "2701-0.txt.gz",
        "Moby-Dick; or, The Whale",
        "Herman Melville",
        "1851-10-18",
        "  ETYMOLOGY.",
        "CHAPTER 8.",
    ),
]
START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M)
END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.M)


def body(raw: bytes) -> str:
    """The book's own text: between the START and END lines, LF line ends, no BOM."""
    text = raw.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
    start, end = START.search(text), END.search(text)
    if start is None or end is None:
        raise SystemExit("no START/END lines: not a Project Gutenberg text this script knows")
    return text[start.end() : end.start()].strip() + "\n"


def excerpt(text: str, begin: str, stop: str | None) -> str:
    """From the last line starting with ``begin`` to the last line starting with ``stop``
    (or the end, less a closing "End of Project Gutenberg's ..." line)."""

    def last(prefix: str) -> int:
        return max(m.start() for m in re.finditer(rf"^{re.escape(prefix)}", text, re.M))

    text = text[last(begin) : last(stop) if stop else len(text)]
    text = re.sub(r"\n+End of (the )?Project Gutenberg.*\s*$", "\n", text, flags=re.I)
    if "gutenberg" in text.lower():
        raise SystemExit("a reference to Project Gutenberg is left in the text: adjust the excerpt")
    return text.rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder with the *.txt.gz eBooks")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    for name, source, title, author, published, begin, stop in BOOKS:
        text = excerpt(body(gzip.decompress((args.corpus / source).read_bytes())), begin, stop)
        # No link back: the licence asks for every reference to Project Gutenberg to go (NOTICE.md names it).
        front = f"---\ntitle: {title}\nauthor: {author}\ndate: {published}\nlanguage: en\n---\n\n"
        (OUT / name).write_text(front + text, encoding="utf-8")
        print(f"{OUT / name}: {len(text.encode()):,} bytes")


if __name__ == "__main__":
    main()
