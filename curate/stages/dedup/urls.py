"""URL keys of ``curate dedup --url``: the normalized form of a URL and its 128-bit hash."""

from __future__ import annotations

import hashlib
import struct
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str | None) -> str | None:
    """Canonical form of a URL for ``--url`` dedup, or None when it has no host.

    Lower-cased scheme and host, ``http`` and ``https`` treated alike, a leading ``www.``
    and default ports dropped, the fragment dropped, a trailing slash of the path dropped,
    query parameters sorted (tracking parameters ``utm_*``, ``fbclid``, ``gclid`` dropped).
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if port == _DEFAULT_PORTS.get(scheme):
            port = None
        scheme = "http"
    if host.startswith("www."):
        host = host[4:]
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not (k.lower().startswith("utm_") or k.lower() in ("fbclid", "gclid"))
    ]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def hash128(text: str) -> tuple[int, int]:
    """Two 64-bit halves of a 128-bit hash of a string (URL keys)."""
    return struct.unpack("<QQ", hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
