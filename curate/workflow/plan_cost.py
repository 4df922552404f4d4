"""``curate pipeline FILE --plan``: what a run will take before it starts.

From an input size (bytes, a number of WARC files or a Common Crawl snapshot name), a cluster
(``NODESxCORESxMEM[+GPUSxTYPE]``) and prices, each stage gets its expected wall time, workers,
peak memory per worker and on the driver, bytes written to disk and read over the network, and
its cost, computed from the measured rates of :mod:`curate.workflow.plan_rates` (each figure
names the rate it rests on). Pretraining reuses ``curate train estimate`` (6·N·D FLOPs at a
measured MFU).

The model, stated so that a bill can be checked against it:

* pages: a Common Crawl snapshot's published page count (:mod:`curate.workflow.cc_snapshots`),
  else bytes or WARC files at the one published measurement of bytes per page; documents flow
  crawl → filter → dedup → mix, shrinking by the table's crawl yield, filter keep and dedup keep
  fractions;
* a data stage runs ``workers = nodes × min(cores, node memory / worker memory)`` processes, each
  at the stage's per-core rate, so its time is ``docs / (rate × workers)`` (crawl: at most one
  worker per WARC file). With ``--engine ray`` (assumed on more than one node) every stage uses
  every node; with ``--engine local`` one node works. dedup and mix have a measured serial part
  (the driver's work): ``time = docs × (serial + parallel / workers)``, so more nodes shorten
  them less; their drivers' memory is a measured base plus bytes per document (on Ray, dedup's
  per-document part is the URL/exact decisions' index partition, at most ``--memory-gb``);
* a data stage is charged for every core of the cluster while it runs (what a cloud bills),
  training for its GPUs; cost = hours × (cores × price per core-hour or GPUs × price per GPU-hour).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from curate.core.errors import ConfigError
from curate.stages.dedup.config import DEFAULT_MEMORY_GB
from curate.workflow.plan_inputs import Cluster, InputSize
from curate.workflow.plan_rates import RATES

_R = {k: v.value for k, v in RATES.items()}  # the rates' values by name


@dataclass
class StagePlan:
    stage: str
    hours: float | None = None
    workers: int | None = None
    worker_mem: float | None = None
    driver_mem: float | None = None
    disk_write: float | None = None
    net_read: float | None = None
    cost: float | None = None
    docs_in: float | None = None
    docs_out: float | None = None
    rests_on: str = ""
    note: str = ""


def _workers(cluster: Cluster, worker_mem: float, stage: str, nodes: int | None = None) -> int:
    per_node = min(cluster.cores, int(cluster.memory // worker_mem))
    if per_node < 1:
        raise ConfigError(
            f"--cluster: a {stage} worker needs ~{_bytes(worker_mem)} and a node has {_bytes(cluster.memory)}"
        )
    return (cluster.nodes if nodes is None else nodes) * per_node


def plan_engine(cluster: Cluster, engine: str | None = None) -> str:
    """The engine a plan assumes: the one given, else Ray on more than one node (the local
    engine uses one machine), else local."""
    return engine or ("ray" if cluster.nodes > 1 else "local")


def plan_data(
    inp: InputSize,
    cluster: Cluster,
    price_core_hour: float | None = None,
    stages: tuple[str, ...] = ("crawl", "filter", "dedup", "mix"),
    engine: str | None = None,
) -> list[StagePlan]:
    """Plans of the data stages (crawl, filter, dedup, mix) for ``inp`` on ``cluster`` with
    ``engine`` (see :func:`plan_engine`)."""
    r = _R
    ray = plan_engine(cluster, engine) == "ray"
    nodes = None if ray else 1  # the local engine runs on the machine it was started on
    one_node = "" if ray or cluster.nodes == 1 else "; --engine local: one node of the cluster works"
    cost = (lambda h: h * cluster.total_cores * price_core_hour) if price_core_hour is not None else (lambda h: None)
    bpd = r["parquet_bytes_per_doc"]
    out: list[StagePlan] = []
    docs = inp.pages
    if "crawl" in stages:
        w = min(_workers(cluster, r["crawl_worker_mem"], "crawl", nodes), max(1, math.ceil(inp.warc_files)))
        h = docs / (r["crawl"] * w) / 3600
        produced = docs * r["crawl_yield"]
        rests = f"crawl {r['crawl']:g} docs/s/core, crawl_worker_mem, crawl_yield, parquet_bytes_per_doc; {inp.basis}"
        out.append(StagePlan("crawl", h, w, r["crawl_worker_mem"], None, produced * bpd, inp.bytes, cost(h),
                             docs, produced, rests, one_node.lstrip("; ")))  # fmt: skip
        docs = produced
    if "filter" in stages:
        w = _workers(cluster, r["filter_worker_mem"], "filter", nodes)
        h = docs / (r["filter"] * w) / 3600
        kept = docs * r["filter_keep"]
        out.append(StagePlan("filter", h, w, r["filter_worker_mem"], None, docs * bpd, docs * bpd, cost(h), docs,
                             kept, f"filter {r['filter']:g} docs/s/core, filter_worker_mem, filter_keep",
                             "disk: kept and rejected shards" + one_node))  # fmt: skip
        docs = kept
    if "dedup" in stages:
        out.append(_plan_dedup(docs, cluster, ray, nodes, cost, one_node))
        docs = out[-1].docs_out or 0.0
    if "mix" in stages:
        out.append(_plan_mix(docs, cluster, ray, cost))
    return out


def _amdahl(docs: float, serial_us: float, parallel_us: float, workers: int) -> float:
    """Hours for ``docs`` at ``serial_us`` per document on the driver plus ``parallel_us`` core-
    microseconds per document spread over ``workers``."""
    return docs * (serial_us + parallel_us / workers) / 3.6e9


def _driver_note(driver: float, cluster: Cluster, ray: bool) -> str:
    """What to say when a driver's memory exceeds a node's."""
    if driver <= cluster.memory:
        return ""
    return f"; the driver's ~{_bytes(driver)} exceeds a node's memory" + ("" if ray else ": use --engine ray")


def _plan_dedup(docs: float, cluster: Cluster, ray: bool, nodes: int | None, cost: Any, one_node: str) -> StagePlan:
    r = _R
    bpd = r["parquet_bytes_per_doc"]
    w = _workers(cluster, r["dedup_worker_mem"], "dedup", nodes)
    e = "dedup_ray_" if ray else "dedup_"
    h = r["dedup_real_factor"] * _amdahl(docs, r[e + "serial_us"], r[e + "parallel_us"], w)
    grows = r[e + "driver_per_doc"] * docs
    if ray:  # the URL/exact decisions' index partition, which grows up to the --memory-gb budget
        grows = min(grows, DEFAULT_MEMORY_GB * 1024**3)
    driver = r[e + "driver_base"] + grows
    rests = (
        f"dedup_real_factor x ({e}serial_us + {e}parallel_us / workers), dedup_worker_mem, "
        f"{e}driver_base, {e}driver_per_doc" + (" up to --memory-gb" if ray else "") + ", dedup_keep"
    )
    if ray:
        note = "disk: kept and removed shards; duplicate groups and the write are Ray tasks"
    else:
        note = "disk: kept and removed shards; the local engine groups duplicates in the driver" + one_node
    note += _driver_note(driver, cluster, ray)
    kept = docs * r["dedup_keep"]
    return StagePlan("dedup", h, w, r["dedup_worker_mem"], driver, docs * bpd, docs * bpd, cost(h), docs, kept,
                     rests, note)  # fmt: skip


def _plan_mix(docs: float, cluster: Cluster, ray: bool, cost: Any) -> StagePlan:
    r = _R
    bpd = r["parquet_bytes_per_doc"]
    w = _workers(cluster, r["mix_worker_mem"], "mix", None if ray else 1)
    e = "mix_ray_" if ray else "mix_"
    h = _amdahl(docs, r[e + "serial_us"], r[e + "parallel_us"], w)
    driver = r[e + "driver_base"] + r[e + "driver_per_doc"] * docs
    rests = f"{e}serial_us + {e}parallel_us / workers, mix_worker_mem, {e}driver_base, {e}driver_per_doc"
    if ray:
        note = "counting, sampling, the bucketed shuffle and the shard writing are Ray tasks"
    else:
        note = "--engine local: one machine, does not shrink with nodes"
    note += "; disk at most its input" + _driver_note(driver, cluster, ray)
    return StagePlan("mix", h, w, r["mix_worker_mem"], driver, docs * bpd, docs * bpd, cost(h), docs, None,
                     rests, note)  # fmt: skip


def plan_training(
    params: float, tokens: float, cluster: Cluster, price_gpu_hour: float | None = None, stage: str = "pretrain"
) -> StagePlan:
    """``curate train estimate`` for ``params`` on ``tokens`` over the cluster's GPUs."""
    from train.estimate import estimate

    if not cluster.gpus:
        return StagePlan(stage, note="no GPUs in --cluster (add +GPUSxTYPE, e.g. +8xH100)")
    mfu = RATES["pretrain_mfu"]
    est = estimate(
        params, tokens, gpu=cluster.gpu_type or "h100", mfu=mfu.value, gpus=cluster.gpus, price=price_gpu_hour
    )
    return StagePlan(
        stage,
        hours=est.wall_hours,
        workers=cluster.gpus,
        cost=est.cost,
        rests_on=f"curate train estimate: {_si(params)} parameters, {_si(tokens)} tokens, 6·N·D at MFU "
        f"{mfu.value:.0%} ({mfu.source})",
    )


def plan_pipeline(
    pipe: Any,
    inp: InputSize,
    cluster: Cluster,
    price_core_hour: float | None = None,
    price_gpu_hour: float | None = None,
    engine: str | None = None,
) -> list[StagePlan]:
    """One plan per stage of a loaded pipeline (:func:`curate.workflow.load_pipeline`)."""
    from curate.workflow.stages import STAGE_NAMES

    names = [s for s in STAGE_NAMES if pipe.has(s)]
    data = {p.stage: p for p in plan_data(inp, cluster, price_core_hour, tuple(names), engine)}
    out: list[StagePlan] = []
    for name in names:
        if name in data:
            out.append(data[name])
        elif name == "pretrain":
            params, tokens = _pretrain_size(pipe)
            out.append(plan_training(params, tokens, cluster, price_gpu_hour))
        elif name == "tokenizer":
            out.append(StagePlan(name, note="trains on a capped sample (max_docs / max_chars): not modelled"))
        else:
            out.append(StagePlan(name, note="not modelled: small next to pretraining at these step counts"))
    return out


def _pretrain_size(pipe: Any) -> tuple[float, float]:
    """Parameters (with the pipeline's vocabulary) and training tokens of its pretrain stage:
    ``max_tokens``, else ``max_steps × batch_size × grad_accum × block_size``."""
    import torch

    from train.model import GPT

    config = pipe.built["pretrain"]
    vocab = int(pipe.tables.get("tokenizer", {}).get("vocab_size", 8192))
    with torch.device("meta"):
        params = GPT(config.model.build(vocab_size=vocab)).num_params()
    tokens = getattr(config, "max_tokens", None)
    if not tokens:
        tokens = config.max_steps * config.batch_size * config.grad_accum * config.model.block_size
    return float(params), float(tokens)


def _bytes(n: float) -> str:
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}"
    return f"{n:,.0f} B"


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:,.3g}{unit}"
    return f"{n:,.0f}"


def _money(c: float) -> str:
    return f"{c:,.2f}" if c < 100 else f"{c:,.0f}"


def _hours(h: float) -> str:
    if h >= 48:
        return f"{h / 24:,.1f} d"
    if h >= 1:
        return f"{h:,.1f} h"
    if h >= 1 / 60:
        return f"{h * 60:,.1f} min"
    return f"{h * 3600:,.1f} s"


def format_plan(
    plans: list[StagePlan],
    inp: InputSize,
    cluster: Cluster,
    price_core_hour: float | None = None,
    price_gpu_hour: float | None = None,
) -> str:
    """The plan as a table, then what each figure rests on."""
    gpus = f" + {cluster.gpus} x {cluster.gpu_type}" if cluster.gpus else ""
    lines = [
        f"input:   {inp.label}: {inp.warc_files:,.0f} WARC files, {_bytes(inp.bytes)} compressed, "
        f"~{_si(inp.pages)} pages",
        f"cluster: {cluster.nodes} nodes x {cluster.cores} cores x {_bytes(cluster.memory)}{gpus} "
        f"({cluster.total_cores:,} cores)",
        "prices:  "
        + (f"{price_core_hour:g}/core-hour" if price_core_hour is not None else "no --price-core-hour")
        + ", "
        + (f"{price_gpu_hour:g}/GPU-hour" if price_gpu_hour is not None else "no --price-gpu-hour"),
        "",
        f"{'stage':<10} {'docs in':>8} {'time':>10} {'workers':>8} {'mem/worker':>10} {'driver':>9} "
        f"{'disk':>9} {'net read':>9} {'cost':>12}",
    ]
    total_h = total_cost = 0.0
    for p in plans:

        def cell(v: float | None, fmt: Any) -> str:
            return fmt(v) if v is not None else "-"

        lines.append(
            f"{p.stage:<10} {cell(p.docs_in, _si):>8} {cell(p.hours, _hours):>10} {cell(p.workers, str):>8} "
            f"{cell(p.worker_mem, _bytes):>10} {cell(p.driver_mem, _bytes):>9} {cell(p.disk_write, _bytes):>9} "
            f"{cell(p.net_read, _bytes):>9} {cell(p.cost, _money):>12}"
        )
        total_h += p.hours or 0.0
        total_cost += p.cost or 0.0
    lines.append(
        f"{'total':<10} {'':>8} {_hours(total_h):>10} {'':>8} {'':>10} {'':>9} {'':>9} {'':>9} "
        f"{(_money(total_cost) if total_cost else '-'):>12}"
    )
    lines.append("")
    lines.append("what each figure rests on (curate/workflow/plan_rates.py; README Benchmarks):")
    for p in plans:
        text = "; ".join(t for t in (p.rests_on, p.note) if t)
        lines.append(f"  {p.stage}: {text}")
    used = sorted({k for p in plans for k in RATES if k in p.rests_on})
    for key in used:
        rate = RATES[key]
        value = _bytes(rate.value) if rate.unit == "bytes" else f"{rate.value:g} {rate.unit}"
        lines.append(f"    {key} = {value}: {rate.source}")
    return "\n".join(lines)
