"""Tokenizer files both ways: ours as a ``transformers`` fast tokenizer (with the chat
template), and a ``transformers`` folder's tokenizer as ours (with our special tokens).

Out: ``tokenizer.json`` is the trained BPE itself, plus a post-processor that puts
``<|endoftext|>`` first, so ``tokenizer(prompt)`` gives exactly the ids ``curate generate``
feeds the model for a plain prompt. The byte tokenizer (no BPE) is exported too, as a
byte-level BPE without merges: bytes 0..255 are ids 0..255 and the special tokens follow, as
in :class:`~curate.core.tokenizer.ByteTokenizer`. ``tokenizer_config.json`` carries a Jinja
chat template that renders what :mod:`train.chat` renders.

In: a folder's ``tokenizer.json`` is read as is; our special tokens it lacks are appended (new
ids after its own), so SFT, reward modelling and RLHF use the same chat template on an
imported base as on ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curate.core.errors import InputError
from curate.core.tokenizer import EOT, SPECIAL_TOKENS, TOKENIZER_FILE, BPETokenizer, ByteTokenizer, Tokenizer

from ..chat import END, ROLE_TOKENS

PAD = "<|pad|>"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# train.chat.render as Jinja: <|endoftext|>, then <|role|>content<|end|> per message, then
# <|assistant|> when a reply is wanted. The role markers come from ROLE_TOKENS.
CHAT_TEMPLATE = (
    "{{- '" + EOT + "' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['" + "', '".join(ROLE_TOKENS) + "'] -%}"
    "{{- raise_exception('roles are " + ", ".join(ROLE_TOKENS) + "') -}}"
    "{%- endif -%}"
    "{{- '<|' + message['role'] + '|>' + message['content'] + '" + END + "' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" + ROLE_TOKENS["assistant"] + "' -}}{%- endif -%}"
)


def byte_chars() -> list[str]:
    """The printable character GPT-2's byte-level BPE stands for each byte 0..255 (printable
    Latin-1 bytes stand for themselves, the rest for code points from 256 on)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _byte_tokenizer():
    """The byte tokenizer as a ``tokenizers`` byte-level BPE with no merges."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    vocab = {char: byte for byte, char in enumerate(byte_chars())}
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _bpe_file(tokenizer: BPETokenizer) -> Path:
    path = Path(tokenizer.path)
    return path / TOKENIZER_FILE if path.is_dir() else path


def export_tokenizer_json(tokenizer: Tokenizer) -> str:
    """tokenizer.json for ``transformers``: ours, ``<|endoftext|>`` put first by the
    post-processor (encoding with ``add_special_tokens=False`` gives our ids unchanged)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors

    if isinstance(tokenizer, ByteTokenizer):
        tok = _byte_tokenizer()
    elif isinstance(tokenizer, BPETokenizer):
        tok = HFTokenizer.from_file(str(_bpe_file(tokenizer)))
    else:
        raise InputError(f"tokenizer {tokenizer.name!r} cannot be exported")
    eot = tokenizer.eot_id
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B:1", special_tokens=[(EOT, eot)]
    )
    return tok.to_str(pretty=True)


def special_ids(tokenizer: Tokenizer) -> dict[str, Any]:
    """Token ids for config.json / generation_config.json: a document starts (and a plain
    continuation ends) with ``<|endoftext|>``; a chat reply ends with ``<|end|>``."""
    eot, end = tokenizer.eot_id, tokenizer.token_id(END)
    return {"bos": eot, "eos": eot, "pad": tokenizer.pad_id, "stop": [eot, end]}


def tokenizer_config(block_size: int) -> dict[str, Any]:
    """tokenizer_config.json: the fast tokenizer class, special tokens, the chat template."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "pad_token": PAD,
        "unk_token": None,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (EOT, PAD)],
        "add_bos_token": True,
        "add_eos_token": False,
        # Decoding gives back exactly the text that was encoded (no " ." -> "." clean-up).
        "clean_up_tokenization_spaces": False,
        "model_max_length": block_size,
        "padding_side": "left",  # batched generation continues each row from its last token
        "chat_template": CHAT_TEMPLATE,
    }


def tokenizer_files(tokenizer: Tokenizer, block_size: int) -> dict[str, bytes]:
    """File name -> bytes of the exported tokenizer."""
    config = tokenizer_config(block_size)
    special_map = {"bos_token": EOT, "eos_token": EOT, "pad_token": PAD}
    special_map["additional_special_tokens"] = config["additional_special_tokens"]
    return {
        TOKENIZER_FILE: export_tokenizer_json(tokenizer).encode(),
        TOKENIZER_CONFIG_FILE: _json(config),
        SPECIAL_TOKENS_MAP_FILE: _json(special_map),
    }


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


# ----------------------------------------------------------------------------- import


def _prefix_every_segment(tok):
    """A SentencePiece-style pre-tokenizer (Metaspace) with ``prepend_scheme = "first"`` puts
    its "▁" before the first segment of a string only, while curate encodes each chat message
    on its own: "always" makes the exported chat template and ``curate generate --chat`` give
    the same ids (text without special tokens is one segment and encodes as before)."""
    from tokenizers import Tokenizer as HFTokenizer

    data = json.loads(tok.to_str())
    changed = False

    def visit(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "first":
                node["prepend_scheme"] = "always"
                changed = True
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(data.get("pre_tokenizer"))
    return HFTokenizer.from_str(json.dumps(data)) if changed else tok


def import_tokenizer(folder: Path) -> tuple[str, dict[str, int], int]:
    """(tokenizer.json text with our special tokens, {token: id} of those appended, the
    number of ids it now has)."""
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as HFTokenizer

    file = folder / TOKENIZER_FILE
    if not file.exists():
        hint = " (only a SentencePiece tokenizer.model: save the folder with transformers' fast tokenizer first)"
        raise InputError(f"{folder}: no {TOKENIZER_FILE}{hint if (folder / 'tokenizer.model').exists() else ''}")
    try:
        tok = HFTokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises plain Exceptions for bad files
        raise InputError(f"{file}: unreadable tokenizer ({exc})") from None
    tok = _prefix_every_segment(tok)
    added: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        if tok.token_to_id(token) is None:
            tok.add_special_tokens([AddedToken(token, special=True, normalized=False)])
            added[token] = tok.token_to_id(token)
    return tok.to_str(pretty=True), added, tok.get_vocab_size(with_added_tokens=True)


# ----------------------------------------------------------------------------- GGUF


def gguf_vocabulary(tokenizer: Tokenizer, vocab_size: int) -> dict[str, Any]:
    """What llama.cpp's "gpt2" (byte-level BPE) vocabulary needs: tokens by id, their types
    (1 normal, 3 control, 4 user-defined, 5 unused padding), merges. Only byte-level BPEs
    split as GPT-2 splits (ours) have an exact llama.cpp equivalent; others are refused."""
    if not isinstance(tokenizer, BPETokenizer):
        raise InputError(
            "the byte tokenizer has no BPE merges, which llama.cpp's vocabulary needs; "
            "export to GGUF a model trained with a BPE tokenizer (`curate tokenizer train`)"
        )
    data = json.loads(_bpe_file(tokenizer).read_text(encoding="utf-8"))
    model, pre = data.get("model") or {}, data.get("pre_tokenizer") or {}
    gpt2_split = pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space")
    if model.get("type") != "BPE" or not gpt2_split or data.get("normalizer"):
        raise InputError(
            f"{tokenizer.path}: only byte-level BPE tokenizers split like GPT-2 (curate's own) export to GGUF; "
            "for this one, export with `curate export hf` and convert with llama.cpp's convert_hf_to_gguf.py"
        )
    tokens: dict[int, tuple[str, int]] = {i: (t, 1) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens") or []:
        tokens[added["id"]] = (added["content"], 3 if added.get("special") else 4)
    size = max(vocab_size, max(tokens) + 1)
    # Embedding rows past the tokenizer (a padded vocabulary) still need a token each.
    listed = [tokens.get(i, (f"[PAD{i}]", 5)) for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return {"tokens": [t for t, _ in listed], "types": [k for _, k in listed], "merges": merges}
