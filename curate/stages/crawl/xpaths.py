"""Faster, equivalent forms of trafilatura's XPath rules, swapped in during our extractions.

trafilatura's cost on real pages is dominated by its boilerplate rules: XPath expressions whose
predicates call the EXSLT ``re:test()``, which lxml runs as a Python callback per element.
Two equivalent rewrites, each checked to select exactly the same elements:

* :func:`guard_regex_tests` puts an attribute-presence test in front of each ``re:test`` whose
  pattern cannot match '', so elements without the attribute fail in C;
* :class:`~curate.stages.crawl.xpath_rules.PythonRule` evaluates rules of the plain form
  ``.//*[...]`` in Python, with a small, conservative parser: anything it does not fully
  understand keeps its XPath form.

:func:`fast_xpaths` holds trafilatura's rule lists and their faster versions;
:mod:`curate.stages.crawl.extract` swaps them in only for the duration of its own calls (``fast_xpaths().active()``), so other
trafilatura users in the process, like bench/crawl.py's reference loop, run the library as is.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import lxml.etree

from curate.stages.crawl.xpath_rules import PythonRule, Unsupported

# trafilatura's boilerplate rules are XPath expressions whose predicates call the EXSLT regular
# expression function ``re:test(@class, '...')``. lxml implements that function in Python, so
# libxml2 calls back into Python, converting the attribute into a Python string, for every
# element the predicate is tried on, *even when the element has no such attribute* (the test
# then runs on ''). On real pages these callbacks are ~40% of the full cascade's time.
# We evaluate the same expressions with two changes that cannot alter what they select:
#   * ``re:test(ARG, 'P')`` becomes ``(ARG and re:test(ARG, 'P'))`` when P cannot match the
#     empty string (checked with Python's ``re``, which is what lxml's re:test uses): an absent
#     attribute then fails in C without a callback;
#   * ``smart_strings=False``: the callback arguments are plain strings, not lxml's "smart"
#     strings that remember their parent element (the results are elements either way).
# The rewritten lists are swapped into trafilatura's (shared, module-level) lists only for the
# duration of our own calls, so other trafilatura users in the process see the library as is.
# (Threads racing on the swap can only see one version or the other; both select the same
# elements, so at worst a call runs at the library's own speed.)
_REGEX_NS = "http://exslt.org/regular-expressions"
_RE_TEST_CALL = re.compile(r"re:test\((@[\w-]+(?:\s*\|\s*@[\w-]+)*)\s*,\s*'([^']*)'\s*\)")


def guard_regex_tests(path: str) -> str:
    """``path`` with each ``re:test(@attr, 'P')`` preceded by a presence test of ``@attr``
    (left unchanged when P matches the empty string, or is not a valid Python regex)."""

    def guarded(match: re.Match) -> str:
        attrs, pattern = match.group(1), match.group(2)
        try:
            matches_empty = re.search(pattern, "") is not None
        except re.error:
            return match.group(0)
        return match.group(0) if matches_empty else f"(({attrs}) and {match.group(0)})"

    return _RE_TEST_CALL.sub(guarded, path)


class _FastXPaths:
    """trafilatura's XPath lists and their faster equivalents (a :class:`PythonRule` where the
    expression allows, else the guarded XPath), swapped in and out around a call."""

    def __init__(self) -> None:
        self.swaps: list[tuple[list, list, list]] = []  # (trafilatura's list, original, faster)
        self.depth = 0  # nesting of active() (restore only when the outermost call ends)
        try:
            from trafilatura import xpaths
        except ImportError:  # pragma: no cover
            return
        for value in vars(xpaths).values():
            if not (isinstance(value, list) and value and all(isinstance(x, lxml.etree.XPath) for x in value)):
                continue
            faster = [self.faster(expression) for expression in value]
            if any(f is not e for f, e in zip(faster, value)):
                self.swaps.append((value, list(value), faster))

    @staticmethod
    def faster(expression: lxml.etree.XPath):
        """The cheapest equivalent form of one of trafilatura's expressions."""
        try:
            return PythonRule(expression.path)
        except Unsupported:
            pass
        if "re:test(" not in expression.path:
            return expression
        try:
            return lxml.etree.XPath(
                guard_regex_tests(expression.path), namespaces={"re": _REGEX_NS}, smart_strings=False
            )
        except lxml.etree.XPathError:  # pragma: no cover - keep the original then
            return expression

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        # Everything inside the try: an ExtractTimeout (SIGALRM) can land anywhere, and the
        # finally must then undo what was done, so no list stays swapped outside our calls.
        try:
            self.depth += 1
            if self.depth == 1:
                for target, _, faster in self.swaps:
                    target[:] = faster
            yield
        finally:
            # max(): a signal before the increment above must not leave the count negative.
            self.depth = max(self.depth - 1, 0)
            if self.depth == 0:
                for target, original, _ in self.swaps:
                    target[:] = original


_fast_xpaths: _FastXPaths | None = None


def fast_xpaths() -> _FastXPaths:
    global _fast_xpaths
    if _fast_xpaths is None:
        _fast_xpaths = _FastXPaths()
    return _fast_xpaths
