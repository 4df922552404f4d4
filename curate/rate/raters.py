"""The people who rate: ``raters.toml``, one ``[[raters]]`` table per person.

Each rater has a ``name`` (recorded with every rating), a secret ``token`` (their password in
the personal link) and, optionally, a ``group``: a label the team records *with the rater's
consent* (a language, a region, a team) so that ``curate rate stats --by group`` can show
where groups disagree. The group is written into every rating and every exported comparison.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from curate.core.config import load_toml
from curate.core.errors import ConfigError

RATER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
GROUP_NAME = RATER_NAME  # short labels only: they end up in file columns and table headers
TOKEN = re.compile(r"^[A-Za-z0-9_.~-]+$")  # safe unquoted in a URL and a cookie (token_urlsafe's alphabet)
MIN_TOKEN_CHARS = 16
# The tokens in samples/raters.toml start with this; they are public, so never accept them.
EXAMPLE_TOKEN_PREFIX = "change-me"
RATER_KEYS = ("name", "token", "group")
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


@dataclass(frozen=True)
class Rater:
    name: str
    token: str | None = None
    group: str | None = None


def load_raters(path: str | os.PathLike, allow_example_tokens: bool = False) -> list[Rater]:
    """``[[raters]]`` tables with ``name``, ``token`` and an optional ``group``; names and
    tokens unique, tokens long.

    The public example tokens of ``samples/raters.toml`` pass only with ``allow_example_tokens``
    (the server allows them on the loopback address, for trying things out).
    """
    data = load_toml(path)
    unknown = sorted(set(data) - {"raters"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected [[raters]] tables with name and token"
        )
    entries = data.get("raters")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{path}: no raters; add [[raters]] tables with name = "..." and token = "..."')
    raters = [_rater(entry, f"{path}: raters[{i}]", allow_example_tokens) for i, entry in enumerate(entries)]
    names = [r.name for r in raters]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{path}: rater name {dup!r} appears twice")
    if len({r.token for r in raters}) != len(raters):
        raise ConfigError(f"{path}: two raters share a token; each rater needs their own")
    return raters


def _rater(entry: object, where: str, allow_example_tokens: bool) -> Rater:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table with name and token")
    extra = sorted(set(entry) - set(RATER_KEYS))
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}; known keys: {', '.join(RATER_KEYS)}")
    name, token, group = entry.get("name"), entry.get("token"), entry.get("group")
    if not isinstance(name, str) or not RATER_NAME.match(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits or _.@- (got {name!r})")
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where} ({name}): token must be a string of at least {MIN_TOKEN_CHARS} characters; "
            f"make one with: {MAKE_TOKEN}"
        )
    if token.startswith(EXAMPLE_TOKEN_PREFIX) and not allow_example_tokens:
        raise ConfigError(f"{where} ({name}): replace the example token with a secret one ({MAKE_TOKEN})")
    if not TOKEN.match(token):
        raise ConfigError(f"{where} ({name}): token may hold only letters, digits and _.~-")
    if group is not None and (not isinstance(group, str) or not GROUP_NAME.match(group)):
        raise ConfigError(f"{where} ({name}): group must be 1-64 letters, digits or _.@- (got {group!r})")
    return Rater(name, token, group)
