"""The shapes of fine-tuning data people have, read into chat messages.

An SFT example (:func:`sft_messages`) is a ``messages`` list (roles system, user, assistant),
``prompt``/``response`` strings (optionally ``system``), Alpaca's ``instruction``/``input``/
``output`` or Dolly's ``instruction``/``context``/``response``; the instruction's input or
context follows it after a blank line, as in both data sets' own prompt templates. A prompt
to answer (:func:`prompt_messages`, for RLHF and sample-pairs) is any of those without the
answer, a StackExchange ``question``, or the prompt of a comparison in any shape
:func:`curate.core.comparisons.comparison_from_row` reads. A row that cannot be used raises
:class:`~curate.core.comparisons.Unusable` with the reason it is counted under; an empty
prompt or response is one of them (training on it teaches nothing, or to answer nothing).
"""

from __future__ import annotations

from typing import Any

from curate.core.comparisons import ROLES, Message, Unusable, comparison_from_row

SFT_SHAPES = "messages, prompt/response, instruction/input/output (Alpaca) or instruction/context/response (Dolly)"


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None


def _instruction(row: dict[str, Any], extra_key: str) -> str | None:
    """Alpaca's or Dolly's prompt: the instruction, then its input/context after a blank line."""
    instruction, extra = _text(row, "instruction"), _text(row, extra_key)
    if instruction is None:
        return None
    return f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction


def _message_list(value: Any) -> list[Message]:
    if not isinstance(value, (list, tuple)) or not value:
        raise Unusable("'messages' must be a non-empty list")
    if not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value):
        raise Unusable("a message needs a role (system, user or assistant) and string content")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _check_not_empty(messages: list[Message]) -> list[Message]:
    for m in messages:
        if m["role"] != "system" and not m["content"].strip():
            raise Unusable("empty prompt" if m["role"] == "user" else "empty response")
    return messages


def sft_messages(row: dict[str, Any]) -> list[Message]:
    """An SFT example as chat messages (see the module docstring for the shapes)."""
    if row.get("messages") is not None:
        messages = _message_list(row["messages"])
        if not any(m["role"] == "assistant" for m in messages):
            raise Unusable("no assistant turn")
        return _check_not_empty(messages)
    prompt, response = _text(row, "prompt"), _text(row, "response")
    if prompt is None or response is None:
        prompt = _instruction(row, "input" if row.get("output") is not None else "context")
        response = _text(row, "output") if row.get("output") is not None else response
    if prompt is None or response is None:
        raise Unusable(f"needs {SFT_SHAPES}")
    system = _text(row, "system")
    head = [{"role": "system", "content": system}] if system else []
    return _check_not_empty(head + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])


def prompt_messages(row: dict[str, Any]) -> list[Message]:
    """The conversation a policy should answer next: it ends with a user turn."""
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        messages = _message_list(prompt)  # TRL's conversational prompt
    elif row.get("messages") is not None:
        messages = _message_list(row["messages"])
        if messages[-1]["role"] == "assistant":  # an SFT conversation: its answer left out
            messages = messages[:-1]
    elif isinstance(row.get("question"), str):
        messages = [{"role": "user", "content": row["question"]}]
    elif _text(row, "instruction") is not None:
        messages = [
            {"role": "user", "content": _instruction(row, "input" if row.get("output") is not None else "context")}
        ]
    elif "chosen" in row:
        found, _, _ = comparison_from_row(row)
        messages = [{"role": "user", "content": found}] if isinstance(found, str) else found
    else:
        raise Unusable(f"needs a prompt: a 'prompt' string or list, {SFT_SHAPES}, a question, or a comparison")
    if not messages or messages[-1]["role"] != "user":
        raise Unusable("the prompt must end with a user turn")
    return _check_not_empty(messages)
