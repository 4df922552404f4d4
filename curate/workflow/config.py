"""A pipeline file read into a :class:`Pipeline`: the work directory, the seed, the worker count
and one table per stage (with ``{stage}`` placeholders expanded to the stages' folders)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.config import load_toml, resolve_path, resolve_paths
from curate.core.errors import ConfigError
from curate.runtime.executor import default_workers

TOP_KEYS = {"workdir", "workers", "seed"}


@dataclass
class Pipeline:
    """A loaded pipeline config: per-stage tables, the work directory and, once checked, every
    stage's settings built from its table (``built``), which the run then uses as they are."""

    workdir: Path
    outputs: dict[str, str]  # stage -> its folder, relative to the work directory
    tables: dict[str, dict[str, Any]]  # stage -> its table, placeholders expanded
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # the tables as written
    workers: int = 1
    seed: int = 0
    source: str = "pipeline config"
    built: dict[str, Any] = field(default_factory=dict)

    def out(self, stage: str) -> Path:
        return self.workdir / self.outputs[stage]


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
    accepts; ``workdir`` given here (the command line) is relative to the current directory."""
    data = load_toml(path)
    base = os.path.dirname(str(path))
    check_pipeline_data(data, str(path), list(outputs))
    resolved = resolve_tables(data, base, path_keys, keep)
    return pipeline_from_tables(data, resolved, str(path), outputs, workdir=workdir, workers=workers)


def check_pipeline_data(data: dict[str, Any], where: str, names: list[str]) -> None:
    """The top level of a pipeline file: known keys, every stage table, value types."""
    unknown = sorted(set(data) - TOP_KEYS - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(TOP_KEYS))} and stage tables "
            f"[{'], ['.join(names)}]"
        )
    missing = [s for s in names if s not in data]
    if missing:
        raise ConfigError(f"{where}: missing stage table(s) [{'], ['.join(missing)}]")
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
        tables={s: _expand(resolved[s], placeholders, f"{where}[{s}]") for s in names},
        raw={s: raw[s] for s in names},
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
        outer, _, inner = key.partition(".")
        if inner and isinstance(table.get(outer), list):
            table[outer] = [
                {**t, inner: resolve_paths(t[inner], base, keep)} if isinstance(t, dict) and inner in t else t
                for t in table[outer]
            ]
        elif not inner and outer in table:
            table[outer] = resolve_paths(table[outer], base, keep)
    return table


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
        raise ConfigError(f"[{stage}]: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(allowed))}")
    return table
