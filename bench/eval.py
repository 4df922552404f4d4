"""Evaluation throughput: multiple-choice items per second of ``curate eval`` against a plain
one-request-at-a-time loop, on the same requests, in the same run.

Random weights (speed does not depend on what a model knows), the byte tokenizer, the
``tiny`` and ``small`` presets with a 512-token block. Both sides score exactly the same
(context, continuation) requests of the first ``--limit`` items of each task:

* ``curate``: :func:`train.eval.scoring.loglikelihoods`: length-sorted right-padded batches,
  one forward pass for requests with the same input, the output layer only at scored positions;
* ``loop``: what a minimal harness does: one forward pass per request, log-softmax over every
  position's logits, then the continuation's log-probabilities summed.

The two must agree (the largest difference is printed), and the end-to-end ``run_eval`` time
(tokenizing, few-shot prompts, scoring, eval.json) is printed beside them.

    python bench/eval.py                       # CPU, 1 thread: tiny and small, a few minutes
    python bench/eval.py --presets tiny --limit 200 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.core.tasks import resolve_tasks
from curate.core.tokenizer import ByteTokenizer
from train.checkpoint import save_checkpoint
from train.eval import EvalConfig, run_eval
from train.eval.choice import prepare
from train.eval.scoring import loglikelihoods
from train.model import GPT, PRESETS, GPTConfig

TASKS = "arc_easy,copa,piqa,winogrande,mmlu"


@torch.no_grad()
def loop_loglikelihoods(model: GPT, requests) -> np.ndarray:
    out = []
    for r in requests:
        logits, _ = model(torch.tensor([r.inputs]))
        logp = F.log_softmax(logits[0].float(), dim=-1)
        n = len(r.targets)
        positions = torch.arange(len(r.inputs) - n, len(r.inputs))
        out.append(float(logp[positions, torch.tensor(r.targets)].double().sum()))
    return np.array(out)


def bench_preset(name: str, limit: int, batch_size: int, clock) -> dict:
    tok = ByteTokenizer()
    config = GPTConfig(vocab_size=tok.vocab_size, **{**PRESETS[name], "block_size": 512})
    torch.manual_seed(0)
    model = GPT(config).eval()
    requests, items = [], 0
    for task in resolve_tasks(TASKS):
        prepared = prepare(task, tok, config.block_size, limit=limit, shots=0, seed=0, chat=False)
        requests += prepared.requests
        items += len(prepared.items)
    start = clock()
    ours = loglikelihoods(model, requests, batch_size=batch_size, device=torch.device("cpu"))
    ours_s = clock() - start
    start = clock()
    ref = loop_loglikelihoods(model, requests)
    loop_s = clock() - start
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(tmp, 0, model_state=model.state_dict(), model_config=config.to_dict(), meta={})
        start = clock()
        run_eval(tmp, EvalConfig(tasks=TASKS, limit=limit, batch_size=batch_size, device="cpu", bpb=False))
        end_to_end_s = clock() - start
    return {
        "params": model.num_params(),
        "items": items,
        "requests": len(requests),
        "tokens": sum(len(r.inputs) for r in requests),
        "ours": items / ours_s,
        "loop": items / loop_s,
        "end_to_end": items / end_to_end_s,
        "max_diff": float(np.abs(ours - ref).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: tiny 40, small 4)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="1 (default): CPU time, which other jobs do not distort")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    print(
        f"{datetime.date.today()} {platform.node()} {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s), {'CPU' if args.threads == 1 else 'wall'}-clock; "
        f"tasks {TASKS}, 0-shot, byte tokenizer, block 512, random weights"
    )
    for name in args.presets.split(","):
        limit = args.limit or (40 if name == "tiny" else 4)
        r = bench_preset(name, limit, args.batch_size, clock)
        print(
            f"{name:6s} {r['params'] / 1e6:.1f}M params, {r['items']} items ({r['requests']} requests, "
            f"{r['tokens']:,} tokens): curate {r['ours']:.2f} items/s, loop {r['loop']:.2f} items/s, "
            f"ratio {r['ours'] / r['loop']:.2f}; run_eval end to end {r['end_to_end']:.2f} items/s; "
            f"largest log-likelihood difference {r['max_diff']:.1e}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
