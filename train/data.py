"""Training data from a mix directory: documents -> tokens -> packed fixed-length sequences.

A mix directory (written by ``curate mix``, opened by train/mix.py) holds Parquet shards in
the project schema and a ``manifest.json`` naming its shards, tokenizer and training cutoff.
This module streams it:

* **Order** is deterministic: epoch by epoch, shards in manifest order (or a seeded
  permutation per epoch), rows in file order. The mix already shuffled documents; permuting
  shards per epoch only keeps repeated epochs from replaying the exact same sequence.
* **Packing**: each document's tokens are followed by ``<|endoftext|>`` and concatenated; a
  training example is a window of ``seq_len + 1`` tokens (inputs and the targets shifted by
  one), and consecutive windows advance by ``seq_len``, so no token is dropped or padded.
* **Ranks**: with N processes, rank r takes the documents whose index in the epoch's shard
  order is r modulo N, so ranks read disjoint documents and each tokenizes only its own.
* **Held-out slice**: a document is held out for validation when a hash of its id falls
  under ``val_fraction``; the same id (including repeats the mix added as extra epochs) is
  therefore always on the same side, and the split does not depend on order or world size.
* **Resume**: :meth:`PackedReader.state_dict` is the position of the first token not yet
  consumed (epoch, shard, row, token offset in that document): a few integers saved in every
  checkpoint; :meth:`load_state_dict` re-reads that one document and carries on from there.
* **Consumption**: as it advances the reader counts, per mix row, the tokens consumed and the
  passes that read it (:attr:`PackedReader.consumption`, train/lineage.py): what each
  checkpoint's ``consumed.parquet`` records. A resumed reader adds to the counts it is given
  (:meth:`PackedReader.replay` rebuilds them from the position alone by reading again).

Pre-tokenized mixes: when the mix manifest carries a ``pretokenized`` entry (``curate mix
--pretokenize``: one flat token array per shard, each row's ids followed by ``eot_id``) and
the training tokenizer is the mix's tokenizer, token ids are sliced out of those files
(memory-mapped) instead of tokenizing text again; only the ``id`` and ``n_tokens`` columns are
read. The sequences are the same either way.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from curate.core.document import parent_id
from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer, Tokenizer

from .lineage import Consumption
from .mix import MixInfo, pretokenized_usable

_READ_COLUMNS = ["id", "text"]


def is_validation(doc_id: str, val_fraction: float) -> bool:
    """Whether a document belongs to the held-out slice (a stable hash of its id; a chunk the
    mix cut from a long document goes with its parent, so a book is never split between the
    two sides and a cut row never lands on the other side of its whole passes)."""
    if val_fraction <= 0:
        return False
    digest = hashlib.blake2b(parent_id(doc_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


def _encode(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    if isinstance(tokenizer, ByteTokenizer):
        # The byte tokenizer is the identity on UTF-8: skip the Python list of ints.
        return [np.frombuffer(t.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int32) for t in texts]
    return [np.asarray(ids, dtype=np.int32) for ids in tokenizer.encode_batch(texts)]


@dataclass
class _Doc:
    epoch: int
    order: int  # index of the shard in this epoch's order
    row: int
    id: str
    tokens: np.ndarray  # the document's tokens followed by <|endoftext|>
    shard: int = 0  # index of the shard in manifest order


class _DocStream:
    """Documents of one rank, from a position, forever (epoch after epoch)."""

    def __init__(
        self,
        mix: MixInfo,
        tokenizer: Tokenizer,
        *,
        rank: int,
        world_size: int,
        val_fraction: float,
        seed: int,
        shuffle_shards: bool,
        batch_rows: int = 256,
    ):
        self.mix = mix
        self.tokenizer = tokenizer
        self.eot = tokenizer.eot_id
        self.rank, self.world_size = rank, world_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.shuffle_shards = shuffle_shards
        self.batch_rows = batch_rows
        self.pretokenized = pretokenized_usable(mix, tokenizer)
        # Index of each shard's first row in manifest order: the global row number decides
        # the rank, so it must not depend on the per-epoch shard permutation.
        self.row_offsets = np.concatenate([[0], np.cumsum(mix.shard_rows)[:-1]]).astype(np.int64) if mix.shards else []

    def shard_order(self, epoch: int) -> list[int]:
        n = len(self.mix.shards)
        if not self.shuffle_shards or n < 2:
            return list(range(n))
        return [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(n)]

    def docs(self, epoch: int = 0, order: int = 0, row: int = 0) -> Iterator[_Doc]:
        if not self.mix.shards or self.mix.rows == 0:
            raise InputError(f"{self.mix.directory}: the mix holds no documents")
        while True:
            produced = False
            shard_order = self.shard_order(epoch)
            for pos in range(order, len(shard_order)):
                shard = shard_order[pos]
                for doc in self._read_shard(shard, start_row=row if pos == order else 0):
                    produced = True
                    yield _Doc(epoch, pos, doc[0], doc[1], doc[2], shard)
            if not produced and order == 0 and row == 0:
                raise InputError(
                    f"{self.mix.directory}: no training documents for rank {self.rank} of {self.world_size} "
                    f"(all {self.mix.rows} rows are empty or held out for validation)"
                )
            epoch, order, row = epoch + 1, 0, 0

    def _read_shard(self, shard: int, start_row: int) -> Iterator[tuple[int, str, np.ndarray]]:
        if self.pretokenized:
            yield from self._read_token_file(shard, start_row)
            return
        path = self.mix.shards[shard]
        base = int(self.row_offsets[shard])
        try:
            pf = pq.ParquetFile(path)
            # Skip whole row groups before start_row instead of decoding them.
            groups, first_row, seen = [], 0, 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if seen + n > start_row:
                    if not groups:
                        first_row = seen
                    groups.append(g)
                seen += n
            if not groups:
                return
            row = first_row
            for batch in pf.iter_batches(batch_size=self.batch_rows, row_groups=groups, columns=_READ_COLUMNS):
                ids = batch.column(0).to_pylist()
                texts = batch.column(1).to_pylist()
                picked_rows, picked_ids, picked_texts = [], [], []
                for i, (doc_id, text) in enumerate(zip(ids, texts)):
                    r = row + i
                    if r < start_row or not text or (base + r) % self.world_size != self.rank:
                        continue
                    if is_validation(doc_id or "", self.val_fraction):
                        continue
                    picked_rows.append(r)
                    picked_ids.append(doc_id)
                    picked_texts.append(text)
                row += batch.num_rows
                for r, doc_id, tokens in zip(picked_rows, picked_ids, _encode(self.tokenizer, picked_texts)):
                    yield r, doc_id, np.append(tokens, np.int32(self.eot))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: unreadable Parquet shard ({exc})") from None
        except KeyError as exc:
            raise InputError(f"{path}: missing column {exc}") from None

    def _read_token_file(self, shard: int, start_row: int) -> Iterator[tuple[int, str, np.ndarray]]:
        path = self.mix.shards[shard]
        try:
            table = pq.read_table(path, columns=["id", "n_tokens"])
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: unreadable Parquet shard ({exc})") from None
        ids = table.column("id").to_pylist()
        counts = table.column("n_tokens").to_numpy(zero_copy_only=False)
        if np.isnan(counts.astype(np.float64)).any():
            raise InputError(f"{path}: pre-tokenized shard has rows without n_tokens")
        counts = counts.astype(np.int64)
        ends = np.cumsum(counts + 1)  # each row's ids, then eot
        tokens = np.memmap(
            self.mix.token_files[shard], dtype=np.dtype(self.mix.token_dtype).newbyteorder("<"), mode="r"
        )
        if len(tokens) != (int(ends[-1]) if len(ends) else 0):
            raise InputError(
                f"{self.mix.token_files[shard]}: holds {len(tokens)} tokens, {path} accounts for "
                f"{int(ends[-1]) if len(ends) else 0}; the mix's token files are inconsistent"
            )
        base = int(self.row_offsets[shard])
        for r in range(start_row, len(ids)):
            if counts[r] == 0 or (base + r) % self.world_size != self.rank:
                continue
            if is_validation(ids[r] or "", self.val_fraction):
                continue
            yield r, ids[r], np.asarray(tokens[ends[r] - counts[r] - 1 : ends[r]], dtype=np.int32)


class PackedReader:
    """Fixed-length training sequences for one rank, resumable to the token.

    ``next_batch(B)`` returns inputs ``x`` and targets ``y`` of shape (B, seq_len) (int64) and
    the ids of the documents each row drew from (for data traces).
    """

    def __init__(
        self,
        mix: MixInfo,
        tokenizer: Tokenizer,
        seq_len: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        val_fraction: float = 0.0,
        seed: int = 0,
        shuffle_shards: bool = True,
        batch_rows: int = 256,
    ):
        self.seq_len = seq_len
        self._settings = dict(
            rank=rank,
            world_size=world_size,
            val_fraction=val_fraction,
            seed=seed,
            shuffle_shards=shuffle_shards,
            batch_rows=batch_rows,
        )
        self.stream = _DocStream(mix, tokenizer, **self._settings)  # kept to build a replaying twin
        # Segments of the documents not fully consumed yet: [doc, offset of first unused token].
        self._segments: deque[list[Any]] = deque()
        self._next_position = (0, 0, 0)  # (epoch, order, row) of the next document to read
        self._docs: Iterator[_Doc] | None = None
        self.docs_read = 0
        self.tokens_read = 0
        self.consumption = Consumption(mix.shard_rows)

    # -- position ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Where the next sequence starts: plain ints, safe for weights-only checkpoints."""
        if self._segments:
            doc, offset = self._segments[0]
            epoch, order, row = doc.epoch, doc.order, doc.row
        else:
            (epoch, order, row), offset = self._next_position, 0
        return {
            "epoch": epoch,
            "order": order,
            "row": row,
            "offset": int(offset),
            "docs_read": self.docs_read,
            "tokens_read": self.tokens_read,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._segments.clear()
        self._docs = self.stream.docs(int(state["epoch"]), int(state["order"]), int(state["row"]))
        self._next_position = (int(state["epoch"]), int(state["order"]), int(state["row"]))
        offset = int(state.get("offset", 0))
        if offset:
            doc = self._pull()
            self._segments.append([doc, offset])
        self.docs_read = int(state.get("docs_read", 0))
        self.tokens_read = int(state.get("tokens_read", 0))

    def replay(self, state: dict[str, int]) -> None:
        """Take the position ``state`` with the consumption that led to it, rebuilt by reading
        from the start again (for a checkpoint that holds no ``consumed.parquet``)."""
        fresh = PackedReader(self.stream.mix, self.stream.tokenizer, self.seq_len, **self._settings)
        for _ in range(int(state.get("tokens_read", 0)) // self.seq_len):
            fresh.next_sequence()
        self.load_state_dict(state)
        self.consumption = fresh.consumption

    @property
    def epoch(self) -> int:
        return self.state_dict()["epoch"]

    # -- reading -------------------------------------------------------------------------

    def _pull(self) -> _Doc:
        if self._docs is None:
            self._docs = self.stream.docs(*self._next_position)
        doc = next(self._docs)
        self._next_position = (doc.epoch, doc.order, doc.row + 1)
        return doc

    def next_sequence(self) -> tuple[np.ndarray, list[str]]:
        """seq_len + 1 tokens, then advance by seq_len (the last token is the next input)."""
        need = self.seq_len + 1
        while sum(len(d.tokens) - off for d, off in self._segments) < need:
            doc = self._pull()
            self.docs_read += 1
            self._segments.append([doc, 0])
        parts, ids, taken = [], [], 0
        for doc, offset in self._segments:
            chunk = doc.tokens[offset : offset + need - taken]
            parts.append(chunk)
            ids.append(doc.id)
            taken += len(chunk)
            if taken == need:
                break
        # Consume seq_len tokens.
        advance = self.seq_len
        while advance:
            doc, offset = self._segments[0]
            left = len(doc.tokens) - offset
            self.consumption.add(doc.shard, doc.row, min(left, advance), started=offset == 0)
            if left <= advance:
                self._segments.popleft()
                advance -= left
            else:
                self._segments[0][1] = offset + advance
                advance = 0
        self.tokens_read += self.seq_len
        return np.concatenate(parts), ids

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
        rows, ids = [], []
        for _ in range(batch_size):
            seq, seq_ids = self.next_sequence()
            rows.append(seq)
            ids.append(seq_ids)
        block = torch.from_numpy(np.stack(rows).astype(np.int64))
        return block[:, :-1].contiguous(), block[:, 1:].contiguous(), ids


def validation_sequences(
    mix: MixInfo, tokenizer: Tokenizer, seq_len: int, *, val_fraction: float, max_sequences: int, batch_rows: int = 256
) -> np.ndarray | None:
    """The held-out slice packed like training data: up to ``max_sequences`` windows of
    ``seq_len + 1`` tokens (int32), the same on every rank; None when nothing is held out.

    Reads shards in manifest order and stops as soon as it has enough; only held-out
    documents are tokenized.
    """
    if val_fraction <= 0 or max_sequences <= 0 or not mix.shards:
        return None
    need = max_sequences * seq_len + 1
    chunks: list[np.ndarray] = []
    have = 0
    eot = np.int32(tokenizer.eot_id)
    for path in mix.shards:
        try:
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=_READ_COLUMNS):
                picked = [
                    t
                    for i, t in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist())
                    if t and is_validation(i or "", val_fraction)
                ]
                for tokens in _encode(tokenizer, picked):
                    chunks.append(np.append(tokens, eot))
                    have += len(tokens) + 1
                if have >= need:
                    break
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: unreadable Parquet shard ({exc})") from None
        if have >= need:
            break
    if have < seq_len + 1:
        return None
    stream = np.concatenate(chunks)
    count = min(max_sequences, (len(stream) - 1) // seq_len)
    return np.stack([stream[i * seq_len : i * seq_len + seq_len + 1] for i in range(count)])
