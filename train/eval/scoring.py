"""Log-likelihoods of continuations: the one computation behind multiple-choice accuracy and
bits per byte.

A :class:`Request` is a model input and the tokens it should predict at its last positions:
``targets[i]`` is predicted from ``inputs[: len(inputs) - len(targets) + i + 1]``.
:func:`loglikelihoods` returns, for each request, the sum of the log-probabilities the model
gives its targets (natural log, float64).

Batching never changes a result: requests are sorted by length (longest first, ties in their
given order) and right-padded. With a causal model, padding to the *right* of a sequence is
invisible to every real token before it, and each row's positions count from its first token,
so a row's log-probabilities are those of the row alone; no attention mask is needed (and
none is passed, so every batch takes the same attention path). Requests with the same input
(the choices of a question whose answers are single tokens, as in MMLU) share one forward
pass. Only the positions that are scored go through the output layer, in chunks, so a large
vocabulary costs memory in proportion to the scored tokens, not to the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..model import GPT
from ..runtime import autocast_context

# Scored positions per pass through the output layer: bounds the (positions x vocab) logits.
_HEAD_CHUNK = 2048


@dataclass(frozen=True)
class Request:
    inputs: tuple[int, ...]
    targets: tuple[int, ...]


def pair_request(context: list[int], continuation: list[int], block_size: int) -> tuple[Request, bool]:
    """The request scoring ``continuation`` after ``context`` (both token ids; the context is
    not empty), and whether it had to be truncated. A sequence longer than the model's block
    (plus the one token that is only a target) loses tokens from the *left*: the continuation
    is kept whole, and only a continuation longer than the block itself loses its start."""
    seq = context + continuation
    truncated = len(seq) > block_size + 1
    if truncated:
        seq = seq[-(block_size + 1) :]
    n_scored = min(len(continuation), len(seq) - 1)
    return Request(tuple(seq[:-1]), tuple(seq[len(seq) - n_scored :])), truncated


def encode_pair(tokenizer, context: str, continuation: str, prefix: Sequence[int]) -> tuple[list[int], list[int]]:
    """Token ids of ``prefix + context`` and of the continuation, as the public harnesses
    split them: trailing whitespace of the context moves to the continuation, the two are
    encoded together, and the continuation is what follows the context's own tokens (so a
    BPE merge across the boundary is not double-counted). Where the joint encoding does not
    start with the context's tokens, the continuation is encoded on its own."""
    stripped = context.rstrip()
    if len(stripped) < len(context):
        continuation = context[len(stripped) :] + continuation
        context = stripped
    context_ids = tokenizer.encode(context)
    whole = tokenizer.encode(context + continuation)
    if whole[: len(context_ids)] == context_ids:
        continuation_ids = whole[len(context_ids) :]
    else:
        continuation_ids = tokenizer.encode(continuation)
    return list(prefix) + context_ids, continuation_ids


@torch.no_grad()
def loglikelihoods(
    model: GPT,
    requests: Sequence[Request],
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    pad_id: int = 0,
    on_batch=None,
) -> np.ndarray:
    """Sum of log-probabilities of each request's targets (float64, in request order).
    ``on_batch(n)`` is called after each forward pass with the requests it covered."""
    out = np.zeros(len(requests), dtype=np.float64)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, request in enumerate(requests):
        if not request.targets or len(request.targets) > len(request.inputs):
            raise ValueError(f"request {i}: needs 1..{len(request.inputs)} targets, has {len(request.targets)}")
        groups.setdefault(request.inputs, []).append(i)
    unique = sorted(groups, key=len, reverse=True)  # stable: equal lengths keep first-seen order
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        width = len(batch[0])
        idx = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for row, inputs in enumerate(batch):
            idx[row, : len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        with autocast_context(device, dtype):
            hidden = model.hidden_states(idx.to(device))
        rows, positions, targets, owners = [], [], [], []
        for row, inputs in enumerate(batch):
            for i in groups[inputs]:
                n = len(requests[i].targets)
                rows += [row] * n
                positions += range(len(inputs) - n, len(inputs))
                targets += requests[i].targets
                owners += [i] * n
        logp = _target_logprobs(model, hidden, rows, positions, targets, device, dtype)
        np.add.at(out, np.asarray(owners, dtype=np.int64), logp)
        if on_batch is not None:
            on_batch(sum(len(groups[inputs]) for inputs in batch))
    return out


def _target_logprobs(model: GPT, hidden, rows, positions, targets, device, dtype) -> np.ndarray:
    """log p(target) at each (row, position) of ``hidden``, through the output layer in chunks."""
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)
    pos_t = torch.tensor(positions, dtype=torch.long, device=device)
    tgt_t = torch.tensor(targets, dtype=torch.long, device=device)
    parts = []
    for lo in range(0, len(rows), _HEAD_CHUNK):
        sl = slice(lo, lo + _HEAD_CHUNK)
        with autocast_context(device, dtype):
            logits = model.lm_head(hidden[rows_t[sl], pos_t[sl]])
        # Cross-entropy in fp32 whatever the autocast dtype: these sums decide the answers.
        parts.append(-F.cross_entropy(logits.float(), tgt_t[sl], reduction="none").double().cpu())
    return torch.cat(parts).numpy() if parts else np.zeros(0)
