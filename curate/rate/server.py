"""The HTTP server behind the rating page (standard library ``http.server``, one thread per request).

Routes (all need a rater; see :meth:`Handler._rater`):

==========================  ===================================================================
``GET /``                   the page; ``/?token=...`` signs a rater in (cookie) and redirects to ``/``
``GET /app.js``, ``/app.css``  the page's script and style
``GET /api/next``           ``{rater, pair, progress, last_rated, wellbeing}``: the rater's next
                            pair (null when done), with ``flags`` (content note reasons)
``GET /api/pair?id=ID``     one of the rater's pairs with their current choice (to go back)
``POST /api/rate``          ``{rating_id, pair_id, choice, reason?, client_ms?, revise?, revealed?}``
                            -> ``{recorded, duplicate, progress, next, wellbeing}`` once on disk
``POST /api/resume``        ``{}``: the break is over -> the same answer as ``/api/next``
==========================  ===================================================================

``wellbeing`` says whether a break is due (the page pauses until the rater resumes) and whether
a cap on flagged pairs holds some back (:meth:`RatingSession.wellbeing`).

Signing in: with tokens configured, a request carries the rater's token as ``Authorization:
Bearer TOKEN`` or in the cookie set by ``/?token=``; none gives 401, a wrong one 403. The cookie
is HttpOnly and SameSite=Strict, and POSTs must be ``application/json``, so another site cannot
rate on a rater's behalf. Without tokens (one local rater, loopback only) the ``Host`` header
must name the loopback address, which stops DNS-rebinding pages from reaching the server.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from curate.core.errors import CurateError
from curate.rate import page
from curate.rate.session import RateError, Rater, RatingSession

MAX_BODY_BYTES = 64 * 1024
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSETS = {
    "/": ("text/html; charset=utf-8", page.HTML),
    "/app.js": ("text/javascript; charset=utf-8", page.JS),
    "/app.css": ("text/css; charset=utf-8", page.CSS),
}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def json_bytes(obj: Any) -> bytes:
    # < > & only occur inside JSON strings, so escaping them keeps the JSON valid and makes it
    # inert even if something ever rendered the response as HTML.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")


class RateServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, session: RatingSession, host: str = "127.0.0.1", port: int = 8765, verbose: bool = False):
        self.address_family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.session = session
        self.verbose = verbose
        self.bind_host = host.strip("[]")
        try:
            super().__init__((self.bind_host, port), Handler)
        except OSError as exc:
            raise CurateError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port (0 = any free port)"
            ) from None
        self.cookie_name = f"curate_rate_{self.server_port}"  # cookies ignore ports: keep servers apart

    def url(self, rater: Rater | None = None) -> str:
        host = self.bind_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        base = f"http://{host}:{self.server_port}/"
        return f"{base}?token={quote(rater.token, safe='')}" if rater and rater.token else base


class Handler(BaseHTTPRequestHandler):
    server: RateServer
    server_version = "curate-rate"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms
    # (delayed ACK) for the second one on every rating.
    disable_nagle_algorithm = True

    # -- plumbing --------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            # Never print tokens: drop query strings from the request line.
            line = (format % args).replace(self.path, urlsplit(self.path).path)
            sys.stderr.write(f"{self.address_string()} {line}\n")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json_bytes(obj), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        if self.path.startswith("/api/"):
            self._json(status, {"error": message})
        else:
            text = f"{status} {HTTPStatus(status).phrase}: {message}\n"
            self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _host_ok(self) -> bool:
        if self.server.session.require_tokens:
            return True
        host = (self.headers.get("Host") or "").strip()
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
        return is_loopback(name)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        # Parsed by hand: other apps on this host share the Cookie header (cookies ignore ports),
        # and one odd cookie of theirs must not hide ours (SimpleCookie stops at the first).
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.server.cookie_name:
                return value.strip('"')
        return None

    def _rater(self) -> Rater | None:
        """The signed-in rater, or None after answering 401/403."""
        token = self._token()
        rater = self.server.session.authenticate(token)
        if rater is None:
            if token:
                self._error(403, "invalid token")
            else:
                self._error(401, "sign in with your personal link (http://HOST:PORT/?token=...)")
        return rater

    def _body(self) -> Any:
        if not (self.headers.get("Content-Type") or "").lower().startswith("application/json"):
            raise RateError("send the rating as application/json", 415)
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RateError("a Content-Length header is required", 411) from None
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RateError(f"request body over {MAX_BODY_BYTES} bytes", 413)
        data = self.rfile.read(length)
        try:
            return json.loads(data)
        except ValueError:
            raise RateError("request body is not valid JSON") from None

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            if not self._host_ok():
                self._error(
                    403,
                    "this server answers only to localhost (start it with --host and --raters "
                    "to rate from other machines)",
                )
                return
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if self.command == "GET" and url.path == "/" and "token" in query:
                self._sign_in(query["token"][0])
                return
            if url.path == "/favicon.ico":  # browsers ask on their own; nothing to hide, nothing to send
                self._send(204, b"", "image/x-icon")
                return
            rater = self._rater()
            if rater is None:
                return
            session = self.server.session
            if self.command == "GET" and url.path in ASSETS:
                content_type, text = ASSETS[url.path]
                self._send(200, text.encode("utf-8"), content_type)
            elif (self.command, url.path) in (("GET", "/api/next"), ("POST", "/api/resume")):
                if self.command == "POST":
                    self._body()  # the same content-type rule as every POST: no cross-site resumes
                    session.resume(rater.name)
                self._json(
                    200,
                    {
                        "rater": rater.name,
                        "pair": session.next_pair(rater.name),
                        "progress": session.progress(rater.name),
                        "last_rated": session.last_rated(rater.name),
                        "wellbeing": session.wellbeing(rater.name),
                    },
                )
            elif self.command == "GET" and url.path == "/api/pair":
                pair = session.pair_for(rater.name, (query.get("id") or [""])[0])
                self._json(200, {"rater": rater.name, "pair": pair, "progress": session.progress(rater.name)})
            elif self.command == "POST" and url.path == "/api/rate":
                result = session.rate(rater.name, self._body())
                result["next"] = session.next_pair(rater.name)
                result["wellbeing"] = session.wellbeing(rater.name)
                self._json(200, result)
            elif url.path in ASSETS or url.path in ("/api/next", "/api/pair", "/api/rate", "/api/resume"):
                self._error(405, f"{self.command} is not allowed here")
            else:
                self._error(404, "no such page")
        except RateError as exc:
            self._error(exc.status, str(exc))
        except CurateError as exc:  # e.g. the log cannot be written: the client keeps and retries the rating
            self._error(503, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # pragma: no cover - a bug; keep serving the other raters
            traceback.print_exc(file=sys.stderr)
            try:
                self._error(500, "internal error (see the server's terminal)")
            except OSError:
                pass

    def _sign_in(self, token: str) -> None:
        session = self.server.session
        if not session.require_tokens:
            self._send(303, b"", "text/plain", {"Location": "/"})
            return
        if session.authenticate(token) is None:
            self._error(403, "invalid token: ask for your personal link")
            return
        cookie = f"{self.server.cookie_name}={token}; Path=/; HttpOnly; SameSite=Strict"
        self._send(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})
