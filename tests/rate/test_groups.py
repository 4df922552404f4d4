"""Rater groups: ``group`` in raters.toml, written with every rating and exported comparison, and
``curate rate stats --by group`` on a constructed set whose agreement is known."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.comparisons import PAIRS_SCHEMA
from curate.core.errors import ConfigError
from curate.rate.agreement import cohen_kappa
from curate.rate.export import export_ratings
from curate.rate.groups import majority
from curate.rate.session import Rater, RatingSession, load_raters
from curate.rate.stats import compute_stats, format_stats

ROOT = Path(__file__).resolve().parents[2]
N = 10


def write_pairs(path: Path) -> Path:
    rows = [
        {
            "pair_id": f"g{i:02d}",
            "prompt": f"question {i}",
            "response_1": f"first {i}",
            "response_2": f"second {i}",
            "model": "m",
            "meta": None,
        }
        for i in range(N)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA), path)
    return path


# Which response each group prefers on pair i. Group "north" and group "south" agree on pairs
# 4-9 (6 of 10) and differ on 0-3; inside each group both raters always agree.
def north(i: int) -> int:
    return 1 if i < 5 else 2


def south(i: int) -> int:
    return 3 - north(i) if i < 4 else north(i)


RATERS = [
    Rater("ann", "ann-token-0123456789", "north"),
    Rater("ben", "ben-token-0123456789", "north"),
    Rater("cat", "cat-token-0123456789", "south"),
    Rater("dan", "dan-token-0123456789", "south"),
    Rater("eve", "eve-token-0123456789"),  # no group recorded: left out of the group figures
]
PREFERS = {"ann": north, "ben": north, "cat": south, "dan": south, "eve": lambda i: 1}


@pytest.fixture
def rated(tmp_path) -> Path:
    out = tmp_path / "ratings"
    with RatingSession(out, write_pairs(tmp_path / "pairs.parquet"), RATERS, overlap=1.0, overlap_raters=5) as s:
        for rater in PREFERS:
            n = 0
            while (view := s.next_pair(rater)) is not None:
                n += 1
                i = int(view["pair_id"][1:])
                want = f"first {i}" if PREFERS[rater](i) == 1 else f"second {i}"
                s.rate(
                    rater,
                    {
                        "rating_id": f"r-{rater}-{n:04d}",
                        "pair_id": view["pair_id"],
                        "choice": "a" if view["a"] == want else "b",
                    },
                )
            assert n == N
    return out


def test_group_agreement_on_a_known_set(rated):
    figures = compute_stats(rated)
    groups = figures["groups"]
    assert groups["members"] == {"north": ["ann", "ben"], "south": ["cat", "dan"]} and figures["ungrouped"] == ["eve"]
    within = {row["group"]: row for row in groups["within"]}
    for name in ("north", "south"):
        assert within[name]["comparisons"] == N and within[name]["agreement"] == 1.0 and within[name]["kappa"] == 1.0
    (across,) = groups["across"]
    labels_north = [north(i) for i in range(N)]
    labels_south = [south(i) for i in range(N)]
    assert across["groups"] == ["north", "south"] and across["comparisons"] == 4 * N  # 2 x 2 raters, 10 pairs
    assert across["agreement"] == pytest.approx(0.6)
    assert across["kappa"] == pytest.approx(cohen_kappa(labels_north + labels_south, labels_south + labels_north))
    assert across["pairs"] == N and across["split"] == 0 and across["same_answer"] == pytest.approx(0.6)
    assert figures["raters"]["ann"]["group"] == "north" and figures["raters"]["eve"]["group"] is None

    text = format_stats(figures, by="group")
    assert "north / south" in text and "60.0%" in text and "100.0%" in text and "without a group" in text
    assert "without a group (left out below): eve" in text
    result = CliRunner().invoke(cli, ["rate", "stats", str(rated), "--by", "group"])
    assert result.exit_code == 0 and "north / south" in result.output


def test_split_votes_have_no_group_answer():
    assert majority([1, 1, 2]) == 1 and majority([1, 2]) is None and majority(["tie"]) == "tie"


def test_export_writes_each_ratings_group(rated, tmp_path):
    dest = tmp_path / "comparisons.parquet"
    stats = export_ratings(rated, dest)
    rows = pq.read_table(dest).to_pylist()
    assert stats.exported == 5 * N and len(rows) == 5 * N
    by_rater = {r["rater"]: r["group"] for r in rows}
    assert by_rater == {"ann": "north", "ben": "north", "cat": "south", "dan": "south", "eve": None}
    export_ratings(rated, tmp_path / "c.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert {x["rater"]: x["group"] for x in lines} == by_rater


def test_raters_toml_groups(tmp_path):
    path = tmp_path / "raters.toml"
    path.write_text('[[raters]]\nname = "ann"\ntoken = "abcdefghijklmnopqrstuvwx"\ngroup = "en-GB"\n')
    assert load_raters(path) == [Rater("ann", "abcdefghijklmnopqrstuvwx", "en-GB")]
    for bad, message in [('group = ""', "group must be"), ("group = 3", "group must be"), ('gruop = "x"', "gruop")]:
        path.write_text(f'[[raters]]\nname = "ann"\ntoken = "abcdefghijklmnopqrstuvwx"\n{bad}\n')
        with pytest.raises(ConfigError, match=message) as err:
            load_raters(path)
        assert "\n" not in str(err.value)
    sample = load_raters(ROOT / "samples" / "raters.toml", allow_example_tokens=True)
    assert [r.group for r in sample] == ["en", "en", "zh"]
