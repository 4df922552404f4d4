"""A pipeline file read into a :class:`Pipeline`: the work directory, the seed, the worker count
and one table per stage (with ``{stage}`` placeholders expanded to the stages' folders). Every
stage's table is required except those in :data:`OPTIONAL_TABLES`: a pipeline without one does
not run that stage."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.config import load_toml, resolve_path, resolve_paths
from curate.core.errors import ConfigError
from curate.runtime.executor import default_workers

TOP_KEYS = {"workdir", "workers", "seed"}
OPTIONAL_TABLES = frozenset({"eval"})  # stages that run only when the file has their table


@dataclass
class Pipeline:
    """A loaded pipeline config: per-stage tables, the work directory and, once checked, every
    stage's settings built from its table (``built``), which the run then uses as they are."""

    workdir: Path
    outputs: dict[str, str]  # stage -> its folder, relative to the work directory
    tables: dict[str, dict[str, Any]]  # stage -> its table, placeholders expanded (absent: not run)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # the tables as written
    workers: int = 1
    seed: int = 0
    source: str = "pipeline config"
    # Where the data stages run (curate.runtime.executor.ENGINES); the outputs are the same.
    engine: str = "local"
    ray_address: str | None = None
    built: dict[str, Any] = field(default_factory=dict)

    def out(self, stage: str) -> Path:
        return self.workdir / self.outputs[stage]

    def has(self, stage: str) -> bool:
        """Whether the file has the stage's table (an optional stage without one is not run)."""
        return stage in self.tables


def read_pipeline(
    path: str | os.PathLike,
    outputs: dict[str, str],
    path_keys: dict[str, tuple[str, ...]],
    keep: Callable[[str], bool] | None = None,
    workdir: str | None = None,
    workers: int | None = None,
) -> Pipeline:
    """Read a pipeline TOML whose stage tables are the keys of ``outputs`` (in order); unknown
    top-level tables or keys are errors naming what exists.

    Paths written in the file (``workdir`` and each stage's ``path_keys``; ``a.b`` names key
    ``b`` of the tables in list ``a``) are relative to the file's folder, except values ``keep``
    accepts; ``workdir`` given here (the command line) is relative to the current directory.
    Two more forms name values that hold paths among other things: ``key=`` takes ``PATH`` or
    ``NAME=PATH`` entries (only the path is resolved), ``key,`` a comma-separated string or a
    list whose entries are names or files (only entries with a ``.`` or ``/`` are paths; the
    value becomes a list, so the files' contents count in the stage's fingerprint)."""
    data = load_toml(path)
    base = os.path.dirname(str(path))
    check_pipeline_data(data, str(path), list(outputs))
    resolved = resolve_tables(data, base, path_keys, keep)
    return pipeline_from_tables(data, resolved, str(path), outputs, workdir=workdir, workers=workers)


def check_pipeline_data(
    data: dict[str, Any], where: str, names: list[str], optional: Collection[str] = OPTIONAL_TABLES
) -> None:
    """The top level of a pipeline file: known keys, every stage table (but the ``optional``
    ones) present and a table, value types."""
    unknown = sorted(set(data) - TOP_KEYS - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(TOP_KEYS))} and stage tables "
            f"[{'], ['.join(names)}]"
        )
    missing = [s for s in names if s not in data and s not in optional]
    if missing:
        raise ConfigError(f"{where}: missing stage table(s) [{'], ['.join(missing)}]")
    for s in names:
        if s in data and not isinstance(data[s], dict):
            raise ConfigError(f"{where}: {s} must be a table ([{s}]), got {data[s]!r}")
    for key, kind in (("workdir", str), ("workers", int), ("seed", int)):
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            raise ConfigError(
                f"{where}: {key} must be {'a string' if kind is str else 'an integer'}, got {data[key]!r}"
            )
    if data.get("workers", 1) < 1:
        raise ConfigError(f"{where}: workers must be at least 1")


def resolve_tables(
    data: dict[str, Any], base: str, path_keys: dict[str, tuple[str, ...]], keep: Callable[[str], bool] | None
) -> dict[str, Any]:
    """``data`` with ``workdir`` and every stage table's path keys resolved against ``base``
    (placeholders are left for :func:`pipeline_from_tables`)."""
    resolved = {s: _resolve(t, path_keys.get(s, ()), base, keep) for s, t in data.items() if isinstance(t, dict)}
    if "workdir" in data:
        resolved["workdir"] = resolve_path(data["workdir"], base)
    return {**data, **resolved}


def pipeline_from_tables(
    raw: dict[str, Any],
    resolved: dict[str, Any],
    where: str,
    outputs: dict[str, str],
    workdir: str | os.PathLike | None = None,
    workers: int | None = None,
) -> Pipeline:
    """A Pipeline from its tables as written (``raw``: what fingerprints see) and with paths
    resolved (``resolved``), its ``{stage}`` placeholders expanded to the stages' folders."""
    names = list(outputs)
    wd = Path(workdir or resolved.get("workdir") or "work")
    placeholders = {"workdir": str(wd), **{s: str(wd / outputs[s]) for s in names}}
    return Pipeline(
        workdir=wd,
        outputs=dict(outputs),
        tables={s: _expand(resolved[s], placeholders, f"{where}[{s}]") for s in names if s in resolved},
        raw={s: raw[s] for s in names if s in raw},
        workers=workers or int(raw.get("workers", 0)) or default_workers(),
        seed=int(raw.get("seed", 0)),
        source=where,
    )


def _resolve(table: Any, keys: tuple[str, ...], base: str, keep: Callable[[str], bool] | None) -> Any:
    """The table with the paths under ``keys`` resolved against ``base`` (before placeholders
    are expanded: ``{dedup}`` is the work directory's, already resolved)."""
    if not isinstance(table, dict):
        return table
    table = dict(table)
    for key in keys:
        if key.endswith("="):
            if key[:-1] in table:
                table[key[:-1]] = _resolve_named(table[key[:-1]], base, keep)
            continue
        if key.endswith(","):
            if key[:-1] in table:
                table[key[:-1]] = _resolve_entries(table[key[:-1]], base, keep)
            continue
        outer, _, inner = key.partition(".")
        if inner and isinstance(table.get(outer), list):
            table[outer] = [
                {**t, inner: resolve_paths(t[inner], base, keep)} if isinstance(t, dict) and inner in t else t
                for t in table[outer]
            ]
        elif not inner and outer in table:
            table[outer] = resolve_paths(table[outer], base, keep)
    return table


def _resolve_named(value: Any, base: str, keep: Callable[[str], bool] | None) -> Any:
    """``PATH`` or ``NAME=PATH`` entries (a string or a list) with the paths resolved."""

    def one(entry: Any) -> Any:
        if not isinstance(entry, str):
            return entry
        name, eq, path = entry.rpartition("=")
        return f"{name}{eq}{resolve_path(path, base, keep)}" if path else entry

    return [one(v) for v in value] if isinstance(value, list) else one(value)


def _resolve_entries(value: Any, base: str, keep: Callable[[str], bool] | None) -> Any:
    """A comma-separated string (or a list) of names and files, as a list with the files (the
    entries holding a ``.`` or a ``/``) resolved; anything else as it is."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        return value
    return [
        resolve_path(v, base, keep) if isinstance(v, str) and ("." in v or "/" in v or os.sep in v) else v
        for v in value
    ]


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


def take(table: dict[str, Any], allowed: set[str], stage: str) -> dict[str, Any]:
    """``table`` after checking it holds only ``allowed`` keys."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"[{stage}]: unknown key {unknown[0]!r}{hint}; known keys: {', '.join(sorted(allowed))}")
    return table
