"""The filter stage: kept/rejected shards, manifest accounting, annotate, resume, workers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError
from curate.core.shards import ShardWriter, read_documents
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import filter as filter_stage
from curate.stages.filter.chain import DEFAULT_CHAIN, default_chain, load_chain_config
from filters.base import Filter, register

ARTICLE = (
    "The museum opened its new wing to the public on Saturday morning, and a long queue formed "
    "before the doors were unlocked.\n"
    "Curators spent three years restoring the paintings, which had been stored in a damp basement "
    "since the war.\n"
    "Visitors said that the lighting made the colours look brighter than they remembered from old "
    "photographs.\n"
    "A spokesperson explained that the project was funded by local donors and a grant from the "
    "regional council.\n"
    "Schools will be able to book guided tours with the education team from next month, and the "
    "gallery will stay open late on Thursdays.\n"
)
GERMAN = (
    "Das Museum hat am Samstag seinen neuen Flügel eröffnet, und schon früh bildete sich eine lange "
    "Schlange vor dem Eingang.\nDie Restaurierung der Gemälde dauerte drei Jahre, denn sie lagerten "
    "lange in einem feuchten Keller.\nBesucher sagten, die Farben wirkten heller als auf alten "
    "Fotografien.\nSchulen können ab nächstem Monat Führungen buchen.\nIm Sommer bleibt die Galerie "
    "donnerstags bis acht Uhr geöffnet, und der Eintritt ist für Kinder frei.\n"
)
SPAM = "\n".join(["Buy cheap watches now! Best price!"] * 12)


def run_filter(inputs, out, chain=None, annotate=False, workers=1, overwrite=False):
    """The filter stage through its one entry point, quietly; returns the manifest."""
    cfg = filter_stage.FilterConfig(chain=default_chain() if chain is None else chain, annotate=annotate)
    ctx = StageContext(list(inputs), str(out), Executor("local", workers), overwrite=overwrite, progress=False)
    return filter_stage.run(cfg, ctx)


def texts():
    # kept, kept, too short, spam, nav-only, kept with a C4-removed line and PII
    return [
        ARTICLE,
        GERMAN,
        "The council will meet again next Tuesday to discuss the budget for the new library.",
        SPAM,
        "Home\nAbout\nContact\nLogin",
        ARTICLE.replace("\n", " ").strip() + "\nPlease enable JavaScript to view the comments.\n"
        "Questions go to press@museum.example.org, so write to us any time you like.",
    ]


def write_inputs(root: Path, n_files: int = 2) -> list[str]:
    paths = []
    for f in range(n_files):
        d = root / f"crawl{f}"
        with ShardWriter(d, prefix=f"part-{f:05d}") as w:
            for i, t in enumerate(texts()):
                w.write(Document(id=f"f{f}-{i}", text=t, url=f"https://site{i}.example.com/{f}/{i}"))
        paths.append(str(d))
    return paths


def outputs(out: Path) -> tuple[list[Document], list[Document]]:
    rejected = list(read_documents([str(out / "rejected")])) if list((out / "rejected").glob("*.parquet")) else []
    return list(read_documents([str(out)])), rejected


def test_kept_rejected_and_manifest(tmp_path):
    inputs = write_inputs(tmp_path)
    manifest = run_filter(inputs, str(tmp_path / "out"))
    kept, rejected = outputs(tmp_path / "out")
    c = manifest["counts"]
    assert c["read"] == 12 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["kept"] == len(kept) == 6 and len(rejected) == 6
    assert {d.reject_reason for d in rejected} == set(c["rejected"])
    assert all(d.reject_reason and "/" in d.reject_reason for d in rejected)
    assert "gopher_quality/too_few_words" in c["rejected"]
    assert all(d.reject_reason is None for d in kept)
    assert {d.language for d in kept} == {"en", "de"}
    # Transforms: C4 removed the javascript line, PII replaced the e-mail address.
    cleaned = [d for d in kept if d.id.endswith("-5")]
    assert cleaned and all("JavaScript" not in d.text and "<EMAIL>" in d.text for d in cleaned)
    # Characters: read = kept + rejected + removed by transforms.
    chars = c["chars"]
    rejected_chars = sum(v for k, v in chars.items() if k.startswith("rejected:"))
    assert chars["read"] == chars["kept"] + rejected_chars + chars.get("removed_by_transforms", 0)
    assert chars["kept"] == sum(len(d.text) for d in kept)
    # Per-filter section: docs in, drops, counters.
    by_label = {f["label"]: f for f in manifest["filters"]}
    assert list(by_label) == [f["name"] for f in DEFAULT_CHAIN["filters"]]
    assert by_label["language"]["docs_in"] == 12
    assert by_label["pii"]["counters"]["replaced.emails"] == 2
    assert by_label["c4"]["counters"]["lines_removed.javascript"] == 2
    total_dropped = sum(sum(f["dropped"].values()) for f in manifest["filters"])
    assert total_dropped == len(rejected)
    assert sum(sum(f["chars_dropped"].values()) for f in manifest["filters"]) == rejected_chars
    assert manifest["config"]["filters"][0]["min_score"] == 0.65  # resolved defaults recorded
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["filters"] == manifest["filters"]


def test_deterministic_resumable_and_parallel(tmp_path):
    inputs = write_inputs(tmp_path, n_files=3)
    run_filter(inputs, str(tmp_path / "a"), workers=1)
    run_filter(inputs, str(tmp_path / "b"), workers=2)
    for name in sorted(p.name for p in (tmp_path / "a").glob("*.parquet")):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # Rerun in the same directory: nothing redone, nothing duplicated.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.parquet")}
    manifest = run_filter(inputs, str(tmp_path / "a"))
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "a").glob("*.parquet")}
    assert before == after
    assert manifest["counts"]["read"] == 18
    assert sum(f["docs_in"] for f in manifest["filters"][:1]) == 18  # reports kept from the first run
    # A different chain in the same directory is refused rather than mixed.
    with pytest.raises(CurateError, match="different configuration"):
        run_filter(inputs, str(tmp_path / "a"), {"filters": [{"name": "fineweb"}]})
    run_filter(inputs, str(tmp_path / "a"), {"filters": [{"name": "fineweb"}]}, overwrite=True)


def test_annotate_keeps_everything_with_reasons(tmp_path):
    inputs = write_inputs(tmp_path, n_files=1)
    manifest = run_filter(inputs, str(tmp_path / "out"), annotate=True)
    kept, rejected = outputs(tmp_path / "out")
    assert len(kept) == 6 and not rejected
    assert manifest["counts"]["kept"] == 6
    reasons = {d.id: d.reject_reason for d in kept}
    assert reasons["f0-0"] is None and reasons["f0-2"] == "gopher_quality/too_few_words"
    assert all("gopher_quality.n_words" in d.scores for d in kept)
    assert any(sum(f["would_drop"].values()) for f in manifest["filters"])
    # Annotate mode changes no text.
    assert {d.text for d in kept} == set(texts())


@register
@dataclass
class _Explodes(Filter):
    """Test-only filter that fails on one document."""

    name = "test_explodes"
    reasons = ()

    def apply(self, doc):
        if "council will meet" in doc.text:
            raise ValueError("boom")
        return None


def test_a_filter_failing_on_one_document_is_counted_not_fatal(tmp_path):
    inputs = write_inputs(tmp_path, n_files=1)
    manifest = run_filter(inputs, str(tmp_path / "out"), {"filters": [{"name": "test_explodes"}]})
    c = manifest["counts"]
    assert c["errors"] == {"test_explodes/error": 1}
    assert c["kept"] == 5 and c["read"] == 6
    assert manifest["inputs"][0]["status"] == "done_with_errors"
    assert "boom" in c["error_examples"]["test_explodes/error"][0]["detail"]
    _, rejected = outputs(tmp_path / "out")
    assert [d.reject_reason for d in rejected] == ["test_explodes/error"]  # the document is kept aside


def test_unreadable_input_fails_alone(tmp_path):
    inputs = write_inputs(tmp_path, n_files=1)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    manifest = run_filter(inputs + [str(bad)], str(tmp_path / "out"), {"filters": [{"name": "fineweb"}]})
    # The bad file counts as one record read and one error naming it; the good one is filtered.
    c = manifest["counts"]
    assert manifest["inputs_failed"] == 1 and c["read"] == 7 and c["errors"] == {"unreadable_file": 1}
    assert c["error_examples"]["unreadable_file"][0]["file"] == str(bad)
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())


def test_null_text_rows_are_errors_and_the_rest_of_the_file_is_filtered(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "nulls.parquet"
    ids = ["a", "b", "c", None]
    pq.write_table(pa.table({"id": ids, "text": [ARTICLE, None, GERMAN, ARTICLE]}), path)
    manifest = run_filter([str(path)], str(tmp_path / "out"), {"filters": [{"name": "fineweb"}]})
    c = manifest["counts"]
    assert c["read"] == 4 and c["kept"] == 2 and c["errors"] == {"null_text": 1, "null_id": 1}
    assert c["error_examples"]["null_text"] == [{"file": str(path), "row": 1, "id": "b"}]
    assert c["error_examples"]["null_id"] == [{"file": str(path), "row": 3}]
    assert manifest["inputs"][0]["status"] == "done_with_errors" and manifest["inputs_failed"] == 0
    kept, rejected = outputs(tmp_path / "out")
    assert [d.id for d in kept] == ["a", "c"] and rejected == []


def test_wrong_column_types_fail_the_file_alone(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    inputs = write_inputs(tmp_path, n_files=1)
    bad = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"id": pa.array([1, 2]), "text": pa.array([10, 20])}), bad)
    manifest = run_filter(inputs + [str(bad)], str(tmp_path / "out"), {"filters": [{"name": "fineweb"}]})
    c = manifest["counts"]
    assert manifest["inputs_failed"] == 1 and c["read"] == 7 and c["errors"] == {"bad_schema": 1}
    example = {"file": str(bad), "detail": "column 'id' has type int64, expected string"}
    assert c["error_examples"]["bad_schema"] == [example]
    assert manifest["inputs"][1]["status"] == "failed" and manifest["inputs"][1]["message"] == example["detail"]
    kept, rejected = outputs(tmp_path / "out")
    assert not [d for d in kept + rejected if d.id in ("1", "2", "10", "20")]  # no number became a document


def test_chain_config_errors(tmp_path):
    inputs = write_inputs(tmp_path, n_files=1)
    with pytest.raises(
        ConfigError, match="unknown filter 'gopher'.*did you mean 'gopher_quality'.*available: .*language"
    ):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": "gopher"}]})
    with pytest.raises(ConfigError, match="unknown key 'min_wrds'.*did you mean 'min_words'.*known keys"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": "gopher_quality", "min_wrds": 3}]})
    with pytest.raises(ConfigError, match="expected int"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": "gopher_quality", "min_words": "many"}]})
    with pytest.raises(ConfigError, match="mode"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": "c4", "mode": "drop"}]})
    with pytest.raises(ConfigError, match="appears twice"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": "c4"}, {"name": "c4"}]})
    run_filter(inputs, str(tmp_path / "o2"), {"filters": [{"name": "c4"}, {"name": "c4", "label": "c4_again"}]})
    with pytest.raises(ConfigError, match="no \\[\\[filters\\]\\]"):
        run_filter(inputs, str(tmp_path / "o"), {"annotate": True})
    with pytest.raises(ConfigError, match="unknown key 'filter'"):
        run_filter(inputs, str(tmp_path / "o"), {"filter": []})
    with pytest.raises(ConfigError, match="missing 'name'"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"min_words": 3}]})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[filters]\nname=")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_chain_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_chain_config(str(tmp_path / "missing.toml"))


def test_samples_chain_file_is_valid():
    from filters.registry import build_chain

    chain = build_chain(load_chain_config(str(Path(__file__).resolve().parents[3] / "samples" / "filters.toml")))
    assert [f.name for f in chain.filters][:2] == ["url_blocklist", "language"]


def test_filter_name_must_be_text(tmp_path):
    inputs = write_inputs(tmp_path, n_files=1)
    with pytest.raises(ConfigError, match="'name' must be text, got 3"):
        run_filter(inputs, str(tmp_path / "o"), {"filters": [{"name": 3}]})


def test_out_of_range_threshold_fails_before_any_input_is_read(tmp_path):
    # The input does not exist: the config error must come first, and nothing is written.
    with pytest.raises(ConfigError, match=r"^gopher_quality: max_words = 5 is below min_words = 50"):
        run_filter(
            [str(tmp_path / "not-there")],
            str(tmp_path / "out"),
            {"filters": [{"name": "language"}, {"name": "gopher_quality", "max_words": 5}]},
        )
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_bad_threshold_in_one_line(tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    inputs = write_inputs(tmp_path, n_files=1)
    chain = tmp_path / "chain.toml"
    chain.write_text('[[filters]]\nname = "fineweb"\nmax_short_lines_ratio = 1.7\n')
    result = CliRunner().invoke(cli, ["filter", *inputs, "-o", str(tmp_path / "out"), "--config", str(chain)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: fineweb: max_short_lines_ratio = 1.7 is out of range; "
        "allowed: a number in [0, 1], or -1 to turn the rule off"
    ]
    assert not (tmp_path / "out").exists()


def test_samples_chain_and_defaults_pass_the_range_checks():
    from filters.registry import build_chain

    chain = build_chain(load_chain_config(str(Path(__file__).resolve().parents[3] / "samples" / "filters.toml")))
    for f in chain.filters:
        f.check_bounds()  # the declared ranges hold for every parameter the chain resolved
    assert len(chain.filters) == 9


def test_files_named_in_a_chain_file_are_relative_to_it(tmp_path, monkeypatch):
    chain_dir = tmp_path / "chains"
    chain_dir.mkdir()
    (chain_dir / "block.txt").write_text("spam.example\n")
    (chain_dir / "chain.toml").write_text(
        '[[filters]]\nname = "url_blocklist"\nblocklist = "block.txt"\n\n'
        '[[filters]]\nname = "bad_words"\nword_lists = { en = "words/en.txt" }\n'
    )
    monkeypatch.chdir(tmp_path)
    specs = load_chain_config(str(chain_dir / "chain.toml"))["filters"]
    assert specs[0]["blocklist"] == str(chain_dir / "block.txt")
    assert specs[1]["word_lists"] == {"en": str(chain_dir / "words" / "en.txt")}
