"""Multi-process pretraining: `curate train pretrain --nproc 2` starts torchrun with two CPU
processes (gloo); the ranks read disjoint documents and end with identical weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.document import Document
from curate.pipeline import Stats, build_manifest
from curate.shards import ShardWriter, write_manifest
from train.checkpoint import load_checkpoint
from train.loop import read_metrics

torch_distributed = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not torch_distributed.is_available(), reason="torch built without distributed")


def write_mix(directory: Path, n_docs: int = 200) -> Path:
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "green"]
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=8_000, row_group_bytes=2_000)
    for i in range(n_docs):
        writer.write(Document(id=f"doc-{i:05d}", text=" ".join(rng.choice(words) for _ in range(20)) + ".",
                              source="web"))
    shards = writer.close()
    manifest = build_manifest("mix", {}, [], Stats(read=n_docs, kept=n_docs), {"": shards}, extra={
        "training_cutoff": {"max": "2024-01-01", "p99": "2024-01-01", "undated_docs": n_docs},
        "tokenizer": {"name": "bytes", "vocab_size": 262},
    })
    write_manifest(directory, manifest)
    return directory


def test_two_processes_read_disjoint_data_and_stay_in_sync(tmp_path):
    mix = write_mix(tmp_path / "mix")
    run = tmp_path / "run"
    settings = ["max_steps=4", "batch_size=2", "grad_accum=2", "model.block_size=32", "model.n_embd=32",
                "model.n_layer=1", "log_every=1", "eval_every=2", "checkpoint_every=2", "data.trace=true", "data.val_fraction=0.05",
                "device=\"cpu\""]
    args = ["train", "pretrain", "--data", str(mix), "-o", str(run), "--nproc", "2", "--quiet"]
    for item in settings:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output

    # Each rank traced the documents behind every micro-batch: no document on both ranks.
    docs = []
    for rank in range(2):
        records = [json.loads(line) for line in (run / "trace" / f"rank-{rank:05d}.jsonl").read_text().splitlines()]
        assert [(r["step"], r["micro"]) for r in records] == [(s, m) for s in range(1, 5) for m in range(2)]
        docs.append({d for r in records for seq in r["docs"] for d in seq})
    assert docs[0] and docs[1] and not docs[0] & docs[1]
    assert all(int(d[4:]) % 2 == rank for rank in range(2) for d in docs[rank])

    ckpt = load_checkpoint(run, with_optimizer=True)
    assert ckpt.step == 4 and ckpt.meta["world_size"] == 2
    digests = ckpt.meta["weights_sha256_by_rank"]  # each rank hashed its own weights
    assert len(digests) == 2 and digests[0] == digests[1]
    positions = [r["data"] for r in ckpt.train_state["ranks"]]
    assert positions[0] != positions[1]
    # 4 steps x 2 micro-batches x 2 sequences x 32 tokens x 2 ranks
    assert ckpt.meta["tokens_seen"] == 4 * 2 * 2 * 32 * 2
    records = list(read_metrics(run / "metrics.jsonl"))  # written by rank 0 only: one line per step
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert any("val_loss" in r for r in records)
