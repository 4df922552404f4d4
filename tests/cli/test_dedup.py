"""`curate dedup` from the command line: runs, --plan, reruns, one-line errors, exit codes."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.shards import ShardWriter

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def corpus(tmp_path):
    """40 distinct documents, 5 exact copies, 5 near copies, 3 URL refetches, in two files."""
    rng = random.Random(7)
    vocab = [f"tok{i}" for i in range(4000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(150)) for _ in range(40)]
    docs = [
        Document(id=f"d{i:02d}", text=t, url=f"https://site.org/{i}", date=T0 + timedelta(days=i))
        for i, t in enumerate(texts)
    ]
    for i in range(5):
        docs.append(
            Document(id=f"x{i}", text=texts[i].upper() + "!", url=f"https://copy.org/{i}", date=T0 + timedelta(days=60))
        )
        words = texts[10 + i].split()
        words[75] = "edited"
        docs.append(
            Document(id=f"n{i}", text=" ".join(words), url=f"https://near.org/{i}", date=T0 + timedelta(days=60))
        )
    for i in range(3):
        docs.append(
            Document(
                id=f"r{i}",
                text=f"updated page {i}",
                url=f"https://www.site.org/{20 + i}/",
                date=T0 + timedelta(days=90),
            )
        )
    src = tmp_path / "in"
    for part in range(2):  # two input files: duplicates across files are found
        with ShardWriter(src, prefix=f"part-{part:05d}") as w:
            for d in docs[part::2]:
                w.write(d)
    return src


def _rows(directory) -> list[dict]:
    return [
        row for f in sorted(glob.glob(os.path.join(directory, "*.parquet"))) for row in pq.read_table(f).to_pylist()
    ]


def _invoke(*args):
    return CliRunner().invoke(cli, ["dedup", *map(str, args)])


def test_dedup_cli_run_rerun_and_outputs(corpus, tmp_path):
    out = tmp_path / "out"
    result = _invoke(corpus, "-o", out, "--url", "-j", "2", "-q")
    assert result.exit_code == 0, result.output
    assert "read 53" in result.output and "kept 40" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected"] == {"exact": 5, "near": 5, "url": 3}
    assert manifest["complete"] and manifest["lsh"]["bands"] * manifest["lsh"]["rows"] <= 112
    removed = _rows(out / "removed")
    assert {r["id"]: r["dup_of"] for r in removed if r["dup_kind"] == "url"} == {"d20": "r0", "d21": "r1", "d22": "r2"}
    assert all(r["dup_of"] == f"d{int(r['id'][1]):02d}" for r in removed if r["id"].startswith("x"))
    kept_ids = [r["id"] for r in _rows(out)]
    assert len(kept_ids) == 40 and len(set(kept_ids)) == 40
    again = _invoke(corpus, "-o", out, "--url")
    assert again.exit_code == 0 and "nothing to do" in again.output
    changed = _invoke(corpus, "-o", out, "--threshold", "0.9")
    assert changed.exit_code == 2 and changed.output.startswith("error:") and "--overwrite" in changed.output
    assert _invoke(corpus, "-o", out, "--threshold", "0.9", "--overwrite", "-q").exit_code == 0


def test_plan_prints_estimates_and_writes_nothing(corpus, tmp_path):
    result = _invoke(corpus, "--plan", "--memory-gb", "0.000001")
    assert result.exit_code == 0, result.output
    assert "53 documents in 2 input(s)" in result.output
    assert "spilled to disk" in result.output and "peak memory" in result.output and "time ~" in result.output
    assert not list(tmp_path.glob("out*"))


def test_out_of_core_cli_run_matches_in_memory(corpus, tmp_path):
    assert _invoke(corpus, "-o", tmp_path / "mem", "-q").exit_code == 0
    result = _invoke(corpus, "-o", tmp_path / "disk", "--memory-gb", "0.00001", "-q", "-j", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "disk" / "manifest.json").read_text())
    assert manifest["memory"]["partitions"]["band"] > 1
    for sub in ("", "removed"):
        a = sorted(glob.glob(str(tmp_path / "mem" / sub / "*.parquet")))
        b = sorted(glob.glob(str(tmp_path / "disk" / sub / "*.parquet")))
        assert [Path(x).read_bytes() for x in a] == [Path(x).read_bytes() for x in b]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bands", "4"], "both --bands and --rows"),
        (["--bands", "20", "--rows", "10"], "exceeds num_perm"),
        (["--no-exact", "--no-near"], "nothing to do"),
        (["--shard-size", "12 parsecs"], "unknown size unit"),
    ],
)
def test_bad_options_are_one_line_errors(corpus, tmp_path, args, message):
    result = _invoke(corpus, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.startswith("error:") and "Traceback" not in result.output


def test_missing_output_and_missing_input(tmp_path):
    result = _invoke(tmp_path / "nope")
    assert result.exit_code == 2 and "error:" in result.output
    (tmp_path / "in").mkdir()
    result = _invoke(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "holds no .parquet files" in result.output


def test_unreadable_input_exits_1_after_processing_the_rest(corpus, tmp_path):
    (corpus / "part-00009-000.parquet").write_bytes(b"garbage")
    result = _invoke(corpus, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1, result.output
    assert "could not be read" in result.output and "part-00009-000.parquet" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    # 53 documents, and the unreadable file as one record read and one error.
    assert manifest["counts"]["read"] == 54 and manifest["inputs_failed"] == 1
    assert manifest["counts"]["errors"] == {"unreadable_file": 1}


@pytest.mark.parametrize(
    "column,values",
    [
        ("scores", ["q=1", "q=2"]),  # text where a map belongs
        ("n_chars", ["12", "13"]),  # numbers as text: another kind, even when every value parses
        ("date", ["2024-01-01", "later"]),
        ("text", [1, 2]),  # numbers where the text belongs
    ],
)
def test_input_with_a_column_of_another_kind_exits_1_after_processing_the_rest(corpus, tmp_path, column, values):
    import pyarrow as pa

    bad = corpus / "part-00009-000.parquet"
    pq.write_table(pa.table({"id": ["b1", "b2"], "text": ["one bad file", "two bad rows"], column: values}), bad)
    result = _invoke(corpus, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "part-00009-000.parquet" in result.output
    assert f"column '{column}'" in result.output and "could not be read" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["read"] == 54 and c["kept"] == 43  # 5 exact + 5 near removed, the bad file one error
    assert c["errors"] == {"bad_schema": 1} and c["error_examples"]["bad_schema"][0]["file"] == str(bad)
    assert manifest["inputs_failed"] == 1 and [i["status"] for i in manifest["inputs"]].count("done") == 2


def test_same_input_twice_is_deduplicated_once(corpus, tmp_path):
    one = corpus / "part-00000-000.parquet"
    result = _invoke(one, one, "-o", tmp_path / "twice", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "twice" / "manifest.json").read_text())
    assert len(manifest["inputs"]) == 1 and manifest["counts"]["read"] == pq.ParquetFile(one).metadata.num_rows
    # Whatever duplicates the file holds within itself, no document is its own duplicate.
    assert all(r["dup_of"] != r["id"] for r in _rows(tmp_path / "twice" / "removed"))
    assert len(_rows(tmp_path / "twice")) > manifest["counts"]["read"] // 2
    result = _invoke(corpus, corpus, "-o", tmp_path / "dirs", "-q")
    assert result.exit_code == 0 and "read 53" in result.output and "kept 43" in result.output, result.output


SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "warc"


@pytest.mark.skipif(
    not SAMPLES.is_dir() or importlib.util.find_spec("curate.cli.crawl") is None,
    reason="samples/warc or curate crawl not available",
)
def test_crawl_samples_then_dedup(tmp_path):
    runner = CliRunner()
    crawl = runner.invoke(cli, ["crawl", str(SAMPLES), "-o", str(tmp_path / "crawl"), "-q", "-j", "1"])
    assert crawl.exit_code == 0, crawl.output
    result = runner.invoke(cli, ["dedup", str(tmp_path / "crawl"), "-o", str(tmp_path / "dedup"), "-q", "-j", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "dedup" / "manifest.json").read_text())
    counts = manifest["counts"]
    # The samples plant exact and near duplicates across WARC files.
    assert counts["rejected"].get("exact", 0) > 0 and counts["rejected"].get("near", 0) > 0
    assert counts["read"] == counts["kept"] + sum(counts["rejected"].values()) + sum(counts["errors"].values())
    kept = [r["id"] for r in _rows(tmp_path / "dedup")]
    removed = _rows(tmp_path / "dedup" / "removed")
    assert {r["dup_of"] for r in removed} <= set(kept)
    assert os.path.exists(tmp_path / "dedup" / "removed")


def test_verify_exact_from_the_command_line(corpus, tmp_path):
    out = tmp_path / "out"
    result = _invoke(corpus, "-o", out, "--url", "--verify", "exact", "-q")
    assert result.exit_code == 0, result.output
    assert "exact verification: 5 accepted" in result.output and "verified (exact Jaccard >= 0.8)" in result.output
    plan = _invoke(corpus, "--plan", "--verify", "exact")
    assert plan.exit_code == 0 and "exact verification: one more pass" in plan.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rejected"] == {"exact": 5, "near": 5, "url": 3}
    assert manifest["pairs"]["verify"] == "exact" and manifest["config"]["verify"] == "exact"
    near = [r for r in _rows(out / "removed") if r["dup_kind"] == "near"]
    assert all(0.8 <= r["dup_similarity"] < 1.0 for r in near)
    # Another verify mode is another configuration: it needs --overwrite, like any option.
    again = _invoke(corpus, "-o", out, "--url", "--verify", "exact")
    assert again.exit_code == 0 and "nothing to do" in again.output
    other = _invoke(corpus, "-o", out, "--url")
    assert other.exit_code == 2 and "--overwrite" in other.output


def test_bad_verify_value_is_a_one_line_error(corpus, tmp_path):
    bad = _invoke(corpus, "-o", tmp_path / "out", "--verify", "fuzzy")
    assert bad.exit_code == 2 and bad.output.strip().count("\n") == 0, bad.output
    assert bad.output.startswith("error:") and "'estimate' or 'exact'" in bad.output


def test_option_defaults_are_the_stage_defaults():
    """The options take their defaults from the stage's settings (written once, there)."""
    from curate.cli.dedup import dedup
    from curate.stages.dedup import DEFAULT_MEMORY_GB, DedupConfig

    defaults = {p.name: p.default for p in dedup.params}
    config = DedupConfig()
    for name in ("threshold", "ngram", "num_perm", "bands", "rows", "verify_threshold", "verify", "seed"):
        assert defaults[name] == getattr(config, name), name
    for name in ("url", "exact", "near", "shingle_hash"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["memory_gb"] == DEFAULT_MEMORY_GB
