"""The one Document record and its Arrow schema."""

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from curate.core.document import (
    SCHEMA,
    SCHEMA_VERSION,
    Document,
    conform_table,
    documents_to_table,
    domain_of,
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
