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
from train.runtime import weights_digest

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
    import json, sys, threading, time

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
    elif mode == "resume":
        from train.checkpoint import load_checkpoint
        from train.fsdp import gather_optimizer_state, load_optimizer_state
        from train.optim import build_optimizer

        arg = json.loads(sys.argv[3])
        config = GPTConfig(**arg["config"])
        # The code paths once on a tiny model first, as in "memory".
        small = build_sharded_model(GPTConfig(n_layer=1, n_embd=32, block_size=8), ctx, torch.float32)
        load_optimizer_state(build_optimizer(small, lr=1e-3), build_optimizer(small, lr=1e-3).state_dict())
        dist.barrier()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, anon_before = kib("VmRSS"), kib("RssAnon")
        # The kernel keeps no high-water mark of anonymous memory alone (what pages of a mapped
        # file add to VmHWM, the kernel can drop): a thread samples it.
        anon_peak, loading = [anon_before], threading.Event()

        def sample():
            while not loading.is_set():
                anon_peak[0] = max(anon_peak[0], kib("RssAnon"))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        ckpt = load_checkpoint(arg["checkpoint"], with_optimizer=True, lazy=arg["lazy"])
        model = build_sharded_model(config, ctx, torch.float32, ckpt.model_state)
        optimizer = build_optimizer(model, lr=1e-3)
        load_optimizer_state(optimizer, ckpt.optimizer_state)
        ckpt = None  # as the trainer drops it once loaded
        loading.set()
        sampler.join()
        result["peak_growth"] = (kib("VmHWM") - before) * 1024
        result["anon_growth"] = (max(anon_peak[0], kib("RssAnon")) - anon_before) * 1024
        result["digest"] = gather_model_state(model, ctx)[1]
        gathered = gather_optimizer_state(optimizer, ctx)
        if ctx.rank == 0:
            saved = torch.load(arg["checkpoint"] + "/step-000001/optimizer.pt", weights_only=True)
            result["same_optimizer"] = sorted(saved["state"]) == sorted(gathered["state"]) and all(
                torch.equal(value, gathered["state"][i][key])
                for i, entry in saved["state"].items()
                for key, value in entry.items()
            )
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


@distributed
def test_resumed_ranks_read_only_their_shards(tmp_path):
    """Resuming under FSDP, each rank reads its rows of the checkpoint's weights and optimizer
    moments (train/weights_file.py, a memory-mapped optimizer file): the growth of a rank's
    resident-set high-water mark halves with two ranks, and the weights and moments loaded
    are exactly those saved."""
    from train.checkpoint import save_checkpoint
    from train.optim import build_optimizer

    config = GPTConfig(**BIG)
    torch.manual_seed(3)
    model = GPT(config)
    optimizer = build_optimizer(model, lr=1e-3)
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    optimizer.step()  # moments worth checking
    checkpoint = tmp_path / "ckpt"
    save_checkpoint(
        checkpoint,
        1,
        model_state=model.state_dict(),
        model_config=config.to_dict(),
        meta={},
        optimizer_state=optimizer.state_dict(),
    )
    digest = weights_digest(model)
    checkpoint_bytes = sum(p.numel() * 4 for p in model.parameters()) * 3  # weights + two moments
    del model, optimizer
    runs = {}
    for nproc, lazy in ((1, True), (2, True), (2, False)):
        arg = {"config": BIG, "checkpoint": str(checkpoint), "lazy": lazy}
        (tmp_path / f"{nproc}-{lazy}").mkdir()
        runs[nproc, lazy] = _torchrun(tmp_path / f"{nproc}-{lazy}", nproc, "resume", arg)
    for results in runs.values():
        assert all(r["digest"] == digest for r in results) and results[0]["same_optimizer"]
    peak = {run: max(r["peak_growth"] for r in results) for run, results in runs.items()}
    anon = {run: max(r["anon_growth"] for r in results) for run, results in runs.items()}
    print(
        f"checkpoint {checkpoint_bytes / 1e6:.0f} MB; growth per rank on resume (VmHWM / anonymous): "
        f"1 rank {peak[1, True] / 1e6:.0f} / {anon[1, True] / 1e6:.0f} MB, 2 ranks {peak[2, True] / 1e6:.0f} / "
        f"{anon[2, True] / 1e6:.0f} MB, 2 ranks reading everything {peak[2, False] / 1e6:.0f} / "
        f"{anon[2, False] / 1e6:.0f} MB"
    )
    # One rank holds the whole checkpoint (VmHWM also counts the optimizer file's pages it read).
    assert anon[1, True] > 0.9 * checkpoint_bytes and peak[1, True] > anon[1, True]
    # Two: half each, and far less than when every rank read everything (the old way).
    assert anon[2, True] < 0.6 * anon[1, True] and peak[2, True] < 0.7 * peak[1, True]
    assert anon[2, True] < 0.6 * anon[2, False] and peak[2, True] < peak[2, False]
