"""Few-shot prompts: solved examples in front of each item, drawn reproducibly, never the item.

Examples come from the task's few-shot split when it has one (MMLU: ``dev``; a TOML task's
``fewshot_file``), else from the other items of the scored split (the item itself is never
drawn, by position or by id). Each item's draw depends only on (seed, task, item position,
item id), so it does not change with ``--limit`` or the batch size. MMLU examples are drawn
from the item's own subject when it has enough of them, as the harnesses do.

Plain prompts are the examples' contexts with their right answers, then the item's context,
separated by blank lines; a first paragraph that every example and the item start with (MMLU's
"The following are multiple choice questions ... about X.") is written once, at the top.
Chat prompts (``--chat``) make each example a user turn answered by an assistant turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from curate.core.tasks import Item, Task

SEPARATOR = "\n\n"


def _subject(item: Item) -> str:
    return item.id.rsplit("-", 1)[0]  # MMLU ids are "<subject>-<n>"


# Tasks whose examples should share a group with the item (and how to read the group).
GROUPED: dict[str, Callable[[Item], str]] = {"mmlu": _subject}


class FewShot:
    """Draws ``shots`` examples for the items of ``task``."""

    def __init__(self, task: Task, shots: int, seed: int):
        self.task, self.shots, self.seed = task, shots, seed
        self.same_split = task.fewshot_split is None
        self.pool: list[Item] = list(task.items(task.fewshot_split)) if shots else []
        group_of = GROUPED.get(task.name)
        self.groups: dict[str, list[int]] = {}
        if group_of is not None:
            for i, example in enumerate(self.pool):
                self.groups.setdefault(group_of(example), []).append(i)
        self.group_of = group_of

    @property
    def source(self) -> str:
        """Where the examples come from, for the results."""
        if not self.shots:
            return "none"
        if self.same_split:
            return f"other items of {self.task.eval_split}"
        return self.task.fewshot_split or ""

    def examples(self, item: Item, position: int) -> list[Item]:
        """The examples for the item at ``position`` of the scored split."""
        if not self.shots:
            return []
        candidates = list(range(len(self.pool)))
        if self.group_of is not None:
            same = self.groups.get(self.group_of(item), [])
            if len(same) >= self.shots:
                candidates = same
        rng = random.Random(f"{self.seed}:{self.task.name}:{position}:{item.id}")
        # One more than needed, so dropping the item itself still leaves enough.
        drawn = rng.sample(candidates, min(self.shots + 1, len(candidates)))
        picked = [self.pool[i] for i in drawn if not self._is_item(i, item, position)]
        return picked[: self.shots]

    def _is_item(self, index: int, item: Item, position: int) -> bool:
        return self.same_split and (index == position or self.pool[index].id == item.id)


def plain_contexts(item: Item, examples: list[Item]) -> list[tuple[str, str]]:
    """The item's (context, continuation) requests with the examples written in front."""
    requests = item.requests()
    if not examples:
        return requests
    solved = [example.answer() for example in examples]
    header = _shared_header(solved + [context for context, _ in requests])
    body = "".join(text[len(header) :] + SEPARATOR for text in solved)
    return [(header + body + context[len(header) :], continuation) for context, continuation in requests]


def _shared_header(texts: list[str]) -> str:
    """The first paragraph (through its blank line) when every text starts with it, else ""."""
    first = texts[0]
    cut = first.find(SEPARATOR)
    if cut < 0:
        return ""
    header = first[: cut + len(SEPARATOR)]
    return header if all(t.startswith(header) for t in texts) else ""


def chat_messages(context: str, examples: list[Item]) -> list[dict[str, str]]:
    """The conversation for one request in chat mode: a user/assistant exchange per example,
    then the context as the user's question (the choice is scored as the assistant's reply)."""
    messages: list[dict[str, str]] = []
    for example in examples:
        example_context, example_answer = example.requests()[example.label]
        messages += [
            {"role": "user", "content": example_context},
            {"role": "assistant", "content": example_answer.lstrip()},
        ]
    messages.append({"role": "user", "content": context})
    return messages
