"""``curate pipeline``: every stage from raw crawl to an RLHF-tuned model, in one resumable run.

The pipeline is a fixed sequence of stages; each writes its own folder under the work
directory and calls the same library function as its stand-alone command::

    crawl -> filter -> dedup -> tokenizer -> mix -> pretrain -> sft -> reward -> rlhf

A stage that completed is recorded in ``WORKDIR/.pipeline/<stage>.json`` with a fingerprint of
its settings and of the stages before it (see :mod:`curate.workflow.state`). A rerun skips
stages whose fingerprint is unchanged, resumes an interrupted stage (every stage resumes on its
own), and redoes a stage, and all after it, whose settings changed. ``until`` / ``from_stage``
run part of the sequence; ``from_stage`` first checks that the stages before it completed with
their current settings. ``overwrite`` deletes the stages in range and redoes them from scratch.

In the config, string values may use ``{workdir}`` and ``{stage}`` placeholders, e.g.
``paths = ["{dedup}"]`` for the dedup stage's output folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.config import ConfigError, load_toml
from curate.core.errors import CurateError
from curate.core.files import atomic_write_json
from curate.core.manifest import load_manifest
from curate.workflow.state import (
    check_earlier_stages,
    clear_stages,
    fingerprint,
    forget_stages,
    lock_path,
    overwrite_targets,
    pipeline_hint,
    read_marker,
    referenced_files,
    workdir_lock,
    write_marker,
)

STAGES = ["crawl", "filter", "dedup", "tokenizer", "mix", "pretrain", "sft", "reward", "rlhf"]
OUTPUT_DIRS = {
    "crawl": "crawl",
    "filter": "filter",
    "dedup": "dedup",
    "tokenizer": "tokenizer",
    "mix": "mix",
    "pretrain": "ckpt/base",
    "sft": "ckpt/sft",
    "reward": "ckpt/rm",
    "rlhf": "ckpt/rlhf",
}
TOP_KEYS = {"workdir", "workers", "seed"}
CRAWL_KEYS = {"inputs", "config", "set"}
FILTER_KEYS = {"config", "annotate"}
TOKENIZER_KEYS = {"inputs", "vocab_size", "max_docs", "max_chars", "min_frequency"}


@dataclass
class TokenizerStage:
    """The [tokenizer] table: what to train the pipeline's BPE on, and how big."""

    inputs: list[str] = field(default_factory=list)  # default: the dedup stage's output
    vocab_size: int = 8192
    min_frequency: int = 2
    max_docs: int | None = None
    max_chars: int | None = None

    def validate(self) -> TokenizerStage:
        from curate.core.tokenizer import SPECIAL_TOKENS

        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ConfigError(
                f"[tokenizer]: vocab_size must be at least {256 + len(SPECIAL_TOKENS)}, got {self.vocab_size}"
            )
        for name in ("min_frequency", "max_docs", "max_chars"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"[tokenizer]: {name} must be at least 1, got {value}")
        return self


@dataclass
class StageOutcome:
    """What a stage reports for the summary table."""

    stage: str
    output: str
    status: str  # "ran" | "skipped"
    seconds: float = 0.0
    docs: int | None = None
    tokens: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "output": self.output,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "docs": self.docs,
            "tokens": self.tokens,
            "notes": self.notes,
        }


@dataclass
class Pipeline:
    """A loaded pipeline config: per-stage tables plus the work directory."""

    workdir: Path
    stages: dict[str, dict[str, Any]]
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # before placeholder expansion
    workers: int = 1
    seed: int = 0
    source: str = "pipeline config"

    def out(self, stage: str) -> Path:
        return self.workdir / OUTPUT_DIRS[stage]


def load_pipeline(path: str | os.PathLike, workdir: str | None = None, workers: int | None = None) -> Pipeline:
    """Read a pipeline TOML; unknown top-level tables or keys are errors naming what exists."""
    data = load_toml(path)
    where = str(path)
    unknown = sorted(set(data) - TOP_KEYS - set(STAGES))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(TOP_KEYS))} and stage tables "
            f"[{'], ['.join(STAGES)}]"
        )
    missing = [s for s in STAGES if s not in data]
    if missing:
        raise ConfigError(f"{where}: missing stage table(s) [{'], ['.join(missing)}]")
    for key, kind in (("workdir", str), ("workers", int), ("seed", int)):
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise ConfigError(
                f"{where}: {key} must be {'a string' if kind is str else 'an integer'}, got {data[key]!r}"
            )
    if data.get("workers", 1) < 1:
        raise ConfigError(f"{where}: workers must be at least 1")
    wd = Path(workdir or data.get("workdir", "work"))
    n_workers = workers or int(data.get("workers", 0)) or _cores()
    placeholders = {"workdir": str(wd), **{s: str(wd / OUTPUT_DIRS[s]) for s in STAGES}}
    stages = {s: _expand(data[s], placeholders, f"{where}[{s}]") for s in STAGES}
    raw = {s: data[s] for s in STAGES}
    pipe = Pipeline(workdir=wd, stages=stages, raw=raw, workers=n_workers, seed=int(data.get("seed", 0)), source=where)
    check_pipeline(pipe)
    return pipe


def check_pipeline(pipe: Pipeline) -> None:
    """Build every stage's settings up front, so a typo in [rlhf] fails before the crawl starts."""
    from curate.core.config import deep_merge, from_dict
    from curate.stages.crawl import load_config as load_crawl_config
    from curate.stages.dedup.run import DedupConfig
    from curate.stages.filter.chain import load_chain_config
    from curate.stages.mix.run import load_mix_config

    crawl = _take(pipe.stages["crawl"], CRAWL_KEYS, "crawl")
    load_crawl_config(crawl.get("config"), _crawl_overrides(crawl))
    from filters.registry import build_chain

    build_chain(load_chain_config(_take(pipe.stages["filter"], FILTER_KEYS, "filter").get("config")))
    from_dict(
        TokenizerStage, _take(pipe.stages["tokenizer"], TOKENIZER_KEYS, "tokenizer"), where="[tokenizer]"
    ).validate()
    dedup = {k: v for k, v in pipe.stages["dedup"].items() if k != "memory_gb"}
    from_dict(DedupConfig, dedup, where="[dedup]").validate()
    mix = dict(pipe.stages["mix"])
    load_mix_config(mix.pop("config", None), {**mix, "output": str(pipe.out("mix"))})
    from train.pretrain import PretrainConfig
    from train.reward import RewardConfig
    from train.rlhf import RLHFConfig
    from train.sft import SFTConfig

    pre = dict(pipe.stages["pretrain"])
    config_path = pre.pop("config", None)
    pretrain_cfg = from_dict(
        PretrainConfig, deep_merge(load_toml(config_path) if config_path else {}, pre), where="[pretrain]"
    )
    pretrain_cfg.validate()
    pretrain_cfg.model.build(vocab_size=256)
    for stage, cls, key in (
        ("sft", SFTConfig, "data"),
        ("reward", RewardConfig, "data"),
        ("rlhf", RLHFConfig, "prompts"),
    ):
        _align_config(cls, pipe.stages[stage], stage, pipe, key)[0].validate()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _expand(value: Any, placeholders: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        try:
            return value.format(**placeholders)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{where}: bad placeholder in {value!r} ({exc}); known: {', '.join(placeholders)}"
            ) from None
    if isinstance(value, list):
        return [_expand(v, placeholders, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, placeholders, where) for k, v in value.items()}
    return value


def _crawl_overrides(table: dict[str, Any]) -> dict[str, Any] | None:
    """``set`` as a table ({extract = {mode = "full"}}) or as --set strings (["extract.mode=full"])."""
    from curate.core.config import parse_set

    value = table.get("set")
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return parse_set(value)
    raise ConfigError(f"[crawl]: set must be a table or a list of KEY=VALUE strings, got {value!r}")


def _take(table: dict[str, Any], allowed: set[str], stage: str) -> dict[str, Any]:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"[{stage}]: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(allowed))}")
    return table


# Kept under their old names: tests and callers use them.
_referenced_files = referenced_files
_fingerprint = fingerprint
_workdir_lock = workdir_lock


# --------------------------------------------------------------------------- stage runners
# Each takes the pipeline, whether to start the stage over, and a log function, and returns
# the notes for the summary table. They call the library functions the CLI commands call.


def _run_crawl(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext
    from curate.stages import crawl

    t = _take(pipe.stages["crawl"], CRAWL_KEYS, "crawl")
    if not t.get("inputs"):
        raise ConfigError("[crawl]: 'inputs' (WARC files or directories) is required")
    cfg = crawl.load_config(t.get("config"), _crawl_overrides(t))
    ctx = StageContext(t["inputs"], str(pipe.out("crawl")), Executor("local", pipe.workers), overwrite=overwrite)
    manifest = crawl.run(cfg, ctx)
    if manifest.get("inputs_failed"):
        raise CurateError(
            f"crawl: {manifest['inputs_failed']} input(s) could not be read (see {pipe.out('crawl')}/manifest.json)", 1
        )
    return {}


def _run_filter(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext
    from curate.stages import filter as filter_stage

    t = _take(pipe.stages["filter"], FILTER_KEYS, "filter")
    cfg = filter_stage.load_config(t.get("config"), annotate=bool(t.get("annotate", False)))
    ctx = StageContext(
        [str(pipe.out("crawl"))], str(pipe.out("filter")), Executor("local", pipe.workers), overwrite=overwrite
    )
    filter_stage.run(cfg, ctx)
    return {}


def _run_dedup(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.core.config import from_dict
    from curate.stages.dedup.run import DedupConfig, run_dedup

    t = dict(pipe.stages["dedup"])
    memory = t.pop("memory_gb", 2)
    cfg = from_dict(DedupConfig, t, where="[dedup]").validate()
    run_dedup(
        [str(pipe.out("filter"))],
        str(pipe.out("dedup")),
        cfg,
        workers=pipe.workers,
        memory_bytes=int(float(memory) * 1024**3),
        overwrite=overwrite,
        progress=True,
    )
    return {}


def _run_tokenizer(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.core.config import from_dict
    from curate.core.tokenizer import train_from_paths

    t = from_dict(TokenizerStage, pipe.stages["tokenizer"], where="[tokenizer]").validate()
    info = train_from_paths(
        t.inputs or [str(pipe.out("dedup"))],
        pipe.out("tokenizer"),
        vocab_size=t.vocab_size,
        min_frequency=t.min_frequency,
        max_docs=t.max_docs,
        max_chars=t.max_chars,
    )
    return {"vocab_size": info.get("vocab_size") if isinstance(info, dict) else None}


def _run_mix(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.stages.mix.run import load_mix_config, run_mix

    t = dict(pipe.stages["mix"])
    config_path = t.pop("config", None)
    t.setdefault("tokenizer", str(pipe.out("tokenizer")))
    t.setdefault("seed", pipe.seed)
    t["output"] = str(pipe.out("mix"))
    cfg = load_mix_config(config_path, t)
    manifest = run_mix(cfg, str(pipe.out("mix")), overwrite=overwrite, progress=True, log=log)
    cutoff = manifest.get("training_cutoff") or {}
    return {"training_cutoff": cutoff.get("max"), "cutoff_p99": cutoff.get("p99")}


def _run_pretrain(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from curate.core.config import deep_merge, from_dict
    from train.pretrain import PretrainConfig, pretrain

    t = dict(pipe.stages["pretrain"])
    config_path = t.pop("config", None)
    data = load_toml(config_path) if config_path else {}
    data = deep_merge(data, t)
    cfg = from_dict(PretrainConfig, data, where="[pretrain]")
    result = pretrain(
        cfg,
        pipe.out("mix"),
        pipe.out("pretrain"),
        tokenizer=str(pipe.out("tokenizer")),
        overwrite=overwrite,
        progress=True,
        on_message=log,
    )
    return {
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
        "val_loss": result.val_loss,
        "steps": result.step,
        "tokens_seen": result.tokens_seen,
        "_stopped": result.status == "stopped",
    }


def _align_config(cls: type, table: dict[str, Any], stage: str, pipe: Pipeline, data_key: str) -> tuple[Any, str]:
    from curate.core.config import from_dict

    t = dict(table)
    data = t.pop(data_key, None)
    if not data:
        raise ConfigError(f"[{stage}]: {data_key!r} is required")
    t.setdefault("seed", pipe.seed)
    return from_dict(cls, t, where=f"[{stage}]"), data


def _metrics(result: Any, keys: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Pick named metrics from a StageResult: note name -> (attribute, metric key)."""
    notes: dict[str, Any] = {"_stopped": result.status == "stopped"}
    for note, (attr, key) in keys.items():
        value = getattr(result, attr, {}).get(key)
        if value is not None:
            notes[note] = value
    return notes


def _run_sft(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from train.sft import SFTConfig, sft

    cfg, data = _align_config(SFTConfig, pipe.stages["sft"], "sft", pipe, "data")
    result = sft(cfg, pipe.out("pretrain"), data, pipe.out("sft"), overwrite=overwrite, progress=True, on_message=log)
    return _metrics(
        result, {"first_loss": ("first", "loss"), "last_loss": ("last", "loss"), "val_loss": ("eval", "val_loss")}
    )


def _run_reward(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from train.reward import RewardConfig, train_reward

    cfg, data = _align_config(RewardConfig, pipe.stages["reward"], "reward", pipe, "data")
    result = train_reward(
        cfg, pipe.out("sft"), data, pipe.out("reward"), overwrite=overwrite, progress=True, on_message=log
    )
    return _metrics(
        result,
        {
            "final_loss": ("last", "loss"),
            "val_accuracy_before": ("first_eval", "val_accuracy"),
            "val_accuracy": ("eval", "val_accuracy"),
        },
    )


def _run_rlhf(pipe: Pipeline, overwrite: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from train.rlhf import RLHFConfig, rlhf

    cfg, prompts = _align_config(RLHFConfig, pipe.stages["rlhf"], "rlhf", pipe, "prompts")
    result = rlhf(
        cfg,
        pipe.out("sft"),
        prompts,
        pipe.out("rlhf"),
        reward=pipe.out("reward"),
        overwrite=overwrite,
        progress=True,
        on_message=log,
    )
    return _metrics(
        result,
        {"reward_before": ("first_eval", "val_score"), "reward_after": ("eval", "val_score"), "kl": ("eval", "val_kl")},
    )


RUNNERS: dict[str, Callable[[Pipeline, bool, Callable[[str], None]], dict[str, Any]]] = {
    "crawl": _run_crawl,
    "filter": _run_filter,
    "dedup": _run_dedup,
    "tokenizer": _run_tokenizer,
    "mix": _run_mix,
    "pretrain": _run_pretrain,
    "sft": _run_sft,
    "reward": _run_reward,
    "rlhf": _run_rlhf,
}


def _data_counts(pipe: Pipeline, stage: str) -> tuple[int | None, int | None]:
    """Documents and tokens (with the pipeline's tokenizer, when trained) in a data stage's output."""
    manifest = load_manifest(pipe.out(stage))
    if not manifest:
        return None, None
    docs = manifest.get("counts", {}).get("kept")
    if stage == "mix":
        return docs, manifest["tokens"]["realized"]
    return docs, _count_tokens(pipe, pipe.out(stage))


def _count_tokens(pipe: Pipeline, directory: Path) -> int | None:
    from curate.core.shards import expand_parquet_inputs, read_tables
    from curate.core.tokenizer import TOKENIZER_FILE, load_tokenizer

    if not (pipe.out("tokenizer") / TOKENIZER_FILE).exists():
        return None
    tok = load_tokenizer(pipe.out("tokenizer"))
    total = 0
    for path in expand_parquet_inputs([str(directory)]):
        for table in read_tables(path, columns=["text"]):
            total += sum(tok.count(table.column("text").to_pylist()))
    return total


def run_pipeline(
    pipe: Pipeline,
    *,
    until: str | None = None,
    from_stage: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[StageOutcome]:
    """Run the stages in order (resuming), returning one outcome per stage that was in range.

    ``from_stage``: the stages before it must have completed with the settings they have now
    (checked before anything is created or deleted). ``overwrite``: the stages in range are
    deleted (folder and marker) and redone from scratch, even when up to date."""
    for name, value in (("--until", until), ("--from", from_stage)):
        if value is not None and value not in STAGES:
            raise ConfigError(f"{name} {value!r}: unknown stage; stages: {', '.join(STAGES)}")
    first = STAGES.index(from_stage) if from_stage else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise ConfigError(f"--from {from_stage} comes after --until {until}")
    if not lock_path(pipe.workdir).exists():
        # A new work directory: check before creating it, so that a failed check leaves no trace.
        _preflight(pipe, first, last, from_stage, overwrite)
        pipe.workdir.mkdir(parents=True, exist_ok=True)
    with workdir_lock(pipe.workdir):
        # (Again) under the lock: another run may have changed the markers meanwhile.
        upstream = _preflight(pipe, first, last, from_stage, overwrite)
        if overwrite:
            clear_stages(pipe, STAGES[first : last + 1], log)
            # A redone stage keeps its fingerprint (the settings did not change), so the stages
            # after the range would still look up to date while built on the old output: mark
            # them out of date, so the next run that reaches them redoes them.
            forget_stages(pipe, STAGES[last + 1 :], log)
        return _run_locked(pipe, first, last, upstream, log)


def _preflight(pipe: Pipeline, first: int, last: int, from_stage: str | None, overwrite: bool) -> str:
    """The read-only checks: earlier stages for --from, deletable folders for --overwrite.
    Returns the fingerprint the first stage in range builds on."""
    upstream = check_earlier_stages(pipe, STAGES[:first], from_stage) if from_stage else ""
    if overwrite:
        overwrite_targets(pipe, STAGES[first : last + 1])
    return upstream


def _run_locked(pipe: Pipeline, first: int, last: int, upstream: str, log: Callable[[str], None]) -> list[StageOutcome]:
    outcomes: list[StageOutcome] = []
    invalidated = False
    for stage in STAGES[first : last + 1]:
        fp = fingerprint(pipe, stage, upstream)
        upstream = fp
        previous = read_marker(pipe.workdir, stage)
        if previous and previous.get("fingerprint") == fp and not invalidated:
            outcome = StageOutcome(stage, str(pipe.out(stage)), "skipped", notes=previous.get("notes", {}))
            log(f"[{stage}] up to date in {pipe.out(stage)}")
        else:
            # Changed settings (or a changed stage upstream) mean the old output is stale.
            overwrite = previous is not None or invalidated
            invalidated = invalidated or overwrite
            log(f"[{stage}] running -> {pipe.out(stage)}")
            started = time.monotonic()
            try:
                notes = RUNNERS[stage](pipe, overwrite, log)
            except CurateError as exc:
                rerun = f"--overwrite --from {stage}" + (f" --until {STAGES[last]}" if last < len(STAGES) - 1 else "")
                hinted = pipeline_hint(exc, stage, rerun)
                if hinted is exc:
                    raise
                raise hinted from exc
            if notes.pop("_stopped", False):
                # Ctrl-C / SIGTERM: the stage checkpointed and stopped early; no completion
                # marker, so the next run resumes it.
                raise CurateError(f"pipeline interrupted during {stage}; rerun the same command to resume", 130)
            outcome = StageOutcome(stage, str(pipe.out(stage)), "ran", time.monotonic() - started, notes=notes)
            write_marker(pipe.workdir, stage, fp, notes, outcome.seconds)
        outcomes.append(outcome)
    # Counted at the end, so that tokens of the early stages use the tokenizer trained later.
    for outcome in outcomes:
        if outcome.stage in ("crawl", "filter", "dedup", "mix"):
            outcome.docs, outcome.tokens = _data_counts(pipe, outcome.stage)
    atomic_write_json(pipe.workdir / ".pipeline" / "summary.json", [o.to_json() for o in outcomes])
    return outcomes


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


_NOTE_LABELS = {
    "first_loss": "loss",
    "last_loss": "->",
    "final_loss": "loss",
    "val_loss": "val loss",
    "val_accuracy": "held-out acc",
    "val_accuracy_before": "acc before",
    "reward_before": "reward",
    "reward_after": "->",
    "kl": "KL",
    "vocab_size": "vocab",
    "training_cutoff": "cutoff",
}


def format_summary(pipe: Pipeline, outcomes: list[StageOutcome]) -> str:
    """The table printed at the end of a pipeline run."""
    header = ("stage", "status", "time", "docs", "tokens", "result")
    rows = [header]
    for o in outcomes:
        notes = "  ".join(
            f"{_NOTE_LABELS.get(k, k)} {_fmt(v)}"
            for k, v in o.notes.items()
            if k in _NOTE_LABELS and k != "training_cutoff"
        )
        rows.append(
            (o.stage, o.status, f"{o.seconds:.0f}s" if o.status == "ran" else "-", _fmt(o.docs), _fmt(o.tokens), notes)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["", "  ".join(c.ljust(w) for c, w in zip(rows[0][:-1], widths)) + "  " + rows[0][-1]]
    lines.append("-" * (sum(widths) + 2 * len(widths) + 30))
    for r in rows[1:]:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 or i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r[:-1], widths)))
            + "  "
            + r[-1]
        )
    by = {o.stage: o for o in outcomes}
    if "mix" in by and by["mix"].notes.get("training_cutoff"):
        n = by["mix"].notes
        lines.append(
            f"\ntraining cutoff: {n['training_cutoff']} (99th percentile of document dates: {n.get('cutoff_p99')})"
        )
    if "reward" in by and "val_accuracy" in by["reward"].notes:
        lines.append(f"reward model held-out accuracy: {by['reward'].notes['val_accuracy']:.1%}")
    if "rlhf" in by and "reward_after" in by["rlhf"].notes:
        n = by["rlhf"].notes
        lines.append(
            f"mean reward on held-out prompts: {_fmt(n.get('reward_before'))} before RLHF -> {_fmt(n['reward_after'])} after"
        )
    model_stage = next((s for s in ("rlhf", "sft", "pretrain") if s in by), None)
    if model_stage:
        chat = " --chat" if model_stage != "pretrain" else ""
        lines.append(f'\ntry it:  curate generate {pipe.out(model_stage)} "What is the capital of France?"{chat}')
    return "\n".join(lines)
