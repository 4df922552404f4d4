"""`curate forget` on a tiny work directory built by the real stages (crawl -> filter -> dedup ->
mix) from an in-memory WARC, with checkpoint step folders (one with a consumption record)."""

from __future__ import annotations

import hashlib
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
]


def _text(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(" ".join(rng.choice(WORDS) for _ in range(11)).capitalize() + "." for _ in range(20))


@pytest.fixture
def workdir(tmp_path, warc_kit, data_stages):
    """WORKDIR (the pipeline's folder names) of 5 pages: ``near.example.org/copy`` is a near
    duplicate of ``keep.example.com/original`` (removed by dedup), ``sub.near.example.org/b``
    is kept and consumed by the checkpoint ``ckpt/base`` (a consumption record of every mix
    row), which ``ckpt/sft`` (no record) was fine-tuned from."""
    original = _text(1)
    copy = original.rsplit(" ", 3)[0] + " zebra quartz nebula."

    def page(text: str) -> bytes:
        html = (
            f'<html lang="en"><head><meta charset="utf-8"></head><body><article><p>{text}</p></article></body></html>'
        )
        return warc_kit.http_block(html.encode())

    pages = [
        ("https://keep.example.com/original", page(original)),
        ("https://keep.example.com/other", page(_text(2))),
        ("https://near.example.org/copy", page(copy)),
        ("https://third.example.org/a", page(_text(4))),
        ("https://sub.near.example.org/b", page(_text(5))),
    ]
    warc = tmp_path / "in" / "sample.warc.gz"
    warc.parent.mkdir()
    warc.write_bytes(warc_kit.make_warc(pages))
    work = tmp_path / "work"
    data_stages(warc, work, "8k")
    sha = hashlib.sha256((work / "mix" / "manifest.json").read_bytes()).hexdigest()
    rows = pq.read_table(work / "mix" / "part-00000-000.parquet", columns=["id", "source", "n_tokens"])
    base = _step(work / "ckpt" / "base", {"stage": "pretrain", "mix_manifest_sha256": sha})
    pq.write_table(
        pa.table(
            {
                "id": rows.column("id"),
                "source": rows.column("source"),
                "tokens": rows.column("n_tokens"),
                "times_seen": pa.array([1] * rows.num_rows, pa.int32()),
                "shard": ["part-00000-000.parquet"] * rows.num_rows,
                "row": pa.array(range(rows.num_rows), pa.int64()),
            }
        ),
        base / "consumed.parquet",
    )
    _step(work / "ckpt" / "sft", {"stage": "sft", "mix_manifest_sha256": sha, "parent": str(base), "data": "qa.jsonl"})
    return work


def _step(run: Path, meta: dict) -> Path:
    step = run / "step-000004"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps({**meta, "step": 4}))
    return step


def _ids(folder: Path) -> list[str]:
    return sorted(
        i for f in sorted(folder.glob("*.parquet")) for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()
    )


def _forget(work: Path, *args: str):
    return CliRunner().invoke(cli, ["forget", *args, "--workdir", str(work)])


def _balanced(manifest: dict) -> bool:
    c = manifest["counts"]
    return c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())


def test_forget_domain_in_crawl_dedup_removed_and_checkpoint(workdir):
    old = {s: (workdir / s / "manifest.json").read_bytes() for s in ("filter", "dedup", "mix")}
    result = _forget(workdir, "--domain", "near.example.org", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert out["request"] == "near.example.org" and out["documents"] == 2
    held = {h["what"]: h["holds"] for h in out["holders"]}
    assert (
        held["crawl"] == "2"
        and held["dedup"] == "kept 1, removed 1"
        and "1 document(s)" in held["checkpoint (pretrain)"]
    )
    target = workdir / "forget-near.example.org"
    gone = set((target / "forgotten-ids.txt").read_text().split())
    assert len(gone) == 2

    # New filter: the two documents rejected as forgotten, without text; the counts add up.
    manifest = json.loads((target / "filter" / "manifest.json").read_text())
    assert _balanced(manifest) and manifest["counts"]["rejected"] == {"forgotten/near.example.org": 2}
    assert manifest["counts"]["kept"] == json.loads(old["filter"])["counts"]["kept"] - 2
    assert not gone & set(_ids(target / "filter"))
    rejected = pq.read_table(target / "filter" / "rejected" / "forgotten-000.parquet")
    assert set(rejected.column("id").to_pylist()) == gone
    assert set(rejected.column("text").to_pylist()) == {""}
    # New dedup and mix: rerun from it, without them; the old outputs untouched.
    for stage in ("dedup", "mix"):
        manifest = json.loads((target / stage / "manifest.json").read_text())
        assert _balanced(manifest)
        assert not gone & {i.split("#")[0] for i in _ids(target / stage)}
        assert (workdir / stage / "manifest.json").read_bytes() == old[stage]
    assert not gone & set(_ids(target / "dedup" / "removed"))
    assert json.loads((target / "dedup" / "manifest.json").read_text())["counts"]["read"] == 3
    # Runs to redo: the base run consumed them, the SFT run started from it.
    runs = {Path(r["run"]).name: r for r in out["runs_to_redo"]}
    assert list(runs) == ["base", "sft"]
    assert f"--data {target / 'mix'}" in runs["base"]["command"]
    assert f"--base {target / 'ckpt' / 'base'}" in runs["sft"]["command"]
    assert runs["sft"]["why"].startswith("started from")

    # The same request again writes the same outputs; another under the same name is refused.
    before = json.loads((target / "mix" / "manifest.json").read_text())["shards"]
    assert _forget(workdir, "--domain", "near.example.org").exit_code == 0
    assert json.loads((target / "mix" / "manifest.json").read_text())["shards"] == before
    other = _forget(workdir, "--domain", "third.example.org", "--name", "near.example.org")
    assert other.exit_code != 0 and "another request" in other.output


def test_forget_representative_keeps_its_duplicate(workdir):
    """Forgetting the kept page of a near-duplicate pair: the rerun dedup keeps the copy."""
    text = _forget(workdir, "--url", "https://keep.example.com/original", "--name", "r1")
    assert text.exit_code == 0, text.output
    assert "now rejected as forgotten/r1" in text.output and "to redo:" in text.output
    crawl = pq.read_table(workdir / "crawl" / "part-00000-000.parquet", columns=["id", "url"]).to_pylist()
    copy = next(r["id"] for r in crawl if r["url"].endswith("/copy"))
    assert copy in _ids(workdir / "forget-r1" / "dedup")
    assert copy not in _ids(workdir / "dedup")


def test_forget_bad_input(workdir, tmp_path):
    assert "is not a URL" in _forget(workdir, "--url", "example.com").output
    none = _forget(workdir, "--domain", "nowhere.example")
    assert none.exit_code == 2 and "error: no document matches domain nowhere.example" in none.output
    ids = tmp_path / "ids.txt"
    ids.write_text("# nothing\n")
    assert "no ids in the file" in _forget(workdir, "--ids", str(ids)).output
    assert "exactly one of" in _forget(workdir, "--domain", "a.org", "--url", "https://a.org/").output
    assert "--name" in _forget(workdir, "--domain", "a.org", "--name", "../x").output
    assert not list(workdir.glob("forget-*"))


def test_a_second_request_keeps_the_first_ones_documents_out(workdir):
    first = _forget(workdir, "--domain", "near.example.org", "--name", "first")
    assert first.exit_code == 0, first.output
    gone = set((workdir / "forget-first" / "forgotten-ids.txt").read_text().split())
    second = _forget(workdir, "--url", "https://keep.example.com/original", "--name", "second")
    assert second.exit_code == 0, second.output
    target = workdir / "forget-second"
    manifest = json.loads((target / "filter" / "manifest.json").read_text())
    assert _balanced(manifest)
    assert manifest["counts"]["rejected"].get("forgotten/first") == len(gone)
    assert manifest["counts"]["rejected"].get("forgotten/second") == 1
    for stage in ("filter", "dedup", "mix"):
        assert not gone & {i.split("#")[0] for i in _ids(target / stage)}, stage
