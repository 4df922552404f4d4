"""Safetensors weights the way ``transformers`` folders hold them: one ``model.safetensors``,
or shards ``model-00001-of-0000N.safetensors`` listed in ``model.safetensors.index.json``.

Only safetensors are read: a pickled ``pytorch_model.bin`` can run code when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from curate.core.errors import InputError
from curate.core.files import atomic_write_json

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def plan_shards(tensors: dict[str, torch.Tensor], dtype: torch.dtype, max_bytes: int) -> list[list[str]]:
    """Tensor names per shard, in order: a shard is closed before it would pass ``max_bytes``
    (a tensor larger than that gets a shard of its own)."""
    width = torch.empty((), dtype=dtype).element_size()
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * width
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    return shards


def write_weights(
    tensors: dict[str, torch.Tensor], folder: Path, dtype: torch.dtype, max_bytes: int
) -> tuple[list[str], int]:
    """Write ``tensors`` (cast to ``dtype``) into ``folder``, sharded past ``max_bytes`` with
    the index file; returns (file names, total bytes of tensor data)."""
    from safetensors.torch import save_file

    shards = plan_shards(tensors, dtype, max_bytes)
    count = len(shards)
    names = [SINGLE_FILE] if count == 1 else [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    total = 0
    weight_map: dict[str, str] = {}
    for file, members in zip(names, shards):
        # Clones: split views of one fused matrix share storage, which safetensors refuses.
        part = {n: tensors[n].detach().to("cpu", dtype).clone(memory_format=torch.contiguous_format) for n in members}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in part.values())
        weight_map.update(dict.fromkeys(members, file))
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        atomic_write_json(folder / INDEX_FILE, index)
        names.append(INDEX_FILE)
    return names, total


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a folder, from its index when sharded."""
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{index}: unreadable index ({exc})") from None
        return [folder / name for name in sorted(set(weight_map.values()))]
    if (folder / SINGLE_FILE).exists():
        return [folder / SINGLE_FILE]
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
        raise InputError(
            f"{folder}: weights are pickled (.bin/.pt), which can run code when read; save the model "
            "with transformers' save_pretrained (safetensors) first"
        )
    raise InputError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a folder's safetensors files, floating point ones as float32."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        try:
            part = load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{file}: unreadable weights ({exc})") from None
        for name, tensor in part.items():
            tensors[name] = tensor.float() if tensor.is_floating_point() else tensor
    return tensors
