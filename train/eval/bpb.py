"""Bits per byte on held-out text, per source (as Paloma reports per domain).

The text is the mix's validation slice, the documents pretraining held out: the same rule,
:func:`train.data.is_validation` on each document's id with the run's ``data.val_fraction``
(a document the mix repeated is scored once), grouped by the ``source`` column; plus any
folder or file of Parquet / JSONL / text given as ``--text``.

Each document is ``<|endoftext|>`` followed by its tokens, and every text token is scored once
(the end-of-text token after it is not): the first window predicts the first ``block_size``
tokens, and each later window predicts the next ``stride`` tokens (default: the block size)
from the ``block_size`` tokens before them, so with the default stride the windows do not
overlap and a window's first token sees only the last token of the one before (the rolling
rule of lm-evaluation-harness). Bits per byte is the total negative log-likelihood in bits
divided by the documents' UTF-8 bytes: unlike loss per token, it compares models with
different tokenizers. For a byte-level tokenizer it is the mean loss per token / ln 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.errors import ConfigError, InputError
from curate.core.readers import SourceReader

from ..data import is_validation
from ..mix import open_mix
from .scoring import Request

LINEAGE_DEPTH = 8  # parents followed to find the pretraining run behind a fine-tuned model


@dataclass
class HeldOut:
    """Where the held-out slice is, or why there is none (``reason``)."""

    mix: Path | None = None
    val_fraction: float | None = None
    manifest_sha256: str | None = None  # what the checkpoint recorded
    reason: str | None = None
    notes: list[str] = field(default_factory=list)


def find_heldout(
    meta: dict[str, Any], step_dir: Path, mix: str | None = None, val_fraction: float | None = None
) -> HeldOut:
    """The mix and held-out fraction of the pretraining run behind a checkpoint: from its own
    metadata, else its parents' (an SFT/RLHF/DPO model records the checkpoint it started from).
    ``mix``/``val_fraction`` override them; a ``mix`` given that does not exist is an error."""
    found_mix, found_fraction, sha = None, None, meta.get("mix_manifest_sha256")
    here, where = meta, step_dir
    for _ in range(LINEAGE_DEPTH):
        found_mix = found_mix or here.get("mix")
        data = ((here.get("train_config") or {}).get("data")) or {}
        if found_fraction is None and here.get("stage") == "pretrain" and "val_fraction" in data:
            found_fraction = float(data["val_fraction"])
        sha = sha or here.get("mix_manifest_sha256")
        if found_mix and found_fraction is not None:
            break
        parent = _parent_config(here.get("parent"), where)
        if parent is None:
            break
        here, where = parent
    held = HeldOut(manifest_sha256=sha if mix is None else None)  # another mix: nothing to compare with
    if mix is not None:
        if not Path(mix).exists():
            raise InputError(f"{mix}: no such mix folder")
        held.mix = Path(mix)
    elif found_mix:
        held.mix = _locate(found_mix, step_dir)
        if held.mix is None:
            held.reason = f"the mix it was trained on ({found_mix}) is not here; pass --mix DIR"
    else:
        held.reason = "no mix is recorded in its lineage; pass --mix DIR"
    held.val_fraction = val_fraction if val_fraction is not None else found_fraction
    if held.reason is None and held.val_fraction is None:
        held.reason = "no pretraining val_fraction is recorded in its lineage; pass --val-fraction"
    elif held.reason is None and held.val_fraction <= 0:
        held.reason = "pretraining held nothing out (val_fraction 0); pass --val-fraction"
    return held


def _parent_config(parent: str | None, child: Path) -> tuple[dict[str, Any], Path] | None:
    """A parent checkpoint's config.json, or that of the newest step of its run when the step
    itself was pruned (keep_last): a run records one mix and one held-out fraction."""
    if not parent:
        return None
    step = _locate(parent, child)
    candidates = [step] if step is not None else []
    run = _locate(str(Path(parent).parent), child)
    if run is not None:
        candidates += sorted((p for p in run.glob("step-*") if (p / "config.json").exists()), reverse=True)
    for candidate in candidates:
        try:
            return json.loads((candidate / "config.json").read_text()), candidate
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _locate(recorded: str, anchor: Path) -> Path | None:
    """A path recorded at training time: as written (relative to the current folder), else
    relative to a folder above the checkpoint (where that run was started from)."""
    path = Path(recorded)
    if path.exists():
        return path
    if path.is_absolute():
        return None
    for above in Path(anchor).resolve().parents:
        if (above / path).exists():
            return above / path
    return None


def heldout_texts(mix_dir: Path, val_fraction: float, max_docs: int | None) -> tuple[dict[str, list[str]], str | None]:
    """The held-out documents' texts by source, in mix order, each id once; and the mix
    manifest's sha256."""
    mix = open_mix(mix_dir)
    by_source: dict[str, list[str]] = {}
    seen: set[str] = set()
    for path in mix.shards:
        try:
            pf = pq.ParquetFile(path)
            columns = [c for c in ("id", "text", "source") if c in pf.schema_arrow.names]
            if "id" not in columns or "text" not in columns:
                raise InputError(f"{path}: needs 'id' and 'text' columns")
            for batch in pf.iter_batches(batch_size=1024, columns=columns):
                rows = batch.to_pydict()
                sources = rows.get("source") or ["(none)"] * batch.num_rows
                for doc_id, text, source in zip(rows["id"], rows["text"], sources):
                    if not text or doc_id in seen or not is_validation(doc_id or "", val_fraction):
                        continue
                    seen.add(doc_id)
                    texts = by_source.setdefault(source or "(none)", [])
                    if max_docs is None or len(texts) < max_docs:
                        texts.append(text)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: unreadable Parquet shard ({exc})") from None
    return dict(sorted(by_source.items())), mix.manifest_sha256


def extra_texts(spec: str, max_docs: int | None) -> tuple[str, list[str]]:
    """``DIR`` or ``NAME=DIR`` (Parquet shards, JSONL, text files): its name and texts."""
    name, _, path = spec.rpartition("=")
    name = name or Path(path.rstrip("/")).name or path
    if not path:
        raise ConfigError(f"--text {spec!r}: give a folder or file, or NAME=PATH")
    texts: list[str] = []
    for table in SourceReader(name, [path]).tables():
        for text in table.column("text").to_pylist():
            if max_docs is not None and len(texts) >= max_docs:
                return name, texts
            texts.append(text)
    return name, texts


def document_windows(tokens: list[int], block_size: int, stride: int) -> list[Request]:
    """Requests scoring ``tokens[1:]`` once each (``tokens[0]`` is the document start)."""
    if stride > block_size:
        raise ConfigError(f"stride {stride} is larger than the model's block size {block_size}")
    n = len(tokens)
    if n < 2:
        return []
    end = min(n, block_size + 1)
    out = [Request(tuple(tokens[: end - 1]), tuple(tokens[1:end]))]
    while end < n:
        new_end = min(n, end + stride)
        start = max(0, new_end - 1 - block_size)
        out.append(Request(tuple(tokens[start : new_end - 1]), tuple(tokens[end:new_end])))
        end = new_end
    return out


def score_texts(texts: list[str], tokenizer, block_size: int, stride: int, score: Callable) -> dict[str, Any]:
    """Bits per byte of ``texts``; ``score(requests)`` gives their log-likelihoods."""
    requests: list[Request] = []
    nbytes = ntokens = 0
    for ids, text in zip(tokenizer.encode_batch(texts), texts):
        windows = document_windows([tokenizer.eot_id, *ids], block_size, stride)
        requests += windows
        ntokens += len(ids)
        nbytes += len(text.encode("utf-8", errors="replace"))
    nats = -float(score(requests).sum()) if requests else 0.0
    return summarize(len(texts), nbytes, ntokens, nats / math.log(2))


def summarize(docs: int, nbytes: int, ntokens: int, bits: float) -> dict[str, Any]:
    return {
        "docs": docs,
        "bytes": nbytes,
        "tokens": ntokens,
        "bits": bits,
        "bpb": bits / nbytes if nbytes else None,
        "bits_per_token": bits / ntokens if ntokens else None,
    }


def total(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All sources together: bits and bytes summed, then divided (not a mean of ratios)."""
    sums = {k: sum(s[k] for s in per_source.values()) for k in ("docs", "bytes", "tokens", "bits")}
    return summarize(sums["docs"], sums["bytes"], sums["tokens"], sums["bits"])
