"""`curate filter` and `curate quality train` from the command line."""

from __future__ import annotations

import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.shards import ShardWriter, read_documents

ROOT = Path(__file__).resolve().parents[2]
SAMPLES_CHAIN = ROOT / "samples" / "filters.toml"
ARTICLE = (
    "The museum opened its new wing to the public on Saturday morning, and a long queue formed "
    "before the doors were unlocked. Curators spent three years restoring the paintings, which had "
    "been stored in a damp basement since the war. Visitors said that the lighting made the colours "
    "look brighter than they remembered from old photographs. A spokesperson explained that the "
    "project was funded by local donors and a grant from the regional council. Schools will be able "
    "to book guided tours with the education team from next month."
)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def shards(tmp_path: Path) -> str:
    d = tmp_path / "crawl"
    with ShardWriter(d) as w:
        w.write(Document(id="good", text=ARTICLE, url="https://news.example.com/a"))
        w.write(Document(id="short", text="Too short.", url="https://news.example.com/b"))
        w.write(Document(id="blocked", text=ARTICLE, url="https://www.adult-xxx-cams.com/x"))
    return str(d)


def test_list_shows_filters_parameters_and_reasons():
    result = run("filter", "--list")
    assert result.exit_code == 0
    for name in (
        "language",
        "gopher_quality",
        "gopher_repetition",
        "c4",
        "fineweb",
        "quality",
        "url_blocklist",
        "bad_words",
        "pii",
    ):
        assert f"{name}:" in result.output
    assert "min_score = 0.65" in result.output
    assert "too_few_stop_words" in result.output


def test_filter_with_samples_chain(tmp_path):
    out = tmp_path / "out"
    result = run("filter", shards(tmp_path), "-o", str(out), "--config", str(SAMPLES_CHAIN), "-j", "1", "-q")
    assert result.exit_code == 0, result.output
    assert "filter: read 3  kept 1  rejected 2" in result.output
    assert "url_blocklist/blocked_domain=1" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 1
    assert [d.id for d in read_documents([str(out)])] == ["good"]


def test_annotate_flag(tmp_path):
    out = tmp_path / "out"
    result = run("filter", shards(tmp_path), "-o", str(out), "--annotate", "-q")
    assert result.exit_code == 0, result.output
    assert "would drop" in result.output
    assert len(list(read_documents([str(out)]))) == 3


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[filters]]\nname = "gopher_qualty"\n')
    result = run("filter", shards(tmp_path), "-o", str(tmp_path / "o"), "--config", str(bad))
    assert result.exit_code == 2
    assert result.output.startswith("error: unknown filter 'gopher_qualty' (did you mean 'gopher_quality'?)")
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    result = run("filter", shards(tmp_path))
    assert result.exit_code == 2 and "error: missing -o/--output" in result.output
    result = run("filter", str(tmp_path / "nothing"), "-o", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no such file or directory" in result.output


def test_quality_train_prints_metrics(tmp_path):
    rng = random.Random(0)
    good = [
        "report",
        "committee",
        "water",
        "history",
        "research",
        "measured",
        "careful",
        "evidence",
        "archive",
        "survey",
    ]
    spam = ["click", "buy", "cheap", "free", "bonus", "casino", "deal", "discount", "winner", "offer"]
    for name, words in (("pos.jsonl", good), ("neg.jsonl", spam)):
        with open(tmp_path / name, "w") as fh:
            for _ in range(150):
                fh.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(30))}) + "\n")
    model = tmp_path / "q.bin"
    result = run(
        "quality",
        "train",
        "--positive",
        str(tmp_path / "pos.jsonl"),
        "--negative",
        str(tmp_path / "neg.jsonl"),
        "-o",
        str(model),
        "--dim",
        "8",
        "--bucket",
        "10000",
        "--lr",
        "0.05",
    )
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output and "ROC AUC" in result.output
    assert model.exists() and Path(f"{model}.json").exists()
    result = run(
        "quality",
        "train",
        "--positive",
        str(tmp_path / "none.jsonl"),
        "--negative",
        str(tmp_path / "neg.jsonl"),
        "-o",
        str(model),
    )
    assert result.exit_code == 2 and result.output.startswith("error:")


@pytest.mark.skipif(
    importlib.util.find_spec("curate.cli.crawl") is None or not (ROOT / "samples" / "warc").is_dir(),
    reason="needs `curate crawl` and samples/warc",
)
def test_crawl_then_filter_the_samples(tmp_path):
    crawl = tmp_path / "crawl"
    result = run("crawl", str(ROOT / "samples" / "warc"), "-o", str(crawl), "-q")
    assert result.exit_code == 0, result.output
    out = tmp_path / "filtered"
    result = run("filter", str(crawl), "-o", str(out), "--config", str(SAMPLES_CHAIN), "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["read"] == json.loads((crawl / "manifest.json").read_text())["counts"]["kept"]
    kept = list(read_documents([str(out)]))
    rejected = list(read_documents([str(out / "rejected")]))
    assert len(kept) == c["kept"] and len(rejected) == sum(c["rejected"].values())
    # Good pages in several languages survive; blocklisted, spam and boilerplate pages do not.
    languages = Counter(d.language for d in kept)
    assert {"en", "de", "fr", "es", "ru", "zh", "ja", "vi"} <= set(languages)
    assert c["kept"] >= 0.8 * c["read"]
    reasons = Counter(d.reject_reason.split("/")[0] for d in rejected)
    assert reasons["url_blocklist"] == 2
    assert reasons["gopher_repetition"] >= 5 and reasons["gopher_quality"] >= 5
    assert not any("xxx" in (d.url or "") or ".example.biz" in (d.url or "") for d in kept)
    from filters.safety import EMAIL_RE

    assert not any(EMAIL_RE.search(d.text) for d in kept)  # PII scrubbed from what is kept
    assert manifest["filters"][-1]["counters"].get("replaced.emails", 0) >= 1
