"""Multi-process pretraining: `curate train pretrain --nproc 2` starts torchrun with two CPU
processes (gloo); the ranks read disjoint documents and end with identical weights, with DDP
and with FSDP (`--fsdp`: sharded weights, gradients and optimizer state)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core.accounting import Stats
from curate.core.document import Document
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter
from train.checkpoint import load_checkpoint, load_lm
from train.metrics import read_metrics

torch_distributed = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.skipif(not torch_distributed.is_available(), reason="torch built without distributed")


def write_mix(directory: Path, n_docs: int = 200) -> Path:
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "light", "green"]
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=8_000, row_group_bytes=2_000)
    for i in range(n_docs):
        writer.write(
            Document(id=f"doc-{i:05d}", text=" ".join(rng.choice(words) for _ in range(20)) + ".", source="web")
        )
    shards = writer.close()
    manifest = build_manifest(
        "mix",
        {},
        [],
        Stats(read=n_docs, kept=n_docs),
        {"": shards},
        extra={
            "training_cutoff": {"max": "2024-01-01", "p99": "2024-01-01", "undated_docs": n_docs},
            "tokenizer": {"name": "bytes", "vocab_size": 262},
        },
    )
    write_manifest(directory, manifest)
    return directory


def test_two_processes_read_disjoint_data_and_stay_in_sync(tmp_path):
    mix = write_mix(tmp_path / "mix")
    run = tmp_path / "run"
    settings = [
        "max_steps=4",
        "batch_size=2",
        "grad_accum=2",
        "model.block_size=32",
        "model.n_embd=32",
        "model.n_layer=1",
        "log_every=1",
        "eval_every=2",
        "checkpoint_every=2",
        "data.trace=true",
        "data.val_fraction=0.05",
        'device="cpu"',
    ]
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


def _launch(mix: Path, run: Path, settings: list[str], *extra: str) -> None:
    args = ["train", "pretrain", "--data", str(mix), "-o", str(run), "--nproc", "2", "--quiet", *extra]
    for item in settings:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_fsdp_matches_ddp_and_resumes_exactly(tmp_path):
    """Two FSDP processes (interrupted at step 2, then resumed) end where two DDP processes do:
    the same losses, the same gathered weights, the same optimizer state, in the same files."""
    mix = write_mix(tmp_path / "mix")
    # grad_clip high enough never to bite (the clipping code still runs): FSDP sums the norm
    # over shards in another order, so a clip that bites would differ in the last bits.
    settings = [
        "max_steps=4",
        "batch_size=2",
        "grad_accum=1",
        "model.block_size=32",
        "model.n_embd=32",
        "model.n_layer=2",
        "log_every=1",
        "eval_every=2",
        "checkpoint_every=2",
        "data.val_fraction=0.05",
        "optim.grad_clip=100",
        "optim.warmup_steps=1",
        "optim.lr=3e-3",
        'device="cpu"',
    ]
    fsdp_run, ddp_run = tmp_path / "fsdp", tmp_path / "ddp"
    _launch(mix, fsdp_run, settings, "--fsdp", "--stop-at-step", "2")
    assert load_checkpoint(fsdp_run).step == 2
    _launch(mix, fsdp_run, settings, "--fsdp")
    _launch(mix, ddp_run, settings)

    fsdp_ckpt = load_checkpoint(fsdp_run, with_optimizer=True)
    ddp_ckpt = load_checkpoint(ddp_run, with_optimizer=True)
    assert fsdp_ckpt.step == 4 and fsdp_ckpt.meta["distributed"] == "fsdp" and fsdp_ckpt.meta["world_size"] == 2
    assert fsdp_ckpt.meta["train_config"]["distributed"] == "fsdp"
    # Each rank gathered the full weights from the shards and hashed them: equal on both ranks,
    # and equal to what each DDP rank hashed from its own full copy.
    digests = fsdp_ckpt.meta["weights_sha256_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] == ddp_ckpt.meta["weights_sha256_by_rank"][0]

    # The single-file checkpoint: full tensors, the tied embedding stored once, loadable as-is.
    assert set(fsdp_ckpt.model_state) == set(ddp_ckpt.model_state)
    for name, tensor in ddp_ckpt.model_state.items():
        assert torch.equal(fsdp_ckpt.model_state[name], tensor), name
    assert (fsdp_run / "step-000004" / "model.safetensors").stat().st_size == (
        ddp_run / "step-000004" / "model.safetensors"
    ).stat().st_size
    model, _ = load_lm(fsdp_run)
    assert model.lm_head.weight is model.tok_emb.weight
    assert torch.equal(model.tok_emb.weight, ddp_ckpt.model_state["tok_emb.weight"])
    with torch.no_grad():
        logits, _ = model(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 3, 262) and torch.isfinite(logits).all()

    # The optimizer state is gathered into the plain (unsharded) format: the same as DDP's.
    fsdp_opt, ddp_opt = fsdp_ckpt.optimizer_state, ddp_ckpt.optimizer_state
    assert fsdp_opt["param_groups"] == ddp_opt["param_groups"]
    assert sorted(fsdp_opt["state"]) == sorted(ddp_opt["state"])
    for index, entry in ddp_opt["state"].items():
        for key, value in entry.items():
            assert torch.equal(fsdp_opt["state"][index][key], value), (index, key)
    assert fsdp_opt["state"][0]["exp_avg"].shape == fsdp_ckpt.model_state["tok_emb.weight"].shape

    # The resumed FSDP run logged the same per-step losses as the uninterrupted DDP run.
    def curve(run: Path) -> list[tuple[int, float, float]]:
        return [(r["step"], r["loss"], r["grad_norm"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r]

    fsdp_curve, ddp_curve = curve(fsdp_run), curve(ddp_run)
    assert [s for s, _, _ in fsdp_curve] == [1, 2, 3, 4]
    assert [loss for _, loss, _ in fsdp_curve] == [loss for _, loss, _ in ddp_curve]
    assert fsdp_curve[-1][1] < fsdp_curve[0][1]  # it trains
    for (_, _, fsdp_norm), (_, _, ddp_norm) in zip(fsdp_curve, ddp_curve):
        assert fsdp_norm == pytest.approx(ddp_norm, rel=1e-5)  # summed in another order


def test_fsdp_init_from_matches_ddp(tmp_path):
    """--init-from under FSDP: each rank copies its slice of the parent's full weights into
    its shards (train/fsdp.py), and the run then ends where the DDP run from the same parent
    does, bit for bit."""
    mix = write_mix(tmp_path / "mix", n_docs=60)
    settings = [
        "max_steps=2",
        "batch_size=2",
        "grad_accum=1",
        "model.block_size=16",
        "model.n_embd=32",
        "model.n_layer=1",
        "eval_every=0",
        "checkpoint_every=2",
        "optim.grad_clip=100",
        'device="cpu"',
    ]
    parent = tmp_path / "parent"
    args = ["train", "pretrain", "--data", str(mix), "-o", str(parent), "--quiet"]
    for item in settings:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    fsdp_run, ddp_run = tmp_path / "fsdp", tmp_path / "ddp"
    _launch(mix, fsdp_run, settings, "--fsdp", "--init-from", str(parent))
    _launch(mix, ddp_run, settings, "--init-from", str(parent))
    fsdp_ckpt, ddp_ckpt = load_checkpoint(fsdp_run), load_checkpoint(ddp_run)
    assert fsdp_ckpt.meta["distributed"] == "fsdp" and fsdp_ckpt.meta["parent"].endswith("step-000002")
    assert fsdp_ckpt.meta["weights_sha256_by_rank"][0] == ddp_ckpt.meta["weights_sha256_by_rank"][0]
    parent_state = load_checkpoint(parent).model_state
    assert not torch.equal(fsdp_ckpt.model_state["tok_emb.weight"], parent_state["tok_emb.weight"])  # it trained


def test_unknown_distributed_strategy_is_one_line(tmp_path):
    mix = write_mix(tmp_path / "mix", n_docs=10)
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "pretrain",
            "--data",
            str(mix),
            "-o",
            str(tmp_path / "run"),
            "--nproc",
            "2",
            "--set",
            "distributed=zero3",
        ],
    )
    assert result.exit_code != 0
    assert "distributed must be one of ddp, fsdp" in result.output
    assert not (tmp_path / "run").exists()
