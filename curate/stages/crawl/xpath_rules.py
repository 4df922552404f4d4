"""trafilatura's ``.//*[...]`` XPath rules evaluated in Python, by a small, conservative parser.

:class:`PythonRule` takes the text of an XPath expression and either understands all of it or
raises :class:`Unsupported` (the caller, :mod:`curate.stages.crawl.xpaths`, then keeps the
expression's XPath form). Calling a rule on a tree gives the elements the XPath expression
selects, in the same (document) order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import lxml.etree

# What remains of trafilatura's regex passes once guarded (curate.stages.crawl.xpaths) is the
# callback itself: an element that has a class attribute still costs a libxml2 -> lxml ->
# Python round trip per re:test (~2 us each, ~3 per element on OVERALL_DISCARD_XPATH[1]). For rules of the plain form
# ``.//*[P1][P2]...`` whose predicates use only a small, fully understood part of XPath (or, and,
# not, parentheses, self::NAME, .//NAME, @a, @a|@b, ='literal', contains, starts-with,
# translate, re:test), we evaluate the predicates in Python over ``iterdescendants()`` instead,
# with the regular expressions compiled once and each verdict cached per (tag, values of the
# attributes the rule reads) (class/id strings repeat a lot within and across pages; rules with
# a descendant test are not cached). A final ``[1]`` and ``(...)[1]`` are understood too.
# Anything else in an expression (another position, a child element test, another function,
# an absolute ``//``) and the expression keeps its XPath form.
# The XPath semantics reproduced here: a node-set of attributes is true when not empty; its
# string value is the value of its first attribute in document order ('' when empty);
# ``@a = 'v'`` is true when some attribute of the set equals v; translate() maps by the first
# occurrence of a character and drops characters with no counterpart; re:test is lxml's
# (Python ``re.search``, IGNORECASE for flag 'i').

_CACHED_VALUE_CHARS = 256  # attribute values longer than this are not cached

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<lit>'[^']*'|\"[^\"]*\")|(?P<desc>\.//[A-Za-z][\w-]*)|(?P<self>self::[A-Za-z][\w-]*)"
    r"|(?P<attr>@[A-Za-z][\w-]*)|(?P<name>re:test|starts-with|contains|translate|not|and|or)(?![\w:-])"
    r"|(?P<op>[()\[\],|=]))"
)


class Unsupported(Exception):
    """An expression outside the subset :class:`PythonRule` understands."""


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise Unsupported(text[pos : pos + 30])
        kind = match.lastgroup
        value = match.group(kind)
        tokens.append((kind, value[1:-1] if kind == "lit" else value))
        pos = match.end()
    return tokens


class _PredicateParser:
    """Recursive descent over one predicate; builds closures ``f(tag, attrs, element)`` where
    ``attrs`` is the element's attribute dict (document order)."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.i = tokens, 0
        self.uses_descendants = False
        self.attribute_names: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None or (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise Unsupported(f"expected {value or kind} at {token}")
        self.i += 1
        return token[1]

    def parse(self):
        f = self.or_expr()
        if self.peek() is not None:
            raise Unsupported(f"trailing {self.peek()}")
        return f

    def or_expr(self):
        parts = [self.and_expr()]
        while self.peek() == ("name", "or"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda tag, attrs, el: any(p(tag, attrs, el) for p in parts)

    def and_expr(self):
        parts = [self.unary()]
        while self.peek() == ("name", "and"):
            self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda tag, attrs, el: all(p(tag, attrs, el) for p in parts)

    def unary(self):
        if self.peek() == ("name", "not"):
            self.take()
            self.take("(")
            inner = self.or_expr()
            self.take(")")
            return lambda tag, attrs, el: not inner(tag, attrs, el)
        if self.peek() == ("op", "("):
            self.take()
            inner = self.or_expr()
            self.take(")")
            return inner
        return self.atom()

    def atom(self):
        kind, value = self.peek() or ("", "")
        if kind == "self":
            self.take()
            name = value[len("self::") :]
            return lambda tag, attrs, el: tag == name
        if kind == "desc":
            self.take()
            name = value[len(".//") :]
            self.uses_descendants = True
            return lambda tag, attrs, el: next(el.iterdescendants(name), None) is not None
        if kind == "attr":
            names = self.attr_set()
            if self.peek() == ("op", "="):
                self.take()
                literal = self.take(kind="lit")
                return lambda tag, attrs, el: any(attrs.get(n) == literal for n in names)
            return lambda tag, attrs, el: any(n in attrs for n in names)
        if kind == "name" and value in ("contains", "starts-with"):
            self.take()
            self.take("(")
            haystack = self.string_expr()
            self.take(",")
            needle = self.take(kind="lit")
            self.take(")")
            if value == "contains":
                return lambda tag, attrs, el: needle in haystack(attrs)
            return lambda tag, attrs, el: haystack(attrs).startswith(needle)
        if kind == "name" and value == "re:test":
            self.take()
            self.take("(")
            subject = self.string_expr()
            self.take(",")
            pattern = self.take(kind="lit")
            flags = ""
            if self.peek() == ("op", ","):
                self.take()
                flags = self.take(kind="lit")
            self.take(")")
            try:
                search = re.compile(pattern, re.IGNORECASE if "i" in flags else 0).search
            except re.error:
                raise Unsupported(pattern) from None
            return lambda tag, attrs, el: search(subject(attrs)) is not None
        raise Unsupported(f"atom {kind} {value}")

    def attr_set(self) -> tuple[str, ...]:
        names = [self.take(kind="attr")[1:]]
        while self.peek() == ("op", "|"):
            self.take()
            names.append(self.take(kind="attr")[1:])
        self.attribute_names.update(names)
        return tuple(names)

    def string_expr(self):
        """A string-valued argument: an attribute set (first in document order) or translate()."""
        kind, value = self.peek() or ("", "")
        if kind == "attr":
            names = self.attr_set()
            if len(names) == 1:
                name = names[0]
                return lambda attrs: attrs.get(name, "")
            wanted = set(names)
            return lambda attrs: next((v for k, v in attrs.items() if k in wanted), "")
        if (kind, value) == ("name", "translate"):
            self.take()
            self.take("(")
            inner = self.string_expr()
            self.take(",")
            source = self.take(kind="lit")
            self.take(",")
            target = self.take(kind="lit")
            self.take(")")
            table: dict[int, int | None] = {}
            for position, char in enumerate(source):
                table.setdefault(ord(char), ord(target[position]) if position < len(target) else None)
            return lambda attrs: inner(attrs).translate(table)
        raise Unsupported(f"string {kind} {value}")


def _split_predicates(text: str) -> list[str] | None:
    """``[a][b]...`` -> ['a', 'b', ...] (brackets inside string literals ignored), or None."""
    out, depth, start, quote = [], 0, 0, ""
    for pos, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "[":
            if depth == 0:
                start = pos + 1
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                out.append(text[start:pos])
        elif depth == 0 and not char.isspace():
            return None
    return out if depth == 0 and out and not quote else None


_SELF_ONLY = re.compile(r"^\s*self::[A-Za-z][\w-]*(?:\s+or\s+self::[A-Za-z][\w-]*)*\s*$")


_FIRST_IN_DOCUMENT = re.compile(r"\(\s*(\.//\*\[.*\])\s*\)\s*\[\s*1\s*\]", re.DOTALL)


class PythonRule:
    """A ``.//*[...]`` XPath rule evaluated in Python; call it like the XPath object (same
    elements, same document order).

    Also understood: a final ``[1]`` (the first match among each element's children) and
    ``(.//*[...])[1]`` (the first match in the document, found without scanning the rest)."""

    def __init__(self, path: str):
        self.path = path
        body = path.strip()
        self.first = ""  # "" (all matches) | "document" | "siblings"
        whole = _FIRST_IN_DOCUMENT.fullmatch(body)
        if whole:
            body, self.first = whole.group(1), "document"
        if not body.startswith(".//*["):
            raise Unsupported("not a .//*[...] rule")
        predicates = _split_predicates(body[len(".//*") :])
        if predicates is None:
            raise Unsupported("not a plain predicate list")
        if predicates[-1].strip() == "1" and not self.first:
            # child::*[A][B][1]: positions count the matching children of each parent (the
            # other predicates are plain booleans: the parser accepts nothing positional).
            self.first, predicates = "siblings", predicates[:-1]
        # A leading self::a or self::b predicate becomes a C-level tag filter.
        self.tags: tuple[str, ...] = ()
        if predicates and _SELF_ONLY.match(predicates[0]):
            self.tags = tuple(re.findall(r"self::([A-Za-z][\w-]*)", predicates[0]))
            predicates = predicates[1:]
        parsers = [_PredicateParser(_tokenize(p)) for p in predicates]
        self.tests = [p.parse() for p in parsers]
        self.cacheable = not any(p.uses_descendants for p in parsers)
        self.attribute_names = frozenset(n for p in parsers for n in p.attribute_names)
        self.cache: dict = {}

    def _matches(self, tree) -> Iterator:
        elements = tree.iterdescendants(*self.tags) if self.tags else tree.iterdescendants(lxml.etree.Element)
        tests = self.tests
        if not self.cacheable:
            yield from (e for e in elements if all(t(e.tag, dict(e.items()), e) for t in tests))
            return
        names, cache = self.attribute_names, self.cache
        for element in elements:
            items = element.items()
            # The verdict depends only on the tag and the attributes the rule reads.
            read = [kv for kv in items if kv[0] in names] if items else []
            if any(len(v) > _CACHED_VALUE_CHARS for _, v in read):
                # Long values (inline styles with data: URIs) rarely repeat; caching them would
                # make the cache's size unbounded in bytes.
                if all(t(element.tag, dict(read), element) for t in tests):
                    yield element
                continue
            key = (element.tag, tuple(read))
            verdict = cache.get(key)
            if verdict is None:
                if len(cache) >= 4096:  # bounded: a crawl sees endless class strings
                    cache.clear()
                verdict = cache[key] = all(t(key[0], dict(key[1]), element) for t in tests)
            if verdict:
                yield element

    def __call__(self, tree) -> list:
        if self.first == "document":
            first = next(self._matches(tree), None)  # stops at the first match
            return [] if first is None else [first]
        if self.first == "siblings":
            # Document order visits a parent's first matching child before its others.
            parents: set = set()
            selected = []
            for element in self._matches(tree):
                parent = element.getparent()
                if parent not in parents:
                    parents.add(parent)
                    selected.append(element)
            return selected
        return list(self._matches(tree))
