"""Multiple-choice tasks: each choice scored by the log-likelihood of its continuation, and the
accuracies that follow.

For an item with choices ``c_1 .. c_k`` (continuations after the context; Winogrande's partial
scoring gives one shared continuation after k contexts, see :class:`curate.core.tasks.Item`):

* ``acc``: the choice with the largest sum of log-probabilities of its continuation tokens is
  the right one;
* ``acc_norm``: the same, each sum divided by the continuation's length in UTF-8 bytes (so long
  answers are not penalized for having more tokens; independent of the tokenizer);
* ``acc_char``: divided by its length in characters instead (what lm-evaluation-harness calls
  ``acc_norm``; equal to ``acc_norm`` on ASCII text);
* ``centered``: ``(acc - 1/k) / (1 - 1/k)``, so that guessing scores 0 and a perfect model 1 on
  tasks with any number of choices (1/k averaged over the items when k varies);
* ties go to the first choice, as ``argmax`` does.

The context is the model's document start (``<|endoftext|>``, as every pretraining document
begins) followed by the prompt; with ``chat`` it is the chat template's user turn and the
choice is the start of the assistant's reply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.core.errors import InputError
from curate.core.tasks import Item, Task

from .. import chat as chat_template
from .fewshot import FewShot, chat_messages, plain_contexts
from .scoring import Request, encode_pair, pair_request


@dataclass
class Prepared:
    """A task's items turned into requests: ``spans[j]`` is the slice of requests of item j."""

    task: Task
    items: list[Item] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    continuation_bytes: list[int] = field(default_factory=list)
    continuation_chars: list[int] = field(default_factory=list)
    truncated_items: int = 0
    fewshot_source: str = "none"


def prepare(
    task: Task,
    tokenizer,
    block_size: int,
    *,
    limit: int | None,
    shots: int,
    seed: int,
    chat: bool,
) -> Prepared:
    """The requests of the first ``limit`` items of ``task`` (every choice of every item)."""
    fewshot = FewShot(task, shots, seed)
    prepared = Prepared(task, fewshot_source=fewshot.source)
    for position, item in enumerate(task.items(limit=limit)):
        if item.n_choices < 2:
            raise InputError(f"task {task.name!r}, item {item.id}: needs at least 2 choices, has {item.n_choices}")
        examples = fewshot.examples(item, position)
        start, truncated = len(prepared.requests), False
        for context, continuation in _pairs(item, examples, chat):
            context_ids, continuation_ids = _encode(tokenizer, context, continuation, examples, chat)
            if not continuation_ids:
                raise InputError(f"task {task.name!r}, item {item.id}: a choice is empty")
            request, cut = pair_request(context_ids, continuation_ids, block_size)
            truncated |= cut
            prepared.requests.append(request)
            scored = continuation.lstrip() if chat else continuation
            prepared.continuation_bytes.append(max(1, len(scored.encode("utf-8"))))
            prepared.continuation_chars.append(max(1, len(scored)))
        prepared.items.append(item)
        prepared.spans.append((start, len(prepared.requests)))
        prepared.truncated_items += truncated
    if not prepared.items:
        raise InputError(f"task {task.name!r} has no items")
    return prepared


def _pairs(item: Item, examples: list[Item], chat: bool) -> list[tuple[str, str]]:
    return item.requests() if chat else plain_contexts(item, examples)


def _encode(tokenizer, context: str, continuation: str, examples: list[Item], chat: bool):
    if chat:
        prompt = chat_template.encode_prompt(chat_messages(context, examples), tokenizer)
        return prompt, tokenizer.encode(continuation.lstrip())
    return encode_pair(tokenizer, context, continuation, [tokenizer.eot_id])


def task_metrics(prepared: Prepared, loglik: np.ndarray) -> dict[str, Any]:
    """Accuracies of one task from the log-likelihoods of its requests."""
    nbytes = np.asarray(prepared.continuation_bytes, dtype=np.float64)
    nchars = np.asarray(prepared.continuation_chars, dtype=np.float64)
    hits = {"acc": [], "acc_norm": [], "acc_char": []}
    chance = []
    for item, (lo, hi) in zip(prepared.items, prepared.spans):
        scores = loglik[lo:hi]
        hits["acc"].append(int(np.argmax(scores)) == item.label)
        hits["acc_norm"].append(int(np.argmax(scores / nbytes[lo:hi])) == item.label)
        hits["acc_char"].append(int(np.argmax(scores / nchars[lo:hi])) == item.label)
        chance.append(1.0 / (hi - lo))
    n = len(prepared.items)
    acc = float(np.mean(hits["acc"]))
    baseline = float(np.mean(chance))
    return {
        "n": n,
        "acc": acc,
        "acc_norm": float(np.mean(hits["acc_norm"])),
        "acc_char": float(np.mean(hits["acc_char"])),
        "acc_stderr": math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None,
        "random": baseline,
        "centered": centered(acc, baseline),
        "truncated": prepared.truncated_items,
        "fewshot_from": prepared.fewshot_source,
        "source": prepared.task.source,
        "licence": prepared.task.licence,
    }


def centered(acc: float, baseline: float) -> float:
    """Accuracy rescaled so that chance (``baseline``, 1/k) is 0 and perfect is 1."""
    return (acc - baseline) / (1.0 - baseline)


def core_mean(per_task: dict[str, dict[str, Any]]) -> float | None:
    """The mean of the tasks' centered accuracies (a CORE-style single score)."""
    values = [m["centered"] for m in per_task.values()]
    return float(np.mean(values)) if values else None
