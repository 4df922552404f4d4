"""``curate forget``: the removal workflow for a URL, a domain or a list of document ids.

1. **Find** every document the request names, in every stage output of the work directory and
   every checkpoint under it (:func:`curate.explore.trace.trace`), and list where they are.
2. **Write new outputs without them**, beside the old ones, in ``WORKDIR/forget-<request>/``:

   - ``filter/``: the old filter output with a blocklist applied where the documents entered
     (the filter reads the crawl): each of them, kept or rejected before, is now rejected with
     reason ``forgotten/<request>``; its row keeps the id, URL and crawl record but not the
     text. The manifest's counts are the old ones with those documents moved to that reason,
     so ``read = kept + rejected + errors`` still holds.
   - ``dedup/``: dedup rerun on the new filter output with the old run's settings (a forgotten
     document may have represented a cluster: one of its members is kept now).
   - ``mix/``: mix rerun with the old mix's settings (seed, budget, tokenizer), its sources
     that read the old filter or dedup output reading the new one.
   - ``forgotten-ids.txt`` (the blocklist: one id a line) and ``request.json``; ``forget.json``
     last, with the listing and the commands, when everything is written.

3. **Say what to redo**: the training runs whose checkpoints consumed the documents (their
   ``consumed.parquet``), or were trained on the old mix without a consumption record, and every
   run fine-tuned from one of them; with the command for each, pointing at the new mix.

Nothing is deleted in place: the old outputs stay until the user removes them. Every output is
written through :class:`~curate.runtime.output.OutputDir` (manifest last) and is the same for
the same inputs and request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.core.accounting import Stats
from curate.core.config import from_dict
from curate.core.document import conform_table
from curate.core.errors import ConfigError, CurateError, InputError
from curate.core.files import atomic_write_bytes, atomic_write_json
from curate.core.manifest import build_manifest, load_manifest
from curate.core.shards import DEFAULT_SHARD_BYTES, ShardWriter, read_tables
from curate.explore.query import shard_files
from curate.explore.trace import STAGES, Found, Selector, trace
from curate.explore.trace_text import totals
from curate.runtime.executor import Executor
from curate.runtime.output import OutputDir
from curate.runtime.stage import StageContext
from curate.workflow.forget_runs import runs_to_redo
from curate.workflow.stages import OUTPUT_DIRS

REASON_PREFIX = "forgotten/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def stage_folders(workdir: str | os.PathLike, overrides: dict[str, str | None] | None = None) -> dict[str, Path]:
    """The crawl, filter, dedup and mix folders of a pipeline work directory, each replaced by
    the folder given in ``overrides`` when there is one."""
    folders = {s: Path(workdir) / OUTPUT_DIRS[s] for s in STAGES}
    for stage, path in (overrides or {}).items():
        if path:
            folders[stage] = Path(path)
    return folders


def request_name(selector: Selector, name: str | None, ids_file: str | None = None) -> str:
    """``name`` checked, or one made from the request: the domain, ``url-<hash>``, or the ids
    file's name."""
    if name is None:
        if selector.domain:
            name = selector.domain
        elif selector.url:
            name = "url-" + hashlib.sha1(selector.url.encode()).hexdigest()[:10]
        else:
            stem = Path(ids_file).stem if ids_file else "ids"
            name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "ids"
    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '-' or '_' (up to 100)")
    return name


def forget(
    workdir: str | os.PathLike,
    selector: Selector,
    name: str,
    folders: dict[str, Path],
    checkpoint_roots: list[Path] | None = None,
    log=lambda message: None,
) -> dict[str, Any]:
    """Run the removal workflow (module docstring); returns what ``forget.json`` holds."""
    workdir = Path(workdir)
    if not folders["filter"].is_dir() or load_manifest(folders["filter"]) is None:
        raise InputError(f"{folders['filter']}: no finished filter output (forget applies its blocklist there)")
    found = trace(selector, folders, checkpoint_roots if checkpoint_roots is not None else [workdir])
    if not found.documents:
        raise InputError(f"no document matches {selector.label} in {workdir}")
    target = workdir / f"forget-{name}"
    _check_mix_sources(folders)
    _check_request(target, selector, name)
    ids = sorted(found.ids)
    atomic_write_bytes(target / "forgotten-ids.txt", "".join(i + "\n" for i in ids).encode())
    new: dict[str, Path] = {}
    log(f"forget {name}: {len(ids)} document(s); writing {target}")
    new["filter"] = target / "filter"
    earlier = earlier_requests(workdir, target)
    if earlier:
        log(f"forget {name}: also leaving out the documents of earlier requests: {', '.join(sorted(earlier))}")
    filter_manifest = write_filter(folders["filter"], new["filter"], set(ids), name, earlier)
    notes: list[str] = []
    if folders["dedup"].is_dir() and load_manifest(folders["dedup"]) is not None:
        new["dedup"] = target / "dedup"
        rerun_dedup(folders["dedup"], new["filter"], new["dedup"])
    if folders["mix"].is_dir() and load_manifest(folders["mix"]) is not None:
        new["mix"] = target / "mix"
        rebase = {folders["filter"]: new["filter"], **({folders["dedup"]: new["dedup"]} if "dedup" in new else {})}
        notes += rerun_mix(folders["mix"], new["mix"], rebase, found)
    runs = runs_to_redo(found, workdir, target)
    result = {
        "request": name,
        "selector": selector.label,
        "documents": len(ids),
        "holders": holders(found, folders),
        "new_outputs": {stage: str(path) for stage, path in new.items()},
        "forgotten": filter_manifest["forget"]["forgotten"],
        "runs_to_redo": runs,
        "notes": notes,
    }
    atomic_write_json(target / "forget.json", result)
    return result


def _check_mix_sources(folders: dict[str, Path]) -> None:
    """Every file the mix read must still be there (before anything is written): the mix is
    rerun with its own settings. A path the mix was given relative to the folder it ran in is
    read from the current folder."""
    if not folders["mix"].is_dir():
        return
    config = (load_manifest(folders["mix"]) or {}).get("config", {})
    ours = {str(folders[s].resolve()) for s in ("filter", "dedup") if folders[s].exists()}
    for source in config.get("sources", []):
        for path in source.get("paths", []):
            if str(Path(path).resolve()) not in ours and not Path(path).exists():
                where = (
                    " (relative to the folder the mix ran in: run forget from there)" if not os.path.isabs(path) else ""
                )
                raise InputError(f"mix source {source.get('name')!r}: {path} not found{where}")


def earlier_requests(workdir: Path, target: Path) -> dict[str, set[str]]:
    """The finished requests in ``workdir`` (``forget-*/forget.json``) but ``target``: name ->
    the ids they forgot."""
    out = {}
    for folder in sorted(workdir.glob("forget-*")):
        ids_file = folder / "forgotten-ids.txt"
        if folder != target and (folder / "forget.json").exists() and ids_file.exists():
            out[folder.name.removeprefix("forget-")] = set(ids_file.read_text(encoding="utf-8").split())
    return out


def _check_request(target: Path, selector: Selector, name: str) -> None:
    """``request.json`` for a new request; the same request again redoes it (same outputs),
    another one under the same name is refused."""
    path = target / "request.json"
    request = {"request": name, "selector": selector.label, "ids": list(selector.ids)}
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            earlier = None
        if earlier != request:
            raise ConfigError(
                f"{target} holds another request ({(earlier or {}).get('selector')}); choose another --name"
            )
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, request)


def holders(found: Found, folders: dict[str, Path]) -> list[dict[str, Any]]:
    """Every stage output and checkpoint that holds the documents, with how many."""
    counts = totals(found)
    out = []
    for stage in STAGES:
        if folders.get(stage) is not None and folders[stage].is_dir():
            out.append({"what": stage, "path": str(folders[stage]), "holds": counts[stage]})
    for ck in found.checkpoints:
        holds = counts[ck["path"]]
        if ck["record"] and not ck["documents"]:
            continue
        if not ck["record"] and not ck["trained_on_mix"]:
            continue
        out.append({"what": f"checkpoint ({ck['stage']})", "path": ck["path"], "holds": holds})
    return out


# --------------------------------------------------------------------------- filter


def write_filter(
    old: Path, new: Path, ids: set[str], name: str, earlier: dict[str, set[str]] | None = None
) -> dict[str, Any]:
    """The old filter output without the documents ``ids``: they go to ``rejected/`` with reason
    ``forgotten/<name>`` and no text, the rest is copied as it is (module docstring). The ids of
    ``earlier`` requests (name -> ids) are left out too, each with its own reason, so that a
    second request does not bring back what a first one removed."""
    reason = REASON_PREFIX + name
    requests = {**(earlier or {}), name: set(ids)}
    old_manifest = load_manifest(old) or {}
    stats = Stats.from_json(old_manifest.get("counts", {}))
    wanted = pa.array(sorted(set().union(*requests.values())), pa.string())
    out = OutputDir(new, "filter", ["rejected"])
    out.check()
    with out.locked():
        out.reset()
        out.start({"forget": name, "from": str(old)})
        kept = ShardWriter(new, prefix="part-00000", shard_bytes=DEFAULT_SHARD_BYTES)
        rejected = ShardWriter(new / "rejected", prefix="part-00000", shard_bytes=DEFAULT_SHARD_BYTES)
        forgotten = ShardWriter(new / "rejected", prefix="forgotten", shard_bytes=DEFAULT_SHARD_BYTES)
        moved: Counter = Counter()
        try:
            for sub, writer in (("", kept), ("rejected", rejected)):
                for path in _listed_shards(old, sub, old_manifest):
                    for table in read_tables(path):
                        table = conform_table(table, path)
                        hit = pc.is_in(table.column("id"), value_set=wanted).fill_null(False)
                        writer.write_table(table.filter(pc.invert(hit)))
                        gone = table.filter(hit)
                        for request in sorted(requests) if gone.num_rows else ():
                            mine = pa.array(sorted(requests[request]), pa.string())
                            part = gone.filter(pc.is_in(gone.column("id"), value_set=mine).fill_null(False))
                            gone = gone.filter(pc.invert(pc.is_in(gone.column("id"), value_set=mine).fill_null(False)))
                            if part.num_rows:
                                _count_moved(stats, part, sub, REASON_PREFIX + request, moved)
                                forgotten.write_table(_without_text(part, REASON_PREFIX + request))
            outputs = {"": kept.close(), "rejected": rejected.close() + forgotten.close()}
        except BaseException:
            for w in (kept, rejected, forgotten):
                w.abort()
            raise
        extra = {k: v for k, v in old_manifest.items() if k not in _BUILT_KEYS}
        extra["forget"] = {
            "request": name,
            "from": str(old),
            "reason": reason,
            "forgotten": dict(sorted(moved.items())),
            "earlier_requests": sorted(earlier or {}),
        }
        manifest = build_manifest(
            "filter", old_manifest.get("config", {}), old_manifest.get("inputs", []), stats, outputs, extra
        )
        out.commit(manifest)
    return manifest


_BUILT_KEYS = {"stage", "tool", "tool_version", "schema_version", "config", "inputs", "counts", "shards", "outputs"}


def _listed_shards(folder: Path, sub: str, manifest: dict[str, Any]) -> list[str]:
    """A folder's shards in the manifest's order (the order they were written), else sorted."""
    listed = (manifest.get("outputs", {}).get(sub or ".") or {}).get("shards") or []
    paths = [str(folder / sub / s["path"]) for s in listed if isinstance(s, dict) and s.get("path")]
    return paths or shard_files(str(folder / sub))


def _count_moved(stats: Stats, gone: pa.Table, sub: str, reason: str, moved: Counter) -> None:
    """Move the counts of ``gone`` (rows of the kept shards, or of ``rejected/``) to ``reason``."""
    lengths = pc.utf8_length(gone.column("text")).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(np.float64)).astype(np.int64)
    was = gone.column("reject_reason").to_pylist() if sub else [None] * gone.num_rows
    for before, n_chars in zip(was, lengths.tolist()):
        if before is None:
            stats.kept -= 1
            stats.chars["kept"] -= n_chars
            moved["kept"] += 1
        elif stats.rejected.get(before):
            stats.rejected[before] -= 1
            stats.chars[f"rejected:{before}"] -= n_chars
            moved[before] += 1
        elif stats.errors.get(before):
            stats.errors[before] -= 1
            moved[before] += 1
        else:
            raise CurateError(f"filter output: a rejected row's reason {before!r} is not in its manifest's counts")
        stats.reject(reason, n_chars)
    for counter in (stats.rejected, stats.errors, stats.chars):
        for key in [k for k, v in counter.items() if v == 0 and k != "kept"]:
            del counter[key]


def _without_text(table: pa.Table, reason: str) -> pa.Table:
    """Forgotten rows: the text emptied (``n_chars`` keeps its length), the reason set."""
    n = table.num_rows
    i = table.schema.get_field_index("text")
    table = table.set_column(i, table.schema.field(i), pa.array([""] * n, pa.string()))
    i = table.schema.get_field_index("reject_reason")
    return table.set_column(i, table.schema.field(i), pa.array([reason] * n, pa.string()))


# --------------------------------------------------------------------------- dedup and mix


def rerun_dedup(old: Path, new_input: Path, new: Path) -> dict[str, Any]:
    """Dedup of ``new_input`` into ``new`` with the settings of the run in ``old``."""
    from curate.stages import dedup

    config = from_dict(
        dedup.DedupConfig, dict((load_manifest(old) or {}).get("config", {})), where=f"{old}/manifest.json"
    )
    ctx = StageContext([str(new_input)], str(new), Executor("local", 1), overwrite=True, progress=False)
    return dedup.run(config, ctx)


def _rebased(path: str, rebase: dict[Path, Path]) -> str:
    """``path`` with a leading old stage folder replaced by the new one (else as it is)."""
    here = os.path.abspath(path)
    for old, new in rebase.items():
        root = os.path.abspath(old)
        if here == root or here.startswith(root + os.sep):
            return str(new) + here[len(root) :]
    return path


def rerun_mix(old: Path, new: Path, rebase: dict[Path, Path], found: Found) -> list[str]:
    """The mix of ``old`` again into ``new``, its sources reading the new stage outputs; notes on
    sources that hold forgotten documents from files of their own (not removed here)."""
    from curate.stages import mix

    data = dict((load_manifest(old) or {}).get("config", {}))
    sources = [dict(s) for s in data.get("sources", [])]
    notes = []
    held = Counter(r["source"] for d in found.documents for r in d["mix"])
    for s in sources:
        paths = [_rebased(p, rebase) for p in s.get("paths", [])]
        if paths == s.get("paths") and held.get(s.get("name")):
            notes.append(
                f"mix source {s['name']!r} ({', '.join(paths)}) holds {held[s['name']]} row(s) of them from its own "
                "files: remove them there and rerun the mix"
            )
        s["paths"] = paths
    data["sources"] = sources
    config = mix.load_mix_config(None, data)
    mix.run(config, StageContext([], str(new), Executor("local", 1), overwrite=True, progress=False))
    return notes


# --------------------------------------------------------------------------- text


def format_forget(result: dict[str, Any]) -> str:
    lines = [f"forget {result['request']}: {result['selector']}, {result['documents']} document(s)", "", "held by:"]
    for h in result["holders"]:
        lines.append(f"  {h['what']:<22} {h['path']}: {h['holds']}")
    lines += ["", "new outputs (old ones untouched):"]
    for stage, path in result["new_outputs"].items():
        lines.append(f"  {stage:<7} {path}")
    moved = ", ".join(f"{k} {v}" for k, v in result["forgotten"].items())
    lines.append(
        f"  filter: {result['documents']} document(s) now rejected as forgotten/{result['request']} (were: {moved})"
    )
    for note in result["notes"]:
        lines.append(f"  note: {note}")
    lines += ["", "to redo:"]
    if "mix" in result["new_outputs"]:
        lines.append("  tokenizer: kept (it was trained on text that held them; retrain it to remove that too)")
    if not result["runs_to_redo"]:
        lines.append("  no training run holds them")
    for r in result["runs_to_redo"]:
        lines.append(f"  {r['run']} ({r['stage']}): {r['why']}")
        lines.append(f"    {r['command']}")
    return "\n".join(lines)
