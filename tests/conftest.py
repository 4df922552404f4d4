"""Shared test setup: progress output off, and the builders several test folders use, as
fixtures (tests never import each other): document lists, a tiny random-weight checkpoint,
WARC files built in memory and a loopback HTTP server. Nothing here reads ../shared; every
input is generated."""

from __future__ import annotations

import gzip as gzip_mod
import http.server
import io
import os
import threading
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from warcio.warcwriter import WARCWriter

os.environ.setdefault("CURATE_PROGRESS", "0")


@pytest.fixture
def make_docs():
    """Build simple Documents: make_docs(n, source="web", text=lambda i: ...)."""
    from curate.core.document import Document

    def build(n: int, source: str = "web", text=None, start_day: int = 1):
        return [
            Document(
                id=f"{source}-{i:05d}",
                text=text(i) if text else f"Document {i} from {source}. " * 5,
                url=f"https://www.example{i % 7}.com/page/{i}",
                source=source,
                date=datetime(2024, 1, 1 + (start_day + i) % 28, tzinfo=UTC),
            )
            for i in range(n)
        ]

    return build


@pytest.fixture
def tiny_checkpoint():
    """``tiny_checkpoint(path, seed=0, block_size=64, stage="pretrain", kind="lm")`` saves a
    2-layer model with random weights (byte tokenizer) as a checkpoint and returns its path."""
    import torch

    from curate.core.tokenizer import ByteTokenizer
    from train.checkpoint import save_checkpoint
    from train.model import GPT, GPTConfig

    def build(path, seed: int = 0, block_size: int = 64, stage: str = "pretrain", kind: str = "lm"):
        cfg = GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
        torch.manual_seed(seed)
        return save_checkpoint(
            path,
            0,
            model_state=GPT(cfg).state_dict(),
            model_config=cfg.to_dict(),
            meta={"stage": stage, "training_cutoff": "2026-01-01"},
            kind=kind,
        )

    return build


@pytest.fixture
def warc_kit():
    """WARC builders and a loopback HTTP server for the crawl tests."""
    return SimpleNamespace(
        article_html=article_html,
        http_block=http_block,
        make_warc=make_warc,
        simple_pages=simple_pages,
        member_offsets=member_offsets,
        gunzip=gunzip,
        LoopbackServer=LoopbackServer,
        free_port_unreachable=free_port_unreachable,
        env_without=env_without,
    )


# ------------------------------------------------------------------ WARC builders (warc_kit)


@pytest.fixture
def data_stages():
    """``data_stages(warc, work, tokens)``: crawl -> filter (the URL blocklist drops
    ``blocked.example.net``) -> dedup (threshold 0.8) -> mix (one web source, seed 1) into the
    pipeline's folder names under ``work``: a small work directory for trace and forget."""

    def run(warc, work, tokens: str) -> None:
        from curate.runtime.stage import StageContext
        from curate.stages import crawl, dedup, mix
        from curate.stages import filter as filter_stage

        def ctx(inputs, out):
            return StageContext(inputs, str(work / out), progress=False)

        crawl.run(crawl.load_config(None), ctx([str(warc)], "crawl"))
        chain = {"filters": [{"name": "url_blocklist", "domains": ["blocked.example.net"]}]}
        filter_stage.run(filter_stage.FilterConfig(chain=chain), ctx([str(work / "crawl")], "filter"))
        dedup.run(dedup.DedupConfig(threshold=0.8), ctx([str(work / "filter")], "dedup"))
        sources = [{"name": "web", "paths": [str(work / "dedup")], "weight": 1.0}]
        mix.run(mix.load_mix_config(None, {"sources": sources, "tokens": tokens, "seed": 1}), ctx([], "mix"))

    return run


def article_html(title: str, n_paras: int = 4, lang: str = "en", charset: str | None = "utf-8") -> str:
    para = (
        "This paragraph about {t} is long enough to look like real content written for readers, "
        "with several clauses, some detail and a clear point that a main text extractor should keep. "
    )
    body = "".join(f"<p>{para.format(t=title)}Paragraph number {i}.</p>" for i in range(n_paras))
    meta = f'<meta charset="{charset}">' if charset else ""
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head>{meta}<title>{title}</title></head><body>'
        f'<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/about">About</a></nav>'
        f"<article><h1>{title}</h1>{body}</article><footer>Copyright footer text</footer></body></html>"
    )


def http_block(
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    status: str = "200 OK",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    lines = [f"HTTP/1.1 {status}"] + ([f"Content-Type: {content_type}"] if content_type else [])
    lines += [f"{k}: {v}" for k, v in (headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def make_warc(
    pages: list[tuple[str, bytes]],
    gzip: bool = True,
    info: str | None = "isPartOf: CC-MAIN-2024-10",
    rtype: str = "response",
    date: str = "2024-03-01T12:00:00Z",
) -> bytes:
    """A WARC (one gzip member per record when ``gzip``) with a warcinfo record and one
    ``rtype`` record per (url, block); record ids are fixed (uuid ...0001, ...0002 ...)."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=gzip)
    n = 0

    def rid() -> str:
        nonlocal n
        n += 1
        return f"<urn:uuid:00000000-0000-4000-8000-{n:012d}>"

    if info is not None:
        data = (info + "\r\n").encode()
        w.write_record(
            w.create_warc_record(
                None,
                "warcinfo",
                payload=io.BytesIO(data),
                length=len(data),
                warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": rid()},
                warc_content_type="application/warc-fields",
            )
        )
    for url, block in pages:
        ctype = "application/http; msgtype=response" if rtype == "response" else "text/plain"
        w.write_record(
            w.create_warc_record(
                url,
                rtype,
                payload=io.BytesIO(block),
                length=len(block),
                warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": rid()},
                warc_content_type=ctype,
            )
        )
    return buf.getvalue()


def simple_pages(n: int, prefix: str = "page") -> list[tuple[str, bytes]]:
    return [
        (f"https://example.com/{prefix}/{i}", http_block(article_html(f"{prefix} title {i}").encode()))
        for i in range(n)
    ]


def member_offsets(data: bytes) -> list[int]:
    """Start offsets of the gzip members of ``data``."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        pos = len(data) - len(d.unused_data)
    return offsets


def gunzip(data: bytes) -> bytes:
    return gzip_mod.decompress(data)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Callable] = {}

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?")[0])  # type: ignore[attr-defined]
        self.server.hits.append((self.path, self.headers.get("Range")))  # type: ignore[attr-defined]
        if route is None:
            self.send_error(404)
            return
        route(self)


class LoopbackServer:
    """http.server on 127.0.0.1 in a thread; ``routes`` maps paths to handler callables."""

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}  # type: ignore[attr-defined]
        self.httpd.hits = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def routes(self) -> dict:
        return self.httpd.routes  # type: ignore[attr-defined]

    @property
    def hits(self) -> list:
        return self.httpd.hits  # type: ignore[attr-defined]

    def serve_bytes(self, path: str, data: bytes, fail_first: int = 0, drop_at: int | None = None) -> None:
        """Serve ``data`` at ``path``: the first ``fail_first`` requests get a 503; with
        ``drop_at`` the first full response is cut after that many bytes (Range honoured)."""
        state = {"fails": fail_first, "dropped": False}

        def handler(req: http.server.BaseHTTPRequestHandler) -> None:
            if state["fails"] > 0:
                state["fails"] -= 1
                req.send_error(503)
                return
            start = 0
            rng = req.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                req.send_response(206)
                req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                req.send_response(200)
            body = data[start:]
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            if drop_at is not None and not state["dropped"] and start == 0:
                state["dropped"] = True
                req.wfile.write(body[:drop_at])
                req.wfile.flush()
                req.close_connection = True
                return
            req.wfile.write(body)

        self.routes[path] = handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port_unreachable() -> str:
    """A loopback URL nothing listens on."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/nothing.warc.gz"


def env_without(*names: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in names:
        env.pop(name, None)
    return env
