"""The filter contract: a registered name, typed parameters with defaults, keep-or-reason.

A filter is a dataclass whose fields are its parameters (read from a ``[[filters]]`` table of
the chain's TOML file, unknown keys rejected). Calling it on a :class:`~curate.core.document.Document`
returns ``None`` to keep the document or a short reason (``"too_few_words"``) to drop it; the
chain prefixes the reason with the filter's label (``gopher_quality/too_few_words``). Filters
may write scores onto the document (``doc.scores["gopher_quality.n_words"]``,
``doc.language``, ``doc.quality_score``). Transforms (``c4``'s line cleaning, ``pii``) also
rewrite ``doc.text``.

Every filter accepts two common parameters:

``mode``
    ``"filter"`` (default) drops documents; ``"annotate"`` computes the scores and records the
    would-be reason in ``reject_reason`` but keeps the document and leaves its text unchanged
    (transforms only count what they would change), so thresholds can be chosen afterwards.
``label``
    The name used in reasons, score keys and the manifest (default: the filter's name); needed
    only to run the same filter twice in one chain.

Numeric parameters declare their allowed values in ``bounds`` (parameter -> :class:`Range`:
``RATIO`` is [0, 1], ``COUNT`` >= 0, ``SIZE`` >= 1, ``NON_NEGATIVE`` >= 0, each optionally with
an "off" value such as ``-1``), and pairs that must be ordered in ``ordered``
(``("min_words", "max_words")``). They are checked once, when the filter is built, before its
:meth:`Filter.validate` runs and before any document is read: a bad value is a one-line
:class:`~curate.core.errors.ConfigError` naming the filter, the parameter, the value and the range.
``None`` is always accepted for parameters whose type allows it (``keep_top``: unset).

Models and word lists are loaded in :meth:`Filter.setup`, which the chain calls lazily before
the first document, in the worker process (after fork), once per process.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.core.files import sha256_file

DATA_DIR = Path(__file__).resolve().parent / "data"
MODES = ("filter", "annotate")
OFF = -1  # the value that turns a threshold rule off


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take: ``low``..``high`` (either end may be open or
    absent), plus the sentinel values in ``off`` that disable its rule."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    off: tuple[float, ...] = ()

    def or_off(self, *values: float) -> Range:
        """The same range also accepting ``values`` (default: -1) as "rule off"."""
        return dataclasses.replace(self, off=values or (OFF,))

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real
            return False
        if value in self.off:
            return True
        # Written as "inside" tests so that NaN (TOML's nan) is never inside.
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return not (self.high is not None and not value <= self.high)

    def describe(self, integer: bool = False) -> str:
        kind = "an integer" if integer else "a number"
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            text = f"{kind} in {left}{_num(self.low)}, {_num(self.high)}]"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} <= {_num(self.high)}"
        else:
            text = kind
        if self.off:
            text += f", or {' or '.join(_num(v) for v in self.off)} to turn the rule off"
        return text

    def short(self) -> str:
        """Compact form for ``curate filter --list``: ``[0, 1]; -1 = off``."""
        if self.low is not None and self.high is not None:
            text = f"{'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}]"
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"<= {_num(self.high)}" if self.high is not None else "any"
        if self.off:
            text += "; " + ", ".join(_num(v) for v in self.off) + " = off"
        return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


RATIO = Range(0.0, 1.0)  # a fraction of documents, lines, words or characters; a probability
COUNT = Range(0)  # how many words, lines, sentences ...: 0 or more
SIZE = Range(1)  # a length or an n-gram size that must be at least 1
NON_NEGATIVE = Range(0.0)  # a per-word rate or a length that may exceed 1 but not go below 0


def check_value(who: str, key: str, value: Any, allowed: Range, integer: bool = False) -> None:
    """ConfigError (one line) unless ``value`` is in ``allowed``."""
    if not allowed.allows(value):
        raise ConfigError(f"{who}: {key} = {value!r} is out of range; allowed: {allowed.describe(integer)}")


@dataclass
class Filter:
    """Base class. Subclasses set ``name``, ``reasons``, ``summary`` and implement
    :meth:`apply`."""

    name: ClassVar[str] = ""
    # Every reason the filter can return (for --list, the docs and the tests).
    reasons: ClassVar[tuple[str, ...]] = ()
    # True for filters that may rewrite doc.text.
    transform: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    # Allowed values of the numeric parameters, and (low, high) parameter pairs that must be
    # ordered; checked when the filter is built (see the module docstring).
    bounds: ClassVar[dict[str, Range]] = {}
    ordered: ClassVar[tuple[tuple[str, str], ...]] = ()

    mode: str = "filter"
    label: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{self.name}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.label:
            self.label = self.name
        self.counters: Counter[str] = Counter()
        self._ready = False
        self.check_bounds()
        self.validate()

    @property
    def who(self) -> str:
        """How errors name this filter: its name, with the label when it has its own."""
        return self.name if self.label in ("", self.name) else f"{self.label} ({self.name})"

    def check_bounds(self) -> None:
        """Every declared parameter in its range, every ordered pair in order (ConfigError)."""
        hints = _field_types(type(self))
        for key, allowed in self.bounds.items():
            value = getattr(self, key)
            if value is None and _accepts_none(hints.get(key)):
                continue
            check_value(self.who, key, value, allowed, integer=_is_integer(hints.get(key)))
        for low_key, high_key in self.ordered:
            low, high = getattr(self, low_key), getattr(self, high_key)
            if low is None or high is None or low in self.bounds[low_key].off or high in self.bounds[high_key].off:
                continue
            if high < low:
                raise ConfigError(
                    f"{self.who}: {high_key} = {high!r} is below {low_key} = {low!r}; "
                    f"allowed: {high_key} >= {low_key} (or -1 on either to turn that rule off)"
                )

    # -- to implement -------------------------------------------------------------------
    def validate(self) -> None:
        """Check parameter values; raise ConfigError with a one-line message."""

    def setup(self) -> None:
        """Load models and lists (called once per process, before the first document)."""

    def apply(self, doc: Document) -> str | None:
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------
    @property
    def annotate(self) -> bool:
        return self.mode == "annotate"

    def __call__(self, doc: Document) -> str | None:
        if not self._ready:
            self.setup()
            self._ready = True
        return self.apply(doc)

    def score(self, doc: Document, key: str, value: float | int | bool | None) -> None:
        if value is not None:
            doc.scores[f"{self.label}.{key}"] = float(value)

    def count(self, key: str, n: int = 1) -> None:
        """Bump a per-filter counter (lines removed, replacements ...) shown in the manifest."""
        if n:
            self.counters[key] += n

    def params(self) -> dict[str, Any]:
        """Parameters with their values (defaults included), for manifests and --list."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def fingerprint(self) -> dict[str, Any]:
        """Extra identity of the files a filter reads (models, lists), so that a resumed run
        notices a changed model. Subclasses add their files via :func:`file_digest`."""
        return {}

    def __getstate__(self) -> dict[str, Any]:
        # Models are loaded per process; never pickle them into worker tasks.
        state = dict(self.__dict__)
        for key in list(state):
            if key.startswith("_model") or key.startswith("_cache"):
                state[key] = None
        state["_ready"] = False
        return state


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of the file's sha256: enough to notice a changed model or list
    (the digests filters record in manifests and in the quality model's sidecar)."""
    return sha256_file(path)[:16]


def require_file(path: str, what: str, filter_name: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{filter_name}: {what} {path!r} not found")
    return p


def check_fraction(filter_name: str, **values: float | None) -> None:
    """ConfigError unless each value (None allowed) is in [0, 1]; for values that are not
    declared parameters (declared ones go in ``Filter.bounds``)."""
    for key, value in values.items():
        if value is not None:
            check_value(filter_name, key, value, RATIO)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_integer(hint: Any) -> bool:
    """``int`` or ``int | None``: the parameter takes whole numbers."""
    if hint is int:
        return True
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _accepts_none(hint) and args == [int]


def _accepts_none(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(hint)


def read_word_list(path: str | os.PathLike) -> list[str]:
    """One entry per line; blank lines and lines starting with ``#`` are ignored."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                out.append(entry)
    return out


REGISTRY: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator adding a filter to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise TypeError(f"filter name {cls.name!r} registered twice")
    names = {f.name for f in dataclasses.fields(cls)}
    declared = set(cls.bounds) | {key for pair in cls.ordered for key in pair}
    if declared - names:
        raise TypeError(f"{cls.__name__}: bounds name unknown parameter(s) {sorted(declared - names)}")
    unbounded = [key for pair in cls.ordered for key in pair if key not in cls.bounds]
    if unbounded:
        raise TypeError(f"{cls.__name__}: ordered parameter(s) {unbounded} have no bounds")
    REGISTRY[cls.name] = cls
    return cls


def list_field(*values: Any) -> Any:
    """A dataclass field defaulting to a fresh list of ``values``."""
    return field(default_factory=lambda: list(values))
