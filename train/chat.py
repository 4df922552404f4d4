"""The chat template shared by SFT, reward modelling, RLHF, DPO and ``curate generate --chat``.

A conversation is rendered as::

    <|endoftext|><|system|>…<|end|><|user|>…<|end|><|assistant|>…<|end|>

with the role markers being the tokenizer's special tokens (curate.core.tokenizer.SPECIAL_TOKENS),
never their spelling as text, so a user cannot forge a role marker by typing it. The leading
``<|endoftext|>`` is the document separator the pretraining stream uses, so a chat starts the
way every pretraining document starts.

:func:`encode_chat` returns token ids and a loss mask that is 1 only on assistant content and
the ``<|end|>`` closing it (so the model learns to stop), 0 on everything a user or system
wrote and on the role markers: SFT trains only on what the assistant says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from curate.core.tokenizer import EOT, SPECIAL_TOKENS, Tokenizer

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END = "<|end|>"

Message = dict[str, str]


def _as_messages(prompt: str | Sequence[Message], system: str | None) -> list[Message]:
    if isinstance(prompt, str):
        msgs: list[Message] = [{"role": "user", "content": prompt}]
    else:
        msgs = [dict(m) for m in prompt]
    if system and not (msgs and msgs[0]["role"] == "system"):
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def render(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The conversation as text (special tokens spelled out), for display and logs."""
    parts = [EOT]
    for m in messages:
        parts.append(f"{ROLE_TOKENS[m['role']]}{m['content']}{END}")
    if add_generation_prompt:
        parts.append(ROLE_TOKENS["assistant"])
    return "".join(parts)


def format_prompt(prompt: str | Sequence[Message], system: str | None = None) -> str:
    """A user prompt (or a message list) rendered up to and including ``<|assistant|>``, ready
    for the model to continue. Encode the result with :func:`encode_with_specials`."""
    return render(_as_messages(prompt, system), add_generation_prompt=True)


_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL_TOKENS) + ")")


def encode_with_specials(text: str, tokenizer: Tokenizer) -> list[int]:
    """Encode text in which special tokens are spelled out (e.g. the output of
    :func:`format_prompt`), mapping each spelled-out marker to its special id."""
    ids: list[int] = []
    for piece in _SPECIAL_RE.split(text):
        if not piece:
            continue
        if piece in SPECIAL_TOKENS:
            ids.append(tokenizer.token_id(piece))
        else:
            ids.extend(tokenizer.encode(piece))
    return ids


def encode_chat(
    messages: Sequence[Message], tokenizer: Tokenizer, max_len: int | None = None
) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its loss mask (1 = assistant tokens to learn).

    Content is encoded as plain text; role markers are the special ids. When ``max_len`` is
    given the conversation is cut at the right end (an assistant turn cut short keeps the
    tokens that fit, without its ``<|end|>``).
    """
    end_id = tokenizer.token_id(END)
    ids: list[int] = [tokenizer.eot_id]
    mask: list[int] = [0]
    for m in messages:
        content = tokenizer.encode(m["content"])
        learn = 1 if m["role"] == "assistant" else 0
        ids.append(tokenizer.token_id(ROLE_TOKENS[m["role"]]))
        mask.append(0)
        ids.extend(content)
        mask.extend([learn] * len(content))
        ids.append(end_id)
        mask.append(learn)
    if max_len is not None and len(ids) > max_len:
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask


def encode_prompt(
    prompt: str | Sequence[Message], tokenizer: Tokenizer, system: str | None = None, max_len: int | None = None
) -> list[int]:
    """Token ids of a prompt ending in ``<|assistant|>``: what the policy continues from.

    When ``max_len`` is given, a long prompt keeps its *last* ``max_len`` tokens (the end of
    the prompt, next to where the answer starts, matters most).
    """
    msgs = _as_messages(prompt, system)
    ids, _ = encode_chat(msgs, tokenizer)
    ids.append(tokenizer.token_id(ROLE_TOKENS["assistant"]))
    if max_len is not None and len(ids) > max_len:
        ids = ids[-max_len:]
    return ids


def encode_response(text: str, tokenizer: Tokenizer, add_end: bool = True) -> list[int]:
    """An assistant reply's ids, closed by ``<|end|>``."""
    ids = tokenizer.encode(text)
    return ids + [tokenizer.token_id(END)] if add_end else ids


def end_id(tokenizer: Tokenizer) -> int:
    """The id that ends an assistant turn (the stop token for generation)."""
    return tokenizer.token_id(END)


def decode_response(ids: Sequence[int], tokenizer: Tokenizer) -> str:
    """Text of generated ids, cut at the first ``<|end|>``/``<|endoftext|>``/padding."""
    stops = {tokenizer.token_id(END), tokenizer.eot_id, tokenizer.pad_id}
    kept: list[int] = []
    for i in ids:
        if int(i) in stops:
            break
        kept.append(int(i))
    return tokenizer.decode(kept)
