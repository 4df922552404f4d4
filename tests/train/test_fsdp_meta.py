"""FSDP with meta-device initialization (train/fsdp.py ``build_sharded_model``): ranks build the
model without storage, allocate only their shards and fill them with exactly the values the
unsharded model gets from the same seed; host memory per rank falls with the number of ranks.
The end-to-end check (an FSDP run equal to the DDP run, resumed) is in test_ddp.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from train.model import GPT, GPTConfig
from train.model_init import initial_parameters

torch_distributed = pytest.importorskip("torch.distributed")
distributed = pytest.mark.skipif(not torch_distributed.is_available(), reason="torch built without distributed")

ROOT = Path(__file__).resolve().parents[2]

CONFIGS = [
    dict(n_layer=2, n_embd=32, n_head=4, block_size=16),
    # untied head, norm gains, grouped-query attention, a vocabulary that does not split evenly
    dict(n_layer=3, n_embd=64, n_head=4, n_kv_head=2, tie_embeddings=False, norm_weight=True, vocab_size=101),
    dict(n_layer=1, n_embd=64, n_head=2, mlp_hidden=100, dropout=0.1, block_size=8),
]


@pytest.mark.parametrize("settings", CONFIGS)
def test_initial_parameters_replay_the_constructor(settings):
    """The same values as GPT(config) after the same seed, and the generator left in the same
    state: the draws are the constructor's, in its order."""
    config = GPTConfig(**settings)
    torch.manual_seed(11)
    model = GPT(config)
    after_model = torch.get_rng_state()
    torch.manual_seed(11)
    values = dict(initial_parameters(config))
    assert torch.equal(torch.get_rng_state(), after_model)
    assert list(values) != [] and sorted(values) == sorted(name for name, _ in model.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(values[name], param), name


PROBE = textwrap.dedent(
    """
    import json, sys

    import torch
    import torch.distributed as dist

    from train.fsdp import build_sharded_model, gather_model_state
    from train.model import GPT, GPTConfig
    from train.runtime import DistContext, teardown_distributed, tune_cpu_allocator, weights_digest

    mode, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())
    tune_cpu_allocator()  # as pretraining on CPU does

    def kib(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    result = {"rank": ctx.rank, "world_size": ctx.world_size}
    if mode == "memory":
        config = GPTConfig(**json.loads(sys.argv[3]))
        # A tiny model first: the imports and one-time setup of FSDP are not the model's memory.
        build_sharded_model(GPTConfig(n_layer=1, n_embd=32, block_size=8), ctx, torch.float32)
        dist.barrier()
        with open("/proc/self/clear_refs", "w") as f:  # the high-water mark starts again from here
            f.write("5")
        before = kib("VmRSS")
        torch.manual_seed(0)
        model = build_sharded_model(config, ctx, torch.float32)
        result["peak_growth"] = (kib("VmHWM") - before) * 1024
        result["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
        result["shard_bytes"] = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    else:
        checks = []
        for settings in json.loads(sys.argv[3]):
            config = GPTConfig(**settings)
            torch.manual_seed(7)
            model = build_sharded_model(config, ctx, torch.float32)
            rng = torch.get_rng_state()
            _, digest = gather_model_state(model, ctx)
            torch.manual_seed(7)
            reference = GPT(config)
            loaded = build_sharded_model(config, ctx, torch.float32, reference.state_dict())
            partial = {k: v for k, v in reference.state_dict().items() if k != "blocks.0.attn.qkv.weight"}
            try:
                build_sharded_model(config, ctx, torch.float32, {**partial, "extra": torch.zeros(1)})
                refused = ""
            except RuntimeError as exc:
                refused = str(exc)
            checks.append(
                {
                    "same_weights": digest == weights_digest(reference),
                    "same_rng": torch.equal(rng, torch.get_rng_state()),
                    "same_rope": torch.equal(model.rope_cos, reference.rope_cos)
                    and torch.equal(model.rope_sin, reference.rope_sin),
                    "tied": model.lm_head.weight is model.tok_emb.weight,
                    "sharded": all(p.to_local().numel() < p.numel() for p in model.parameters()),
                    "loaded": gather_model_state(loaded, ctx)[1] == weights_digest(reference),
                    "refused": refused,
                }
            )
        result["checks"] = checks
    with open(f"{out}/rank-{ctx.rank}.json", "w") as f:
        json.dump(result, f)
    # As the trainer leaves: the sharded models collected and every rank arrived first (a
    # gloo group destroyed under live FSDP modules aborted a rank now and then).
    teardown_distributed(synchronize=True)
    """
)


def _torchrun(tmp_path: Path, nproc: int, mode: str, arg: object) -> list[dict]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = tmp_path / f"{mode}-{nproc}"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(script),
        mode,
        str(out),
        json.dumps(arg),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(nproc)]


@distributed
def test_sharded_initialization_equals_the_unsharded_model(tmp_path):
    """Two ranks build the model on the meta device: the gathered weights equal GPT(config)'s
    under the same seed (ties, RoPE tables and the generator's state included), and a full
    state dict loads into the shards (strictly: a missing or unknown name is refused)."""
    results = _torchrun(tmp_path, 2, "check", CONFIGS[:2])
    for result in results:
        for settings, check in zip(CONFIGS[:2], result["checks"]):
            expect_tied = settings.get("tie_embeddings", True)
            assert check["same_weights"] and check["same_rng"] and check["same_rope"], (settings, check)
            assert check["tied"] == expect_tied and check["sharded"] and check["loaded"], (settings, check)
            assert (
                "missing ['blocks.0.attn.qkv.weight']" in check["refused"]
                and "unexpected ['extra']" in check["refused"]
            )


# Larger than any other model in the tests: ~38M parameters, ~154 MB of fp32 weights, spread
# over many tensors (the largest is 2.9 MB), so the shards dominate what a rank holds.
BIG = dict(n_layer=12, n_embd=512, n_head=8, block_size=64)


@distributed
def test_peak_host_memory_per_rank_falls_with_the_number_of_ranks(tmp_path):
    """The growth of each rank's resident-set high-water mark while it builds and shards the
    model: about the whole model with one rank, about half of it with two."""
    one = _torchrun(tmp_path, 1, "memory", BIG)
    two = _torchrun(tmp_path, 2, "memory", BIG)
    model_bytes = one[0]["model_bytes"]
    assert model_bytes > 140e6 and all(r["model_bytes"] == model_bytes for r in two)
    assert all(r["shard_bytes"] < 0.51 * model_bytes for r in two)
    peak_one = one[0]["peak_growth"]
    peak_two = max(r["peak_growth"] for r in two)
    print(
        f"model {model_bytes / 1e6:.0f} MB; peak growth per rank: 1 rank {peak_one / 1e6:.0f} MB, "
        f"2 ranks {peak_two / 1e6:.0f} MB"
    )
    assert peak_one > 0.9 * model_bytes  # the measurement sees the weights
    # With two ranks each holds half the weights plus at most a few tensors being drawn.
    assert peak_two < peak_one - 0.35 * model_bytes
    assert peak_two < 0.7 * model_bytes  # building the full model first gave 1.04x (162 MB)
