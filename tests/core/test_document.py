"""The one Document record and its Arrow schema."""

import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from curate.core.document import (
    SCHEMA,
    SCHEMA_VERSION,
    Document,
    SchemaError,
    castable,
    check_schema,
    conform_table,
    documents_to_table,
    domain_of,
    null_rows,
    schema_problems,
    stable_id,
    table_to_documents,
)
from curate.core.errors import InputError


def test_round_trip_through_arrow_keeps_every_field():
    doc = Document(
        id="abc",
        text="héllo wörld",
        url="https://www.Example.org/a?b=1",
        source="web",
        crawl="CC-MAIN-2024-10",
        date=datetime(2024, 3, 1, 12, 30, tzinfo=UTC),
        warc_offset=1234,
        language="de",
        language_score=0.5,
        scores={"gopher.words": 2.0},
        meta='{"k": 1}',
    )
    table = documents_to_table([doc])
    assert table.schema.equals(SCHEMA, check_metadata=True)
    [back] = table_to_documents(table)
    assert back == doc
    assert back.n_chars == len("héllo wörld")
    assert back.domain == "example.org"
    assert back.meta_dict() == {"k": 1}


def test_schema_carries_version_and_required_columns():
    assert SCHEMA.metadata[b"curate.schema_version"] == SCHEMA_VERSION.encode()
    assert not SCHEMA.field("id").nullable and not SCHEMA.field("text").nullable
    assert SCHEMA.field("language").nullable


def test_empty_scores_written_as_null():
    table = documents_to_table([Document(id="x", text="t")])
    assert table.column("scores").to_pylist() == [None]


def test_conform_fills_missing_optional_columns_and_drops_unknown():
    foreign = pa.table({"id": ["1"], "text": ["hi"], "extra": [3], "warc_offset": pa.array([5], pa.int32())})
    table = conform_table(foreign, origin="f.parquet")
    assert table.schema.equals(SCHEMA)
    row = table.to_pylist()[0]
    assert row["warc_offset"] == 5 and row["url"] is None and "extra" not in row


def test_conform_names_file_and_missing_column():
    with pytest.raises(InputError, match=r"f\.parquet.*missing column\(s\) text"):
        conform_table(pa.table({"id": ["1"]}), origin="f.parquet")


def test_conform_rejects_incompatible_types():
    with pytest.raises(InputError, match="column 'warc_offset'"):
        conform_table(pa.table({"id": ["1"], "text": ["t"], "warc_offset": ["not a number"]}), origin="g")


@pytest.mark.parametrize(
    "column,values",
    [
        ("text", pa.array([12], pa.int64())),  # numbers would become the text
        ("id", pa.array([3.5], pa.float64())),
        ("text", pa.array([b"bytes"], pa.binary())),
        ("url", pa.array([True], pa.bool_())),
        ("date", pa.array(["2024-01-01"], pa.string())),  # text where a date belongs
        ("n_chars", pa.array(["12"], pa.string())),  # even when every value would parse
        ("n_chars", pa.array([12.0], pa.float64())),
        ("scores", pa.array(["q=1"], pa.string())),
        ("scores", pa.array([[("q", "high")]], pa.map_(pa.string(), pa.string()))),
    ],
)
def test_a_column_of_another_kind_is_refused_from_the_schema_alone(column, values):
    base = {"id": pa.array(["1"]), "text": pa.array(["t"])}
    table = pa.table({**base, column: values})
    expected = f"{column!r} has type {values.type}, expected {SCHEMA.field(column).type}"
    assert schema_problems(table.schema) == {column: f"column {expected}"}
    with pytest.raises(SchemaError, match=re.escape(f"f.parquet: column {expected}")) as info:
        conform_table(table, origin="f.parquet")
    assert info.value.reason == "bad_schema" and isinstance(info.value, InputError)
    with pytest.raises(SchemaError):
        check_schema(table.schema, "f.parquet")


def test_lossless_casts_are_kept():
    table = pa.table(
        {
            "id": pa.array(["a", "b"]).dictionary_encode(),
            "text": pa.array(["x", "yy"], pa.large_string()),
            "url": pa.array(["u", None], pa.string_view()),
            # 2024-03-01T12:00:00 and one nanosecond
            "date": pa.array([1_709_294_400_000_000_001, None], pa.timestamp("ns")),
            "warc_offset": pa.array([1, 2], pa.uint16()),
            "quality_score": pa.array([1, 0], pa.int64()),  # integers where floats belong
            "language_score": pa.array([0.5, 0.25], pa.float64()),
            "scores": pa.array([[("a", 1)], None], pa.map_(pa.large_string(), pa.int32())),
            "epoch": pa.array([0, 3], pa.int64()),
            "meta": pa.nulls(2),  # an all-null column holds nothing of another kind
        }
    )
    assert schema_problems(table.schema) == {}
    out = conform_table(table, origin="f")
    assert out.schema.equals(SCHEMA)
    rows = out.to_pylist()
    assert rows[0]["date"] == datetime(2024, 3, 1, 12, tzinfo=UTC)  # nanoseconds dropped, not refused
    assert [r["warc_offset"] for r in rows] == [1, 2] and rows[0]["scores"] == [("a", 1.0)]
    assert rows[0]["quality_score"] == 1.0 and rows[1]["epoch"] == 3


def test_a_value_out_of_its_column_range_is_a_schema_error():
    table = pa.table({"id": ["1"], "text": ["t"], "epoch": pa.array([2**40], pa.int64())})
    assert schema_problems(table.schema) == {}  # the kind is right
    with pytest.raises(SchemaError, match="column 'epoch' has type int64, expected int32 .*not in range"):
        conform_table(table, origin="f")


def test_castable_matches_the_kinds():
    assert castable(pa.large_string(), pa.string()) and castable(pa.float32(), pa.float64())
    assert castable(pa.float64(), pa.float32()) and castable(pa.int32(), pa.int64())
    assert castable(pa.date32(), pa.timestamp("us", tz="UTC"))
    assert castable(pa.timestamp("s", tz="Europe/Paris"), pa.timestamp("us", tz="UTC"))
    assert not castable(pa.int64(), pa.string()) and not castable(pa.string(), pa.int64())
    assert not castable(pa.float64(), pa.int64()) and not castable(pa.bool_(), pa.int64())
    assert not castable(pa.int64(), pa.timestamp("us", tz="UTC"))


def test_null_rows_name_text_first():
    table = pa.table({"id": pa.array(["a", None, None, "d"]), "text": pa.array(["x", "y", None, None])})
    assert null_rows(table) == [(1, "null_id"), (2, "null_text"), (3, "null_text")]
    assert null_rows(pa.table({"id": ["a"], "text": ["x"]})) == []


@pytest.mark.parametrize(
    "url,domain",
    [
        ("https://www.example.com/x", "example.com"),
        ("http://Sub.Example.COM.:8080/", "sub.example.com"),
        ("not a url", None),
        ("http://[::1]/", "::1"),
    ],
)
def test_domain_of(url, domain):
    assert domain_of(url) == domain


def test_stable_id_is_stable_and_distinguishes_parts():
    assert stable_id("web", "u", "d") == stable_id("web", "u", "d")
    assert stable_id("web", "u", "d") != stable_id("web", "ud", "")
    assert len(stable_id("a")) == 32
