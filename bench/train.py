"""Training-step throughput of our GPT against two minimal nanoGPT-style references.

All models get the same n_layer / n_head / n_embd / vocabulary / context and are timed in
the same run, interleaved round by round (so a noisy, shared machine hurts them alike), on
full training steps: forward, loss, backward, clipping, AdamW step. Ours is train/model.py
(RoPE, RMSNorm, SwiGLU). The references are written out plainly here, the way nanoGPT and
nanochat write them:

* ``plain``: the same architecture and parameters as ours (RoPE by halves with a
  concatenation, ``F.rms_norm``, ``silu(x W1) * (x W3)``): this ratio measures our
  implementation, and is the one that must not fall below 1.
* ``gpt2``: the classic GPT-2 block (learned positions, LayerNorm, biases, a 4x GELU MLP):
  this ratio also prices the architecture. RoPE, RMSNorm and SwiGLU make more element-wise
  passes over the activations than LayerNorm and GELU's fused kernels, which costs on a CPU
  when the model is so small that those passes are a large part of the step.

    python bench/train.py                      # CPU (1 thread): tiny and small presets, ratio
    python bench/train.py --threads 2          # the same on 2 threads (wall clock)
    python bench/train.py --device cuda        # GPU: small preset in bf16, with MFU (< 3 minutes)

Prints one line per preset: tokens/s for each model (median step time) and, per reference,
the median over rounds of ours/reference (>= 1.0 means ours is not slower).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.metrics import device_peak_flops
from train.model import GPT, PRESETS, GPTConfig
from train.optim import build_optimizer
from train.runtime import autocast_context, tune_cpu_allocator

# ----------------------------------------------------------------------------- reference


class RefBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(RefBlock(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


class PlainBlock(nn.Module):
    """Our architecture written the short way: what a from-scratch nanoGPT-style script has."""

    def __init__(self, n_embd: int, n_head: int, hidden: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.w_gate = nn.Linear(n_embd, hidden, bias=False)
        self.w_up = nn.Linear(n_embd, hidden, bias=False)
        self.w_down = nn.Linear(hidden, n_embd, bias=False)

    @staticmethod
    def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(F.rms_norm(x, (C,))).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head) for t in (q, k, v))
        q, k = self.rotary(q, cos, sin), self.rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        h = F.rms_norm(x, (C,))
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class PlainGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, hidden: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(PlainBlock(n_embd, n_head, hidden) for _ in range(n_layer))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        head_dim = n_embd // n_head
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)[:, None, :]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        for p in self.parameters():
            nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        T = idx.shape[1]
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.cos[:T], self.sin[:T])
        logits = self.lm_head(F.rms_norm(x, (x.shape[-1],)))
        return logits, F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


# ----------------------------------------------------------------------------- timing


def make_step(model: nn.Module, device: torch.device, dtype: torch.dtype):
    opt = build_optimizer(model, lr=1e-4, device=device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast_context(device, dtype):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_preset(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    vocab: int,
    block: int,
    batch: int,
    rounds: int,
    steps: int,
    compile_models: bool,
    clock=time.perf_counter,
) -> dict:
    torch.manual_seed(0)
    preset = dict(PRESETS[name])
    dims = dict(n_layer=preset["n_layer"], n_head=preset["n_head"], n_embd=preset["n_embd"])
    ours = GPT(GPTConfig(vocab_size=vocab, block_size=block, **dims)).to(device)
    plain = PlainGPT(vocab, block, hidden=ours.config.mlp_hidden, **dims).to(device)
    gpt2 = RefGPT(vocab, block, **dims).to(device)
    models = {"ours": ours, "plain": plain, "gpt2": gpt2}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    if compile_models:
        models = {k: torch.compile(m) for k, m in models.items()}
    steps_fn = {k: make_step(m, device, dtype) for k, m in models.items()}
    x = torch.randint(0, vocab, (batch, block), device=device)
    y = torch.randint(0, vocab, (batch, block), device=device)
    for fn in steps_fn.values():  # warm-up: allocator, kernels, compilation
        for _ in range(2):
            fn(x, y)
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in steps_fn}
    ratios: dict[str, list[float]] = {"plain": [], "gpt2": []}
    for r in range(rounds):
        order = list(steps_fn) if r % 2 == 0 else list(reversed(steps_fn))  # alternate who goes first
        for key in order:
            sync(device)
            start = clock()
            for _ in range(steps):
                steps_fn[key](x, y)
            sync(device)
            times[key].append((clock() - start) / steps)
        # Each round's ratio compares back-to-back timings, so load that drifts over the run
        # (a shared machine) cancels out; the median over rounds drops outliers.
        for ref in ratios:
            ratios[ref].append(times[ref][-1] / times["ours"][-1])
    tokens = batch * block
    result = {"preset": name, "params": params, "block": block, "batch": batch, "vocab": vocab}
    for key, ts in times.items():
        result[key] = tokens / statistics.median(ts)
    result["ratio"] = {ref: statistics.median(r) for ref, r in ratios.items()}
    peak = device_peak_flops(device)
    if peak:
        result["mfu"] = ours.flops_per_token(block) * result["ours"] / peak
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--presets", default=None, help="comma-separated (default: tiny,small on CPU; small on CUDA)")
    parser.add_argument(
        "--vocab",
        type=int,
        default=None,
        help="vocabulary size (default: 262, the byte tokenizer, for tiny; 50304, GPT-2's padded, for the others)",
    )
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (worth it on GPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: then CPU time is measured, which a busy shared "
        "machine does not distort; with more threads, wall-clock time)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # One thread: the process's CPU time counts only the work done, not the time spent
    # descheduled by other jobs. Several threads: wall clock (CPU time would count spinning).
    clock = time.process_time if args.device == "cpu" and args.threads == 1 else time.perf_counter
    tune_cpu_allocator()  # what `curate train pretrain` does on CPU; benefits both models alike
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("error: --device cuda but CUDA is not available")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    presets = (args.presets or ("small" if device.type == "cuda" else "tiny,small")).split(",")
    # CPU shapes are cut down so the bench finishes in a minute or two on a laptop.
    shapes = {
        "cpu": {"tiny": dict(block=128, batch=8, steps=5), "small": dict(block=128, batch=2, steps=1)},
        "cuda": {"tiny": dict(block=128, batch=64, steps=20), "small": dict(block=1024, batch=16, steps=10)},
    }[device.type]
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"dtype {str(dtype).replace('torch.', '')}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"{'compiled' if args.compile else 'eager'}, {'CPU' if clock is time.process_time else 'wall'}-clock; "
        "ratio = median over rounds of ours/reference tokens/s; plain = the same architecture written plainly, "
        "gpt2 = a GPT-2 block"
    )
    for name in presets:
        shape = shapes.get(name, dict(block=min(PRESETS[name]["block_size"], 1024), batch=4, steps=2))
        rounds = args.rounds or (7 if device.type == "cpu" else 5)
        vocab = args.vocab or (262 if name == "tiny" else 50304)
        r = bench_preset(
            name,
            device=device,
            dtype=dtype,
            vocab=vocab,
            block=shape["block"],
            batch=shape["batch"],
            rounds=rounds,
            steps=shape["steps"],
            compile_models=args.compile,
            clock=clock,
        )
        mfu = f", MFU {r['mfu']:.1%}" if "mfu" in r else ""
        print(
            f"{name:6s} {r['params']['ours'] / 1e6:.1f}M params (gpt2 {r['params']['gpt2'] / 1e6:.1f}M), "
            f"V={r['vocab']} B={r['batch']} T={r['block']}: ours {r['ours']:,.0f} tok/s{mfu}; "
            f"plain {r['plain']:,.0f} tok/s, ratio {r['ratio']['plain']:.2f}; "
            f"gpt2 {r['gpt2']:,.0f} tok/s, ratio {r['ratio']['gpt2']:.2f}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
