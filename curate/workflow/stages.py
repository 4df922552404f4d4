"""The stages of ``curate pipeline``, one :class:`Stage` record each, in order.

A record names the stage, its folder under the work directory, and two functions: ``build``
turns the stage's table into its settings (the same config objects its own command builds; a
typo or a bad value is a ConfigError naming the table) and ``run`` runs the stage with those
settings and returns the notes for the summary table. :func:`curate.workflow.run.load_pipeline`
builds every stage before anything runs, so a typo in ``[rlhf]`` fails before the crawl, and
the run uses exactly what was checked.

The last stage, ``eval``, is optional: it runs only when the file has an ``[eval]`` table (see
:func:`_build_eval`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from curate.core.config import deep_merge, from_dict, load_toml, parse_set
from curate.core.errors import ConfigError, CurateError
from curate.core.files import atomic_write_json
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.workflow.align_stages import (
    align_builder,
    build_reward,
    build_rlhf,
    model_dir,
    run_reward,
    run_rlhf,
    run_sft,
    sft_config,
)
from curate.workflow.config import Pipeline, take

Log = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    name: str
    output: str  # its folder, relative to the work directory
    build: Callable[[Pipeline], Any]  # its settings, from its table
    run: Callable[[Pipeline, Any, bool, Log], dict[str, Any]]  # (pipe, settings, overwrite, log) -> notes
    paths: tuple[str, ...] = ()  # keys of its table that hold paths (relative to the pipeline file)
    # What else decides whether its output is current, read when its turn comes (after the
    # stages before it ran) and kept in its fingerprint: eval's is the checkpoint it scores.
    identity: Callable[[Pipeline, Any], Any] | None = None


def _context(pipe: Pipeline, stage: str, inputs: list[str], overwrite: bool, log: Log = print) -> StageContext:
    executor = Executor(pipe.engine, pipe.workers, ray_address=pipe.ray_address)
    return StageContext(inputs, str(pipe.out(stage)), executor, overwrite=overwrite, log=log)


# --------------------------------------------------------------------------- data stages


def _crawl_overrides(table: dict[str, Any]) -> dict[str, Any] | None:
    """``set`` as a table ({extract = {mode = "full"}}) or as --set strings (["extract.mode=full"])."""
    value = table.get("set")
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return parse_set(value)
    raise ConfigError(f"[crawl]: set must be a table or a list of KEY=VALUE strings, got {value!r}")


def _build_crawl(pipe: Pipeline) -> tuple[Any, list[str]]:
    from curate.stages import crawl

    t = take(pipe.tables["crawl"], {"inputs", "config", "set"}, "crawl")
    config = crawl.load_config(t.get("config"), _crawl_overrides(t))
    if not t.get("inputs"):
        raise ConfigError("[crawl]: 'inputs' (WARC files or directories) is required")
    return config, list(t["inputs"])


def _run_crawl(pipe: Pipeline, built: tuple[Any, list[str]], overwrite: bool, log: Log) -> dict[str, Any]:
    from curate.stages import crawl

    config, inputs = built
    manifest = crawl.run(config, _context(pipe, "crawl", inputs, overwrite))
    if manifest.get("inputs_failed"):
        raise CurateError(
            f"crawl: {manifest['inputs_failed']} input(s) could not be read (see {pipe.out('crawl')}/manifest.json)", 1
        )
    return {}


def _build_filter(pipe: Pipeline) -> Any:
    from curate.stages import filter as filter_stage
    from filters.registry import build_chain

    t = take(pipe.tables["filter"], {"config", "annotate"}, "filter")
    config = filter_stage.load_config(t.get("config"), annotate=bool(t.get("annotate", False)))
    build_chain(config.chain)  # every filter and parameter checked now
    return config


def _run_filter(pipe: Pipeline, config: Any, overwrite: bool, log: Log) -> dict[str, Any]:
    from curate.stages import filter as filter_stage

    filter_stage.run(config, _context(pipe, "filter", [str(pipe.out("crawl"))], overwrite))
    return {}


# The pipeline's [dedup] memory_gb default: 2 GiB, where `curate dedup` defaults to
# DEFAULT_MEMORY_GB (4 GiB). Kept so that the pipeline's outputs did not change in the
# restructuring (only the manifest's memory figures would); see the README's configuration notes.
PIPELINE_DEDUP_MEMORY_GB = 2.0


def _build_dedup(pipe: Pipeline) -> tuple[Any, int]:
    from curate.stages import dedup

    t = dict(pipe.tables["dedup"])
    memory_gb = t.pop("memory_gb", PIPELINE_DEDUP_MEMORY_GB)
    return from_dict(dedup.DedupConfig, t, where="[dedup]").validate(), int(float(memory_gb) * 1024**3)


def _run_dedup(pipe: Pipeline, built: tuple[Any, int], overwrite: bool, log: Log) -> dict[str, Any]:
    from curate.stages import dedup

    config, memory_bytes = built
    ctx = _context(pipe, "dedup", [str(pipe.out("filter"))], overwrite)
    ctx.memory_bytes = memory_bytes
    dedup.run(config, ctx)
    return {}


def _build_tokenizer(pipe: Pipeline) -> tuple[Any, list[str]]:
    from curate.stages import tokenize

    t = dict(
        take(
            pipe.tables["tokenizer"],
            {"inputs", "vocab_size", "max_docs", "max_chars", "min_frequency", "seed"},
            "tokenizer",
        )
    )
    inputs = t.pop("inputs", None) or [str(pipe.out("dedup"))]
    # The pipeline's defaults: a smaller vocabulary than the command's, and no character cap.
    t.setdefault("vocab_size", 8192)
    t.setdefault("max_chars", None)
    return from_dict(tokenize.TokenizeConfig, t, where="[tokenizer]").validate(), list(inputs)


def _run_tokenizer(pipe: Pipeline, built: tuple[Any, list[str]], overwrite: bool, log: Log) -> dict[str, Any]:
    from curate.stages import tokenize

    config, inputs = built
    info = tokenize.run(config, _context(pipe, "tokenizer", inputs, overwrite))
    return {"vocab_size": info.get("vocab_size")}


def _build_mix(pipe: Pipeline) -> Any:
    from curate.stages import mix

    t = dict(pipe.tables["mix"])
    config_path = t.pop("config", None)
    t.setdefault("tokenizer", str(pipe.out("tokenizer")))
    t.setdefault("seed", pipe.seed)
    t["output"] = str(pipe.out("mix"))
    return mix.load_mix_config(config_path, t)


def _run_mix(pipe: Pipeline, config: Any, overwrite: bool, log: Log) -> dict[str, Any]:
    from curate.stages import mix

    manifest = mix.run(config, _context(pipe, "mix", [], overwrite, log))
    cutoff = manifest.get("training_cutoff") or {}
    return {"training_cutoff": cutoff.get("max"), "cutoff_p99": cutoff.get("p99")}


# --------------------------------------------------------------------------- training stages


def _build_pretrain(pipe: Pipeline) -> Any:
    from train.pretrain import PretrainConfig

    t = dict(pipe.tables["pretrain"])
    config_path = t.pop("config", None)
    data = deep_merge(load_toml(config_path) if config_path else {}, t)
    config = from_dict(PretrainConfig, data, where="[pretrain]")
    config.validate()
    config.model.build(vocab_size=256)  # the model settings are checked too
    return config


def _run_pretrain(pipe: Pipeline, config: Any, overwrite: bool, log: Log) -> dict[str, Any]:
    from train.pretrain import pretrain

    result = pretrain(
        config,
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


# --------------------------------------------------------------------------- evaluation

EVAL_MODELS = ("pretrain", "sft", "rlhf")  # the stages whose output is a language model
EVAL_DEFAULT_MODEL = "rlhf"  # the pipeline's final model


def _build_eval(pipe: Pipeline) -> tuple[Any, str]:
    """``[eval]``: curate eval's settings (every key of ``EvalConfig``, the command's defaults)
    plus ``checkpoint``, the stage whose model is scored: the final model (``rlhf``) unless it
    names ``pretrain`` or ``sft``."""
    from train.eval import EvalConfig

    t = dict(take(pipe.tables["eval"], {f.name for f in fields(EvalConfig)} | {"checkpoint"}, "eval"))
    model = t.pop("checkpoint", EVAL_DEFAULT_MODEL)
    if model not in EVAL_MODELS:
        why = " (a reward model scores, it does not predict text)" if model == "reward" else ""
        raise ConfigError(
            f"[eval]: checkpoint must name the stage whose model to score, one of {', '.join(EVAL_MODELS)}; "
            f"got {model!r}{why}"
        )
    config = from_dict(EvalConfig, t, where="[eval]")  # ranges checked there
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"[eval]: {str(exc).removeprefix('eval: ')}") from None
    return config, model


def checkpoint_identity(path: Any) -> dict[str, Any] | None:
    """What an evaluation of the model at ``path`` (a run or step folder) depends on: its step
    folder and the sha256 of its weights (so a model retrained by hand is scored again); None
    when there is no checkpoint yet. Used by the eval stage and by ``curate ablate``."""
    from curate.core.files import sha256_file
    from train.checkpoint import WEIGHTS_FILE, resolve_checkpoint

    try:
        step = resolve_checkpoint(path)
        return {"step": step.name, "weights_sha256": sha256_file(step / WEIGHTS_FILE)}
    except (CurateError, OSError):
        return None


def _eval_identity(pipe: Pipeline, built: tuple[Any, str]) -> dict[str, Any] | None:
    """The checkpoint the eval scores (None when there is none yet: the run then says why)."""
    return checkpoint_identity(model_dir(pipe, built[1]))


def _run_eval(pipe: Pipeline, built: tuple[Any, str], overwrite: bool, log: Log) -> dict[str, Any]:
    """curate eval on the model of ``built[1]``: ``eval.json`` in its step folder (as the
    command writes it, for ``curate inspect`` and ``report``) and a copy in the eval folder,
    the stage's output. Returns the scores for the summary table."""
    from train.eval import EVAL_FILE, run_eval

    config, model = built
    results = run_eval(model_dir(pipe, model), config, note=lambda line: log(f"[eval] {line}"))
    atomic_write_json(pipe.out("eval") / EVAL_FILE, results)
    return eval_notes(results, model)


def eval_notes(results: dict[str, Any], model: str) -> dict[str, Any]:
    """What the summary shows of an eval: CORE, each task's centered accuracy, bits per byte per
    held-out source (and over all of them) and per ``text``."""
    held = results.get("bpb") or {}
    settings = results.get("settings") or {}
    return {
        "model": model,
        "checkpoint": (results.get("checkpoint") or {}).get("path"),
        "shots": settings.get("shots"),
        "limit": settings.get("limit"),
        "core": (results.get("core") or {}).get("centered_mean"),
        "centered": {name: r.get("centered") for name, r in (results.get("tasks") or {}).items()},
        "bpb": {name: r.get("bpb") for name, r in (held.get("sources") or {}).items()},
        "bpb_all": (held.get("all") or {}).get("bpb"),
        "text_bpb": {name: r.get("bpb") for name, r in (results.get("text_bpb") or {}).items()},
        "file": results.get("file"),
    }


STAGES: list[Stage] = [
    Stage("crawl", "crawl", _build_crawl, _run_crawl, ("inputs", "config")),
    Stage("filter", "filter", _build_filter, _run_filter, ("config",)),
    Stage("dedup", "dedup", _build_dedup, _run_dedup),
    Stage("tokenizer", "tokenizer", _build_tokenizer, _run_tokenizer, ("inputs",)),
    Stage("mix", "mix", _build_mix, _run_mix, ("config", "tokenizer", "sources.paths")),
    Stage("pretrain", "ckpt/base", _build_pretrain, _run_pretrain, ("config",)),
    Stage("sft", "ckpt/sft", align_builder("sft", sft_config, "data"), run_sft, ("data",)),
    Stage("reward", "ckpt/rm", build_reward, run_reward, ("data",)),
    Stage("rlhf", "ckpt/rlhf", build_rlhf, run_rlhf, ("prompts",)),
    # Optional (config.OPTIONAL_TABLES): only with an [eval] table. ``text`` holds [NAME=]PATH
    # entries, ``tasks`` bundled names and task files.
    Stage("eval", "eval", _build_eval, _run_eval, ("mix", "text=", "tasks,"), identity=_eval_identity),
]
STAGE_NAMES = [s.name for s in STAGES]
OUTPUT_DIRS = {s.name: s.output for s in STAGES}
PATH_KEYS = {s.name: s.paths for s in STAGES}


def kept_as_written(value: str) -> bool:
    """Values of path keys that are not local paths: URLs and Common Crawl snapshot names."""
    from curate.stages.crawl.sources import SNAPSHOT_RE, is_url

    return is_url(value) or bool(SNAPSHOT_RE.match(value))
