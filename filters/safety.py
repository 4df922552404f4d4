"""Safety filters: a URL blocklist, a bad-words ratio per language, and a PII scrubber.

Word lists are plain text files, one entry per line, ``#`` for comments. A small English list
written for this project ships as ``filters/data/badwords_en.txt``; lists for other languages
are given per language code in the chain's config.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from curate.core.document import Document, domain_of
from curate.core.errors import ConfigError
from curate.core.ranges import RATIO

from .base import DATA_DIR, Filter, file_digest, read_word_list, register, require_file
from .text import WORD_RE, view

DEFAULT_BADWORDS = {"en": str(DATA_DIR / "badwords_en.txt")}


@register
@dataclass
class UrlBlocklist(Filter):
    """Drops documents whose URL is on a blocklist.

    Entries come from ``blocklist`` (a file) and ``domains``/``patterns`` (inline lists).
    A plain entry (``example.com``) blocks that domain and all its subdomains
    (``ads.example.com``; a leading ``www.`` is ignored on both sides) -> ``blocked_domain``.
    An entry containing ``*``, ``?`` or ``/`` is a shell-style pattern: with a ``/`` it is
    matched against the URL without its scheme (``example.org/ads/*``), without one against
    the host (``*.casino.*``) -> ``blocked_url``.
    Documents without a URL are kept (and counted as ``no_url``).
    """

    name = "url_blocklist"
    paths = ("blocklist",)
    summary = "drop documents from listed domains (and subdomains) or URL patterns"
    reasons = ("blocked_domain", "blocked_url")

    blocklist: str = ""
    domains: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)

    def validate(self) -> None:
        entries = list(self.domains) + list(self.patterns)
        if self.blocklist:
            entries += read_word_list(require_file(self.blocklist, "blocklist", self.name))
        if not entries:
            raise ConfigError(f"{self.name}: empty blocklist (give blocklist, domains or patterns)")
        domains: set[str] = set()
        globs: list[str] = []
        for entry in entries:
            e = entry.strip().lower()
            if re.search(r"[*?/]", e):
                e = re.sub(r"^[a-z]+://", "", e)
                globs.append(e[4:] if e.startswith("www.") else e)
            else:
                e = e.strip(".")
                domains.add(e[4:] if e.startswith("www.") else e)
        self._domains = frozenset(domains)
        url_globs = [g for g in globs if "/" in g]
        host_globs = [g for g in globs if "/" not in g]
        self._url_pattern = re.compile("|".join(fnmatch.translate(g) for g in url_globs)) if url_globs else None
        self._host_pattern = re.compile("|".join(fnmatch.translate(g) for g in host_globs)) if host_globs else None

    def fingerprint(self) -> dict[str, Any]:
        return {"blocklist_sha256": file_digest(self.blocklist)} if self.blocklist else {}

    def apply(self, doc: Document) -> str | None:
        domain = doc.domain or (domain_of(doc.url) if doc.url else None)
        if not domain:
            self.count("no_url")
            return None
        labels = domain.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in self._domains:
                return "blocked_domain"
        if self._host_pattern is not None and self._host_pattern.match(domain):
            return "blocked_url"
        if self._url_pattern is not None and doc.url:
            parts = urlsplit(doc.url.strip())
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            if self._url_pattern.match(f"{domain}{rest}".lower()):
                return "blocked_url"
        return None


_NO_SPACE_LANGS = ("zh", "ja", "th", "lo", "km", "my")


@register
@dataclass
class BadWords(Filter):
    """Drops documents where listed words are more than ``max_ratio`` of the words.

    ``word_lists`` maps a language code to a word-list file (entries may be phrases of several
    words); English uses the bundled ``filters/data/badwords_en.txt`` unless overridden. The
    list is chosen by the document's ``language`` (set by the ``language`` filter), or
    ``default_language`` when it has none; documents in a language without a list are kept
    (counted as ``no_list.<lang>``). For Chinese, Japanese, Thai, Lao, Khmer and Burmese lists
    entries are matched as substrings (no spaces between words) and each match counts as one.

    ``max_ratio`` defaults to 0.005 (one listed word in 200). C4 (Raffel et al. 2020) dropped
    pages with *any* listed word (``max_ratio = 0``); Dodge et al. 2021 ("Documenting Large
    Webtext Corpora") found that rule removed disproportionately much text by and about
    minority groups, so the default tolerates an incidental word and drops pages where such
    words are frequent. Reason: ``too_many_bad_words``.
    """

    name = "bad_words"
    paths = ("word_lists",)
    summary = "ratio of listed bad words per language (bundled English list)"
    reasons = ("too_many_bad_words",)

    word_lists: dict[str, str] = field(default_factory=dict)
    max_ratio: float = 0.005
    default_language: str = "en"

    bounds = {"max_ratio": RATIO}

    def validate(self) -> None:
        self._files = {**DEFAULT_BADWORDS, **self.word_lists}
        for lang, path in self._files.items():
            require_file(path, f"word list for {lang!r}", self.name)
        self._cache_lists: dict[str, Any] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {f"word_list_sha256.{k}": file_digest(v) for k, v in sorted(self._files.items())}

    def _list(self, lang: str) -> Any:
        if lang not in self._cache_lists:
            path = self._files.get(lang)
            if path is None:
                self._cache_lists[lang] = None
            else:
                entries = [e.lower() for e in read_word_list(path)]
                if lang in _NO_SPACE_LANGS:
                    alternatives = "|".join(re.escape(e) for e in sorted(entries, key=len, reverse=True))
                    self._cache_lists[lang] = ("substring", re.compile(alternatives) if entries else None)
                else:
                    singles = frozenset(e for e in entries if len(WORD_RE.findall(e)) == 1)
                    # Phrases indexed by their first word: one pass over the document's words.
                    phrases: dict[str, list[tuple[str, ...]]] = {}
                    for e in entries:
                        words = tuple(WORD_RE.findall(e))
                        if len(words) > 1:
                            phrases.setdefault(words[0], []).append(words)
                    self._cache_lists[lang] = ("words", (singles, phrases))
        return self._cache_lists[lang]

    def apply(self, doc: Document) -> str | None:
        lang = doc.language or self.default_language
        spec = self._list(lang)
        if spec is None:
            self.count(f"no_list.{lang}")
            return None
        v = view(doc)
        n_words = v.n_words
        if n_words == 0:
            return None
        kind, data = spec
        if kind == "substring":
            hits = len(data.findall(v.text.lower())) if data is not None else 0
        else:
            singles, phrases = data
            words = v.words_lower
            hits = 0
            for i, w in enumerate(words):
                if w in singles:
                    hits += 1
                if w in phrases:
                    hits += sum(1 for ph in phrases[w] if tuple(words[i : i + len(ph)]) == ph)
        ratio = hits / n_words
        self.score(doc, "count", hits)
        self.score(doc, "ratio", ratio)
        return "too_many_bad_words" if hits and ratio > self.max_ratio else None


# ------------------------------------------------------------------------------ PII

EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]|\.\d)"
)
# Candidates only; each is validated with the ipaddress module.
IPV6_CANDIDATE_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
# Phone numbers: an optional +country code, then groups of digits separated by spaces, dots,
# dashes or a parenthesised area code; validated to 9-15 digits (E.164 allows at most 15).
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w])")
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


@register
@dataclass
class Pii(Filter):
    """Replaces personal identifiers with placeholders (a transform; never drops).

    - e-mail addresses -> ``email_placeholder`` (``<EMAIL>``);
    - IPv4 and IPv6 addresses (IPv6: at least three non-empty groups, validated with Python's
      ``ipaddress``) -> ``ip_placeholder`` (``<IP_ADDRESS>``);
    - phone numbers -> ``phone_placeholder`` (``<PHONE>``): an optional ``+`` country code,
      an optional parenthesised area code and 2-5 groups of digits separated by spaces, dots
      or dashes, 9 to 15 digits in all; dates such as ``2024-01-31`` are never taken.

    Each kind can be switched off (``emails``, ``ips``, ``phones``). Replacements are counted
    per document in ``scores`` (``pii.emails`` ...) and in the manifest. In annotate mode the
    text is left unchanged and only the counts are written.
    """

    name = "pii"
    summary = "replace e-mail addresses, IP addresses and phone numbers with placeholders"
    transform = True
    reasons = ()

    emails: bool = True
    ips: bool = True
    phones: bool = True
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE>"

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with identifiers replaced, and the number of replacements per kind."""
        counts = {"emails": 0, "ipv4": 0, "ipv6": 0, "phones": 0}
        if self.emails and "@" in text:
            text, counts["emails"] = EMAIL_RE.subn(self.email_placeholder, text)
        if self.ips:
            if "." in text:
                text, counts["ipv4"] = IPV4_RE.subn(self.ip_placeholder, text)
            if ":" in text:

                def ipv6(m: re.Match[str]) -> str:
                    candidate = m.group()
                    address = candidate.split("%")[0]
                    # At least three groups: "a::b" or "fe80::1" are more often code or
                    # shorthand than a person's address.
                    if sum(1 for g in address.split(":") if g) < 3:
                        return candidate
                    try:
                        ipaddress.IPv6Address(address)
                    except ValueError:
                        return candidate
                    counts["ipv6"] += 1
                    return self.ip_placeholder

                text = IPV6_CANDIDATE_RE.sub(ipv6, text)
        if self.phones:

            def phone(m: re.Match[str]) -> str:
                s = m.group()
                digits = sum(c.isdigit() for c in s)
                if not 9 <= digits <= 15 or _DATE_LIKE.match(s):
                    return s
                counts["phones"] += 1
                return self.phone_placeholder

            text = PHONE_RE.sub(phone, text)
        return text, counts

    def apply(self, doc: Document) -> str | None:
        text = doc.text or ""
        new_text, counts = self.scrub(text)
        total = 0
        for kind, n in counts.items():
            self.score(doc, kind, n)
            self.count(f"replaced.{kind}", n)
            total += n
        if total and not self.annotate:
            self.count("docs_changed")
            doc.text = new_text
        return None
