"""``curate ablate``: does a change to the data recipe make a better model?

An ablation file names a base pipeline and variants of it, each overriding any stage keys (a
filter chain, a dedup threshold, mix weights)::

    base = "pipeline.toml"          # paths here are relative to this file
    seeds = [0, 1]                  # the base is trained with every one of these
    variant_seeds = [0]             # each variant with these
    [proxy]                         # the proxy model: [pretrain] keys, the same for every run
    max_steps = 300
    [eval]                          # curate eval's settings for every proxy
    tasks = "core"
    limit = 100
    [[variants]]
    name = "stricter-dedup"
    set = { dedup = { threshold = 0.7 } }

For every variant the data stages run (crawl -> filter -> dedup -> tokenizer -> mix) into
folders named by the stage's fingerprint (its settings, the files they name, the seed and the
stage before: :func:`curate.workflow.state.fingerprint`), so a stage a variant leaves unchanged
is the base's folder, never recomputed. Then one proxy model per seed is pretrained on the
variant's mix and evaluated (benchmark tasks and held-out bits per byte per source). The
comparison (:mod:`curate.workflow.ablate_report`) shows each metric per variant beside the
base's seed-to-seed spread, so a difference can be told from noise. Every step resumes: a rerun
skips what is done. Layout of the work directory::

    stages/<stage>-<fingerprint>/      data stage outputs, shared between variants
    runs/<variant>/seed-<s>-<fp>/      proxy checkpoints, each with its eval.json
    ablation.json, ablation.html       the comparison
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.config import deep_merge, load_toml, resolve_path
from curate.core.errors import ConfigError
from curate.core.files import atomic_write_json
from curate.runtime.executor import default_workers
from curate.workflow.config import Pipeline, check_pipeline_data, pipeline_from_tables, resolve_tables
from curate.workflow.stages import OUTPUT_DIRS, PATH_KEYS, STAGES, checkpoint_identity, kept_as_written
from curate.workflow.state import fingerprint

DATA_STAGES = ("crawl", "filter", "dedup", "tokenizer", "mix")
ABLATE_KEYS = {"base", "workdir", "workers", "seeds", "variant_seeds", "proxy", "eval", "variants"}
VARIANT_KEYS = {"name", "set", "seeds"}
BASE_NAME = "base"
BY_NAME = {s.name: s for s in STAGES}
Log = Callable[[str], None]


@dataclass
class Variant:
    """The base pipeline with one variant's overrides, its stages at content-addressed folders."""

    name: str
    seeds: list[int]
    pipe: Pipeline
    changes: dict[str, Any] = field(default_factory=dict)  # the stage keys it overrides, as written
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass
class Ablation:
    source: str
    workdir: Path
    variants: list[Variant]  # the base first
    proxy: dict[str, Any]
    eval: dict[str, Any]  # the [eval] table as written (paths resolved)
    eval_config: Any = None  # train.eval.EvalConfig built from it, once


# --------------------------------------------------------------------------- loading


def load_ablation(path: str | os.PathLike, workdir: str | None = None, workers: int | None = None) -> Ablation:
    """Read an ablation file and build every variant's pipeline (each stage's settings checked
    now, before anything runs)."""
    data = load_toml(path)
    where, here = str(path), os.path.dirname(str(path))
    unknown = sorted(set(data) - ABLATE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(ABLATE_KEYS))}")
    if "base" not in data:
        raise ConfigError(f"{where}: 'base' (the pipeline file the variants change) is required")
    base_path = resolve_path(data["base"], here)
    base_raw = load_toml(base_path)
    # The post-training tables play no part in an ablation: a base may leave them out.
    check_pipeline_data(base_raw, base_path, list(OUTPUT_DIRS), optional=set(OUTPUT_DIRS) - {*DATA_STAGES, "pretrain"})
    base_resolved = resolve_tables(base_raw, os.path.dirname(base_path), PATH_KEYS, kept_as_written)
    if workdir:
        root = Path(workdir)  # the command line's: relative to the current directory
    else:
        root = Path(resolve_path(data["workdir"], here)) if "workdir" in data else Path("work-ablate")
    seeds = _seeds(data.get("seeds", [0, 1]), f"{where}: seeds", minimum=2)
    variant_seeds = _seeds(data.get("variant_seeds", seeds[:1]), f"{where}: variant_seeds", minimum=1)
    n_workers = workers or int(data.get("workers", 0)) or default_workers()
    specs = [{"name": BASE_NAME, "set": {}, "seeds": seeds}, *_variant_specs(data.get("variants", []), where)]
    variants = []
    for spec in specs:
        raw = deep_merge(base_raw, spec["set"])
        resolved = deep_merge(base_resolved, resolve_tables(spec["set"], here, PATH_KEYS, kept_as_written))
        pipe = _content_addressed(raw, resolved, f"{where} [{spec['name']}]", root, n_workers)
        variants.append(Variant(spec["name"], spec.get("seeds") or variant_seeds, pipe, spec["set"]))
    for v in variants:
        v.fingerprints = _fingerprints(v.pipe)
    proxy, eval_table = dict(data.get("proxy", {})), resolve_evals(data.get("eval", {}), here)
    _check_runs(variants, proxy)
    evaluation = eval_config(eval_table, variants[0], where)  # a typo in [eval] fails before the crawl
    return Ablation(where, root, variants, proxy, eval_table, evaluation)


def _seeds(value: Any, where: str, minimum: int) -> list[int]:
    if not isinstance(value, list) or len(value) < minimum or not all(isinstance(s, int) and s >= 0 for s in value):
        raise ConfigError(f"{where} must be a list of at least {minimum} non-negative integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds given twice in {value!r}")
    return list(value)


def _variant_specs(variants: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{where}: variants must be [[variants]] tables")
    seen = {BASE_NAME}
    for i, v in enumerate(variants):
        unknown = sorted(set(v) - VARIANT_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: variants[{i}]: unknown key {unknown[0]!r}; known: {', '.join(sorted(VARIANT_KEYS))}"
            )
        name = v.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name in seen:
            raise ConfigError(f"{where}: variants[{i}]: a unique name of letters, digits, '-', '_' or '.' is required")
        seen.add(name)
        stages = v.get("set", {})
        if not isinstance(stages, dict) or not all(k in OUTPUT_DIRS and isinstance(t, dict) for k, t in stages.items()):
            raise ConfigError(f"{where}: variant {name!r}: set must be tables of stage keys ({', '.join(OUTPUT_DIRS)})")
        if "seeds" in v:
            v = {**v, "seeds": _seeds(v["seeds"], f"{where}: variant {name!r} seeds", minimum=1)}
        v.setdefault("set", {})
    return variants


def resolve_evals(table: Any, here: str) -> dict[str, Any]:
    """The [eval] table with its ``text`` folders relative to the ablation file."""
    if not isinstance(table, dict):
        raise ConfigError("[eval] must be a table of curate eval's settings")
    if "text" not in table:
        return dict(table)
    texts = table["text"] if isinstance(table["text"], list) else [table["text"]]
    if not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"[eval] text must be a list of folders or NAME=FOLDER strings, got {table['text']!r}")
    resolved = []
    for spec in texts:  # NAME=DIR: only the folder is a path
        name, sep, path = spec.rpartition("=")
        resolved.append(f"{name}{sep}{resolve_path(path, here)}")
    return {**table, "text": resolved}


def eval_config(table: dict[str, Any], base: Variant, where: str):
    """curate eval's settings for every proxy. Bits per byte are measured on the *base's*
    held-out slice unless [eval] names a mix: a document is held out by its id alone
    (:func:`train.data.is_validation`), so no variant trained on those documents, and every
    variant is scored on the same text (its own slice would differ with its filters)."""
    from curate.core.config import from_dict
    from train.eval import EvalConfig

    settings = {"mix": str(base.pipe.out("mix")), **table}
    config = from_dict(EvalConfig, settings, f"{where} [eval]")  # ranges checked there
    config.validate()
    return config


def _content_addressed(raw: dict, resolved: dict, where: str, root: Path, workers: int) -> Pipeline:
    """The variant's pipeline with each data stage at ``stages/<stage>-<fingerprint>``."""
    provisional = pipeline_from_tables(raw, resolved, where, OUTPUT_DIRS, workdir=root, workers=workers)
    outputs = dict(OUTPUT_DIRS)
    for stage, fp in _fingerprints(provisional).items():
        outputs[stage] = f"stages/{stage}-{fp}"
    pipe = pipeline_from_tables(raw, resolved, where, outputs, workdir=root, workers=workers)
    for stage in (*DATA_STAGES, "pretrain"):
        pipe.built[stage] = BY_NAME[stage].build(pipe)
    return pipe


def _fingerprints(pipe: Pipeline) -> dict[str, str]:
    upstream, out = "", {}
    for stage in DATA_STAGES:
        upstream = out[stage] = fingerprint(pipe, stage, upstream)
    return out


def _check_runs(variants: list[Variant], proxy: dict[str, Any]) -> None:
    """Every proxy's pretraining settings built now (a typo in [proxy] fails before the crawl)."""
    for v in variants:
        for seed in v.seeds:
            _proxy_pipe(v, proxy, seed)


# --------------------------------------------------------------------------- running


def proxy_dir(v: Variant, proxy: dict[str, Any], seed: int) -> str:
    """``runs/<variant>/seed-<s>-<fp>``: fp covers the variant's mix and the proxy settings."""
    key = json.dumps(
        {"mix": v.fingerprints["mix"], "proxy": proxy, "seed": seed, "base": v.pipe.raw["pretrain"]},
        sort_keys=True,
        default=str,
    )
    return f"runs/{v.name}/seed-{seed}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _proxy_pipe(v: Variant, proxy: dict[str, Any], seed: int) -> Pipeline:
    pipe = copy.copy(v.pipe)
    pipe.tables = {**v.pipe.tables, "pretrain": deep_merge(v.pipe.tables["pretrain"], {**proxy, "seed": seed})}
    pipe.outputs = {**v.pipe.outputs, "pretrain": proxy_dir(v, proxy, seed)}
    pipe.built = {**v.pipe.built, "pretrain": BY_NAME["pretrain"].build(pipe)}
    return pipe


def _done_record(folder: Path) -> Path:
    return folder / ".curate" / "ablation-done.json"


def run_data_stages(v: Variant, log: Log) -> None:
    """The variant's data stages; a folder already complete for its fingerprint is skipped."""
    for stage in DATA_STAGES:
        out = v.pipe.out(stage)
        record = _done_record(out)
        if record.exists() and json.loads(record.read_text()).get("fingerprint") == v.fingerprints[stage]:
            log(f"[{v.name}] {stage}: up to date in {out}")
            continue
        log(f"[{v.name}] {stage}: running -> {out}")
        BY_NAME[stage].run(v.pipe, v.pipe.built[stage], False, log)
        atomic_write_json(record, {"stage": stage, "fingerprint": v.fingerprints[stage]})


def train_and_evaluate(v: Variant, ab: Ablation, seed: int, log: Log) -> dict[str, Any]:
    """Pretrain (or resume) the proxy of ``v`` for ``seed``, evaluate it; its results."""
    pipe = _proxy_pipe(v, ab.proxy, seed)
    run_dir = pipe.out("pretrain")
    log(f"[{v.name}] proxy seed {seed} -> {run_dir}")
    notes = BY_NAME["pretrain"].run(pipe, pipe.built["pretrain"], False, log)
    results = _evaluated(run_dir, ab.eval_config, log)
    return {
        "variant": v.name,
        "seed": seed,
        "run": str(run_dir),
        "train": _curves(run_dir),
        "notes": notes,
        "eval": results,
    }


def _evaluated(run_dir: Path, config: Any, log: Log) -> dict[str, Any]:
    """The proxy's eval results: reused from ``.curate/ablation-eval.json`` when the
    checkpoint and the settings are the ones they were computed for, else computed."""
    from curate.core.config import to_dict
    from train.eval import run_eval

    key = {"model": checkpoint_identity(run_dir), "settings": to_dict(config)}
    record = run_dir / ".curate" / "ablation-eval.json"
    if record.exists():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("key") == json.loads(json.dumps(key, default=str)):
            log(f"  eval up to date ({record})")
            return saved["results"]
    results = run_eval(run_dir, config, note=lambda line: log(f"  eval: {line}"))
    atomic_write_json(record, {"key": key, "results": results})
    return results


def _curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """Train and validation loss against step, from the run's metrics.jsonl."""
    from curate.core.files import iter_jsonl

    loss, val = [], []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            for _, record, problem in iter_jsonl(fh):
                if problem is None and "step" in record:
                    if "loss" in record:
                        loss.append([record["step"], record["loss"]])
                    if "val_loss" in record:
                        val.append([record["step"], record["val_loss"]])
    return {"loss": loss, "val_loss": val}


def run_ablation(ab: Ablation, log: Log = print) -> dict[str, Any]:
    """Every variant's data stages, proxies and evals (resuming), then the comparison, written
    as ``ablation.json`` and ``ablation.html`` in the work directory."""
    from curate.core.lock import folder_lock
    from curate.workflow.ablate_report import compare, write_page

    ab.workdir.mkdir(parents=True, exist_ok=True)
    with folder_lock(ab.workdir / ".curate" / "lock", "`curate ablate`", ab.workdir):
        runs = []
        for v in ab.variants:
            run_data_stages(v, log)
            for seed in v.seeds:
                runs.append(train_and_evaluate(v, ab, seed, log))
        result = compare(describe(ab), runs)
        atomic_write_json(ab.workdir / "ablation.json", result)
        write_page(result, ab.workdir / "ablation.html")
    return result


def describe(ab: Ablation) -> dict[str, Any]:
    """What the comparison records about the set-up."""
    return {
        "source": ab.source,
        "proxy": ab.proxy,
        "eval": ab.eval,
        "variants": [
            {
                "name": v.name,
                "seeds": v.seeds,
                "changes": v.changes,
                "stages": {s: str(v.pipe.out(s)) for s in DATA_STAGES},
            }
            for v in ab.variants
        ],
    }
