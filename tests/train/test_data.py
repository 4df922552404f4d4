"""train/data.py: mix directory -> packed sequences; order, ranks, held-out slice, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer
from train.data import PackedReader, is_validation, validation_sequences
from train.mix import open_mix, pretokenized_usable, resolve_tokenizer


def doc_tokens(i: int) -> list[int]:
    return list(f"Document number {i} says hello. ".encode() * (1 + i % 4)) + [ByteTokenizer().eot_id]


def test_packing_concatenates_documents_with_eot_and_drops_nothing(numbered_mix):
    mix = open_mix(numbered_mix)
    reader = PackedReader(mix, ByteTokenizer(), seq_len=32, shuffle_shards=False)
    x, y, ids = reader.next_batch(6)
    assert x.shape == y.shape == (6, 32) and x.dtype == torch.int64
    stream = [t for i in range(60) for t in doc_tokens(i)]
    for k in range(6):
        # Window k covers tokens 32k .. 32k+32; targets are the inputs shifted by one.
        assert x[k].tolist() == stream[32 * k : 32 * k + 32]
        assert y[k].tolist() == stream[32 * k + 1 : 32 * k + 33]
    assert len(doc_tokens(0)) == 31  # so the first window spans two documents
    assert ids[0] == ["doc-0000", "doc-0001"]
    assert reader.tokens_read == 6 * 32


def test_ranks_read_disjoint_documents_covering_the_training_set(tmp_path, write_numbered_mix):
    """Rank r takes global rows r, r + N, ...: within an epoch no document is on two ranks,
    and together the ranks read every training (not held-out) document."""
    mix = open_mix(write_numbered_mix(tmp_path / "mix", n_docs=40))
    per_rank = []
    for rank in range(3):
        reader = PackedReader(
            mix, ByteTokenizer(), seq_len=8, rank=rank, world_size=3, val_fraction=0.1, shuffle_shards=True, seed=5
        )
        docs = []
        while True:
            doc = reader._pull()
            if doc.epoch:
                break
            docs.append(doc.id)
        per_rank.append(docs)
    flat = [d for docs in per_rank for d in docs]
    train_ids = {f"doc-{i:04d}" for i in range(40) if not is_validation(f"doc-{i:04d}", 0.1)}
    assert len(flat) == len(set(flat))
    assert set(flat) == train_ids and len(train_ids) < 40
    assert all(int(d[4:]) % 3 == rank for rank, docs in enumerate(per_rank) for d in docs)


def test_held_out_documents_never_reach_training(numbered_mix):
    mix = open_mix(numbered_mix)
    held_out = {f"doc-{i:04d}" for i in range(60) if is_validation(f"doc-{i:04d}", 0.2)}
    assert 3 < len(held_out) < 25
    reader = PackedReader(mix, ByteTokenizer(), seq_len=16, val_fraction=0.2)
    trained = {i for _ in range(40) for row in reader.next_batch(4)[2] for i in row}
    assert trained and not trained & held_out
    val = validation_sequences(mix, ByteTokenizer(), 16, val_fraction=0.2, max_sequences=5)
    assert val.shape == (5, 17)
    # The held-out slice is made of held-out documents only: its first tokens are the first
    # held-out document's.
    first = sorted(held_out)[0]
    assert val[0, :10].tolist() == doc_tokens(int(first[4:]))[:10]
    assert validation_sequences(mix, ByteTokenizer(), 16, val_fraction=0.0, max_sequences=5) is None


def test_resume_from_state_continues_exactly(numbered_mix, tmp_path):
    mix = open_mix(numbered_mix)
    kwargs = dict(rank=1, world_size=2, val_fraction=0.1, seed=3)
    straight = PackedReader(mix, ByteTokenizer(), 24, **kwargs)
    for _ in range(7):
        straight.next_batch(3)
    state = straight.state_dict()
    assert state["offset"] > 0 or state["row"] > 0
    torch.save(state, tmp_path / "state.pt")  # travels in a weights-only checkpoint
    expected = [straight.next_batch(3) for _ in range(30)]  # crosses into the next epoch
    assert straight.epoch >= 1
    resumed = PackedReader(mix, ByteTokenizer(), 24, **kwargs)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for (x1, y1, i1), (x2, y2, i2) in zip(expected, (resumed.next_batch(3) for _ in range(30))):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and i1 == i2


def test_epochs_repeat_the_data_in_a_seeded_shard_order(numbered_mix):
    mix = open_mix(numbered_mix)
    a = PackedReader(mix, ByteTokenizer(), 16, seed=1)
    b = PackedReader(mix, ByteTokenizer(), 16, seed=1)
    orders = [a.stream.shard_order(e) for e in range(4)]
    assert orders == [b.stream.shard_order(e) for e in range(4)]
    assert len({tuple(o) for o in orders}) > 1  # not the same order every epoch
    assert all(sorted(o) == list(range(len(mix.shards))) for o in orders)
    batches = [a.next_batch(8) for _ in range(100)]
    assert a.epoch >= 2
    assert all(torch.equal(x, b.next_batch(8)[0]) for x, _, _ in batches)


def test_pretokenized_token_files_give_the_same_sequences(tmp_path, write_numbered_mix):
    mix_dir = write_numbered_mix(tmp_path / "mix")
    # Write token files in the layout `curate mix --pretokenize` documents.
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = json.loads((mix_dir / "manifest.json").read_text())
    files = []
    (mix_dir / "tokens").mkdir()
    for shard in manifest["shards"]:
        table = pq.read_table(mix_dir / shard["path"])
        tokens = [t for text in table.column("text").to_pylist() for t in list(text.encode()) + [256]]
        counts = [len(t.encode()) for t in table.column("text").to_pylist()]
        table = table.set_column(table.schema.get_field_index("n_tokens"), "n_tokens", pa.array(counts, pa.int64()))
        pq.write_table(table, mix_dir / shard["path"])
        path = f"tokens/{shard['path'].replace('.parquet', '.bin')}"
        np.asarray(tokens, dtype="<u2").tofile(mix_dir / path)
        files.append({"shard": shard["path"], "path": path, "tokens": len(tokens)})
    manifest["pretokenized"] = {
        "dir": "tokens",
        "dtype": "uint16",
        "byteorder": "little",
        "eot_id": 256,
        "files": files,
    }
    (mix_dir / "manifest.json").write_text(json.dumps(manifest))
    mix = open_mix(mix_dir)
    assert pretokenized_usable(mix, ByteTokenizer())
    from_files = PackedReader(mix, ByteTokenizer(), 20, val_fraction=0.1)
    assert from_files.stream.pretokenized
    from_text = PackedReader(mix, ByteTokenizer(), 20, val_fraction=0.1)
    from_text.stream.pretokenized = False
    for _ in range(25):
        a, b = from_files.next_batch(4), from_text.next_batch(4)
        assert torch.equal(a[0], b[0]) and a[2] == b[2]


def test_bad_inputs_are_one_line_errors(tmp_path, numbered_mix, write_numbered_mix):
    with pytest.raises(InputError, match="no such mix"):
        open_mix(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .parquet"):
        open_mix(tmp_path / "empty")
    manifest = json.loads((numbered_mix / "manifest.json").read_text())
    manifest["tokenizer"] = {"name": f"bpe:{tmp_path / 'gone'}", "vocab_size": 1000}
    (numbered_mix / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="--tokenizer"):
        resolve_tokenizer(None, open_mix(numbered_mix))
    manifest["shards"].append({"path": "part-99999-000.parquet"})
    (numbered_mix / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="missing shard"):
        open_mix(numbered_mix)
    # Everything held out: a clear error instead of an endless loop.
    reader = PackedReader(
        open_mix(write_numbered_mix(tmp_path / "all-val", n_docs=3)), ByteTokenizer(), 8, val_fraction=0.999
    )
    with pytest.raises(InputError, match="no training documents"):
        reader.next_batch(1)
