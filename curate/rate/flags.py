"""Content notes: which pairs may be disturbing to read, by the same rules the corpus filters use.

A pair is *flagged* when its prompt or either answer trips one of:

- ``offensive_words``: a word or phrase of the ``bad_words`` filter's lists (the bundled English
  list, plus the chain's ``word_lists``). The corpus filter drops a page only above a ratio of
  listed words; for a content note one word is enough, so the ratio here is 0;
- ``watch_words``: a word or phrase of ``--flag-words FILE`` (one per line, ``#`` comments,
  whole words, case-insensitive: the ``bad_words`` filter's matching);
- ``blocked_site``: a URL or a bare domain in the text that the chain's ``url_blocklist``
  tables block (subdomains and patterns as the filter matches them);
- ``personal_data``: an e-mail address, phone number or IP address (the ``pii`` filter's
  detectors, with the chain's switches).

The filters come from the ``filters`` package itself (built with the chain's parameters), so a
team's blocklist and word lists mean the same thing in ``curate filter`` and here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from curate.core.config import load_toml, resolve_path, resolve_paths
from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.rate.pairs import Pair, PairStore
from filters.base import Filter, file_digest, read_word_list
from filters.registry import build_filter
from filters.safety import DEFAULT_BADWORDS, BadWords, Pii, UrlBlocklist

# Reason code -> what the page's content note says (the page keeps its own copy of the words).
FLAG_REASONS = {
    "offensive_words": "offensive or sexual language",
    "watch_words": "words on this team's watch list",
    "blocked_site": "a link to a blocked site",
    "personal_data": "personal data (an e-mail address, phone number or IP address)",
}
CHAIN_TABLES = ("bad_words", "url_blocklist", "pii")
# URLs with a scheme or www., and bare host names ("visit example.com"); both checked as URLs.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]{}]+", re.IGNORECASE)
_HOST = re.compile(r"(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?![\w-])", re.IGNORECASE)
MAX_HOSTS = 200  # per pair: a text of nothing but domains is checked on its first ones


class ContentCheck:
    """The flag reasons of a pair; built once per session, used on every pair."""

    def __init__(
        self,
        bad_words: list[BadWords],
        watch_words: BadWords | None = None,
        blocklists: list[UrlBlocklist] | None = None,
        pii: Pii | None = None,
    ):
        self.bad_words = bad_words
        self.watch_words = watch_words
        self.blocklists = blocklists or []
        self.pii = pii

    @classmethod
    def build(cls, flag_words: str | os.PathLike | None = None, chain: str | os.PathLike | None = None) -> ContentCheck:
        """The bundled bad-words list and the PII detectors, the tables of a filter ``chain``
        file (``bad_words``, ``url_blocklist``, ``pii``; others are ignored) and ``flag_words``."""
        specs = _chain_tables(chain) if chain else {}
        bad_spec = (specs.get("bad_words") or [{"name": "bad_words"}])[-1]
        listed = build_filter(bad_spec, where=f"{chain}: bad_words")
        assert isinstance(listed, BadWords)
        languages = {**DEFAULT_BADWORDS, **listed.word_lists}
        bad_words = [
            BadWords(word_lists=dict(languages), max_ratio=0.0, default_language=lang) for lang in sorted(languages)
        ]
        watch = None
        if flag_words is not None:
            if not os.path.isfile(flag_words):
                raise ConfigError(f"--flag-words {flag_words}: no such file")
            if not read_word_list(flag_words):
                raise ConfigError(f"--flag-words {flag_words}: no words in it (one word or phrase per line)")
            watch = BadWords(word_lists={"en": str(flag_words)}, max_ratio=0.0, default_language="en")
        blocklists = [build_filter(spec, where=f"{chain}: url_blocklist") for spec in specs.get("url_blocklist", [])]
        pii_spec = (specs.get("pii") or [{"name": "pii"}])[-1]
        pii = build_filter(pii_spec, where=f"{chain}: pii")
        assert isinstance(pii, Pii)
        return cls(bad_words, watch, [b for b in blocklists if isinstance(b, UrlBlocklist)], pii)

    def fingerprint(self) -> str:
        """Changes when a list, a blocklist or a switch changes (flags are then recomputed)."""
        parts: list[Any] = []
        for f in [*self.bad_words, self.watch_words, *self.blocklists, self.pii]:
            if f is not None:
                parts.append([f.name, _plain(f.params()), f.fingerprint()])
        if self.watch_words is not None:
            parts.append(file_digest(self.watch_words.word_lists["en"]))
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def reasons(self, pair: Pair) -> list[str]:
        """The flag reasons of ``pair`` in :data:`FLAG_REASONS` order; empty when none."""
        text = "\n\n".join((pair.prompt, pair.response_1, pair.response_2))
        doc = Document(id=pair.pair_id, text=text)
        found = []
        if any(f(doc) for f in self.bad_words):
            found.append("offensive_words")
        if self.watch_words is not None and self.watch_words(doc):
            found.append("watch_words")
        if self.blocklists and self._blocked(pair.pair_id, text):
            found.append("blocked_site")
        if self.pii is not None and any(self.pii.scrub(text)[1].values()):
            found.append("personal_data")
        return found

    def _blocked(self, pair_id: str, text: str) -> bool:
        urls = [m.group() for m in _URL.finditer(text)][:MAX_HOSTS]
        urls += [f"http://{m.group()}" for m in _HOST.finditer(text)][: MAX_HOSTS - len(urls)]
        for url in urls:
            if not url.lower().startswith(("http://", "https://")):
                url = f"http://{url}"
            doc = Document(id=pair_id, text="", url=url)
            if any(f(doc) for f in self.blocklists):
                return True
        return False


def flag_pairs(store: PairStore, check: ContentCheck) -> dict[str, list[str]]:
    """The flag reasons of the pairs to serve (flagged ones only), stored in the pairs database:
    computed once per input and check, read back on a restart with the same ones."""
    key = f"{store.info('fingerprint')}:{check.fingerprint()}"
    if store.info("flags_key") == key:
        return store.flags()
    flags = {pair.pair_id: reasons for pair in store.active_pairs() if (reasons := check.reasons(pair))}
    store.save_flags(flags, key)
    return flags


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in ("mode", "label")}


def _chain_tables(path: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """The chain file's ``bad_words``, ``url_blocklist`` and ``pii`` tables, their files
    resolved against the chain file's folder (as ``curate filter --config`` resolves them)."""
    data = load_toml(path)
    specs = data.get("filters")
    if not isinstance(specs, list):
        raise ConfigError(f"{path}: no [[filters]] tables (expected a filter chain such as samples/filters.toml)")
    base = os.path.dirname(path)
    found: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("name") not in CHAIN_TABLES:
            continue
        spec = {k: v for k, v in spec.items() if k not in ("mode", "label", "max_ratio")}
        cls: type[Filter] = {"bad_words": BadWords, "url_blocklist": UrlBlocklist, "pii": Pii}[spec["name"]]
        for key in cls.paths:
            value = spec.get(key)
            if isinstance(value, dict):
                spec[key] = {k: resolve_path(v, base) for k, v in value.items()}
            elif value:
                spec[key] = resolve_paths(value, base)
        found.setdefault(spec["name"], []).append(spec)
    if not found:
        raise ConfigError(f"{path}: no {', '.join(CHAIN_TABLES)} table to flag pairs with")
    return found
