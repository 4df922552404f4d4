"""The rating server over real HTTP: the API, escaping, tokens, request checks, the CLI, and
durability across ``kill -9`` of a real server process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from curate.cli import cli
from curate.core.comparisons import PAIRS_SCHEMA, read_comparisons
from curate.rate import RATINGS_LOG
from curate.rate.server import RateServer, json_bytes
from curate.rate.session import Rater, RatingSession
from curate.rate.wellbeing import Limits

ROOT = Path(__file__).resolve().parents[2]
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
ANN, BEN = "ann-token-0123456789abcdef", "ben-token-0123456789abcdef"


def write_pairs(path: Path, n: int) -> Path:
    rows = [
        {
            "pair_id": f"p{i:03d}",
            "prompt": f"question {i} {XSS if i == 0 else ''}",
            "response_1": f"first answer {i} & <b>bold</b>",
            "response_2": f"second answer {i} {XSS}",
            "model": "m",
            "meta": None,
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), path)
    return path


@contextmanager
def serving(session: RatingSession, host: str = "127.0.0.1"):
    server = RateServer(session, host, 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def call(port: int, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload


def rate(port, pair_id, choice, rating_id, headers=None, **extra):
    return call(
        port, "POST", "/api/rate", {"rating_id": rating_id, "pair_id": pair_id, "choice": choice, **extra}, headers
    )


def test_api_flow_and_escaping(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 3)
    with RatingSession(tmp_path / "out", pairs, [Rater("solo")]) as session, serving(session) as server:
        port = server.server_port
        status, headers, page = call(port, "GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert b"question" not in page and b'<script src="/app.js"></script>' in page  # no data in the HTML
        status, _, script = call(port, "GET", "/app.js")
        assert status == 200 and b"textContent" in script and b"innerHTML" not in script

        status, headers, body = call(port, "GET", "/api/next")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert b"<" not in body and b">" not in body  # markup is escaped even inside the JSON
        data = json.loads(body)
        assert data["rater"] == "solo" and data["progress"] == {
            "done": 0,
            "total": 3,
            "skipped": 0,
            "passed": 0,
            "held": 0,
        }
        pair = data["pair"]
        assert pair["pair_id"] == "p000" and XSS in pair["prompt"]  # the text itself is intact
        assert {pair["a"], pair["b"]} == {"first answer 0 & <b>bold</b>", f"second answer 0 {XSS}"}

        status, _, body = rate(port, "p000", "a", "r-000000001", reason="A is right", client_ms=1500)
        result = json.loads(body)
        assert status == 200 and result["recorded"] and result["next"]["pair_id"] == "p001"
        assert result["progress"]["done"] == 1
        status, _, body = rate(port, "p000", "a", "r-000000001")  # a retried POST
        assert status == 200 and json.loads(body)["duplicate"]
        status, _, body = rate(port, "p000", "b", "r-000000002")
        assert status == 409 and "already rated" in json.loads(body)["error"]
        assert json.loads(call(port, "GET", "/api/next")[2])["last_rated"] == "p000"
        status, _, body = call(port, "GET", "/api/pair?id=p000")
        assert status == 200 and json.loads(body)["pair"]["choice"] == "a"
        rate(port, "p001", "tie", "r-000000003")
        status, _, body = rate(port, "p002", "skip", "r-000000004")
        result = json.loads(body)
        assert result["next"] is None and result["progress"] == {
            "done": 3,
            "total": 3,
            "skipped": 1,
            "passed": 0,
            "held": 0,
        }
        status, _, body = call(port, "GET", "/api/next")
        assert json.loads(body)["pair"] is None
        assert call(port, "GET", "/nope")[0] == 404
        assert call(port, "POST", "/api/next", {})[0] == 405
    lines = (tmp_path / "out" / RATINGS_LOG).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["elapsed_s"] is not None


def test_json_escaping_round_trips():
    obj = {"t": "<script>&</script> \u2028 é"}
    encoded = json_bytes(obj)
    assert b"<" not in encoded and b"&" not in encoded and json.loads(encoded) == obj


def test_request_checks_without_tokens(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 2)
    with RatingSession(tmp_path / "out", pairs, [Rater("solo")]) as session, serving(session) as server:
        port = server.server_port
        # a page on another site cannot post a form or plain text (CSRF): JSON only
        status, _, _ = call(port, "POST", "/api/rate", raw=b"choice=a", headers={"Content-Type": "text/plain"})
        assert status == 415
        big = json.dumps({"reason": "x" * 70000}).encode()
        assert call(port, "POST", "/api/rate", raw=big, headers={"Content-Type": "application/json"})[0] == 413
        assert call(port, "POST", "/api/rate", raw=b"{oops", headers={"Content-Type": "application/json"})[0] == 400
        # DNS rebinding: a foreign Host name is refused when there are no tokens
        status, _, body = call(port, "GET", "/api/next", headers={"Host": "evil.example:80"})
        assert status == 403 and b"localhost" in body
        assert call(port, "GET", "/api/next", headers={"Host": f"localhost:{port}"})[0] == 200
    assert (tmp_path / "out" / RATINGS_LOG).read_text() == ""


def test_content_note_pass_and_resume_over_http(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 3)  # p000 carries markup and an e-mail address below
    rows = pq.read_table(pairs).to_pylist()
    rows[1]["prompt"] += " mail me: someone@example.org"
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), pairs)
    limits = Limits(break_after_s=0.0)  # a break is due as soon as anything was rated
    with (
        RatingSession(tmp_path / "out", pairs, [Rater("solo")], limits=limits) as session,
        serving(session) as server,
    ):
        port = server.server_port
        rate(port, "p000", "a", "r-000000001")
        status, _, body = call(port, "GET", "/api/next")
        data = json.loads(body)
        assert status == 200 and data["pair"]["pair_id"] == "p001" and data["pair"]["flags"] == ["personal_data"]
        assert data["wellbeing"]["break_due"] and data["wellbeing"]["break_after_minutes"] == 0.0
        # resuming is a POST like a rating: JSON only, so another site cannot trigger it
        status, _, _ = call(port, "POST", "/api/resume", raw=b"x", headers={"Content-Type": "text/plain"})
        assert status == 415
        status, _, body = call(port, "POST", "/api/resume", {})
        data = json.loads(body)
        assert status == 200 and data["pair"]["pair_id"] == "p001"  # where it stopped
        status, _, body = rate(port, "p001", "pass", "r-000000002", revealed=False)
        result = json.loads(body)
        assert status == 200 and result["progress"]["passed"] == 1 and result["progress"]["total"] == 2
        assert result["next"]["pair_id"] == "p002" and result["next"]["flags"] == []
        assert call(port, "GET", "/api/resume")[0] == 405
    records = [json.loads(x) for x in (tmp_path / "out" / RATINGS_LOG).read_text().splitlines()]
    assert records[1]["flags"] == ["personal_data"] and records[1]["revealed"] is False
    assert "revealed" not in records[0] and records[0]["flags"] == []


def test_tokens(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 30)
    raters = [Rater("ann", ANN), Rater("ben", BEN)]
    with (
        RatingSession(tmp_path / "out", pairs, raters, require_tokens=True) as session,
        serving(session, host="127.0.0.1") as server,
    ):
        port = server.server_port
        for path in ("/", "/app.js", "/api/next"):
            assert call(port, "GET", path)[0] == 401
            assert call(port, "GET", path, headers={"Authorization": "Bearer wrong-token-000000000"})[0] == 403
        assert rate(port, "p000", "a", "r-000000001")[0] == 401
        status, _, body = call(port, "GET", "/api/next", headers={"Authorization": f"Bearer {ANN}"})
        assert status == 200 and json.loads(body)["rater"] == "ann"
        # the personal link sets a cookie and drops the token from the address bar
        status, headers, _ = call(port, "GET", f"/?token={BEN}")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"curate_rate_{port}=" in cookie
        other_apps = 'jupyter="bad value; x"; session=1'  # cookies of other servers on this host
        status, _, body = call(port, "GET", "/api/next", headers={"Cookie": f"{other_apps}; {cookie.split(';')[0]}"})
        assert status == 200 and json.loads(body)["rater"] == "ben"
        assert call(port, "GET", "/?token=not-a-valid-token-00000")[0] == 403
        # a rater cannot rate a pair that is not theirs
        ann_pairs = set(session.assignment.queue("ann"))
        ben_only = next(p for p in session.assignment.queue("ben") if p not in ann_pairs)
        status, _, _ = rate(port, ben_only, "a", "r-000000002", {"Authorization": f"Bearer {ANN}"})
        assert status == 404
        status, _, body = rate(port, ben_only, "b", "r-000000003", {"Cookie": cookie.split(";")[0]})
        assert status == 200 and json.loads(body)["progress"]["done"] == 1
    records = [json.loads(x) for x in (tmp_path / "out" / RATINGS_LOG).read_text().splitlines()]
    assert [(r["rater"], r["pair_id"]) for r in records] == [("ben", ben_only)]


def test_cli_refuses_open_host_without_tokens(tmp_path):
    pairs = str(ROOT / "samples" / "pairs.parquet")
    runner = CliRunner()
    result = runner.invoke(cli, ["rate", pairs, "-o", str(tmp_path / "r"), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--raters" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        cli,
        [
            "rate",
            pairs,
            "-o",
            str(tmp_path / "r"),
            "--host",
            "0.0.0.0",
            "--raters",
            str(ROOT / "samples" / "raters.toml"),
        ],
    )
    assert result.exit_code == 2 and "example token" in result.output
    result = runner.invoke(cli, ["rate", pairs, "-o", str(tmp_path / "r"), "--rater", "no spaces!"])
    assert result.exit_code == 2 and "--rater must be" in result.output and not (tmp_path / "r").exists()
    result = runner.invoke(cli, ["rate", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "error: " in result.output and "no such file" in result.output
    result = runner.invoke(cli, ["rate", "stats", str(tmp_path)])
    assert result.exit_code == 2 and "not a rating directory" in result.output
    assert "export DIR" in runner.invoke(cli, ["rate", "--help"]).output


def start_server(pairs: Path, out: Path) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "rate", str(pairs), "-o", str(out), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("serving on http://127.0.0.1:"):
            return proc, int(line.split(":")[2].split("/")[0])
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 6)
    out = tmp_path / "ratings"
    proc, port = start_server(pairs, out)
    try:
        for i, choice in enumerate(["a", "b", "tie"]):
            status, _, body = rate(port, f"p{i:03d}", choice, f"rating-{i:05d}", reason=f"r{i}")
            assert status == 200 and json.loads(body)["recorded"]
        proc.send_signal(signal.SIGKILL)  # no chance to flush or clean up
        proc.wait(timeout=60)  # a hang guard, generous for a loaded CI machine
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert len((out / RATINGS_LOG).read_text().splitlines()) == 3  # every acknowledged rating is on disk

    proc, port = start_server(pairs, out)  # restart in the same directory: the lock was released
    try:
        # the page retries the last rating (its answer was lost in the crash): recorded once
        status, _, body = rate(port, "p002", "tie", "rating-00002", reason="r2")
        assert status == 200 and json.loads(body)["duplicate"]
        data = json.loads(call(port, "GET", "/api/next")[2])
        assert data["pair"]["pair_id"] == "p003" and data["progress"]["done"] == 3  # resumes where it stopped
        assert rate(port, "p003", "b", "rating-00003")[0] == 200
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop that says everything is saved
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "4 ratings" in err
    finally:
        if proc.poll() is None:
            proc.kill()
    records = [json.loads(x) for x in (out / RATINGS_LOG).read_text().splitlines()]
    assert [r["rating_id"] for r in records] == [f"rating-{i:05d}" for i in range(4)]

    runner = CliRunner()
    result = runner.invoke(cli, ["rate", "export", str(out), "-o", str(tmp_path / "c.parquet")])
    assert result.exit_code == 0, result.output
    rows = read_comparisons(tmp_path / "c.parquet")
    assert len(rows) == 3  # a, b, b; the tie stays in the log only
    assert [r["reason"] for r in rows] == ["r0", "r1", None] and {r["rater"] for r in rows} == {"local"}
    result = runner.invoke(cli, ["rate", "stats", str(out)])
    assert result.exit_code == 0 and "local" in result.output and "4 ratings" in result.output
