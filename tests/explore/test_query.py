"""curate.explore (query, summary, chain) and `curate inspect` / `curate sql`: DuckDB summaries on
known shards, and the manifest chain from crawl to mix."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.errors import CurateError, InputError
from curate.core.shards import ShardWriter
from curate.explore.chain import manifest_chain
from curate.explore.format import format_rows
from curate.explore.query import connect, run_query
from curate.explore.summary import summarize
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec


def test_summary_numbers(known):
    s = summarize(str(known))
    assert (s["docs"], s["measure"], s["tokens"], s["chars"]) == (10, "tokens", 610, 5500)
    assert s["views"] == ["docs", "rejected"]
    assert [(r["source"], r["docs"], r["tokens"], r["chars"]) for r in s["sources"]] == [
        ("b", 4, 400, 3400),
        ("a", 6, 210, 2100),
    ]
    assert s["sources"][0]["share"] == pytest.approx(400 / 610)
    assert [(r["language"], r["docs"], r["tokens"]) for r in s["languages"]] == [("en", 7, 310), ("de", 3, 300)]
    assert s["top_domains"] == [{"domain": "x.com", "docs": 5}, {"domain": "y.org", "docs": 3}]
    lp = s["length_percentiles"]
    assert lp["min_chars"] == 100 and lp["max_chars"] == 1000 and lp["mean_chars"] == 550
    assert lp["chars"][lp["percentiles"].index(0.5)] == 500
    assert lp["tokens"][lp["percentiles"].index(0.99)] == 100
    assert [b["count"] for b in s["quality_histogram"]] == [1] * 10
    assert s["quality_histogram"][0]["lo"] == pytest.approx(0.05)
    assert [b["count"] for b in s["language_score_histogram"]] == [0] * 5 + [2] * 5
    assert s["dates"]["undated_docs"] == 1 and s["dates"]["max"].startswith("2024-09-01")
    assert len(s["dates"]["per_month"]) == 9
    assert s["side_outputs"] == {"rejected": {"docs": 4, "by_reason": {"too_short": 3, "lang": 1}}}
    assert s["funnel"] == []  # no manifests here


def test_bytes_when_no_token_counts(tmp_path):
    with ShardWriter(tmp_path / "crawl", prefix="part-00000") as w:
        w.write(Document(id="1", text="héllo"))
        w.write(Document(id="2", text="abc"))
    s = summarize(str(tmp_path / "crawl"))
    assert (s["measure"], s["tokens"], s["chars"]) == ("bytes", 6 + 3, 8)


def test_sql_queries_and_formats(known):
    con = connect(str(known))
    names, rows = run_query(con, "SELECT source, count(*) AS n, sum(n_tokens) AS t FROM docs GROUP BY 1 ORDER BY 1")
    assert names == ["source", "n", "t"] and list(rows) == [("a", 6, 210), ("b", 4, 400)]
    names, rows = run_query(con, "SELECT reject_reason, count(*) FROM rejected GROUP BY 1 ORDER BY 2 DESC")
    assert list(rows) == [("too_short", 3), ("lang", 1)]
    with pytest.raises(CurateError, match="^SQL error: .*nope") as err:
        run_query(con, "SELECT nope FROM docs")
    assert "\n" not in str(err.value)
    names, rows = run_query(con, "SELECT id, n_tokens FROM docs ORDER BY id LIMIT 3")
    table = list(format_rows(names, rows, "table"))
    assert table[0].split() == ["id", "n_tokens"] and table[2].split() == ["d0", "10"] and table[-1] == "(3 rows)"
    names, rows = run_query(con, "SELECT id, language FROM docs ORDER BY id")
    assert list(csv.reader(io.StringIO("\n".join(format_rows(names, rows, "csv")))))[:2] == [
        ["id", "language"],
        ["d0", "en"],
    ]
    names, rows = run_query(con, "SELECT id, date FROM docs WHERE id IN ('d0', 'd9') ORDER BY id")
    parsed = json.loads("\n".join(format_rows(names, rows, "json")))
    assert parsed[0]["id"] == "d0" and parsed[0]["date"].startswith("2024-01-01") and parsed[1]["date"] is None
    names, rows = run_query(con, "SELECT * FROM range(250)")
    shown = list(format_rows(names, rows, "table", max_rows=100))
    assert shown[-1].startswith("(250 rows; first 100 shown")
    with pytest.raises(InputError, match="no such file"):
        connect(str(known / "missing"))


def test_cli_sql_and_inspect(known):
    runner = CliRunner()
    r = runner.invoke(cli, ["sql", str(known), "SELECT count(*) AS n FROM docs", "-f", "csv"])
    assert r.exit_code == 0 and r.output == "n\n10\n"
    r = runner.invoke(cli, ["sql", str(known), "SELEC 1"])
    assert r.exit_code == 2 and r.output.startswith("error: SQL error:") and r.output.count("\n") == 1
    r = runner.invoke(cli, ["inspect", str(known)])
    assert r.exit_code == 0, r.output
    assert "documents 10" in r.output and "tokens 610" in r.output and "x.com" in r.output
    assert "rejected/: 4 documents: too_short=3, lang=1" in r.output
    r = runner.invoke(cli, ["inspect", str(known), "--json"])
    assert json.loads(r.output)["docs"] == 10


def test_manifest_chain_and_funnel_from_mix(tmp_path, explore_kit):
    docs = [
        Document(id=f"w{i}", text="web text " * (10 + i), url=f"https://s{i % 3}.net/{i}", language="en")
        for i in range(20)
    ]
    explore_kit.write_stage(tmp_path / "crawl", "crawl", ["/data/a.warc.gz"], 40, 30, {}, {"bad_record": 10}, docs[:30])
    crawl_shard = str(tmp_path / "crawl" / "part-00000-000.parquet")
    explore_kit.write_stage(
        tmp_path / "filter", "filter", [crawl_shard], 30, 25, {"gopher_quality": 3, "language": 2}, {}, docs[:25]
    )
    # dedup lists its inputs relative to its own directory: still followed.
    explore_kit.write_stage(tmp_path / "dedup", "dedup", ["../filter"], 25, 20, {"exact_dup": 5}, {}, docs[:20])
    books = tmp_path / "books"
    books.mkdir()
    (books / "b.md").write_text("A short book. " * 20)
    m = mix.run(
        MixConfig(
            sources=[SourceSpec("web", [str(tmp_path / "dedup")], 0.8), SourceSpec("books", [str(books)], 0.2)],
            tokens=10**7,
            max_epochs=1,
        ),
        StageContext([], str(tmp_path / "mix"), progress=False),
    )
    chain = manifest_chain(str(tmp_path / "mix"))
    assert [n["stage"] for n in chain] == ["crawl", "filter", "dedup", "mix"]
    s = summarize(str(tmp_path / "mix"))
    f = {x["stage"]: x for x in s["funnel"]}
    assert (f["crawl"]["read"], f["crawl"]["kept"], f["crawl"]["errors"]) == (40, 30, {"bad_record": 10})
    assert f["filter"]["rejected"] == {"gopher_quality": 3, "language": 2}
    assert (f["mix"]["read"], f["mix"]["kept"]) == (21, 21)
    assert f["mix"]["tokens_kept"] == m["tokens"]["realized"] and not f["mix"]["tokens_estimated"]
    # Upstream stages have no token counts: estimated from their characters at the mix's ratio.
    assert f["dedup"]["tokens_estimated"] and f["dedup"]["tokens_kept"] == sum(len(d.text) for d in docs)
    assert s["mix"]["sources"][0]["name"] == "web"
    text = CliRunner().invoke(cli, ["inspect", str(tmp_path / "mix")]).output
    assert "funnel" in text and "gopher_quality=3" in text and "error:bad_record=10" in text


# --------------------------------------------------------------------------- bad shards


def _one_line_error(r, *words: str) -> None:
    """A file that cannot be read (or holds no documents): one line naming it, exit 1 as in the
    data stages."""
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    for word in words:
        assert word in r.output, (word, r.output)


def test_not_parquet_is_a_one_line_error_naming_the_file(known, tmp_path):
    garbage = tmp_path / "notpq.parquet"
    garbage.write_text("this is not parquet\n")
    runner = CliRunner()
    _one_line_error(runner.invoke(cli, ["inspect", str(garbage)]), "notpq.parquet", "not a readable Parquet file")
    _one_line_error(
        runner.invoke(cli, ["sql", str(garbage), "select 1"]), "notpq.parquet", "not a readable Parquet file"
    )
    _one_line_error(runner.invoke(cli, ["report", str(garbage), "-o", str(tmp_path / "r.html")]), "notpq.parquet")
    assert not (tmp_path / "r.html").exists()
    # One bad shard among good ones: the bad one is named, in the side views too.
    (known / "rejected" / "part-00009-000.parquet").write_bytes(b"PAR1 nope")
    _one_line_error(runner.invoke(cli, ["sql", str(known), "select 1"]), "part-00009-000.parquet")
    _one_line_error(runner.invoke(cli, ["inspect", str(known)]), "part-00009-000.parquet")


def test_file_without_text_column_is_a_one_line_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "notext"
    d.mkdir()
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), d / "part.parquet")
    # The stages' message: inspect refuses what filter, dedup and mix refuse.
    _one_line_error(CliRunner().invoke(cli, ["inspect", str(d)]), "part.parquet", "missing column(s) text", "body")
    with pytest.raises(InputError, match=r"missing column\(s\) text"):
        summarize(str(d))
    pq.write_table(pa.table({"id": ["a"], "text": [3]}), d / "part.parquet")
    with pytest.raises(InputError, match="column 'text' has type int64, expected string"):
        summarize(str(d))
    pq.write_table(pa.table({"id": [1], "text": ["x"]}), d / "part.parquet")
    with pytest.raises(InputError, match="column 'id' has type int64, expected string"):
        summarize(str(d))
    # `curate sql` queries any Parquet file: no text column needed there.
    r = CliRunner().invoke(cli, ["sql", str(d), "select count(*) AS n from docs", "-f", "csv"])
    assert r.exit_code == 0 and r.output == "n\n1\n", r.output


def test_optional_columns_of_unusable_types_are_left_out_with_a_note(known, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # One foreign shard among the good ones: dates as text, scores as text, n_chars as text.
    pq.write_table(
        pa.table(
            {
                "id": ["f1", "f2"],
                "text": ["hello", "hi"],
                "source": ["a", "a"],
                "date": ["2024-01-01", "not a date"],
                "scores": ["q=1", "q=2"],
                "n_chars": ["5", "many"],
            }
        ),
        known / "part-00001-000.parquet",
    )
    s = summarize(str(known))
    assert s["docs"] == 12
    # Characters come from the text itself where n_chars is left out: 5500 + 5 + 2.
    assert s["chars"] == 5507
    assert "dates" not in s
    notes = " | ".join(s["notes"])
    for column in ("date", "scores", "n_chars"):
        assert f"column {column!r} left out" in notes
    assert "part-00001-000.parquet stores it as string, expected timestamp[us, tz=UTC]" in notes
    assert "the data stages refuse such a file" in notes
    r = CliRunner().invoke(cli, ["inspect", str(known)])
    assert r.exit_code == 0, r.output
    assert "note: column 'date' left out" in r.output and "documents 12" in r.output
    # Good shards alone: no notes, dates reported as before.
    (known / "part-00001-000.parquet").unlink()
    s = summarize(str(known))
    assert s["notes"] == [] and s["dates"]["min"].startswith("2024-01-01")


def test_dates_stored_as_calendar_dates_are_reported(tmp_path):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "d"
    d.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b"],
                "text": ["x", "yy"],
                "date": pa.array([dt.date(2023, 5, 2), dt.date(2024, 2, 3)], pa.date32()),
            }
        ),
        d / "part.parquet",
    )
    s = summarize(str(d))
    assert s["notes"] == [] and (s["dates"]["min"], s["dates"]["max"]) == ("2023-05-02", "2024-02-03")
    assert [m["month"] for m in s["dates"]["per_month"]] == ["2023-05", "2024-02"]


def test_corrupt_page_is_an_input_error(tmp_path, explore_kit):
    import pyarrow.parquet as pq

    d = tmp_path / "c"
    with ShardWriter(d, prefix="part-00000") as w:
        for doc in explore_kit.known_docs():
            w.write(doc)
    path = next(d.glob("*.parquet"))
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(0).column(meta.schema.names.index("text"))
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 64] = b"\xff" * 64  # the footer still reads; the text pages do not
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="cannot be summarized"):
        summarize(str(d))
    _one_line_error(CliRunner().invoke(cli, ["inspect", str(d)]), str(d))
