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

A ``paths`` parameter may also hold names that are not files (``decontaminate``'s bundled task
names next to task files): :meth:`Filter.is_name` tells the chain file's path resolution which
values to leave as written.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.core.files import sha256_file
from curate.core.ranges import RATIO, Range, check_bounds, check_value

DATA_DIR = Path(__file__).resolve().parent / "data"
MODES = ("filter", "annotate")


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
    # Parameters naming files (a model, a word list; a dict's values): in a chain file they are
    # relative to the file's folder.
    paths: ClassVar[tuple[str, ...]] = ()

    mode: str = "filter"
    label: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{self.name}: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.label:
            self.label = self.name
        self.counters: Counter[str] = Counter()
        self.distinct: dict[str, set[str]] = {}
        self._ready = False
        self.check_bounds()
        self.validate()

    @property
    def who(self) -> str:
        """How errors name this filter: its name, with the label when it has its own."""
        return self.name if self.label in ("", self.name) else f"{self.label} ({self.name})"

    def check_bounds(self) -> None:
        """Every declared parameter in its range, every ordered pair in order (ConfigError)."""
        check_bounds(self, self.who)

    @classmethod
    def is_name(cls, value: str) -> bool:
        """Whether a value of a ``paths`` parameter is a name rather than a file (left as
        written when a chain file's relative paths are resolved)."""
        return False

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

    def collect(self, key: str, value: str) -> None:
        """Add ``value`` to the named set (benchmark items found ...). The manifest shows the
        values and their number as the counter ``key``, distinct over every input of a run
        (summing per-input counts would count an item found in two shards twice)."""
        self.distinct.setdefault(key, set()).add(value)

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
