"""What a checkpoint consumed (consumed.parquet), `curate lineage`, and the cutoff of what was
read: a resumed run records what the uninterrupted one does, a run stopped early has an earlier
cutoff than its mix, SFT and DPO record their examples and the parent chain."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.accounting import Stats
from curate.core.config import from_dict
from curate.core.document import Document
from curate.core.manifest import build_manifest, write_manifest
from curate.core.shards import ShardWriter
from curate.explore.checkpoint import checkpoint_summary, format_checkpoint, write_checkpoint_report
from train.align.data import Origin, batch_counts, batch_indices, origin_of
from train.checkpoint import list_step_dirs
from train.lineage import CONSUMED_FILE, LINEAGE_COLUMNS, format_lineage, lineage
from train.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

N_DOCS = 40
LAST = "2024-03-19T00:00:00Z"  # the latest document date (document N_DOCS - 1)


def dated_mix(directory: Path) -> Path:
    """One shard of 40 documents of two sources, dated a week apart in file order (so a run
    that stops early has read only the early ones); the manifest's cutoff is the mix's."""
    writer = ShardWriter(directory, prefix="part-00000", shard_bytes=1_000_000)
    for i in range(N_DOCS):
        writer.write(
            Document(
                id=f"doc-{i:03d}",
                text=f"Page {i} tells a short story. " * (1 + i % 3),
                source="web" if i % 4 else "books",
                url=f"https://example.org/{i}",
                crawl="CC-TEST-2024",
                warc_path="crawl/test.warc.gz",
                warc_offset=1000 * i,
                date=datetime.fromtimestamp(1704067200 + i * 2 * 86400, tz=UTC),  # 2024-01-01 on
            )
        )
    shards = writer.close()
    cutoff = {"max": LAST, "p99": LAST, "min": "2024-01-01T00:00:00Z", "dated_docs": N_DOCS, "undated_docs": 0}
    manifest = build_manifest(
        "mix",
        {},
        [],
        Stats(read=N_DOCS, kept=N_DOCS),
        {"": shards},
        extra={"training_cutoff": cutoff, "tokenizer": {"name": "bytes", "vocab_size": 262}},
    )
    write_manifest(directory, manifest)
    return directory


@pytest.fixture(scope="module")
def mix_dir(tmp_path_factory):
    return dated_mix(tmp_path_factory.mktemp("lineage") / "mix")


def config(max_steps: int, **extra) -> PretrainConfig:
    return from_dict(
        PretrainConfig,
        {
            "max_steps": max_steps,
            "batch_size": 2,
            "checkpoint_every": 0,
            "log_every": 1000,
            "keep_last": 0,
            "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
            "data": {"val_fraction": 0.0},
            **extra,
        },
    )


def consumed(step_dir: Path) -> list[dict]:
    return pq.read_table(step_dir / CONSUMED_FILE).to_pylist()


def test_a_resumed_run_records_what_the_uninterrupted_run_consumed(mix_dir, tmp_path):
    # 50 steps of 64 tokens pass the end of the mix (~2,600 tokens): some documents twice.
    cfg = config(50, checkpoint_every=10)
    straight = pretrain(cfg, mix_dir, tmp_path / "straight", progress=False)
    first = pretrain(cfg, mix_dir, tmp_path / "resumed", progress=False, stop_at_step=23)
    assert first.status == "stopped"
    # A copy of the stopped run without its record: resuming replays the reader instead.
    shutil.copytree(tmp_path / "resumed", tmp_path / "replayed")
    (tmp_path / "replayed" / "step-000023" / CONSUMED_FILE).unlink()
    for name in ("resumed", "replayed"):
        pretrain(cfg, mix_dir, tmp_path / name, progress=False)

    rows = consumed(straight.checkpoint)
    assert sum(r["tokens"] for r in rows) == straight.tokens_seen == 50 * 64
    assert {r["times_seen"] for r in rows} == {1, 2}  # the second pass has begun
    assert set(rows[0]) == {"id", "source", "tokens", "times_seen", "shard", "row"}
    for name in ("resumed", "replayed"):
        for step in ("step-000030", "step-000050"):
            assert consumed(tmp_path / name / step) == consumed(tmp_path / "straight" / step), (name, step)
        a = lineage(tmp_path / name, tmp_path / f"{name}.parquet")
        b = lineage(tmp_path / "straight", tmp_path / "straight.parquet")
        assert a.summary == b.summary
        assert pq.read_table(tmp_path / f"{name}.parquet").equals(pq.read_table(tmp_path / "straight.parquet"))
    # The stopped checkpoint: a document cut at the boundary counts its consumed part only.
    at_stop = {r["id"]: r for r in consumed(tmp_path / "resumed" / "step-000023")}
    assert sum(r["tokens"] for r in at_stop.values()) == 23 * 64
    later = {r["id"]: r for r in consumed(tmp_path / "resumed" / "step-000030")}
    cut = [i for i, r in at_stop.items() if later[i]["tokens"] > r["tokens"] and later[i]["times_seen"] == 1]
    assert cut, "the document read across the stop is one pass, not two"


def test_a_run_stopped_early_has_an_earlier_cutoff_than_its_mix(mix_dir, tmp_path):
    early = pretrain(config(3), mix_dir, tmp_path / "early", progress=False)
    meta = json.loads((early.checkpoint / "config.json").read_text())
    cut = meta["consumed_cutoff"]
    assert cut["max"] < LAST and cut["dated_docs"] < N_DOCS and cut["undated_docs"] == 0
    assert meta["training_cutoff"]["max"] == LAST  # the mix's, kept beside it
    text = format_lineage(lineage(early.checkpoint))
    assert f"cutoff          {cut['max']}" in text and f"mix cutoff      {LAST}" in text
    facts = format_checkpoint(checkpoint_summary(str(tmp_path / "early")))
    assert f"training cutoff {cut['max']}" in facts and "from the documents consumed" in facts
    assert f"mix cutoff      {LAST}" in facts
    # One whole pass (the mix is ~2,600 tokens) reaches the last document: the cutoffs agree.
    whole = pretrain(config(45), mix_dir, tmp_path / "whole", progress=False)
    meta = json.loads((whole.checkpoint / "config.json").read_text())
    assert meta["consumed_cutoff"]["max"] == meta["consumed_cutoff"]["p99"] == LAST
    assert "mix cutoff" not in format_lineage(lineage(whole.checkpoint))
    assert "mix cutoff" not in format_checkpoint(checkpoint_summary(str(tmp_path / "whole")))
    # The report plots the consumed tokens by month.
    page = Path(write_checkpoint_report(str(tmp_path / "early"), str(tmp_path / "r.html"))).read_text()
    assert "consumed tokens by month of document date" in page and "data:image/png;base64," in page


def test_lineage_cli_writes_documents_with_their_crawl_columns(mix_dir, tmp_path):
    pretrain(config(12), mix_dir, tmp_path / "run", progress=False)
    out = tmp_path / "lineage.parquet"
    result = CliRunner().invoke(cli, ["lineage", str(tmp_path / "run"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.column_names == LINEAGE_COLUMNS
    rows = table.to_pylist()
    assert sum(r["tokens"] for r in rows) == 12 * 64
    for r in rows:  # every row joined back to its document in the mix
        n = int(r["id"].split("-")[1])
        assert r["url"] == f"https://example.org/{n}" and r["warc_offset"] == 1000 * n and r["row"] == n
        assert r["crawl"] == "CC-TEST-2024" and r["source"] == ("web" if n % 4 else "books")
        assert r["date"] == datetime.fromtimestamp(1704067200 + n * 2 * 86400, tz=UTC)
    assert "by source" in result.output and "books" in result.output and "web" in result.output
    assert "by month of document date" in result.output and "2024-01" in result.output
    summary = json.loads(CliRunner().invoke(cli, ["lineage", str(tmp_path / "run"), "--json"]).output)
    months = {r["date"].strftime("%Y-%m") for r in rows}
    assert set(summary["by_month"]) == months
    assert sum(v["tokens"] for v in summary["by_source"].values()) == summary["tokens"] == 12 * 64
    assert summary["by_source"]["books"]["documents"] == sum(1 for r in rows if r["source"] == "books")
    # A folder that is no checkpoint: one line, no traceback.
    bad = CliRunner().invoke(cli, ["lineage", str(tmp_path)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "no such checkpoint" in bad.output


def test_batch_counts_are_the_batch_order_counted():
    for n, batch, steps in [(7, 3, 5), (10, 4, 0), (5, 5, 3), (9, 2, 13)]:
        counted = [0] * n
        for step in range(steps):
            for i in batch_indices(n, batch, step, seed=3):
                counted[i] += 1
        assert batch_counts(n, batch, steps, seed=3).tolist() == counted


def test_origin_of_names_records_by_id_else_place():
    assert origin_of("data/qa.jsonl:7", {"id": "q-7"}) == Origin("q-7", "data/qa.jsonl", 7)
    assert origin_of("data/qa.jsonl:7", {"prompt": "x"}) == Origin("data/qa.jsonl:7", "data/qa.jsonl", 7)
    assert origin_of("d/pairs.parquet row 3", {}) == Origin("d/pairs.parquet:3", "d/pairs.parquet", 3)
    assert origin_of("d/a.json item 0", {"id": 12}) == Origin("12", "d/a.json", 0)


def test_sft_and_dpo_record_their_examples_and_the_parent_chain(tmp_path, tiny_checkpoint):
    from train.align.dpo import DPOConfig, dpo
    from train.align.sft import SFTConfig, sft

    base = tiny_checkpoint(tmp_path / "base")
    data = tmp_path / "qa.jsonl"
    with open(data, "w") as fh:
        for i in range(12):
            row = {"prompt": f"{i}+1?", "response": f"{i + 1}"}
            fh.write(json.dumps({**row, "id": f"qa-{i}"} if i % 2 else row) + "\n")
    cfg = SFTConfig(batch_size=4, max_steps=5, eval_every=0, val_fraction=0.0, seed=1, keep_last=0)
    out = sft(cfg, base, data, tmp_path / "sft", progress=False).checkpoint
    rows = consumed(out)
    assert sum(r["times_seen"] for r in rows) == 5 * 4  # 20 draws of 12 examples: each once or twice
    assert {r["times_seen"] for r in rows} == {1, 2} and len(rows) == 12
    by_line = {r["row"]: r for r in rows}
    assert by_line[2]["id"] == "qa-1" and by_line[1]["id"] == f"{data}:1"  # an id field, else file:line
    assert {r["source"] for r in rows} == {r["shard"] for r in rows} == {str(data)}
    assert all(r["tokens"] > 0 and r["tokens"] % r["times_seen"] == 0 for r in rows)  # per pass, times passes
    # A stopped and resumed SFT run records the same.
    sft(cfg, base, data, tmp_path / "sft2", progress=False, stop_at_step=2)
    sft(cfg, base, data, tmp_path / "sft2", progress=False)
    assert consumed(tmp_path / "sft2" / "step-000005") == rows

    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w") as fh:
        for i in range(6):
            fh.write(json.dumps({"prompt": f"{i}+1?", "chosen": f"{i + 1}", "rejected": f"{i + 7}"}) + "\n")
    dcfg = DPOConfig(batch_size=2, max_steps=2, eval_every=0, val_fraction=0.0, seed=1)
    last = dpo(dcfg, out, pairs, tmp_path / "dpo", progress=False).checkpoint
    meta = json.loads((last / "config.json").read_text())
    assert [c["stage"] for c in meta["parent_chain"]] == ["pretrain", "sft"]
    assert meta["parent_chain"][-1]["path"] == str(out) and meta["consumed"]["documents"] == 4
    found = lineage(tmp_path / "dpo")
    assert found.mix is None and found.summary["rows"] == 4
    text = format_lineage(found)
    assert f"pretrain ({base}) -> sft ({out}) -> dpo ({last})" in text
    assert "4 examples" in text and str(pairs) in text
    assert [s.name for s in list_step_dirs(tmp_path / "dpo")] == ["step-000002"]


def test_rlhf_records_the_prompts_it_drew(tmp_path, tiny_checkpoint, monkeypatch):
    from train.align import rlhf as rlhf_module
    from train.align.rlhf import RLHFConfig, rlhf

    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(5):
            fh.write(json.dumps({"prompt": f"Say {i}.", **({"id": f"p{i}"} if i % 2 else {})}) + "\n")
    drawn: list[str] = []
    rollout = rlhf_module.Sampler.rollout

    def spy(self, expanded, generator):
        drawn.extend(p.text for p in expanded)
        return rollout(self, expanded, generator)

    monkeypatch.setattr(rlhf_module.Sampler, "rollout", spy)
    cfg = RLHFConfig(batch_size=2, max_steps=4, max_new_tokens=4, eval_every=0, val_fraction=0.0, seed=1)
    base = tiny_checkpoint(tmp_path / "base")
    out = rlhf(cfg, base, prompts, tmp_path / "rl", reward=lambda p, r: [float(len(x)) for x in r], progress=False)
    rows = {r["id"]: r for r in consumed(out.checkpoint)}
    per_prompt = cfg.samples_per_prompt
    expected = {f"p{i}" if i % 2 else f"{prompts}:{i + 1}": drawn.count(f"Say {i}.") // per_prompt for i in range(5)}
    assert {k: v for k, v in expected.items() if v} == {k: r["times_seen"] for k, r in rows.items()}
    assert sum(r["times_seen"] for r in rows.values()) == 4 * 2


def test_chunks_of_a_long_document_count_as_that_document_and_share_its_split():
    import pyarrow as pa

    from train.data import is_validation
    from train.lineage import CONSUMED_SCHEMA, consumption_summary

    table = pa.table(
        {
            "id": ["book#c00000", "book#c00001", "page"],
            "source": ["books", "books", "web"],
            "tokens": [10, 10, 5],
            "times_seen": [1, 1, 2],
            "shard": ["s", "s", "s"],
            "row": [0, 1, 2],
        },
        schema=CONSUMED_SCHEMA,
    )
    summary = consumption_summary(table)
    assert summary["documents"] == 2 and summary["by_source"]["books"]["documents"] == 1
    for fraction in (0.1, 0.5, 0.9):
        ids = [f"doc{i}" for i in range(200)]
        assert all(is_validation(f"{i}#c00003", fraction) == is_validation(i, fraction) for i in ids)
