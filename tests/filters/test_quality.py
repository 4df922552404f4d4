"""The fastText quality classifier: train / apply round trip on generated data, keep_top."""

from __future__ import annotations

import json
import random

import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError, InputError
from curate.core.shards import ShardWriter
from filters.quality_train import roc_auc, train_quality_model
from filters.registry import build_filter

GOOD = [
    "the",
    "committee",
    "published",
    "a",
    "detailed",
    "report",
    "on",
    "regional",
    "water",
    "supply",
    "and",
    "the",
    "long",
    "term",
    "effects",
    "of",
    "drought",
    "on",
    "agriculture",
    "researchers",
    "measured",
    "rainfall",
    "across",
    "several",
    "decades",
    "historians",
    "describe",
    "how",
    "the",
    "city",
    "grew",
    "around",
    "the",
    "harbour",
    "during",
    "the",
    "century",
]
SPAM = [
    "click",
    "here",
    "best",
    "price",
    "buy",
    "now",
    "free",
    "shipping",
    "limited",
    "offer",
    "casino",
    "bonus",
    "win",
    "cash",
    "hot",
    "deals",
    "subscribe",
    "today",
    "cheap",
    "pills",
    "discount",
    "coupon",
    "login",
    "register",
    "cart",
    "checkout",
    "sale",
]


def generated(words: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) for _ in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("quality")
    pos = d / "pos.jsonl"
    pos.write_text("".join(json.dumps({"text": t}) + "\n" for t in generated(GOOD, 300, 1)))
    neg_dir = d / "neg"
    with ShardWriter(neg_dir) as w:
        for i, t in enumerate(generated(SPAM, 300, 2)):
            w.write(Document(id=f"n{i}", text=t))
    out = d / "quality.bin"
    report = train_quality_model([str(pos)], [str(neg_dir)], str(out), dim=16, bucket=10_000, epoch=10, seed=3)
    return out, report


def test_training_reports_metrics_and_writes_model(model):
    path, report = model
    assert path.exists()
    info = json.loads(path.with_name("quality.bin.json").read_text())
    assert info["positive_label"] == "__label__hq"
    assert report.n_train["positive"] + report.n_holdout["positive"] == 300
    assert 10 <= report.n_holdout["negative"] <= 60  # ~10 % held out
    assert report.roc_auc > 0.95 and report.precision > 0.9 and report.recall > 0.9
    assert info["metrics"]["roc_auc"] == pytest.approx(report.roc_auc)


def test_training_is_deterministic(tmp_path, model):
    pos = tmp_path / "p.txt"
    pos.write_text("\n".join(generated(GOOD, 100, 5)))
    neg = tmp_path / "n.txt"
    neg.write_text("\n".join(generated(SPAM, 100, 6)))
    a = train_quality_model([str(pos)], [str(neg)], str(tmp_path / "a.bin"), dim=8, bucket=10_000, seed=1, lr=0.05)
    b = train_quality_model([str(pos)], [str(neg)], str(tmp_path / "b.bin"), dim=8, bucket=10_000, seed=1, lr=0.05)
    # Same data, split, seed and one thread: the same model, byte for byte.
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert a.n_train == b.n_train and a.n_holdout == b.n_holdout and a.roc_auc == b.roc_auc
    fa = build_filter({"name": "quality", "model": str(tmp_path / "a.bin")})
    fb = build_filter({"name": "quality", "model": str(tmp_path / "b.bin")})
    for text in generated(GOOD, 5, 7) + generated(SPAM, 5, 8):
        assert fa.predict(text) == pytest.approx(fb.predict(text), abs=0.05)


def test_filter_scores_and_threshold(model):
    path, _ = model
    f = build_filter({"name": "quality", "model": str(path), "threshold": 0.5})
    good = Document(id="g", text=" ".join(generated(GOOD, 1, 9)))
    spam = Document(id="s", text="\n".join(generated(SPAM, 2, 9)))  # newlines are handled
    assert f(good) is None
    assert f(spam) == "low_score"
    assert good.quality_score > 0.5 > spam.quality_score
    assert good.scores["quality.score"] == pytest.approx(good.quality_score)


def test_keep_top_needs_calibration(model):
    path, _ = model
    f = build_filter({"name": "quality", "model": str(path), "keep_top": 0.5})
    with pytest.raises(CurateError, match="keep_top"):
        f(Document(id="x", text="some text"))
    g = build_filter({"name": "quality", "model": str(path), "keep_top": 0.5, "keep_top_threshold": 0.5})
    assert g(Document(id="s", text=" ".join(SPAM))) == "not_in_top_fraction"


def test_keep_top_through_the_stage_keeps_exactly_the_fraction(model, tmp_path):
    from curate.runtime.executor import Executor
    from curate.runtime.stage import StageContext
    from curate.stages import filter as filter_stage

    def run_filter(inputs, out, chain, workers=1):
        ctx = StageContext(inputs, out, Executor("local", workers), progress=False)
        return filter_stage.run(filter_stage.FilterConfig(chain=chain), ctx)

    path, _ = model
    inputs = []
    texts = generated(GOOD, 15, 11) + generated(SPAM, 15, 12)
    for part in range(2):  # two input shards, so the quantile spans inputs
        d = tmp_path / f"in{part}"
        with ShardWriter(d) as w:
            for i, t in enumerate(texts[part::2]):
                w.write(Document(id=f"{part}-{i}", text=t))
        inputs.append(str(d))
    chain = {"filters": [{"name": "quality", "model": str(path), "keep_top": 0.2}]}
    manifest = run_filter(inputs, str(tmp_path / "out"), chain, workers=2)
    c = manifest["counts"]
    assert c["read"] == 30
    assert c["kept"] == 6  # ceil(0.2 * 30), scores distinct
    assert c["rejected"] == {"quality/not_in_top_fraction": 24}
    cal = manifest["calibration"][0]
    assert cal["scored"] == 30 and cal["expected_kept"] == 6
    from curate.core.shards import read_documents

    kept_scores = sorted(d.quality_score for d in read_documents([str(tmp_path / "out")]))
    rejected_scores = [d.quality_score for d in read_documents([str(tmp_path / "out" / "rejected")])]
    assert min(kept_scores) >= max(rejected_scores)
    assert min(kept_scores) == pytest.approx(cal["keep_top_threshold"], abs=1e-7)
    assert not (tmp_path / "out" / ".curate-calibration").exists()  # cached scores removed when complete
    # The cut is part of the recorded config, so a rerun resumes (nothing to redo).
    again = run_filter(inputs, str(tmp_path / "out"), chain)
    assert again["counts"] == manifest["counts"]


def test_quality_config_errors(tmp_path, model):
    with pytest.raises(ConfigError, match="model"):
        build_filter({"name": "quality"})
    with pytest.raises(ConfigError, match="keep_top"):
        build_filter({"name": "quality", "model": str(model[0]), "keep_top": 1.5})
    with pytest.raises(InputError, match="no such file"):
        train_quality_model([str(tmp_path / "nope")], [str(tmp_path / "nope")], str(tmp_path / "m.bin"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no positive"):
        train_quality_model([str(empty)], [str(empty)], str(tmp_path / "m.bin"))


def test_roc_auc():
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    assert roc_auc([0.9, 0.3, 0.5, 0.1], [1, 1, 0, 0]) == 0.75


def test_cli_trains_from_folders_of_text_files_with_a_relative_output(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from curate.cli import cli

    for name, words, seed in (("good", GOOD, 1), ("spam", SPAM, 2)):
        folder = tmp_path / name
        folder.mkdir()
        texts = generated(words, 120, seed)
        for k in range(3):  # several .md files, one document per paragraph
            (folder / f"part-{k}.md").write_text("\n\n".join(texts[k::3]) + "\n")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(
        cli,
        [
            "quality",
            "train",
            "-p",
            str(tmp_path / "good"),
            "-n",
            str(tmp_path / "spam"),
            "-o",
            "models/q.bin",
            "--txt-unit",
            "paragraph",
            "--dim",
            "16",
            "--epoch",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output and (elsewhere / "models" / "q.bin").exists()


def test_training_examples_from_jsonl_name_the_bad_line(tmp_path):
    from filters.quality_examples import iter_texts

    good = tmp_path / "a.jsonl"
    good.write_text('{"text": "one"}\n\n{"other": 1}\n{"text": "  "}\n{"text": "two"}\n')
    assert list(iter_texts([str(good)])) == ["one", "two"]
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "one"}\n\n[1, 2]\n')
    with pytest.raises(InputError, match=r"b\.jsonl:3: not a JSON object per line$"):
        list(iter_texts([str(bad)]))
