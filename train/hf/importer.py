"""A local ``transformers`` Llama-family folder as the parts of a curate checkpoint.

:func:`read_hf_folder` reads config.json, the safetensors weights and tokenizer.json, checks
that our model can represent them exactly (architecture, RoPE without scaling, no sliding
window, biases all zero ...; anything else is one line naming what does not fit) and returns
the state dict, config, kind and metadata that train/checkpoint.py saves as a checkpoint
(``hf:DIR`` wherever a checkpoint path is taken). :func:`source_key` names the conversion by
the source's files, so a converted folder is reused until they change.

Our special tokens are appended to a tokenizer that lacks them, and the embedding grows to
fit: ``<|endoftext|>`` starts as a copy of the source's BOS row (every prompt starts with it,
as with BOS before), ``<|end|>`` as a copy of its EOS row (a chat reply ends where the base
would end a text), the others at the mean row. SFT then teaches the model what they mean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.errors import InputError
from curate.core.tokenizer import EOT

from ..chat import END
from ..model import GPTConfig
from .card import CARD_KEYS
from .layout import architecture_of, curate_state, gpt_config_from_hf, llama_names, norms_are_ones
from .tokenizer import import_tokenizer
from .weights import read_weights

CONVERTER_VERSION = "hf-import-1"  # part of the cache key: bump when the conversion changes


@dataclass
class ImportedModel:
    model_config: dict[str, Any]
    state: dict[str, torch.Tensor]
    kind: str  # "lm" or "reward"
    meta: dict[str, Any]
    tokenizer_json: str
    notes: list[str] = field(default_factory=list)


def _folder(source: str | Path) -> Path:
    folder = Path(source)
    if not folder.is_dir():
        raise InputError(f"hf:{source}: no such folder (expected a local transformers model folder)")
    if not (folder / "config.json").exists():
        raise InputError(f"hf:{source}: no config.json; not a transformers model folder")
    return folder


def source_key(source: str | Path) -> str:
    """A name for the conversion of ``source``: its folder name and a digest of the
    converter version and each JSON/safetensors file's name, size and modification time."""
    folder = _folder(source)
    digest = hashlib.sha256(CONVERTER_VERSION.encode())
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix in (".json", ".safetensors"):
            stat = file.stat()
            digest.update(f"\0{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return f"{folder.resolve().name}-{digest.hexdigest()[:16]}"


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder / 'config.json'}: unreadable ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"{folder / 'config.json'}: not a JSON object")
    return config


def _check_extras(tensors: dict[str, torch.Tensor], used: set[str], where: str, arch: str) -> None:
    """Biases must be zero (Qwen2's q/k/v have them) and nothing else may be left over."""
    for name, tensor in tensors.items():
        if name in used or "rotary_emb" in name:  # old exports stored RoPE tables: derived
            continue
        if name.endswith(".bias"):
            if bool(tensor.any()):
                raise InputError(f"{where}: {arch} has a non-zero bias {name}, which curate's model cannot represent")
            continue
        raise InputError(f"{where}: unexpected tensor {name} for {arch}")


def _first_id(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) else None


def _grow_for(
    state: dict[str, torch.Tensor], cfg: GPTConfig, added: dict[str, int], source_ids: dict[str, int | None]
) -> None:
    """Give every appended special token an embedding (and LM head) row: rows a padded
    vocabulary left unused are taken first, then the matrices grow."""
    size = max([cfg.vocab_size, *(i + 1 for i in added.values())])
    copies = {EOT: source_ids.get("bos"), END: source_ids.get("eos")}
    names = ["tok_emb.weight"] + ([] if cfg.tie_embeddings else ["lm_head.weight"])
    for name in names:
        old = state[name]
        rows = (
            torch.cat([old, old.new_zeros(size - old.shape[0], old.shape[1])]) if size > old.shape[0] else old.clone()
        )
        mean = old[: min(added.values())].mean(0)  # over the rows the source's tokens use
        for token, tid in added.items():
            source = copies.get(token)
            rows[tid] = old[source] if source is not None and source < old.shape[0] else mean
        state[name] = rows
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    cfg.vocab_size = size


def _meta(config: dict[str, Any], folder: Path, arch: str) -> dict[str, Any]:
    """A curate export's lineage as it was; a foreign model's as an import."""
    block = config.get("curate") if isinstance(config.get("curate"), dict) else {}
    meta = {k: block[k] for k in CARD_KEYS if k in block and k != "kind"}
    meta.setdefault("stage", "import")
    meta.update(imported_from=str(folder.resolve()), import_architecture=arch)
    return meta


def _kind(config: dict[str, Any], reward: bool) -> str:
    """A curate export's checkpoint kind ("lm", "policy" ...), else "lm" or "reward"."""
    kind = (config.get("curate") or {}).get("kind") if isinstance(config.get("curate"), dict) else None
    if isinstance(kind, str) and (kind == "reward") == reward:
        return kind
    return "reward" if reward else "lm"


def read_hf_folder(source: str | Path) -> ImportedModel:
    """The checkpoint parts of the ``transformers`` folder ``source`` (see the module doc)."""
    folder = _folder(source)
    where = f"hf:{source}"
    config = _read_config(folder)
    arch, reward = architecture_of(config, where)
    cfg = gpt_config_from_hf(config, where)
    # A reward model has no LM head of its own: its trunk's is the (tied) embedding.
    cfg.tie_embeddings = cfg.tie_embeddings or reward
    tensors = read_weights(folder)
    cfg.norm_weight = not norms_are_ones(tensors)
    state = curate_state(tensors, cfg, where)
    used = llama_names(cfg) | {"lm_head.weight"}  # a tied model may store its head anyway
    if reward:
        score = tensors.get("score.weight")
        if score is None or tuple(score.shape) != (1, cfg.n_embd):
            raise InputError(f"{where}: no score.weight of shape (1, {cfg.n_embd}) for a one-label reward model")
        bias = float((config.get("curate") or {}).get("reward_bias") or 0.0)
        state.update({"head.weight": score, "head.bias": torch.tensor([bias])})
        used.add("score.weight")
    _check_extras(tensors, used, where, arch)
    tokenizer_json, added, tokens = import_tokenizer(folder)
    if tokens - len(added) > cfg.vocab_size:
        raise InputError(
            f"{where}: the tokenizer has {tokens - len(added)} ids but the embedding only {cfg.vocab_size} rows"
        )
    notes = []
    if added:
        ids = {"bos": _first_id(config.get("bos_token_id")), "eos": _first_id(config.get("eos_token_id"))}
        _grow_for(state, cfg, added, ids)
        notes.append(
            f"added curate's special tokens {', '.join(added)} to the tokenizer (ids {min(added.values())}-"
            f"{max(added.values())}); fine-tuning (SFT) teaches the model what they mean"
        )
    meta = _meta(config, folder, arch)
    meta["import_notes"] = notes
    return ImportedModel(cfg.to_dict(), state, _kind(config, reward), meta, tokenizer_json, notes)
