"""curate.rate without HTTP: assignment, pair import, the ratings log, session rules, export, stats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.core.comparisons import COMPARISON_SCHEMA, PAIRS_SCHEMA, read_comparisons
from curate.core.errors import ConfigError, CurateError, InputError
from curate.rate import RATINGS_LOG
from curate.rate.assign import Assignment, a_is, is_overlap_pair, raters_for_pair
from curate.rate.export import EXPORT_SCHEMA, export_ratings
from curate.rate.pairs import PairStore, import_pairs
from curate.rate.session import RateError, Rater, RatingSession, load_raters
from curate.rate.stats import cohen_kappa, compute_stats, format_stats
from curate.rate.store import RatingsLog, read_log

SAMPLE_PAIRS = Path(__file__).resolve().parents[2] / "samples" / "pairs.parquet"


def write_pairs(path: Path, n: int, prefix: str = "p", text: str = "answer") -> Path:
    rows = [
        {
            "pair_id": f"{prefix}{i:03d}",
            "prompt": f"question {i}",
            "response_1": f"{text} one {i}",
            "response_2": f"{text} two {i}",
            "model": "m",
            "meta": None,
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), path)
    return path


def rid(i: int | str) -> str:
    return f"rating-{i}-0000"


# -- assignment ------------------------------------------------------------------------------


def test_overlap_share_and_rendezvous_stability():
    ids = [f"pair-{i}" for i in range(2000)]
    share = sum(is_overlap_pair(p, 0.1) for p in ids) / len(ids)
    assert 0.07 < share < 0.13
    three = Assignment(ids, ["ann", "ben", "cal"], overlap=0.1, overlap_raters=2)
    # every pair is assigned; overlap pairs to exactly two distinct raters
    for p in ids:
        owners = raters_for_pair(p, ["ann", "ben", "cal"], 0.1, 2)
        assert len(owners) == (2 if is_overlap_pair(p, 0.1) else 1) and len(set(owners)) == len(owners)
    assert sum(three.total(r) for r in three.raters) == len(ids) + sum(is_overlap_pair(p, 0.1) for p in ids)
    # adding a rater only moves pairs TO the newcomer: nobody else gains work
    four = Assignment(ids, ["ann", "ben", "cal", "dee"], overlap=0.1, overlap_raters=2)
    for name in ("ann", "ben", "cal"):
        assert set(four.queue(name)) <= set(three.queue(name))
    assert 300 < four.total("dee") < 800
    # queues keep file order
    assert three.queue("ann") == [p for p in ids if three.is_assigned("ann", p)]


def test_ab_order_is_deterministic_and_balanced():
    ids = [f"pair-{i}" for i in range(1000)]
    firsts = [a_is("ann", p) for p in ids]
    assert firsts == [a_is("ann", p) for p in ids]
    assert 400 < firsts.count(1) < 600
    assert firsts != [a_is("ben", p) for p in ids]  # per rater, not per pair only


# -- pairs import ----------------------------------------------------------------------------


def test_import_counts_every_row_and_refuses_changed_text(tmp_path):
    rows = [
        {"pair_id": "x1", "prompt": "q", "response_1": "a", "response_2": "b"},
        {"pair_id": "x1", "prompt": "q", "response_1": "a", "response_2": "b"},  # duplicate id
        {"pair_id": "x2", "prompt": "q", "response_1": "same", "response_2": "same"},
        {"pair_id": "x3", "prompt": None, "response_1": "a", "response_2": "b"},
    ]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    stats = import_pairs(src, tmp_path / "db.sqlite")
    assert (stats.read, stats.ready) == (5, 1) and stats.balanced
    assert stats.skipped == {"duplicate_pair_id": 1, "identical_responses": 1, "invalid": 2}
    assert "pairs.jsonl:4" in stats.examples["invalid"]
    assert import_pairs(src, tmp_path / "db.sqlite").reused
    src.write_text(json.dumps({"pair_id": "x1", "prompt": "q", "response_1": "a", "response_2": "CHANGED"}) + "\n")
    with pytest.raises(InputError, match="x1.*different text"):
        import_pairs(src, tmp_path / "db.sqlite")


def test_reimport_adds_new_pairs_and_retires_missing_ones(tmp_path):
    db = tmp_path / "db.sqlite"
    write_pairs(tmp_path / "a.parquet", 3)  # p000 p001 p002
    import_pairs(tmp_path / "a.parquet", db)
    rows = [
        {
            "pair_id": pid,
            "prompt": f"question {i}",
            "response_1": f"answer one {i}",
            "response_2": f"answer two {i}",
            "model": "m",
            "meta": None,
        }
        for pid, i in (("new", 9), ("p001", 1))
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), tmp_path / "b.parquet")
    stats = import_pairs(tmp_path / "b.parquet", db)
    assert (stats.read, stats.ready) == (2, 2) and not stats.reused
    store = PairStore(db)
    assert store.active_ids() == ["new", "p001"]  # the new file's order
    assert list(store.positions()) == ["new", "p001", "p000", "p002"]  # retired pairs stay exportable
    assert store.get("p000").response_2 == "answer two 0"
    store.close()


def test_import_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        import_pairs(tmp_path / "missing.parquet", tmp_path / "db.sqlite")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["q"]}), bad)
    with pytest.raises(InputError, match="missing column.*pair_id"):
        import_pairs(bad, tmp_path / "db.sqlite")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet"):
        import_pairs(garbage, tmp_path / "db.sqlite")


# -- the log ---------------------------------------------------------------------------------


def test_log_is_idempotent_and_trims_a_torn_tail(tmp_path):
    path = tmp_path / RATINGS_LOG
    log = RatingsLog(path)
    record = {"rating_id": rid(1), "rater": "ann", "pair_id": "p1", "choice": "a"}
    assert log.append(record) is True
    assert log.append(record) is False  # same id: acknowledged, not written twice
    assert log.append({**record, "rater": "ben"}) is True  # ids are per rater
    log.close()
    with open(path, "ab") as fh:
        fh.write(b'{"rating_id": "half-writ')  # a crash mid-write
    assert len(list(read_log(path))) == 2  # readers ignore the torn line
    log = RatingsLog(path)  # the writer trims it
    assert log.report.torn_tail_bytes > 0 and path.read_bytes().endswith(b"}\n")
    assert log.state("ann").answered == {"p1": "a"}
    log.append({"rating_id": rid(2), "rater": "ann", "pair_id": "p2", "choice": "b"})
    log.close()
    assert [r["pair_id"] for r in read_log(path)] == ["p1", "p1", "p2"]


# -- session rules ---------------------------------------------------------------------------


def test_session_validates_and_resumes(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 4)
    out = tmp_path / "ratings"
    with RatingSession(out, pairs, [Rater("solo")]) as session:
        first = session.next_pair("solo")
        assert first["pair_id"] == "p000" and {first["a"], first["b"]} == {"answer one 0", "answer two 0"}
        assert session.next_pair("solo")["pair_id"] == "p000"  # same pair until answered
        for bad, status in [
            ({"rating_id": "short", "pair_id": "p000", "choice": "a"}, 400),
            ({"rating_id": rid(1), "pair_id": "p000", "choice": "maybe"}, 400),
            ({"rating_id": rid(1), "pair_id": "nope", "choice": "a"}, 404),
            ({"rating_id": rid(1), "pair_id": "p000", "choice": "a", "reason": "x" * 6000}, 400),
            ({"rating_id": rid(1), "pair_id": "p000", "choice": "a", "client_ms": -5}, 400),
        ]:
            with pytest.raises(RateError) as err:
                session.rate("solo", bad)
            assert err.value.status == status
        result = session.rate("solo", {"rating_id": rid(1), "pair_id": "p000", "choice": "a", "reason": " clear \x07"})
        assert result["recorded"] and result["progress"] == {
            "done": 1,
            "total": 4,
            "skipped": 0,
            "passed": 0,
            "held": 0,
        }
        assert session.rate("solo", {"rating_id": rid(1), "pair_id": "p000", "choice": "a"})["duplicate"]
        with pytest.raises(RateError) as err:  # a second rating of the same pair needs revise
            session.rate("solo", {"rating_id": rid(2), "pair_id": "p000", "choice": "b"})
        assert err.value.status == 409
        session.rate("solo", {"rating_id": rid(3), "pair_id": "p001", "choice": "skip"})
        with pytest.raises(CurateError, match="another `curate rate` server"):
            RatingSession(out, pairs, [Rater("solo")])
    with RatingSession(out, pairs, [Rater("solo")]) as session:  # restart resumes
        assert session.next_pair("solo")["pair_id"] == "p002"
        assert session.progress("solo") == {"done": 2, "total": 4, "skipped": 1, "passed": 0, "held": 0}
        revised = session.rate("solo", {"rating_id": rid(4), "pair_id": "p000", "choice": "b", "revise": True})
        assert revised["progress"]["done"] == 2
        assert session.pair_for("solo", "p000")["choice"] == "b"
    lines = [json.loads(x) for x in (out / RATINGS_LOG).read_text().splitlines()]
    assert [x["rating_id"] for x in lines] == [rid(1), rid(3), rid(4)]
    assert lines[0]["reason"] == "clear" and lines[0]["preferred"] == lines[0]["a_is"]
    assert lines[2]["revises"] == "a" and lines[2]["preferred"] == 3 - lines[2]["a_is"]


def test_load_raters_rules(tmp_path):
    def load(text: str, **kw):
        path = tmp_path / "raters.toml"
        path.write_text(text)
        return load_raters(path, **kw)

    good = 'name = "ann"\ntoken = "abcdefghijklmnopqrstuvwx"'
    assert load(f"[[raters]]\n{good}") == [Rater("ann", "abcdefghijklmnopqrstuvwx")]
    with pytest.raises(ConfigError, match="at least 16"):
        load('[[raters]]\nname = "ann"\ntoken = "short"')
    with pytest.raises(ConfigError, match="example token"):
        load('[[raters]]\nname = "ann"\ntoken = "change-me-0123456789abcdef"')
    assert load('[[raters]]\nname = "ann"\ntoken = "change-me-0123456789abcdef"', allow_example_tokens=True)
    with pytest.raises(ConfigError, match="share a token"):
        load(f'[[raters]]\n{good}\n[[raters]]\nname = "ben"\ntoken = "abcdefghijklmnopqrstuvwx"')
    with pytest.raises(ConfigError, match="appears twice"):
        load(f"[[raters]]\n{good}\n[[raters]]\n{good.replace('wx', 'yz')}")
    with pytest.raises(ConfigError, match="unknown key.*tokn"):
        load('[[raters]]\nname = "ann"\ntokn = "abcdefghijklmnopqrstuvwx"')
    with pytest.raises(ConfigError, match="no raters"):
        load("")
    assert (
        len(load_raters(Path(__file__).resolve().parents[2] / "samples" / "raters.toml", allow_example_tokens=True))
        == 3
    )


# -- export and stats ------------------------------------------------------------------------


def rate_all(session: RatingSession, rater: str, choose) -> None:
    """Rate every pair assigned to ``rater``; ``choose(pair_id, view)`` gives the choice."""
    n = 0
    while (view := session.next_pair(rater)) is not None:
        n += 1
        session.rate(
            rater,
            {
                "rating_id": rid(f"{rater}-{n}"),
                "pair_id": view["pair_id"],
                "choice": choose(view["pair_id"], view),
                "client_ms": 1000 * n,
                "reason": f"because {n}",
            },
        )


def test_export_maps_ab_back_and_accounts_for_every_line(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 40)
    out = tmp_path / "ratings"
    raters = [Rater("ann", "a" * 20), Rater("ben", "b" * 20)]

    def prefer_one(pair_id, view):  # always the response_1 text, wherever it is shown
        i = int(pair_id[1:])
        if i % 10 == 9:
            return "tie"
        if i % 10 == 8:
            return "skip"
        return "a" if view["a"].startswith("answer one") else "b"

    with RatingSession(out, pairs, raters, overlap=0.5, overlap_raters=2) as session:
        rate_all(session, "ann", prefer_one)
        rate_all(session, "ben", lambda p, v: "a")  # position-biased rater
        # revise one of ann's ratings to a tie
        ann_first = session.assignment.queue("ann")[0]
        session.rate("ann", {"rating_id": rid("rev"), "pair_id": ann_first, "choice": "tie", "revise": True})

    dest = tmp_path / "comparisons.parquet"
    stats = export_ratings(out, dest)
    assert stats.balanced and stats.revised == 1
    rows = read_comparisons(dest)
    assert pq.read_schema(dest).equals(EXPORT_SCHEMA, check_metadata=False)
    assert set(EXPORT_SCHEMA.names) == {*COMPARISON_SCHEMA.names, "group"}
    assert len(rows) == stats.exported and stats.exported + stats.ties + stats.skips == stats.lines - stats.revised
    for row in rows:
        assert row["chosen"] != row["rejected"] and row["prompt"].startswith("question")
        assert row["date"] is not None and row["reason"].startswith("because")
        if row["rater"] == "ann":
            assert row["chosen"].startswith("answer one")
    # deterministic: same log, same bytes
    again = tmp_path / "again.parquet"
    export_ratings(out, again)
    assert again.read_bytes() == dest.read_bytes()
    # jsonl output is read by the same reader
    jl = tmp_path / "c.jsonl"
    export_ratings(out, jl)
    assert [r["chosen"] for r in read_comparisons(jl)] == [r["chosen"] for r in rows]
    # dropping disagreements removes both raters' rows for contested pairs
    dropped = export_ratings(out, tmp_path / "agreed.parquet", drop_disagreements=True)
    assert dropped.disagreements > 0 and dropped.balanced
    assert dropped.exported == stats.exported - dropped.disagreements

    figures = compute_stats(out)
    ann, ben = figures["raters"]["ann"], figures["raters"]["ben"]
    assert ben["chose_a_share"] == 1.0 and ann["revised"] == 1
    assert ann["rated"] == ann["assigned"] and ben["rated"] == ben["assigned"]
    assert ann["median_s"] is not None and ann["p90_s"] >= ann["median_s"]
    assert figures["overlap_pairs_rated"] > 0 and figures["agreement"][0]["raters"] == ["ann", "ben"]
    text = format_stats(figures)
    assert "ann" in text and "kappa" in text and "100%" in text


def test_cohen_kappa_known_values():
    assert cohen_kappa([1, 1, 2, 2], [1, 1, 2, 2]) == 1.0
    assert cohen_kappa([1, 2, 1, 2], [2, 1, 2, 1]) == -1.0
    # the textbook example: 50 items, 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes -> kappa 0.4
    first = ["y"] * 20 + ["n"] * 15 + ["y"] * 5 + ["n"] * 10
    second = ["y"] * 20 + ["n"] * 15 + ["n"] * 5 + ["y"] * 10
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(["tie"] * 3, ["tie"] * 3) is None


def test_export_needs_a_rating_directory(tmp_path):
    with pytest.raises(InputError, match="not a rating directory"):
        export_ratings(tmp_path, tmp_path / "c.parquet")
    with pytest.raises(InputError, match=r"\.parquet or \.jsonl"):
        export_ratings(tmp_path, tmp_path / "c.csv")


def test_sample_pairs_match_the_schema():
    table = pq.read_table(SAMPLE_PAIRS)
    assert table.schema.equals(PAIRS_SCHEMA, check_metadata=False) and table.num_rows >= 10
    assert any("<script>" in t for t in table.column("response_2").to_pylist() + table.column("response_1").to_pylist())
    assert os.path.getsize(SAMPLE_PAIRS) < 64 * 1024


def test_exported_ratings_train_a_reward_model(tmp_path, tiny_checkpoint):
    """Ratings collected with `curate rate` feed the reward trainer directly (export schema)."""
    from train.align.reward import RewardConfig, train_reward

    pairs = write_pairs(tmp_path / "pairs.parquet", 24)
    with RatingSession(tmp_path / "ratings", pairs, [Rater("ann", "a" * 20)]) as session:
        # ann prefers response_1 (shown as A or B depending on the randomized order)
        rate_all(session, "ann", lambda pid, view: "a" if view["a"].startswith("answer one") else "b")
    stats = export_ratings(tmp_path / "ratings", tmp_path / "comparisons.parquet")
    assert stats.exported == 24

    base = tiny_checkpoint(tmp_path / "base")
    cfg = RewardConfig(max_steps=2, batch_size=4, eval_every=0, val_fraction=0.25)
    result = train_reward(cfg, base, tmp_path / "comparisons.parquet", tmp_path / "rm", progress=False)
    assert result.step == 2 and result.examples + result.held_out == 24
    assert result.checkpoint is not None and (result.checkpoint / "model.safetensors").exists()
