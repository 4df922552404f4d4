"""Checkpoints: self-contained directories written atomically, shared by every training stage.

Layout of a run directory::

    RUN_DIR/
      latest                 text file naming the newest complete step directory
      step-000123/
        model.safetensors    the model's state dict (a tied embedding stored once)
        config.json          {"model": GPTConfig dict, "kind": "lm" | "reward" | "policy" ...,
                              "step", "tokens_seen", "tokenizer", "mix_manifest_sha256",
                              "training_cutoff", "parent", "train_config", ...}
        optimizer.pt         optional: optimizer state (loaded with weights_only=True)
        train_state.pt       optional: RNG states, data position ... (weights_only=True)
        tokenizer.json       when the tokenizer is a trained BPE, so the checkpoint stands alone
        consumed.parquet     what the run has read so far (train/lineage.py)

A step directory is built under a temporary name and renamed into place only when complete;
``latest`` is rewritten (atomically) after that. A job killed at any moment therefore leaves
either the previous checkpoint or the new one, never a half-written one.

Wherever a checkpoint path is taken, ``hf:DIR`` names a local ``transformers`` Llama-family
folder instead: :func:`resolve_checkpoint` converts it once (train/hf/importer.py) into a
checkpoint of this layout, kept in a cache folder and reused while the source is unchanged.

Nothing here unpickles arbitrary objects: weights are safetensors and the optional ``.pt``
files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curate.core.errors import CurateError, InputError
from curate.core.files import atomic_write_bytes, atomic_write_json, replace_folder, writing
from curate.core.tokenizer import TOKENIZER_FILE, BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer

from .finite import NonFiniteError, first_non_finite

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.pt"
TRAIN_STATE_FILE = "train_state.pt"
LATEST_FILE = "latest"
STEP_DIR = re.compile(r"^step-(\d+)$")
# Prefixes torch.compile and DistributedDataParallel add to parameter names.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
_TIED_KEY, _EMBED_KEY = "lm_head.weight", "tok_emb.weight"
HF_PREFIX = "hf:"  # a checkpoint path naming a local transformers folder
CACHE_ENV = "CURATE_CACHE_DIR"


@dataclass
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    kind: str = "lm"
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    train_state: dict[str, Any] | None = None

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def _clean_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes, drop tensors that alias an earlier one (tied weights; safetensors
    refuses shared storage), and make every tensor contiguous on the CPU."""
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in state.items():
        stripped = True
        while stripped:  # wrappers nest in either order (DDP around compile, or the reverse)
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        tensor = tensor.detach()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue  # an alias (e.g. lm_head.weight tied to tok_emb.weight): restored on load
        seen[key] = name
        out[name] = tensor.to("cpu").contiguous()
    return out


def _tokenizer_info(tokenizer: Tokenizer | str | os.PathLike | None) -> tuple[dict[str, Any], Path | None]:
    """(description for config.json, tokenizer.json to copy or None)."""
    if tokenizer is None or isinstance(tokenizer, ByteTokenizer) or str(tokenizer) in ("", "bytes"):
        return {"name": "bytes", "vocab_size": ByteTokenizer().vocab_size}, None
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = load_tokenizer(tokenizer)
    info = tokenizer.describe()
    source = None
    if isinstance(tokenizer, BPETokenizer):
        path = Path(tokenizer.path)
        source = path / TOKENIZER_FILE if path.is_dir() else path
        info = {
            "name": "bpe",
            "vocab_size": tokenizer.vocab_size,
            "source": str(tokenizer.path),
            "file": TOKENIZER_FILE,
        }
    return info, source


def sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a safetensors header with its ``__metadata__`` keys sorted, so two identical runs
    write identical bytes (safetensors serialises that map in a per-process random order).
    The tensors' entries and data are untouched; the header keeps its length, so this is an
    in-place write of the header alone."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw, object_pairs_hook=dict)
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > size:  # not the writer's spelling after all: leave the file as written
            return
        fh.seek(8)
        fh.write(text.ljust(size, b" "))  # safetensors pads its header with spaces


def list_step_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Complete step directories of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = STEP_DIR.match(child.name)
        if match and child.is_dir() and (child / CONFIG_FILE).exists() and (child / WEIGHTS_FILE).exists():
            found.append((int(match.group(1)), child))
    return [p for _, p in sorted(found)]


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    model_config: dict[str, Any],
    meta: dict[str, Any],
    kind: str = "lm",
    optimizer_state: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    tokenizer: Tokenizer | str | os.PathLike | None = None,
    keep_last: int | None = 3,
    files: Mapping[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write ``RUN_DIR/step-NNNNNN/`` atomically, point ``latest`` at it, and delete all but
    the newest ``keep_last`` step directories (None or 0 keeps all). Returns the step dir.
    ``files``: more files of the step, name -> a function that writes it at the path given."""
    from safetensors.torch import save_file

    state = _clean_state(model_state)
    bad = first_non_finite(state)
    if bad is not None:  # never a checkpoint that breaks whatever loads it next
        raise NonFiniteError(f"the weights hold NaN or infinite values (first in {bad})", step)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=run_dir))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        sort_safetensors_metadata(tmp / WEIGHTS_FILE)
        tok_info, tok_file = _tokenizer_info(tokenizer)
        if tok_file is not None:
            shutil.copyfile(tok_file, tmp / TOKENIZER_FILE)
        config = {**meta, "model": dict(model_config), "kind": kind, "step": int(step)}
        if tokenizer is not None or "tokenizer" not in meta:
            config["tokenizer"] = tok_info
        atomic_write_json(tmp / CONFIG_FILE, config)
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE_FILE)
        for name, write in (files or {}).items():
            write(tmp / name)
        # A step is rewritten when a run resumed from an earlier checkpoint reaches it again.
        replace_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(run_dir / LATEST_FILE, (final.name + "\n").encode())
    if keep_last:
        for old in list_step_dirs(run_dir)[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """A step directory from a step directory or a run directory (its ``latest``, else its
    newest complete step), or from ``hf:DIR``, a local ``transformers`` folder converted
    once into ``cache`` (see :func:`import_hf_checkpoint`). CurateError when there is none.

    Every command that takes a checkpoint path reads it through here."""
    if is_hf_source(path):
        return import_hf_checkpoint(os.fspath(path)[len(HF_PREFIX) :], cache)
    path = Path(path)
    if (path / CONFIG_FILE).exists() and (path / WEIGHTS_FILE).exists():
        return path
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint or run directory")
    latest = path / LATEST_FILE
    if latest.exists():
        candidate = path / latest.read_text().strip()
        if (candidate / CONFIG_FILE).exists() and (candidate / WEIGHTS_FILE).exists():
            return candidate
    steps = list_step_dirs(path)
    if steps:
        return steps[-1]
    raise InputError(f"{path}: holds no checkpoint (expected {CONFIG_FILE} + {WEIGHTS_FILE}, or step-* directories)")


def is_hf_source(path: str | os.PathLike) -> bool:
    """Whether a checkpoint path names a ``transformers`` folder (``hf:DIR``)."""
    return os.fspath(path).startswith(HF_PREFIX)


def default_import_cache() -> Path:
    """Where ``hf:DIR`` conversions made outside a training run are kept: $CURATE_CACHE_DIR/hf,
    else $XDG_CACHE_HOME/curate/hf, else ~/.cache/curate/hf."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "curate"
    )
    return Path(root) / "hf"


def import_hf_checkpoint(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The step directory of the ``transformers`` folder ``source`` as one of our checkpoints,
    made under ``cache/<folder name>-<digest of its files>/`` on first use and reused while
    those files are unchanged (train/hf/importer.py does the conversion)."""
    from .hf.importer import read_hf_folder, source_key

    run_dir = Path(cache if cache is not None else default_import_cache()) / source_key(source)
    if list_step_dirs(run_dir):
        return resolve_checkpoint(run_dir)
    imported = read_hf_folder(source)
    with writing(run_dir):
        tokenizer_file = run_dir / "tokenizer" / TOKENIZER_FILE
        atomic_write_bytes(tokenizer_file, imported.tokenizer_json.encode())
        return save_checkpoint(
            run_dir,
            int(imported.meta.get("step") or 0),  # a curate export keeps its step
            model_state=imported.state,
            model_config=imported.model_config,
            meta=imported.meta,
            kind=imported.kind,
            tokenizer=tokenizer_file,
            keep_last=None,
        )


def _read_config(step_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((step_dir / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{step_dir / CONFIG_FILE}: unreadable checkpoint config ({exc})") from None


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    with_optimizer: bool = False,
    lazy: bool = False,
) -> Checkpoint:
    """Read a checkpoint (run dir or step dir). The optimizer and train state are read only
    when ``with_optimizer`` is set (they can be larger than the weights).

    ``lazy`` (for ranks that keep only shards: train/fsdp.py): the weights are
    :class:`~train.weights_file.LazyTensor` entries read when sliced, checked for NaN/inf a
    tensor at a time, and the optimizer file is memory-mapped, so a rank reads the rows it keeps
    and never holds the whole model or optimizer state."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .weights_file import WeightsFile

    step_dir = resolve_checkpoint(path)
    config = _read_config(step_dir)
    if "model" not in config:
        raise InputError(f"{step_dir / CONFIG_FILE}: no 'model' section; not a curate checkpoint")
    device = str(map_location) if isinstance(map_location, torch.device) else map_location
    if lazy:
        weights = WeightsFile(step_dir / WEIGHTS_FILE)
        state: dict[str, Any] = weights.lazy_state()
        bad = weights.first_non_finite()
    else:
        try:
            state = load_file(str(step_dir / WEIGHTS_FILE), device=device)
        except (SafetensorError, OSError) as exc:
            raise InputError(f"{step_dir / WEIGHTS_FILE}: unreadable weights ({exc})") from None
        bad = first_non_finite(state)
    if bad is not None:
        raise InputError(
            f"{step_dir / WEIGHTS_FILE}: holds weights that are not finite (NaN or inf in {bad}); "
            "use an earlier checkpoint"
        )
    model_config = config.pop("model")
    kind = config.pop("kind", "lm")
    if model_config.get("tie_embeddings", True) and _TIED_KEY not in state and _EMBED_KEY in state:
        state[_TIED_KEY] = state[_EMBED_KEY]  # restore the alias so load_state_dict(strict) works
    elif model_config.get("tie_embeddings", True) and _EMBED_KEY not in state and _TIED_KEY in state:
        state[_EMBED_KEY] = state[_TIED_KEY]  # a writer that listed the head first kept that name
    optimizer_state = train_state = None
    if with_optimizer:
        optimizer_state = _load_pt(step_dir / OPTIMIZER_FILE, map_location, mmap=lazy)
        train_state = _load_pt(step_dir / TRAIN_STATE_FILE, "cpu")
    return Checkpoint(
        path=step_dir,
        model_state=state,
        model_config=model_config,
        kind=kind,
        meta=config,
        optimizer_state=optimizer_state,
        train_state=train_state,
    )


def _load_pt(path: Path, map_location, mmap: bool = False) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # pickle/zip errors have many types; all mean the same here
        raise InputError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def model_config_of(ckpt: Checkpoint, shards: int = 1):
    """The checkpoint's GPTConfig; a config that does not build one (in ``shards`` processes
    that each build their part: FSDP) is an InputError."""
    from .footprint import check_fits
    from .model import GPTConfig

    try:
        config = GPTConfig.from_dict(ckpt.model_config)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{ckpt.path / CONFIG_FILE}: invalid model config ({exc})") from None
    try:
        check_fits(config, torch.device("cpu"), train=False, shards=shards)  # a model that cannot even be built
    except CurateError as exc:
        raise InputError(f"{ckpt.path / CONFIG_FILE}: {exc}") from None
    return config


def load_lm(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(GPT in eval mode on ``device``, Checkpoint) from any checkpoint kind: the language
    model trunk and head are taken, extra keys (reward/value heads) ignored."""
    from .model import GPT

    ckpt = load_checkpoint(path)
    model = GPT(model_config_of(ckpt))
    model.load_state_dict(model_tensors(ckpt, model.state_dict()), strict=True)
    model.to(device).eval()
    return model, ckpt


def model_tensors(ckpt: Checkpoint, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's tensors that a model with the state dict ``wanted`` has (extra ones, a
    reward or value head, left out); one missing, or of another shape, is an InputError."""
    state = {k: v for k, v in ckpt.model_state.items() if k in wanted}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise InputError(f"{ckpt.path}: weights lack {len(missing)} model tensor(s), e.g. {missing[0]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(wanted[name].shape):
            raise InputError(
                f"{ckpt.path}: {name} has shape {tuple(tensor.shape)}, config expects {tuple(wanted[name].shape)}"
            )
    return state


def load_checkpoint_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer a checkpoint was trained with: its own tokenizer.json, else bytes."""
    step_dir = resolve_checkpoint(path)
    if (step_dir / TOKENIZER_FILE).exists():
        return BPETokenizer(step_dir)
    info = _read_config(step_dir).get("tokenizer") or {}
    name = info.get("name", "bytes") if isinstance(info, dict) else str(info)
    if name == "bytes":
        return ByteTokenizer()
    source = info.get("source") if isinstance(info, dict) else None
    if source and Path(source).exists():
        return load_tokenizer(source)
    raise InputError(f"{step_dir}: trained with tokenizer {name!r} but holds no {TOKENIZER_FILE}")
