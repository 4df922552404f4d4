"""train/mix.py: a mix directory's manifest and shards, and which tokenizer trains on it."""

from __future__ import annotations

import json

from curate.core.document import Document
from curate.core.shards import ShardWriter
from curate.core.tokenizer import ByteTokenizer
from train.mix import open_mix, resolve_tokenizer


def test_open_mix_reads_manifest_and_shards(numbered_mix):
    mix = open_mix(numbered_mix)
    assert len(mix.shards) > 2  # the small shard size splits the mix
    assert mix.rows == 60
    assert mix.training_cutoff["max"] == "2024-05-01"
    assert len(mix.manifest_sha256) == 64
    assert isinstance(resolve_tokenizer(None, mix), ByteTokenizer)


def test_byte_fallback_is_noted_once_when_nothing_names_a_tokenizer(tmp_path, numbered_mix):
    # Bare Parquet shards: no manifest.json at all.
    bare = tmp_path / "bare"
    with ShardWriter(bare, prefix="part-00000") as writer:
        writer.write(Document(id="a", text="hello there"))
    notes: list[str] = []
    tokenizer = resolve_tokenizer(None, open_mix(bare), note=notes.append)
    assert isinstance(tokenizer, ByteTokenizer)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "no manifest.json" in notes[0] and "--tokenizer" in notes[0] and str(tokenizer.vocab_size) in notes[0]

    # A manifest without a tokenizer entry.
    manifest = json.loads((numbered_mix / "manifest.json").read_text())
    del manifest["tokenizer"]
    (numbered_mix / "manifest.json").write_text(json.dumps(manifest))
    notes.clear()
    assert isinstance(resolve_tokenizer(None, open_mix(numbered_mix), note=notes.append), ByteTokenizer)
    assert len(notes) == 1 and "names no tokenizer" in notes[0]
    # Callers that pass no callback still get the byte tokenizer (no printing from the library).
    assert isinstance(resolve_tokenizer(None, open_mix(numbered_mix)), ByteTokenizer)


def test_no_note_when_the_tokenizer_is_named(tmp_path, numbered_mix):
    notes: list[str] = []
    # The mix says "bytes" itself: a choice, not a fallback.
    assert isinstance(resolve_tokenizer(None, open_mix(numbered_mix), note=notes.append), ByteTokenizer)
    # --tokenizer given on bare shards.
    bare = tmp_path / "bare"
    with ShardWriter(bare, prefix="part-00000") as writer:
        writer.write(Document(id="a", text="hello there"))
    assert isinstance(resolve_tokenizer("bytes", open_mix(bare), note=notes.append), ByteTokenizer)
    assert notes == []
