"""`curate trace` on a tiny work directory built by the real stages (crawl -> filter -> dedup ->
mix) from an in-memory WARC, with a checkpoint step folder holding a consumption record."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli

WORDS = [
    *("river", "stone", "garden", "window", "market", "winter", "lantern", "copper", "meadow", "harbor"),
    *("violin", "pepper", "candle", "thunder", "pillow", "orchard", "bridge", "saddle", "feather", "marble"),
    *("rocket", "forest", "island", "mirror", "basket", "engine", "ladder", "silver", "canyon", "glacier"),
]


def _text(seed: int, n: int = 220) -> str:
    rng = random.Random(seed)
    sentences = []
    for _ in range(n // 11):
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(11)).capitalize() + ".")
    return " ".join(sentences)


def _page(kit, title: str, text: str) -> bytes:
    paras = "".join(f"<p>{text[i : i + 400]}</p>" for i in range(0, len(text), 400))
    html = f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
    html += f"<body><article><h1>{title}</h1>{paras}</article></body></html>"
    return kit.http_block(html.encode())


@pytest.fixture
def workdir(tmp_path, warc_kit, data_stages):
    """WORKDIR with crawl, filter, dedup and mix outputs (the pipeline's folder names): 6 pages,
    one of them (``near.example.org/copy``) a near duplicate of ``keep.example.com/original``,
    one blocked by the filter (``blocked.example.net``); and a checkpoint step that consumed the
    first 4 mix rows. Returns (workdir, {name: document id})."""
    original = _text(1)
    words = original.split()
    words[-3:] = ["zebra", "quartz", "nebula."]  # a near duplicate: the last words changed
    pages = [
        ("https://keep.example.com/original", _page(warc_kit, "Original", original)),
        ("https://keep.example.com/other", _page(warc_kit, "Other", _text(2))),
        ("https://near.example.org/copy", _page(warc_kit, "Copy", " ".join(words))),
        ("https://blocked.example.net/page", _page(warc_kit, "Blocked", _text(3))),
        ("https://www.third.example.org/a", _page(warc_kit, "Third", _text(4))),
        ("https://sub.near.example.org/b", _page(warc_kit, "Sub", _text(5))),
    ]
    warc = tmp_path / "in" / "sample.warc.gz"
    warc.parent.mkdir()
    warc.write_bytes(warc_kit.make_warc(pages))
    work = tmp_path / "work"
    data_stages(warc, work, "12k")
    return work


def _ids(work: Path) -> dict[str, str]:
    """URL path's last part -> document id, from the crawl output."""
    table = pa.concat_tables(
        pq.read_table(f, columns=["id", "url"]) for f in sorted((work / "crawl").glob("*.parquet"))
    )
    return {u.rsplit("/", 1)[-1]: i for i, u in zip(table.column("id").to_pylist(), table.column("url").to_pylist())}


def _checkpoint(work: Path, rows: int = 4) -> Path:
    """A step folder whose consumed.parquet records the first ``rows`` mix rows."""
    import hashlib

    mix = pq.read_table(work / "mix" / "part-00000-000.parquet", columns=["id", "source", "n_tokens"]).slice(0, rows)
    step = work / "ckpt" / "base" / "step-000010"
    step.mkdir(parents=True)
    sha = hashlib.sha256((work / "mix" / "manifest.json").read_bytes()).hexdigest()
    (step / "config.json").write_text(json.dumps({"stage": "pretrain", "step": 10, "mix_manifest_sha256": sha}))
    table = pa.table(
        {
            "id": mix.column("id"),
            "source": mix.column("source"),
            "tokens": mix.column("n_tokens"),
            "times_seen": pa.array([1] * mix.num_rows, pa.int32()),
            "shard": ["part-00000-000.parquet"] * mix.num_rows,
            "row": pa.array(range(mix.num_rows), pa.int64()),
        }
    )
    pq.write_table(table, step / "consumed.parquet")
    return step


def _trace(work: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["trace", *args, "--workdir", str(work), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_trace_near_duplicate_across_all_stages(workdir):
    ids = _ids(workdir)
    step = _checkpoint(workdir)
    found = _trace(workdir, "https://near.example.org/copy")
    [doc] = found["documents"]
    assert doc["id"] == ids["copy"]
    crawl = doc["crawl"]
    assert crawl["warc_path"].endswith("sample.warc.gz") and crawl["warc_offset"] > 0
    assert crawl["warc_record_id"].startswith("<urn:uuid:") and crawl["charset"] == "utf-8"
    assert doc["filter"]["status"] == "kept" and doc["filter"]["reason"] is None
    dedup = doc["dedup"]
    assert dedup["status"] == "removed" and dedup["kind"] == "near"
    assert dedup["dup_of"] == ids["original"] and dedup["dup_of_url"] == "https://keep.example.com/original"
    assert 0.8 <= dedup["similarity"] < 1.0
    assert doc["mix"] == [] and doc["checkpoints"] == []  # removed before the mix
    [ck] = found["checkpoints"]
    assert ck["path"] == str(step) and ck["record"] and ck["trained_on_mix"]

    # Its representative: kept, representing it, in the mix; the text says both.
    rep = _trace(workdir, ids["original"])["documents"][0]
    assert rep["dedup"]["status"] == "kept" and rep["dedup"]["removed_by_kind"] == {"near": 1}
    assert rep["mix"] and {r["source"] for r in rep["mix"]} == {"web"}
    text = CliRunner().invoke(cli, ["trace", "https://near.example.org/copy", "--workdir", str(workdir)]).output
    assert f"removed as near duplicate of {ids['original']} https://keep.example.com/original" in text
    assert f"{step}: not consumed" in text


def test_trace_domain_filter_reason_and_consumption(workdir):
    ids = _ids(workdir)
    step = _checkpoint(workdir, rows=100)
    blocked = _trace(workdir, "--domain", "blocked.example.net")["documents"]
    assert [d["filter"]["reason"] for d in blocked] == ["url_blocklist/blocked_domain"]
    assert blocked[0]["dedup"] is None and blocked[0]["mix"] == []
    # A domain takes its subdomains; documents come in crawl order.
    found = _trace(workdir, "--domain", "near.example.org")
    assert [d["id"] for d in found["documents"]] == [ids["copy"], ids["b"]]
    consumed = found["documents"][1]["checkpoints"]
    mix = found["documents"][1]["mix"]
    assert consumed == [{"path": str(step), "tokens": sum(r["n_tokens"] for r in mix), "times_seen": len(mix)}]
    # www. is dropped like the crawl does.
    assert [d["id"] for d in _trace(workdir, "--domain", "www.third.example.org")["documents"]] == [ids["a"]]


def test_trace_without_records_and_bad_input(workdir, tmp_path):
    ids = _ids(workdir)
    step = workdir / "ckpt" / "sft" / "step-000002"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps({"stage": "sft", "step": 2}))
    text = CliRunner().invoke(cli, ["trace", ids["other"], "--workdir", str(workdir)]).output
    assert f"{step}: no consumption record" in text
    # Explicit stage folders; a missing one is reported, not an error.
    result = CliRunner().invoke(
        cli, ["trace", ids["other"], "--workdir", str(tmp_path / "none"), "--dedup", str(workdir / "dedup"), "--json"]
    )
    found = json.loads(result.output)
    assert found["documents"][0]["dedup"]["status"] == "kept" and found["documents"][0]["crawl"] is None
    assert "no stage output holds" in CliRunner().invoke(cli, ["trace", "nope", "--workdir", str(workdir)]).output
    bad = CliRunner().invoke(cli, ["trace", "x", "--domain", "a.org", "--workdir", str(workdir)])
    assert bad.exit_code != 0 and "exactly one of" in bad.output


def test_a_chunk_id_names_its_document_and_a_missing_workdir_is_one_line(tmp_path):
    from curate.explore.trace import make_selector

    assert make_selector("abc123#c00002").ids == ("abc123",)
    assert make_selector(None, ids=["abc#c00000", "abc", "def"]).ids == ("abc", "def")
    result = CliRunner().invoke(cli, ["trace", "abc", "--workdir", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "no crawl, filter, dedup or mix output here" in result.output
    assert "Traceback" not in result.output
