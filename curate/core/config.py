"""Run configs: TOML files (via ``tomllib``) read into dataclasses.

Paths written inside a config file are relative to that file's folder (:func:`resolve_path`);
paths given on the command line are relative to the current directory. Unknown keys are an
error that lists the known ones, so a typo in a config never silently
falls back to a default; a float that is not finite (TOML's ``nan``, ``inf``) is refused, and a
config class's declared ``bounds`` (:mod:`curate.core.ranges`) are checked as it is built.
``--set a.b=value`` overrides are parsed as TOML values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from curate.core.errors import ConfigError
from curate.core.ranges import check_bounds

T = TypeVar("T")


def load_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing file, bytes that are not UTF-8 and TOML syntax errors
    are one-line ConfigErrors naming the file (and the line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({where_in_bytes(data, exc.start)}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def resolve_path(value: str, base: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> str:
    """A path written in a config file, resolved against ``base`` (that file's folder), as docker
    compose and cargo do: absolute paths, URLs (``scheme://``), ``{placeholders}`` and values
    ``keep`` accepts (e.g. Common Crawl snapshot names) stay as written; ``~`` is expanded. The
    result stays relative when ``base`` is (``samples`` + ``warc`` -> ``samples/warc``)."""
    if not isinstance(value, str) or not value or "://" in value or value.startswith("{") or (keep and keep(value)):
        return value
    value = os.path.expanduser(value)
    if os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base, value)) if str(base) not in ("", ".") else value


def resolve_paths(value: Any, base: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Any:
    """:func:`resolve_path` over a string or a list of strings (other values as they are)."""
    if isinstance(value, list):
        return [resolve_path(v, base, keep) for v in value]
    return resolve_path(value, base, keep)


def where_in_bytes(data: bytes, offset: int) -> str:
    """``line L, byte B (0xNN)`` for the byte at ``offset`` (both counted from 1)."""
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, byte {column}: 0x{data[offset]:02x}"


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are ConfigErrors.

    Nested dataclass fields are built recursively from nested tables.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            known = sorted(fields)
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(key, known)}; known keys: {', '.join(known)}")
        f = fields[key]
        if (
            dataclasses.is_dataclass(hints[key])
            and isinstance(value, dict)
            and f.default_factory is not dataclasses.MISSING
        ):
            # A partial nested table overlays the field's own default (e.g. a stage whose
            # optimizer defaults differ from the optimizer class's), not the class defaults.
            value = deep_merge(dataclasses.asdict(f.default_factory()), value)
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check_bounds(obj, where)
    check_finite(obj, where)
    return obj


def check_finite(obj: Any, where: str) -> None:
    """No float field of ``obj`` holds NaN or an infinity (TOML can write both; neither is a
    usable learning rate, threshold or size)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {f.name} = {value!r} is not a finite number")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def parse_set(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["model.n_layer=4", "lr=3e-4"]`` -> nested dict, values parsed as TOML (bare words
    that are not valid TOML are taken as strings)."""
    out: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} was set to a value, not a table")
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise ConfigError(f"--set {item!r}: {parts[-1]!r} is a table (set its keys, e.g. {key}.KEY=VALUE)")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = deep_merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


_SIZE_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}


def parse_count(text: str | int | float) -> int:
    """``2M`` -> 2_000_000, ``500k``, ``1.5B``, ``1e6``; plain numbers pass through."""
    try:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            value = float(text)
        else:
            s = str(text).strip().lower().replace("_", "").replace(",", "")
            value = float(s[:-1]) * _SIZE_SUFFIXES[s[-1]] if s and s[-1] in _SIZE_SUFFIXES else float(s)
        if not math.isfinite(value) or value < 0:
            raise ValueError
        return int(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{text!r}: expected a non-negative count such as 2000000, 2M or 500k") from None


def parse_bytes(text: str | int) -> int:
    """``64MB``, ``1GiB``, ``512k`` -> bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ConfigError(f"{text!r}: a size cannot be negative")
        return text
    s = str(text).strip().lower().replace(" ", "")
    units = {
        "": 1,
        "b": 1,
        "k": 1024,
        "kb": 1000,
        "kib": 1024,
        "m": 1024**2,
        "mb": 1000**2,
        "mib": 1024**2,
        "g": 1024**3,
        "gb": 1000**3,
        "gib": 1024**3,
    }
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :]
    if unit not in units:
        raise ConfigError(f"{text!r}: unknown size unit (use e.g. 64MB, 1GiB)")
    try:
        value = float(num) * units[unit]
        if not math.isfinite(value) or value < 0:
            raise ValueError
        return int(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{text!r}: expected a non-negative size such as 64MB") from None
