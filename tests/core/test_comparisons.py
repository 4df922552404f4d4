"""The comparison record: reading JSONL/Parquet, dates, schema errors, round trip."""

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from curate.core.comparisons import COMPARISON_SCHEMA, read_comparisons, write_comparisons
from curate.core.errors import InputError


def test_jsonl_to_parquet_round_trip_with_dates(tmp_path):
    src = tmp_path / "c.jsonl"
    rows = [
        {"prompt": "p1", "chosen": "good", "rejected": "bad", "date": "2024-05-01T10:00:00Z", "rater": "ann"},
        {"prompt": "p2", "chosen": "yes", "rejected": "no", "date": "2024-05-02"},
        {"prompt": "p3", "chosen": "a", "rejected": "b"},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = read_comparisons(src)
    assert [r["prompt"] for r in got] == ["p1", "p2", "p3"]
    assert got[0]["date"] == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert got[1]["date"] == datetime(2024, 5, 2, tzinfo=UTC) and got[2]["date"] is None
    out = tmp_path / "c.parquet"
    assert write_comparisons(got, out) == 3
    assert pq.read_schema(out).equals(COMPARISON_SCHEMA)
    assert read_comparisons(out) == got
    assert read_comparisons(tmp_path) == got + got  # a directory: both files, sorted by name


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"prompt": "p", "chosen": "c"}', "needs string fields rejected"),
        ('{"prompt": "p", "chosen": "c", "rejected": "r", "date": "yesterday"}', "not ISO 8601"),
        ("{not json", "invalid JSON"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, match):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n' + line + "\n")
    with pytest.raises(InputError, match=rf"bad\.jsonl:2: .*{match}"):
        read_comparisons(f)


def test_missing_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_comparisons(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .jsonl or .parquet"):
        read_comparisons(tmp_path / "empty")
