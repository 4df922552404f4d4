"""``curate trace``: everything that happened to one document, to every capture of one URL or to
every document of a domain, read from the stages' own outputs with DuckDB (no index of its own).

For each matching document: its crawl record (WARC file, offset, record id, charset), what the
filter made of it (kept, or rejected with the reason, and its scores), what dedup did (kept,
with how many documents it represents, or removed as a duplicate of a kept representative, with
the estimated similarity), its rows in the mix (source, epoch, shard and row, tokens) and the
checkpoints that consumed it (``consumed.parquet`` in a step folder: tokens and times seen).
A step folder without that file says "no consumption record", and whether it was trained on the
mix that holds the document (its ``mix_manifest_sha256``).

The stage folders come from the caller (the CLI takes the pipeline's layout under a work
directory); a folder that is absent is reported as such, not an error. :mod:`curate.workflow.
forget` builds the removal workflow on :func:`trace`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.core.document import PARENT_ID_SQL, parent_id
from curate.core.errors import ConfigError, InputError
from curate.core.files import sha256_file
from curate.core.manifest import MANIFEST_NAME
from curate.core.shards import first_line
from curate.explore.query import shard_files

STAGES = ("crawl", "filter", "dedup", "mix")
# A mix row of a long document cut into chunks has the id ``ID#c00003`` (curate.stages.mix);
# trace and forget follow the document's id through its chunks.
PARENT_ID = PARENT_ID_SQL
CONSUMED_FILE = "consumed.parquet"  # written by the trainers in each step folder
CONFIG_FILE = "config.json"
_STEP = re.compile(r"^step-(\d+)$")
_SKIP_DIRS = {".curate", ".pipeline", "rejected", "removed", "tokens"}
SHOWN_SCORES = 6  # filter scores a text block shows (--json has them all)
MAX_DEPTH = 4  # how deep under a root checkpoint step folders are looked for


@dataclass(frozen=True)
class Selector:
    """Which documents: ids, every capture of a URL, or a domain (with its subdomains)."""

    ids: tuple[str, ...] = ()
    url: str | None = None
    domain: str | None = None

    @property
    def label(self) -> str:
        if self.url:
            return f"url {self.url}"
        if self.domain:
            return f"domain {self.domain}"
        return f"id {self.ids[0]}" if len(self.ids) == 1 else f"{len(self.ids)} ids"

    def where(self, id_column: str = "id") -> tuple[str, list[Any]]:
        """The SQL predicate over a view (ids through the ``wanted`` table) and its parameters."""
        if self.url:
            return "url = ?", [self.url]
        if self.domain:
            return "(domain = ? OR ends_with(domain, ?))", [self.domain, "." + self.domain]
        return f"{id_column} IN (SELECT id FROM wanted)", []


def make_selector(target: str | None = None, domain: str | None = None, ids: list[str] | None = None) -> Selector:
    """One of: ``target`` (a URL when it has ``://``, else a document id), ``domain`` or ``ids``;
    a :class:`ConfigError` for none or several."""
    given = [x for x in (target, domain, ids) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of: a document id or URL, --domain, --ids")
    if domain:
        d = domain.strip().lower().rstrip(".")
        d = d[4:] if d.startswith("www.") else d
        if not d or "/" in d or " " in d:
            raise ConfigError(f"--domain {domain!r}: give a host name such as example.com")
        return Selector(domain=d)
    if ids:  # a chunk's id (as `curate lineage` prints it) names its document
        return Selector(ids=tuple(sorted({parent_id(i) for i in ids})))
    assert target is not None
    target = target.strip()
    return Selector(url=target) if "://" in target else Selector(ids=(parent_id(target),))


def read_ids_file(path: str) -> list[str]:
    """Document ids, one a line (blank lines and ``#`` comments skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            ids = [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the ids file ({first_line(exc)})") from None
    if not ids:
        raise InputError(f"{path}: no ids in the file")
    return ids


# --------------------------------------------------------------------------- reading


class _Views:
    """A DuckDB connection with one view per stage output that exists (``crawl``, ``filter``,
    ``filter_rejected``, ``dedup``, ``dedup_removed``, ``mix``), each with ``filename`` and
    ``file_row_number``, and the ``wanted`` table of the selector's ids."""

    def __init__(self, folders: dict[str, Path | None], selector: Selector):
        import duckdb

        self.con = duckdb.connect(database=":memory:")
        self.present: set[str] = set()
        for stage in STAGES:
            folder = folders.get(stage)
            if folder is None or not Path(folder).is_dir():
                continue
            self._view(stage, shard_files(str(folder)))
            for side in ("rejected", "removed"):
                sub = Path(folder) / side
                if sub.is_dir():
                    self._view(f"{stage}_{side}", shard_files(str(sub)))
        wanted = pa.table({"id": pa.array(list(selector.ids), pa.string())})
        self.con.register("wanted", wanted)
        self.where, self.params = selector.where()

    def _view(self, name: str, files: list[str]) -> None:
        import duckdb

        if not files:
            return
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        try:
            self.con.execute(
                f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listing}], union_by_name = true, "
                "filename = true, file_row_number = true)"
            )
        except duckdb.Error as exc:
            raise InputError(f"{os.path.dirname(files[0])}: cannot be read as Parquet ({first_line(exc)})") from None
        self.present.add(name)

    def rows(self, view: str, columns: str, where: str | None = None, params: list[Any] | None = None) -> list[dict]:
        import duckdb

        if view not in self.present:
            return []
        sql = f"SELECT {columns} FROM {view} WHERE {where or self.where} ORDER BY filename, file_row_number"
        try:
            cur = self.con.execute(sql, self.params if params is None else params)
        except duckdb.Error as exc:
            raise InputError(f"{view}: {first_line(exc)}") from None
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def _place(row: dict) -> dict[str, Any]:
    return {"file": os.path.basename(row.pop("filename")), "row": int(row.pop("file_row_number"))}


def _scores(value: Any) -> dict[str, float]:
    if not value:
        return {}
    items = value.items() if isinstance(value, dict) else value
    return {str(k): float(v) for k, v in items}


@dataclass
class Found:
    """What :func:`trace` found: one entry per document (in crawl order, then by id), the stage
    folders it read and the checkpoint steps it looked at."""

    selector: Selector
    folders: dict[str, str | None]
    documents: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [d["id"] for d in self.documents]

    def to_json(self) -> dict[str, Any]:
        return {
            "selector": self.selector.label,
            "folders": self.folders,
            "documents": self.documents,
            "checkpoints": self.checkpoints,
        }


class _Documents(dict):
    """id -> the document's entry, created on first sight."""

    def of(self, row: dict[str, Any]) -> dict[str, Any]:
        entry = self.get(row["id"])
        if entry is None:
            entry = self[row["id"]] = {
                "id": row["id"],
                "url": None,
                "crawl": None,
                "filter": None,
                "dedup": None,
                "mix": [],
                "checkpoints": [],
            }
        entry["url"] = entry["url"] or row.get("url")
        return entry


def trace(selector: Selector, folders: dict[str, Path | None], checkpoint_roots: list[Path] | None = None) -> Found:
    """Every stage's record of the documents ``selector`` names (see the module docstring)."""
    views = _Views(folders, selector)
    docs = _Documents()
    record = "id, url, crawl, date, warc_path, warc_offset, warc_record_id, content_type, charset, n_chars"
    for row in views.rows("crawl", f"{record}, filename, file_row_number"):
        place = _place(row)
        docs.of(row)["crawl"] = {**place, **{k: row[k] for k in row if k not in ("id", "url")}}
    _trace_filter(views, docs)
    _trace_dedup(views, docs)
    mix_where = selector.where(PARENT_ID)[0]
    mix_columns = f"{PARENT_ID} AS id, id AS row_id, url, source, epoch, n_tokens, filename, file_row_number"
    for row in views.rows("mix", mix_columns, mix_where):
        place = _place(row)
        chunk = {"chunk_id": row["row_id"]} if row["row_id"] != row["id"] else {}
        docs.of(row)["mix"].append(
            {"source": row["source"], "epoch": row["epoch"], "n_tokens": row["n_tokens"], **chunk, **place}
        )
    views.con.close()
    found = Found(selector, {s: (str(folders[s]) if folders.get(s) else None) for s in STAGES})
    found.documents = sorted(docs.values(), key=_order)
    _trace_checkpoints(found, folders.get("mix"), checkpoint_roots or [])
    return found


def _order(entry: dict[str, Any]) -> tuple:
    c = entry["crawl"]
    return (0, c["file"], c["row"], entry["id"]) if c else (1, "", 0, entry["id"])


def _trace_filter(views: _Views, docs: _Documents) -> None:
    columns = "id, url, reject_reason, scores, language, language_score, quality_score, filename, file_row_number"
    for view, status in (("filter", "kept"), ("filter_rejected", "rejected")):
        for row in views.rows(view, columns):
            place = _place(row)
            docs.of(row)["filter"] = {
                "status": status,
                "reason": row["reject_reason"] if status == "rejected" else None,
                "scores": _scores(row["scores"]),
                "language": row["language"],
                "language_score": row["language_score"],
                "quality_score": row["quality_score"],
                "folder": "rejected/" if status == "rejected" else "",
                **place,
            }


def _trace_dedup(views: _Views, docs: _Documents) -> None:
    """Kept (with the documents it represents) or removed (with its representative)."""
    for row in views.rows("dedup", "id, url, filename, file_row_number"):
        place = _place(row)
        docs.of(row)["dedup"] = {"status": "kept", "represents": 0, "removed_by_kind": {}, "folder": "", **place}
    removed = views.rows("dedup_removed", "id, url, dup_of, dup_kind, dup_similarity, filename, file_row_number")
    for row in removed:
        place = _place(row)
        similarity = row["dup_similarity"]
        docs.of(row)["dedup"] = {
            "status": "removed",
            "kind": row["dup_kind"],
            "dup_of": row["dup_of"],
            "dup_of_url": None,
            "similarity": None if similarity is None else round(float(similarity), 4),
            "folder": "removed/",
            **place,
        }
    reps = sorted({r["dup_of"] for r in removed if r["dup_of"]})
    if reps:
        by_id = {r["id"]: r["url"] for r in views.rows("dedup", "id, url", "list_contains(?, id)", [reps])}
        for row in removed:
            docs[row["id"]]["dedup"]["dup_of_url"] = by_id.get(row["dup_of"])
    kept = sorted(i for i, d in docs.items() if d["dedup"] and d["dedup"]["status"] == "kept")
    if kept and "dedup_removed" in views.present:
        cur = views.con.execute(
            "SELECT dup_of, dup_kind, count(*) FROM dedup_removed WHERE list_contains(?, dup_of) "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            [kept],
        )
        for rep, kind, n in cur.fetchall():
            entry = docs[rep]["dedup"]
            entry["removed_by_kind"][kind] = int(n)
            entry["represents"] += int(n)


# --------------------------------------------------------------------------- checkpoints


def find_steps(roots: list[Path]) -> list[Path]:
    """Checkpoint step folders (``step-NNNNNN`` with a ``config.json``) under ``roots``, a few
    levels deep, sorted; stage output sub-folders are not searched."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if _STEP.match(root.name) and (root / CONFIG_FILE).is_file():
            found.add(root)
            continue
        base_depth = len(root.parts)
        for here, dirs, _ in os.walk(root):
            depth = len(Path(here).parts) - base_depth
            keep = []
            for d in sorted(dirs):
                path = Path(here) / d
                if _STEP.match(d):
                    if (path / CONFIG_FILE).is_file():
                        found.add(path)
                elif d not in _SKIP_DIRS and not d.startswith(".") and depth < MAX_DEPTH:
                    keep.append(d)
            dirs[:] = keep
    return sorted(found)


def read_step_config(step: Path) -> dict[str, Any]:
    try:
        data = json.loads((step / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def step_meta(config: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a step's config.json (``meta`` nested or at the top, as written)."""
    meta = config.get("meta")
    return meta if isinstance(meta, dict) else config


def mix_sha256(mix_folder: Path | None) -> str | None:
    if mix_folder is None or not (Path(mix_folder) / MANIFEST_NAME).is_file():
        return None
    return sha256_file(Path(mix_folder) / MANIFEST_NAME)


def _trace_checkpoints(found: Found, mix_folder: Path | None, roots: list[Path]) -> None:
    """Per step folder: its consumption record of the documents, or that it has none."""
    ids = found.ids
    mix_sha = mix_sha256(mix_folder)
    by_id = {d["id"]: d for d in found.documents}
    for step in find_steps(roots):
        meta = step_meta(read_step_config(step))
        entry = {
            "path": str(step),
            "stage": meta.get("stage"),
            "step": meta.get("step"),
            "parent": meta.get("parent"),
            "record": (step / CONSUMED_FILE).is_file(),
            "trained_on_mix": bool(mix_sha) and meta.get("mix_manifest_sha256") == mix_sha,
            "documents": 0,
            "tokens": 0,
        }
        if entry["record"] and ids:
            for doc_id, tokens, seen in consumed(step / CONSUMED_FILE, ids):
                entry["documents"] += 1
                entry["tokens"] += tokens
                by_id[doc_id]["checkpoints"].append({"path": str(step), "tokens": tokens, "times_seen": seen})
        found.checkpoints.append(entry)


def consumed(path: Path, ids: list[str]) -> list[tuple[str, int, int]]:
    """``(id, tokens, times seen)`` of the ``ids`` in one ``consumed.parquet`` (chunks of a
    document counted as the document)."""
    import duckdb

    con = duckdb.connect(database=":memory:")
    try:
        con.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
        rows = con.execute(
            # Times seen: a row's passes summed over its epochs; a document's whole passes plus
            # the most of any of its chunks (a chunked document's parts, or the cut head of a
            # whole one in a last, partial epoch).
            "SELECT doc, sum(tokens)::BIGINT, (coalesce(sum(seen) FILTER (WHERE id = doc), 0) "
            "+ coalesce(max(seen) FILTER (WHERE id <> doc), 0))::BIGINT FROM (SELECT "
            f"{PARENT_ID} AS doc, id, sum(tokens) AS tokens, sum(times_seen) AS seen FROM read_parquet(?) "
            f"WHERE {PARENT_ID} IN (SELECT id FROM wanted) GROUP BY doc, id) GROUP BY doc ORDER BY doc",
            [str(path)],
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot be read as a consumption record ({first_line(exc)})") from None
    finally:
        con.close()
    return [(r[0], int(r[1] or 0), int(r[2] or 0)) for r in rows]
