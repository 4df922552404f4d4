"""Planning of ``curate mix``: the parts of a source that tasks count and scatter, and the plan.

What the user asked for is a :class:`~curate.stages.mix.config.MixConfig`; pass 1
(:mod:`curate.stages.mix.count`) tokenizes every document of a source once and keeps only its
token count; :func:`plan_mix` turns weights, the budget and the epoch caps into per-source
targets (:func:`allocate`, water filling) and document selections (:func:`select_documents`).
See :mod:`curate.stages.mix.run` for the whole algorithm.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, replace

import numpy as np

from curate.core.accounting import Stats
from curate.core.errors import CurateError
from curate.core.readers import SourceFile, resolve_files
from curate.core.tokenizer import Tokenizer
from curate.stages.mix.config import MIN_DOC_TOKENS, MixConfig, SourceSpec
from curate.stages.mix.count import Part, SourceCount
from curate.stages.mix.positions import Positions, chunked

# --- parts: the runs of whole files one task counts and scatters -------------------------

PART_BYTES = 256 << 20  # input bytes of a source one task counts and scatters (whole files)


def source_parts(spec: SourceSpec, part_bytes: int | None = None) -> list[list[SourceFile]]:
    """The files of ``spec`` in runs of about ``part_bytes`` input bytes (at least one run)."""
    part_bytes = part_bytes or PART_BYTES
    parts: list[list[SourceFile]] = [[]]
    size = 0
    for f in resolve_files(spec.paths, spec.format):
        try:
            n = os.path.getsize(f.path)
        except OSError:
            n = 0  # counted as unreadable by the task
        if parts[-1] and size + n > part_bytes:
            parts.append([])
            size = 0
        parts[-1].append(f)
        size += n
    return parts


def part_view(c: SourceCount, plan: SourcePlan, part: Part) -> tuple[SourceCount, SourcePlan]:
    """The count and plan of one part of a source, its documents and positions from 0 (what
    the task that scatters the part needs, and no more)."""
    lo, hi = part.pos_start, part.pos_start + part.positions
    a, b = np.searchsorted(c.split_docs, [part.doc_start, part.doc_start + part.docs])
    paths = {f.path for f in part.files}
    count = SourceCount(
        c.spec,
        np.asarray(c.n_tokens[lo:hi]),  # a plain array (a slice of a file on the driver)
        Stats(),
        [f.path for f in part.files],
        0,
        0,
        part.id_digest,
        {p: v for p, v in c.failed.items() if p in paths},
        docs=part.docs,
        split_docs=c.split_docs[a:b] - part.doc_start,
        split_chunks=c.split_chunks[a:b],
        parts=[part],
    )
    cut = plan.cut_position - lo if lo <= plan.cut_position < hi else -1
    return count, replace(plan, partial=np.asarray(plan.partial[lo:hi]), cut_position=cut)


# --- planning ----------------------------------------------------------------------------


def allocate(budget: int, weights: dict[str, float], caps: dict[str, int]) -> dict[str, float]:
    """Token targets per source: ``budget`` split by normalized weight, no source above its
    cap; what a capped source cannot take goes to the others in proportion to their weights."""
    total_w = sum(weights.values())
    targets: dict[str, float] = {}
    active = list(weights)
    remaining = float(budget)
    while active:
        w = sum(weights[n] for n in active)
        share = {n: remaining * weights[n] / w for n in active}
        capped = [n for n in active if share[n] > caps[n]]
        if not capped:
            targets.update(share)
            break
        for n in capped:
            targets[n] = float(caps[n])
            remaining -= caps[n]
            active.remove(n)
    assert total_w > 0
    return targets


def whole_tokens(targets: dict[str, float]) -> dict[str, int]:
    """Targets in whole tokens that add up to the rounded sum of ``targets`` (largest
    remainders first, then source order), so exact sources fill an exact budget."""
    floors = {n: math.floor(t) for n, t in targets.items()}
    left = int(round(sum(targets.values()))) - sum(floors.values())
    for n in sorted(targets, key=lambda n: floors[n] - targets[n])[: max(0, left)]:
        floors[n] += 1
    return floors


@dataclass
class SourcePlan:
    name: str
    weight: float  # as given
    share_requested: float  # normalized
    tokens_requested: float  # share_requested * budget
    tokens_target: int  # after caps and redistribution
    tokens_available: int
    docs_available: int
    max_epochs: float
    full_epochs: int
    partial: np.ndarray  # bool per document: taken in the last, partial epoch
    tokens_planned: int
    rows_planned: int
    docs_selected: int
    chunks_selected: int = 0  # distinct positions (documents or chunks) taken
    # The row that ends the partial epoch, cut to the tokens the target still needs (with
    # max_doc_tokens on): its position (-1: none) and its tokens after the cut.
    cut_position: int = -1
    cut_tokens: int = 0

    @property
    def capped(self) -> bool:
        return self.tokens_target + 0.5 < self.tokens_requested


def select_documents(n_tokens: np.ndarray, target: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(whole epochs, partial-epoch mask) whose tokens reach ``target``: whole passes over the
    source, then documents in a random order until the target is reached (the last document
    may overshoot it)."""
    full, partial, _, _ = select_rows(n_tokens, target, rng)
    return full, partial


def select_rows(
    n_tokens: np.ndarray, target: int, rng: np.random.Generator, positions: Positions | None = None
) -> tuple[int, np.ndarray, int, int]:
    """:func:`select_documents` plus the last position taken and by how many tokens it
    overshoots the target (-1 and 0 when nothing is sampled). With ``positions`` the order and
    the mask are files, walked a chunk at a time (the same draws as ``rng.permutation``)."""
    positions = positions or Positions(None)
    n = int(n_tokens.shape[0])
    total = int(n_tokens.sum(dtype=np.int64))
    partial = positions.array("partial", bool, n)
    if total == 0 or target <= 0:
        return 0, partial, -1, 0
    full, rest = divmod(int(target), total)
    if not rest:
        return full, partial, -1, 0
    order = positions.array("order", np.int64, n, fill=None)
    for lo, hi in chunked(n):
        order[lo:hi] = np.arange(lo, hi, dtype=np.int64)
    rng.shuffle(order.view(np.ndarray))  # as rng.permutation(n) draws it, in place
    reached = 0
    for lo, hi in chunked(n):
        part = order[lo:hi]
        cum = reached + np.cumsum(n_tokens[part], dtype=np.int64)
        if cum[-1] < rest:
            partial[part] = True
            reached = int(cum[-1])
            continue
        k = int(np.searchsorted(cum, rest, side="left"))
        partial[part[: k + 1]] = True
        return full, partial, int(part[k]), int(cum[k] - rest)
    raise AssertionError("the partial epoch needs less than one whole pass")


def _cut_last(n_tokens: np.ndarray, partial: np.ndarray, last: int, over: int) -> tuple[int, int]:
    """Where the partial epoch ends on its target: the last row taken, cut to the tokens still
    needed. A cut that would leave fewer than MIN_DOC_TOKENS is dropped instead (the source
    then falls short by less than that); (-1, 0) when no cut is needed."""
    if last < 0 or over <= 0:
        return -1, 0
    keep = int(n_tokens[last]) - over
    if keep < MIN_DOC_TOKENS:
        partial[last] = False
        return -1, 0
    return last, keep


def _source_seed(seed: int, name: str) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))]


def _selected(c: SourceCount, full: int, partial: np.ndarray) -> tuple[int, int, int, int]:
    """Tokens and rows a source's selection holds, and its distinct documents and positions,
    summed a chunk of documents at a time (before the last row's cut)."""
    tokens = rows = docs = chunks = 0
    pos = 0
    for lo, hi in chunked(c.docs):
        per_doc = c.chunks_per_doc(lo, hi - lo)
        end = pos + int(per_doc.sum())
        reps = np.asarray(partial[pos:end], dtype=np.int64) + full
        taken = reps > 0
        tokens += int((reps * c.n_tokens[pos:end]).sum(dtype=np.int64))
        rows += int(reps.sum())
        chunks += int(taken.sum())
        docs += int(np.unique(np.repeat(np.arange(hi - lo), per_doc)[taken]).shape[0])
        pos = end
    return tokens, rows, docs, chunks


def plan_mix(
    cfg: MixConfig, counted: list[SourceCount], positions: Positions | None = None
) -> tuple[list[SourcePlan], list[str]]:
    """Targets and document selections per source, and notes for the user (``positions``:
    where the per-position arrays go, in memory when None)."""
    budget = cfg.budget
    notes: list[str] = []
    total_w = sum(c.spec.weight for c in counted)
    if abs(total_w - 1.0) > 1e-9:
        notes.append(f"weights sum to {total_w:g}, not 1: normalized to shares of the output tokens")
    weights = {c.spec.name: c.spec.weight / total_w for c in counted}
    max_ep = {c.spec.name: c.spec.max_epochs if c.spec.max_epochs is not None else cfg.max_epochs for c in counted}
    caps = {c.spec.name: int(math.floor(max_ep[c.spec.name] * c.tokens)) for c in counted}
    targets = whole_tokens(allocate(budget, weights, caps))
    plans: list[SourcePlan] = []
    short = []
    for c in counted:
        name = c.spec.name
        requested = weights[name] * budget
        target = targets[name]
        rng = np.random.default_rng(_source_seed(cfg.seed, name))
        full, partial, last, over = select_rows(c.n_tokens, target, rng, positions)
        cut_position, cut_tokens = _cut_last(c.n_tokens, partial, last, over) if cfg.chunk_limit else (-1, 0)
        tokens_planned, rows_planned, docs_selected, chunks_selected = _selected(c, full, partial)
        if cut_position >= 0:
            tokens_planned -= int(c.n_tokens[cut_position]) - cut_tokens
        plan = SourcePlan(
            name=name,
            weight=c.spec.weight,
            share_requested=weights[name],
            tokens_requested=requested,
            tokens_target=target,
            tokens_available=c.tokens,
            docs_available=c.docs,
            max_epochs=max_ep[name],
            full_epochs=full,
            partial=partial,
            tokens_planned=tokens_planned,
            rows_planned=rows_planned,
            docs_selected=docs_selected,
            chunks_selected=chunks_selected,
            cut_position=cut_position,
            cut_tokens=cut_tokens,
        )
        plans.append(plan)
        if plan.capped:
            short.append(plan)
            need = requested / c.tokens if c.tokens else float("inf")
            notes.append(
                f"source {name!r}: {c.tokens:,} tokens would need {number(need, 1)} epochs for its share "
                f"(max {plan.max_epochs:g}); capped at {plan.tokens_target:,} tokens, shortfall "
                f"{number(requested - plan.tokens_target)} tokens given to the other sources by weight"
            )
    planned = sum(p.tokens_planned for p in plans)
    note = shortfall_note(planned, budget)
    if note:
        notes.append(note)
    if cfg.strict and (short or planned < budget):
        raise CurateError("--strict: " + "; ".join(n for n in notes if "weights sum" not in n))
    return plans, notes


def number(value: float, decimals: int = 0) -> str:
    """``1,234,567`` (with ``decimals``), or ``1e+30`` past what digits make readable."""
    return f"{value:,.{decimals}f}" if abs(value) < 1e15 else f"{value:.3g}"


def shortfall_note(tokens: int, budget: int) -> str | None:
    """The note of a mix that holds fewer tokens than its budget (every source at its epoch
    cap), None when it reaches it. The command prints it even with ``--quiet``."""
    if tokens >= budget:
        return None
    return (
        f"all sources together hold only {tokens:,} tokens within their epoch caps: the mix is "
        f"{number(budget - tokens)} tokens short of the budget {number(budget)}"
    )


@dataclass
class Planned:
    """Passes 1 and 2 done: what every source holds and what the mix takes from it."""

    tokenizer: Tokenizer
    counted: list[SourceCount]
    plans: list[SourcePlan]
    notes: list[str]
