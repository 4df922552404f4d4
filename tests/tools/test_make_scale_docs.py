"""tools/make_scale_docs.py: deterministic by seed, planted duplicates at the rate asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.core.document import SCHEMA
from curate.core.shards import expand_parquet_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("make_scale_docs", ROOT / "tools" / "make_scale_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(folder: Path) -> list[dict]:
    rows = []
    for path in expand_parquet_inputs([str(folder)]):
        table = pq.read_table(path)
        assert table.schema.equals(SCHEMA, check_metadata=False)
        rows += table.select(["id", "url", "text", "meta"]).to_pylist()
    return rows


def test_deterministic_by_seed_and_independent_of_shard_size(gen, tmp_path):
    a = gen.write(tmp_path / "a", 500, seed=3, dup_rate=0.2, docs_per_shard=100)
    b = gen.write(tmp_path / "b", 500, seed=3, dup_rate=0.2, docs_per_shard=500)
    gen.write(tmp_path / "c", 500, seed=4, dup_rate=0.2, docs_per_shard=500)
    assert (a["shards"], b["shards"]) == (5, 1)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert [r["text"] for r in _rows(tmp_path / "c")] != [r["text"] for r in _rows(tmp_path / "b")]
    assert a["planted"] == b["planted"]


def test_plants_duplicates_at_the_rate_asked(gen, tmp_path):
    info = gen.write(tmp_path / "d", 600, seed=0, dup_rate=0.25)
    rows = _rows(tmp_path / "d")
    by_id = {r["id"]: r for r in rows}
    planted = [r for r in rows if r["meta"]]
    assert len(planted) == sum(info["planted"].values())
    assert abs(len(planted) / len(rows) - 0.25) < 0.06  # binomial: sd ~0.018 at 600
    assert 0 < info["planted"]["exact"] < info["planted"]["near"]
    for r in planted:
        meta = json.loads(r["meta"])
        original = by_id[meta["planted_dup_of"]]
        assert original["meta"] is None and original["id"] < r["id"]
        if meta["planted_kind"] == "exact":
            assert r["text"] == original["text"]
        else:
            a, b = original["text"].split(), r["text"].split()
            assert a != b and sum(x != y for x, y in zip(a, b, strict=False)) <= max(1, len(a) // 100)
    originals = [r["text"] for r in rows if not r["meta"]]
    assert len(set(originals)) == len(originals)  # no accidental exact duplicates
    assert all(len(t) > 200 for t in originals)
