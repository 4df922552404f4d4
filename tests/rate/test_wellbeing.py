"""Rater well-being without HTTP: content notes, flagged pairs spread and capped, passes that do
not count against anyone, skipped pairs rated by another rater, breaks, active time."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.comparisons import PAIRS_SCHEMA
from curate.core.errors import ConfigError
from curate.rate.assign import Assignment, ranked_raters, spread
from curate.rate.export import export_ratings
from curate.rate.flags import ContentCheck
from curate.rate.pairs import Pair
from curate.rate.session import RateError, Rater, RatingSession
from curate.rate.stats import compute_stats, format_stats
from curate.rate.wellbeing import PAUSE_S, SESSION_GAP_S, Limits, active_seconds

ROOT = Path(__file__).resolve().parents[2]
RATERS = [Rater("ann", "ann-token-0123456789"), Rater("ben", "ben-token-0123456789"), Rater("cal", "cal-token-012345")]


class Clock:
    """A settable time source for the session (seconds)."""

    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def write_pairs(path: Path, n: int, flagged: set[int] = frozenset()) -> Path:
    """``n`` pairs; those in ``flagged`` mention a zebra (the test's --flag-words word)."""
    rows = [
        {
            "pair_id": f"p{i:03d}",
            "prompt": f"question {i}" + (" about the zebra" if i in flagged else ""),
            "response_1": f"answer one {i}",
            "response_2": f"answer two {i}",
            "model": "m",
            "meta": None,
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), path)
    return path


def watch_words(tmp_path: Path) -> Path:
    path = tmp_path / "flag-words.txt"
    path.write_text("# test list\nzebra\n")
    return path


def rate(session: RatingSession, rater: str, pair_id: str, choice: str, n: int, **extra) -> dict:
    return session.rate(
        rater, {"rating_id": f"r-{rater}-{n:06d}", "pair_id": pair_id, "choice": choice, "client_ms": 20_000, **extra}
    )


# -- content notes -----------------------------------------------------------------------------


def test_content_check_reasons_and_one_line_errors(tmp_path):
    chain = tmp_path / "chain.toml"
    chain.write_text('[[filters]]\nname = "url_blocklist"\ndomains = ["blocked.example"]\n')
    check = ContentCheck.build(watch_words(tmp_path), chain)

    def reasons(prompt: str, answer: str = "fine") -> list[str]:
        return check.reasons(Pair("x", prompt, answer, "other answer"))

    assert reasons("What is the capital of France?") == []
    assert reasons("Where can I find free porn?") == ["offensive_words"]
    assert reasons("Tell me about the Zebra.") == ["watch_words"]
    assert reasons("hello", "see https://www.blocked.example/page") == ["blocked_site"]
    assert reasons("visit cdn.blocked.example today") == ["blocked_site"]  # a bare host, a subdomain
    assert reasons("visit unblocked.example today") == []
    assert reasons("write to jane.doe@example.com") == ["personal_data"]
    assert reasons("zebra porn", "call +44 20 7946 0958") == ["offensive_words", "watch_words", "personal_data"]
    # the same check, the same fingerprint; another list, another one
    assert check.fingerprint() == ContentCheck.build(watch_words(tmp_path), chain).fingerprint()
    assert check.fingerprint() != ContentCheck.build(None, chain).fingerprint()

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    no_tables = tmp_path / "other.toml"
    no_tables.write_text('[[filters]]\nname = "gopher_quality"\n')
    typo = tmp_path / "typo.toml"
    typo.write_text('[[filters]]\nname = "url_blocklist"\ndomain = ["x.example"]\n')
    for kwargs, message in [
        ({"flag_words": tmp_path / "missing.txt"}, "no such file"),
        ({"flag_words": empty}, "no words in it"),
        ({"chain": no_tables}, "no bad_words, url_blocklist, pii table"),
        ({"chain": typo}, "domain"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            ContentCheck.build(**kwargs)
        assert "\n" not in str(err.value)


# -- assignment --------------------------------------------------------------------------------


def test_flagged_pairs_are_dealt_evenly_and_spaced_out():
    ids = [f"pair-{i}" for i in range(300)]
    burst = set(ids[:30])  # all the disturbing pairs arrived together
    raters = ["ann", "ben", "cal", "dee", "eve", "fay", "gus"]
    plain = Assignment(ids, raters)
    by_arrival = Counter(r for p in burst for r in raters if plain.is_assigned(r, p))
    dealt = Assignment(ids, raters, flagged=burst)
    load = Counter(r for p in burst for r in raters if dealt.is_assigned(r, p))
    assert sum(load.values()) == 30 and max(load.values()) - min(load.values()) <= 1
    assert max(by_arrival.values()) - min(by_arrival.values()) > 1  # what rendezvous alone would do
    for rater in raters:
        queue = dealt.queue(rater)
        assert len(queue) == len(set(queue)) and set(queue) >= set(plain.queue(rater)) - burst
        flagged_at = [i for i, p in enumerate(queue) if p in burst]
        assert all(b - a >= len(queue) // len(flagged_at) - 1 for a, b in pairwise(flagged_at))
        assert flagged_at[0] > 0  # not first in the queue, as by arrival order
    # overlap pairs keep their number of raters; the same inputs give the same queues
    overlapping = Assignment(ids, raters, overlap=0.5, overlap_raters=3, flagged=burst)
    assert overlapping.queues == Assignment(ids, raters, overlap=0.5, overlap_raters=3, flagged=burst).queues
    share = Counter(r for p in burst for r in raters if overlapping.is_assigned(r, p))
    assert max(share.values()) - min(share.values()) <= 1
    assert spread([1, 2, 3, 4], [9, 8]) == [1, 9, 2, 3, 8, 4]


# -- sessions ----------------------------------------------------------------------------------


def test_flagged_pairs_capped_per_session_and_day_and_passes_do_not_count(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 24, flagged=set(range(0, 24, 2)))
    raters = RATERS[:2]
    clock = Clock()
    limits = Limits(max_flagged_session=2, max_flagged_day=3)
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, raters, flag_words=watch_words(tmp_path), limits=limits, clock=clock) as session:
        assert len(session.flags) == 12 and all(reasons == ["watch_words"] for reasons in session.flags.values())
        assert session.assignment.flagged_load == Counter({"ann": 6, "ben": 6})  # dealt evenly
        seen, n = [], 0
        while (view := session.next_pair("ann")) is not None:
            n += 1
            clock.advance(30)
            if view["flags"]:
                seen.append(view["pair_id"])
            rate(session, "ann", view["pair_id"], "a", n)
        assert len(seen) == 2  # the session cap
        progress = session.progress("ann")
        # ben, with room for two, took two of the four waiting for ann; two wait for her
        assert progress["held"] == 2 and progress["done"] == progress["total"] - 2
        assert session.assignment.flagged_load == Counter({"ann": 4, "ben": 8})
        assert len(session.assignment.received("ben")) == 2
        assert session.wellbeing("ann")["flagged_limit"] == "session"

        clock.advance(SESSION_GAP_S)  # a new session: one more, then the day's cap holds
        view = session.next_pair("ann")
        assert view["flags"] == ["watch_words"]
        # passing from the content note, unread, counts neither as seen nor as done: ben gets it
        result = rate(session, "ann", view["pair_id"], "pass", 100)
        assert result["progress"]["passed"] == 1 and result["progress"]["done"] == progress["done"]
        assert session.assignment.is_assigned("ben", view["pair_id"])
        view = session.next_pair("ann")
        rate(session, "ann", view["pair_id"], "b", 101)
        assert session.next_pair("ann") is None and session.wellbeing("ann")["flagged_limit"] == "day"
        assert session.wellbeing("ann")["flagged_today"] == 3
        queues = session.assignment.queues

    clock.advance(6 * 3600)  # a restart knows the counts from the log
    with RatingSession(out, pairs, raters, limits=limits, clock=clock) as session:
        assert session.flag_words is not None and len(session.flags) == 12  # the directory remembers the list
        assert session.assignment.queues == queues  # the moves are in the log
        assert session.next_pair("ann") is None and session.wellbeing("ann")["flagged_limit"] == "day"
    figures = compute_stats(out)
    ann = figures["raters"]["ann"]
    assert ann["flagged_seen"] == 3 and ann["pass"] == 1 and figures["pairs_flagged"] == 12
    assert ann["assigned"] == figures["raters"]["ann"]["rated"]  # the held ones went to ben


def test_skipped_pair_is_rated_by_another_rater(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 30)
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, RATERS) as session:
        first = session.next_pair("ann")["pair_id"]
        assert not session.assignment.is_assigned("ben", first) and not session.assignment.is_assigned("cal", first)
        rate(session, "ann", first, "skip", 1)
        taker = next(r for r in ranked_raters(first, ["ann", "ben", "cal"]) if r != "ann")
        assert session.assignment.is_assigned(taker, first)
        assert session.assignment.queue(taker)[-1] == first  # at the end of the taker's queue
        # the taker rates everything assigned, the skipped pair included
        n, rated = 0, []
        while (view := session.next_pair(taker)) is not None:
            n += 1
            rated.append(view["pair_id"])
            rate(session, taker, view["pair_id"], "a" if view["a"].startswith("answer one") else "b", n)
        assert first in rated
        rows = [r for r in _export_rows(out, tmp_path) if r["prompt"] == f"question {int(first[1:])}"]
        assert [r["rater"] for r in rows] == [taker]  # rated by another rater, exported once
        other = ({"ben", "cal"} - {taker}).pop()
        # the taker skips one too: it goes to the third rater, never back to a rater who skipped it
        before = session.assignment.queue(other)
        session.rate(taker, {"rating_id": "r-rev-000001", "pair_id": first, "choice": "skip", "revise": True})
        assert session.assignment.queue(other) == [*before, first]
        queues = session.assignment.queues
    with RatingSession(out, pairs, RATERS) as session:  # the log's skips rebuild the same queues
        assert session.assignment.queues == queues
    figures = compute_stats(out)
    assert figures["raters"][taker]["assigned"] == len(queues[taker])
    assert figures["raters"]["ann"]["skip"] == 1


def _export_rows(out: Path, tmp_path: Path) -> list[dict]:
    dest = tmp_path / "c.jsonl"
    stats = export_ratings(out, dest)
    assert stats.balanced
    return [json.loads(line) for line in dest.read_text().splitlines()]


def test_break_is_due_after_continuous_rating_and_resume_restarts_the_clock(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 20)
    clock = Clock()
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, [Rater("solo")], limits=Limits(break_after_s=600), clock=clock) as session:
        n = 0

        def rate_next() -> None:
            nonlocal n
            n += 1
            rate(session, "solo", session.next_pair("solo")["pair_id"], "a", n)

        for _ in range(3):  # 0, 4 and 8 minutes: continuous, not yet 10
            rate_next()
            assert not session.wellbeing("solo")["break_due"]
            clock.advance(240)
        rate_next()  # at 12 minutes
        state = session.wellbeing("solo")
        assert state["break_due"] and state["rating_minutes"] == 12.0 and state["break_after_minutes"] == 10.0
        waiting = session.next_pair("solo")["pair_id"]
        session.resume("solo")
        assert not session.wellbeing("solo")["break_due"]
        assert session.next_pair("solo")["pair_id"] == waiting  # resumes where it stopped
        for _ in range(3):
            clock.advance(240)
            rate_next()
        assert session.wellbeing("solo")["break_due"]  # 12 minutes since the resume
        clock.advance(PAUSE_S)  # a pause of five minutes is a break too
        assert not session.wellbeing("solo")["break_due"]
    clock.advance(-PAUSE_S)
    with RatingSession(out, pairs, [Rater("solo")], clock=clock) as session:  # no --break-after: never due
        assert not session.wellbeing("solo")["break_due"]
        assert session.wellbeing("solo")["rating_minutes"] == 12.0  # since the resume (breaks.jsonl), not 24
    with RatingSession(out, pairs, [Rater("solo")], limits=Limits(break_after_s=600), clock=clock) as session:
        assert session.wellbeing("solo")["break_due"]  # a restart does not forget a break that is due


def test_active_time_counts_gaps_up_to_a_pause(tmp_path):
    # times and the seconds the page showed each pair: gaps of 60, 60, then 1880 (a pause: the
    # pair's own 30 s count), then 100; the first rating counts its own 20 s
    events = [(0.0, 20.0), (60.0, 50.0), (120.0, 55.0), (2000.0, 30.0), (2100.0, 90.0)]
    assert active_seconds(events) == 20 + 60 + 60 + 30 + 100
    assert active_seconds([(0.0, 9999.0)]) == PAUSE_S  # a pair left open counts at most a pause
    assert active_seconds([]) == 0

    pairs = write_pairs(tmp_path / "pairs.parquet", 5)
    clock = Clock()
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, [Rater("solo")], clock=clock) as session:
        for n, step in enumerate([0, 60, 3 * 3600, 45]):
            clock.advance(step)
            rate(session, "solo", session.next_pair("solo")["pair_id"], "b", n)  # client_ms 20 s each
    solo = compute_stats(out)["raters"]["solo"]
    assert solo["active_s"] == pytest.approx(20 + 60 + 20 + 45)  # wall time would be over 3 hours
    assert "active h" in format_stats(compute_stats(out))


def test_cli_flag_options_and_stats_by(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 4)
    runner = CliRunner()
    result = runner.invoke(cli, ["rate", str(pairs), "-o", str(tmp_path / "r"), "--flag-words", "nope.txt"])
    assert result.exit_code != 0 and "--flag-words nope.txt: no such file" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["rate", str(pairs), "-o", str(tmp_path / "r"), "--max-flagged", "-1"])
    assert result.exit_code == 2 and "--max-flagged" in result.output
    with RatingSession(tmp_path / "r", pairs, [Rater("solo")]):
        pass
    result = runner.invoke(cli, ["rate", "stats", str(tmp_path / "r"), "--by", "team"])
    assert result.exit_code == 2 and "'team' is not one of 'rater', 'group'" in result.output
    result = runner.invoke(cli, ["rate", "stats", str(tmp_path / "r"), "--by", "group"])
    assert result.exit_code == 0 and "no rater has a group" in result.output


# -- caps steer the assignment (held pairs move, skips avoid capped raters, no way around a cap) --


def _cap_session(tmp_path: Path, clock: Clock, limits: Limits | None = None) -> tuple[Path, RatingSession]:
    pairs = write_pairs(tmp_path / "pairs.parquet", 12, flagged={0, 1, 2, 3, 4, 5})
    session = RatingSession(
        tmp_path / "ratings",
        pairs,
        RATERS,
        flag_words=watch_words(tmp_path),
        limits=limits or Limits(max_flagged_session=1),
        clock=clock,
    )
    return pairs, session


def test_pair_held_for_a_capped_rater_moves_to_a_rater_with_room(tmp_path):
    clock = Clock()
    pairs, session = _cap_session(tmp_path, clock)
    with session:
        assert session.assignment.queue("ann") == ["p009", "p000", "p010", "p005", "p011"]
        n = 0
        while (view := session.next_pair("ann")) is not None:  # the reviewer's run: ann rates all she can
            n += 1
            clock.advance(20)
            rate(session, "ann", view["pair_id"], "skip" if view["flags"] else "a", n)
        assert session.wellbeing("ann")["flagged_limit"] == "session"  # the skip showed her p000
        # p000 went to ben (below his cap); p005, waiting for ann, moved to cal (ben's room is p000)
        assert session.assignment.queue("ann") == ["p009", "p000", "p010", "p011"]
        assert session.assignment.queue("ben")[-1] == "p000" and session.assignment.queue("cal")[-1] == "p005"
        assert session.progress("ann") == {"done": 4, "total": 4, "skipped": 1, "passed": 0, "held": 0}
        assert session.assignment.flagged_load == Counter({"ann": 0, "ben": 3, "cal": 3})
        queues = {r: session.assignment.queue(r) for r in session.raters}
    # the log says who took what: a restart without caps (and stats) rebuild the same queues
    with RatingSession(tmp_path / "ratings", pairs, RATERS, clock=clock) as session:
        assert {r: session.assignment.queue(r) for r in session.raters} == queues
    figures = compute_stats(tmp_path / "ratings")
    assert {r: row["assigned"] for r, row in figures["raters"].items()} == {"ann": 4, "ben": 4, "cal": 5}


def test_skipped_flagged_pair_goes_to_a_rater_below_the_cap(tmp_path):
    clock = Clock()
    pairs, session = _cap_session(tmp_path, clock)
    with session:
        assert session.next_pair("ben")["pair_id"] == "p002"
        rate(session, "ben", "p002", "a", 1)  # ben reaches his cap; p003, waiting for him, goes to cal
        assert session.wellbeing("ben")["flagged_limit"] == "session"
        assert "p003" not in session.assignment.queue("ben") and session.assignment.queue("cal")[-1] == "p003"
        load = session.assignment.flagged_load
        assert load["ben"] < load["cal"]  # by load alone, ben would take the next skipped flagged pair
        clock.advance(20)
        rate(session, "ann", "p000", "skip", 1)
        assert session.assignment.is_assigned("cal", "p000") and not session.assignment.is_assigned("ben", "p000")
        queues = {r: session.assignment.queue(r) for r in session.raters}
    lines = (tmp_path / "ratings" / "ratings.jsonl").read_text().splitlines()
    assert '"taker":"cal"' in lines[-1]
    with RatingSession(tmp_path / "ratings", pairs, RATERS, clock=clock) as session:  # no caps this run
        assert {r: session.assignment.queue(r) for r in session.raters} == queues


def test_giving_a_pair_back_lowers_the_givers_flagged_load():
    ids = [f"pair-{i}" for i in range(60)]
    raters = ["ann", "ben", "cal"]
    assignment = Assignment(ids, raters, flagged=set(ids[:12]))
    assert assignment.flagged_load == Counter({"ann": 4, "ben": 4, "cal": 4})
    first, second = assignment.flagged_queue("ann")[:2]
    taker = assignment.release(first, "ann")
    assert assignment.flagged_load["ann"] == 3 and assignment.flagged_load[taker] == 5
    assert assignment.release(first, "ann") is None and assignment.flagged_load["ann"] == 3  # twice: no change
    assert first in assignment.queue("ann") and assignment.replaced("ann", first)  # still listed, not wanted
    other = ({"ben", "cal"} - {taker}).pop()
    assert assignment.move(second, "ann", other)
    assert second not in assignment.queue("ann") and assignment.queue(other)[-1] == second
    assert assignment.flagged_load == Counter({"ann": 2, taker: 5, other: 5})
    assert not assignment.move(second, other, "ann")  # never back to the rater it left
    assert sum(assignment.flagged_load.values()) == 12


def test_pairs_held_back_are_not_served_or_rated_by_id(tmp_path):
    from http.client import HTTPConnection
    from threading import Thread

    from curate.rate.server import RateServer

    pairs = write_pairs(tmp_path / "pairs.parquet", 6, flagged={1, 3})
    clock = Clock()
    limits = Limits(max_flagged_session=1)
    flag_words = watch_words(tmp_path)
    with RatingSession(tmp_path / "r", pairs, [Rater("solo")], flag_words=flag_words, limits=limits, clock=clock) as s:
        n = 0
        while (view := s.next_pair("solo")) is not None:
            n += 1
            rate(s, "solo", view["pair_id"], "a", n)
        (held,) = [p for p in s.assignment.flagged_queue("solo") if p not in s.activity["solo"].flagged_pairs]
        assert s.progress("solo")["held"] == 1
        server = RateServer(s, "127.0.0.1", 0)
        Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

        def call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
            conn = HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if body else {})
            resp = conn.getresponse()
            status, payload = resp.status, json.loads(resp.read())
            conn.close()
            return status, payload

        try:
            status, payload = call("GET", f"/api/pair?id={held}")
            assert status == 409 and "held back" in payload["error"] and "zebra" not in json.dumps(payload)
            status, payload = call("POST", "/api/rate", {"rating_id": "r-api-000001", "pair_id": held, "choice": "a"})
            assert status == 409 and "cap on flagged pairs" in payload["error"]
            status, _ = call("GET", "/api/pair?id=p000")  # pairs not held back are still there to revise
            assert status == 200
            clock.advance(SESSION_GAP_S)  # a new session: the pair is offered again
            status, payload = call("GET", f"/api/pair?id={held}")
            assert status == 200 and "zebra" in payload["pair"]["prompt"]
        finally:
            server.shutdown()
            server.server_close()
    assert [r["pair_id"] for r in _log(tmp_path / "r")].count(held) == 0


def test_a_pair_given_back_to_another_rater_cannot_be_rated_again(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 30)
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, RATERS) as session:
        first = session.next_pair("ann")["pair_id"]
        rate(session, "ann", first, "skip", 1)
        taker = next(r for r in session.raters if r != "ann" and session.assignment.is_assigned(r, first))
        rate(session, taker, first, "a", 1)
        with pytest.raises(RateError, match="given back") as err:
            rate(session, "ann", first, "b", 2, revise=True)
        assert err.value.status == 409
        rate(session, "ann", first, "pass", 3, revise=True)  # giving it back again stays possible
    # a log from before this was refused: the giver's rating stays out of agreement
    record = {**_log(out)[-1], "rating_id": "r-old-000001", "choice": "b", "preferred": 2, "revises": "pass"}
    with open(out / "ratings.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    figures = compute_stats(out)
    assert figures["raters"]["ann"]["b"] == 1 and figures["overlap_pairs_rated"] == 0


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "ratings.jsonl").read_text().splitlines()]
