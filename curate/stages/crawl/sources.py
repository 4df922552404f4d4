"""Where crawl inputs come from: local paths, globs, URLs, S3, Common Crawl snapshots, listings.

:func:`resolve_inputs` turns what a user typed into a flat, ordered list of input names, and
:func:`open_input` opens one of them as a forward-only binary stream, never downloading a
file whole first:

* a local file, a directory (its archive files, recursively, sorted), or a glob;
* ``http(s)://`` URLs, streamed; a 5xx answer or a dropped connection is retried with
  exponential backoff, resuming a dropped body with a ``Range`` request where it stopped;
* ``s3://`` URLs through fsspec + s3fs (``pip install curate[s3]``): one object, or a prefix
  (``s3://bucket/dir/``, a bare ``s3://bucket``, any key without an archive suffix) or a glob
  (``s3://bucket/dir/*.warc.gz``) expanded to its archive objects, sorted. Objects are read
  through s3fs's file object in ranged requests (readahead blocks, 50 MB by default), never
  downloaded whole. Credentials, region and retries come from the usual AWS sources
  (``AWS_ACCESS_KEY_ID`` ..., ``~/.aws``, ``AWS_MAX_ATTEMPTS``); an S3-compatible store (MinIO,
  Ceph, R2, a test server) is named with ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, which
  botocore itself honours, or ``FSSPEC_S3_ENDPOINT_URL``; other s3fs settings (block size)
  through fsspec's config (``FSSPEC_S3_*`` variables, ``~/.config/fsspec/``);
* a Common Crawl snapshot name (``CC-MAIN-2024-10``), expanded through
  ``crawl-data/<name>/warc.paths.gz`` under the Common Crawl base URL;
* ``*.paths`` / ``*.paths.gz`` listings (local or remote): one path or URL per line; relative
  lines are taken relative to the Common Crawl base URL, as in Common Crawl's own listings
  (or to the listing's folder when that file exists locally).
"""

from __future__ import annotations

import glob
import gzip
import http.client
import io
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

from curate.core.errors import InputError
from curate.core.ranges import COUNT, NON_NEGATIVE, POSITIVE, Range

DEFAULT_CC_BASE_URL = "https://data.commoncrawl.org"
ARCHIVE_SUFFIXES = (".warc", ".warc.gz", ".arc", ".arc.gz", ".wet", ".wet.gz", ".warc.wet", ".warc.wet.gz")
SNAPSHOT_RE = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")
CRAWL_NAME_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
USER_AGENT = "curate-crawl/1 (+https://github.com/)"


@dataclass
class HttpOptions:
    """Retry policy for remote inputs (``[http]`` in the crawl config)."""

    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 60.0
    timeout: float = 60.0  # seconds per connect / read

    # Checked when the config is built (curate.core.config.from_dict) and by CrawlConfig.validate().
    bounds: ClassVar[dict[str, Range]] = {
        "retries": COUNT,
        "backoff": NON_NEGATIVE,
        "max_backoff": NON_NEGATIVE,
        "timeout": POSITIVE,
    }


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://", "s3://"))


def is_listing(name: str) -> bool:
    base = name.split("?", 1)[0]
    return base.endswith((".paths", ".paths.gz"))


def crawl_name_of(name: str) -> str | None:
    """The Common Crawl snapshot id in an input name (``CC-MAIN-2024-10``), if there is one."""
    m = CRAWL_NAME_RE.search(name)
    return m.group(0) if m else None


def _is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _expand_local(arg: str) -> list[str]:
    if os.path.isdir(arg):
        found = []
        for root, dirs, files in os.walk(arg):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(os.path.join(root, f) for f in files if _is_archive(f) and not f.startswith("."))
        if not found:
            raise InputError(f"{arg}: directory holds no .warc/.arc/.wet files (optionally .gz)")
        return sorted(found)
    if os.path.isfile(arg):
        return [arg]
    if glob.has_magic(arg):
        found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"{arg}: no file matches this pattern")
        return found
    raise InputError(f"{arg}: no such file or directory")


def _read_listing(name: str, cc_base_url: str, http: HttpOptions) -> list[str]:
    with open_input(name, http) as stream:
        data = stream.read()
    if name.split("?", 1)[0].endswith(".gz"):
        try:
            data = gzip.decompress(data)  # listings are small (a few MB at most)
        except (OSError, EOFError) as exc:
            raise InputError(f"{name}: not a readable .paths.gz listing ({exc})") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{name}: listing is not UTF-8 text") from None
    local_dir = None if is_url(name) else os.path.dirname(os.path.abspath(name))
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if is_url(line) or os.path.isabs(line):
            out.append(line)
        elif local_dir and os.path.exists(os.path.join(local_dir, line)):
            out.append(os.path.join(local_dir, line))
        else:
            out.append(cc_base_url.rstrip("/") + "/" + line.lstrip("/"))
    if not out:
        raise InputError(f"{name}: listing names no files")
    return out


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's text (botocore messages can span lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _s3_filesystem(name: str):
    """The (cached) fsspec S3 filesystem, or an InputError naming the extra to install."""
    try:
        import fsspec

        return fsspec.filesystem("s3")
    except ImportError:
        raise InputError(f"{name}: reading s3:// needs the s3 extra (pip install 'curate[s3]')") from None


def _expand_s3(arg: str) -> list[str]:
    """One ``s3://`` argument -> the object URLs it names (see the module docstring)."""
    path = arg[len("s3://") :]
    bucket, _, key = path.partition("/")
    if not bucket:
        raise InputError(f"{arg}: no bucket in this s3:// URL")
    if key and not key.endswith("/") and not glob.has_magic(key) and _is_archive(key):
        # One object: no request now; it is opened (and a missing key reported) in its turn.
        return [arg]
    fs = _s3_filesystem(arg)
    try:
        if glob.has_magic(key):
            found = fs.glob(path)
        elif key and not key.endswith("/") and fs.isfile(path):
            return [arg]  # an object without an archive suffix, named on purpose
        else:
            found = fs.find(path.rstrip("/"))
    except FileNotFoundError as exc:
        raise InputError(f"{arg}: {_s3_not_found(exc)}") from None
    except Exception as exc:
        raise InputError(f"{arg}: cannot list ({_one_line(exc)})") from None
    archives = sorted("s3://" + p for p in found if _is_archive(p) and not p.rsplit("/", 1)[-1].startswith("."))
    if not archives:
        raise InputError(f"{arg}: no .warc/.arc/.wet objects (optionally .gz) under this prefix")
    return archives


def _s3_not_found(exc: FileNotFoundError) -> str:
    # s3fs raises FileNotFoundError for a missing key (its text: the path, which may well contain
    # "bucket") and for a missing bucket (botocore's NoSuchBucket text).
    text = str(exc).lower()
    return "no such bucket" if "bucket does not exist" in text or "nosuchbucket" in text else "no such object"


def resolve_inputs(
    args: list[str] | tuple[str, ...],
    *,
    cc_base_url: str = DEFAULT_CC_BASE_URL,
    max_files: int | None = None,
    offset: int = 0,
    http: HttpOptions | None = None,
) -> list[str]:
    """Expand the inputs a user gave into the ordered list of archive files to read.

    ``offset`` and ``max_files`` select a window of the expanded list (``--offset 100
    --max-files 10`` takes files 100..109 of a snapshot). A typo'd path is an InputError.
    """
    http = http or HttpOptions()
    out: list[str] = []
    for arg in args:
        if SNAPSHOT_RE.match(arg):
            out.extend(_read_listing(f"{cc_base_url.rstrip('/')}/crawl-data/{arg}/warc.paths.gz", cc_base_url, http))
        elif is_listing(arg):
            if not is_url(arg) and not os.path.isfile(arg):
                raise InputError(f"{arg}: no such file or directory")
            out.extend(_read_listing(arg, cc_base_url, http))
        elif arg.startswith("s3://"):
            out.extend(_expand_s3(arg))
        elif is_url(arg):
            out.append(arg)
        else:
            out.extend(_expand_local(arg))
    # The same file named twice (a dir and a glob) would be processed twice: keep the first.
    seen: set[str] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]
    if offset:
        unique = unique[offset:]
    if max_files is not None:
        unique = unique[:max_files]
    if not unique:
        raise InputError("no input files left after --offset/--max-files")
    return unique


class HttpStream(io.RawIOBase):
    """A streamed HTTP(S) body that survives dropped connections.

    A 5xx or a connection error retries with exponential backoff; when a read fails mid-body
    the request is sent again with ``Range: bytes=<position>-`` and reading goes on where it
    stopped (a server that ignores Range is detected and its bytes skipped up to the position).
    4xx answers are final: the input cannot be read.
    """

    def __init__(self, url: str, options: HttpOptions, sleep: Callable[[float], None] = time.sleep):
        self.url = url
        self.options = options
        self.sleep = sleep
        self.position = 0
        self.retries_used = 0
        self.expected_end: int | None = None
        self._resp = None
        self._open()

    def _open(self) -> None:
        attempt = 0
        while True:
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if self.position:
                headers["Range"] = f"bytes={self.position}-"
            req = urllib.request.Request(self.url, headers=headers)
            try:
                resp = urllib.request.urlopen(req, timeout=self.options.timeout)
                if self.position and resp.status != 206:
                    # No range support: read and drop what we already have.
                    remaining = self.position
                    while remaining:
                        chunk = resp.read(min(remaining, 1 << 20))
                        if not chunk:
                            raise ConnectionError("body shorter than on the previous attempt")
                        remaining -= len(chunk)
                length = resp.headers.get("Content-Length")
                # http.client returns b"" (no error) when a body ends early: remember how long
                # it should be so that a cut is seen and resumed.
                self.expected_end = self.position + int(length) if length and length.isdigit() else None
                self._resp = resp
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code not in (408, 429):
                    raise InputError(f"{self.url}: HTTP {exc.code} {exc.reason}") from None
                error: Exception = exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                error = exc
            attempt += 1
            self.retries_used += 1
            if attempt > self.options.retries:
                reason = getattr(error, "reason", None) or error
                raise InputError(f"{self.url}: unreachable after {attempt} attempts ({reason})") from None
            self.sleep(min(self.options.backoff * 2 ** (attempt - 1), self.options.max_backoff))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        attempt = 0
        while True:
            try:
                n = self._resp.readinto(buffer)  # type: ignore[union-attr]
                if n == 0 and len(buffer) and self.expected_end is not None and self.position < self.expected_end:
                    raise ConnectionError(f"body ended at byte {self.position} of {self.expected_end}")
                self.position += n
                return n
            except (OSError, http.client.HTTPException) as exc:
                attempt += 1
                self.retries_used += 1
                if attempt > self.options.retries:
                    raise InputError(f"{self.url}: connection lost at byte {self.position} ({exc})") from None
                self.sleep(min(self.options.backoff * 2 ** (attempt - 1), self.options.max_backoff))
                try:
                    self._resp.close()  # type: ignore[union-attr]
                except Exception:
                    pass
                self._open()

    def close(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except Exception:
                pass
            self._resp = None
        super().close()


def open_input(name: str, http: HttpOptions | None = None) -> BinaryIO:
    """Open one input as a binary stream (the caller closes it); InputError when it cannot be
    opened at all."""
    http = http or HttpOptions()
    if name.startswith(("http://", "https://")):
        return io.BufferedReader(HttpStream(name, http), buffer_size=1 << 16)  # type: ignore[return-value]
    if name.startswith("s3://"):
        fs = _s3_filesystem(name)
        try:
            # A file object that fetches readahead blocks with ranged GETs as it is read.
            return fs.open(name, "rb")
        except FileNotFoundError as exc:
            raise InputError(f"{name}: {_s3_not_found(exc)}") from None
        except Exception as exc:
            raise InputError(f"{name}: cannot open ({_one_line(exc)})") from None
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file or directory") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror})") from None


def input_size(name: str) -> int | None:
    """Size in bytes of a local input (for progress), None when unknown without a request."""
    if is_url(name):
        return None
    try:
        return os.path.getsize(name)
    except OSError:
        return None
