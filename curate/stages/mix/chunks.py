"""Long documents cut into chunks for ``curate mix`` (the ``max_doc_tokens`` setting).

A document longer than ``max_doc_tokens`` tokens is cut at paragraph boundaries (a blank
line), a paragraph too long for one chunk at sentence boundaries (``. ! ?`` and line breaks),
a sentence too long at token boundaries; the pieces are packed greedily, in order, into chunks
of at most ``max_doc_tokens`` tokens. Cuts keep every character: the chunks of a document,
joined, are its text. Chunk ``k`` of document ``ID`` gets the id ``ID#c0000k`` (:func:`chunk_id`)
and ``{"parent_id": ID, "chunk": k, "chunks": n}`` merged into its ``meta`` JSON, so that
lineage can group the chunks of one document.

:func:`head` is the other cut: the longest prefix of a text within a token count, at the finest
boundary needed (paragraphs, then sentences, then tokens), for the row that ends a source's
partial epoch exactly on its target.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from curate.core.document import CHUNK_MARK
from curate.core.tokenizer import ByteTokenizer, Tokenizer

# Each boundary is the end of a match: the separator stays with the text before it.
PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
SENTENCE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+|\n\s*")
LEVELS = (PARAGRAPH, SENTENCE)


def chunk_id(parent_id: str, index: int) -> str:
    """``parent#c00003``: the parent's id, then the chunk index (five digits, more if needed)."""
    return f"{parent_id}{CHUNK_MARK}{index:05d}"


def pieces(text: str, boundary: re.Pattern[str]) -> list[str]:
    """``text`` cut after every match of ``boundary`` (joined, the pieces are ``text``)."""
    out, start = [], 0
    for m in boundary.finditer(text):
        if m.end() > start and m.end() < len(text):
            out.append(text[start : m.end()])
            start = m.end()
    out.append(text[start:])
    return out


def token_head(text: str, limit: int, tok: Tokenizer) -> str:
    """The longest prefix of ``text`` with at most ``limit`` tokens, never inside a character."""
    if limit <= 0:
        return ""
    if isinstance(tok, ByteTokenizer):
        return text.encode("utf-8", errors="replace")[:limit].decode("utf-8", errors="ignore")
    # A prefix of lo characters fits; find the longest (counts grow with length). Galloping
    # first, so the cost follows the head's length, not the whole text's (a multi-MB text
    # without paragraph or sentence breaks would otherwise be re-counted in full each time).
    lo, hi = 0, min(len(text), 4 * limit)
    while hi < len(text) and tok.count([text[:hi]])[0] <= limit:
        lo, hi = hi, min(len(text), 2 * hi)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tok.count([text[:mid]])[0] <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def _token_chunks(text: str, limit: int, tok: Tokenizer) -> list[str]:
    out = []
    while text:
        part = token_head(text, limit, tok) or text[0]  # one character always goes (limit >= 16)
        out.append(part)
        text = text[len(part) :]
    return out


def split_text(text: str, limit: int, tok: Tokenizer, level: int = 0) -> list[str]:
    """Chunks of at most ``limit`` tokens, cut at the coarsest boundaries that allow it."""
    if level == len(LEVELS):
        return _token_chunks(text, limit, tok)
    parts = pieces(text, LEVELS[level])
    counts = tok.count(parts)
    out: list[str] = []
    group: list[str] = []
    group_tokens = 0
    for part, n in zip(parts, counts):
        if group and (n > limit or group_tokens + n > limit):
            out.extend(_checked("".join(group), group, limit, tok, level))
            group, group_tokens = [], 0
        if n > limit:
            out.extend(split_text(part, limit, tok, level + 1))
        else:
            group.append(part)
            group_tokens += n
    if group:
        out.extend(_checked("".join(group), group, limit, tok, level))
    return out


def _checked(chunk: str, group: list[str], limit: int, tok: Tokenizer, level: int) -> list[str]:
    """``chunk`` if it holds at most ``limit`` tokens; a BPE may merge across the pieces' seams
    and count one more than their sum, so a chunk over the limit is packed again in halves."""
    if tok.count([chunk])[0] <= limit:
        return [chunk]
    if len(group) == 1:
        return split_text(chunk, limit, tok, level + 1)
    half = len(group) // 2
    left, right = group[:half], group[half:]
    return _checked("".join(left), left, limit, tok, level) + _checked("".join(right), right, limit, tok, level)


def head(text: str, limit: int, tok: Tokenizer, level: int = 0) -> str:
    """The longest prefix of ``text`` within ``limit`` tokens: whole paragraphs, then whole
    sentences of the next paragraph, then tokens of the next sentence."""
    if level == len(LEVELS):
        return token_head(text, limit, tok)
    parts = pieces(text, LEVELS[level])
    counts = tok.count(parts)
    taken, used = 0, 0
    while taken < len(parts) and used + counts[taken] <= limit:
        used += counts[taken]
        taken += 1
    out = "".join(parts[:taken])
    if taken < len(parts) and used < limit:
        out += head(parts[taken], limit - used, tok, level + 1)
    if out and tok.count([out])[0] > limit:  # a merge across a seam: shave the last tokens
        out = token_head(out, limit, tok)
    return out


def chunk_meta(meta: str | None, parent_id: str, index: int, total: int, cut: bool = False) -> str:
    """The row's ``meta`` JSON with the chunk's parent, index and count merged in."""
    try:
        data = json.loads(meta) if meta else {}
    except ValueError:
        data = {"meta": meta}
    if not isinstance(data, dict):
        data = {"meta": data}
    data.update({"parent_id": parent_id, "chunk": index, "chunks": total})
    if cut:
        data["cut"] = True  # the row ends its source's partial epoch and was cut to the target
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def chunk_is_marked(meta: str) -> bool:
    """Whether a row's ``meta`` JSON already names its parent (the row is a chunk)."""
    try:
        data = json.loads(meta)
    except ValueError:
        return False
    return isinstance(data, dict) and "parent_id" in data and "chunk" in data


def set_column(table: pa.Table, name: str, values: Sequence[object] | pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    field = table.schema.field(index)
    array = values if isinstance(values, pa.Array) else pa.array(values, field.type)
    return table.set_column(index, field, array)


def explode(table: pa.Table, docs: np.ndarray, chunks: list[list[str]]) -> pa.Table:
    """One row per chunk: row ``docs[i]`` of ``table`` repeated for each of ``chunks[i]``
    (an empty list keeps the row whole), with the chunk's text, id, ``n_chars`` and meta."""
    split = {int(d): c for d, c in zip(docs, chunks) if c}
    if not split:
        return table
    reps = np.ones(table.num_rows, dtype=np.int64)
    for d, c in split.items():
        reps[d] = len(c)
    idx = np.repeat(np.arange(table.num_rows), reps)
    out = table.take(pa.array(idx))
    texts = out.column("text").to_pylist()
    ids = out.column("id").to_pylist()
    metas = out.column("meta").to_pylist()
    n_chars = out.column("n_chars").to_pylist()
    start = np.cumsum(reps) - reps
    for d, c in split.items():
        parent = ids[start[d]]
        for k, text in enumerate(c):
            row = int(start[d]) + k
            texts[row], ids[row], n_chars[row] = text, chunk_id(parent, k), len(text)
            metas[row] = chunk_meta(metas[row], parent, k, len(c))
    for name, values in (("text", texts), ("id", ids), ("meta", metas), ("n_chars", n_chars)):
        out = set_column(out, name, values)
    return out
