"""curate.stages.mix.run and curate.core.readers: exact budgets by weight, epoch caps, the external
shuffle, determinism, the manifest (shares, cutoff) and converting JSONL/text/code sources."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError, CurateError, InputError
from curate.core.files import sha256_file
from curate.core.readers import SourceReader, resolve_files
from curate.core.shards import ShardWriter
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec, load_mix_config, parse_source_option
from curate.stages.mix.plan import allocate, select_documents


def run_mix(cfg, output, overwrite=False, plan_only=False, progress=False, log=None):
    """The mix stage through its entry points (``plan`` or ``run``); returns the manifest."""
    ctx = StageContext([], output or "", overwrite=overwrite, progress=progress, log=log or (lambda m: None))
    return mix.plan(cfg, ctx) if plan_only else mix.run(cfg, ctx)


WORDS = [
    "river",
    "stone",
    "light",
    "paper",
    "garden",
    "window",
    "orange",
    "quiet",
    "market",
    "station",
    "letter",
    "harbour",
    "winter",
    "engine",
    "signal",
    "forest",
    "valley",
    "silver",
    "copper",
    "lantern",
]
BASE_DAY = datetime(2024, 1, 1, tzinfo=UTC)


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "."


def write_web(directory: Path, n: int, seed: int = 1, undated_every: int = 0) -> Path:
    """Document shards like an earlier stage's output: ids web-NNNNN, dates 2024-01-01 + i days."""
    rng = random.Random(seed)
    with ShardWriter(directory, prefix="part-00000", shard_bytes=60_000, row_group_bytes=20_000) as w:
        for i in range(n):
            undated = undated_every and i % undated_every == 0
            w.write(
                Document(
                    id=f"web-{i:05d}",
                    text=_text(rng, 40, 200),
                    url=f"https://site{i % 9}.example.org/{i}",
                    source="commoncrawl",
                    language="en",
                    date=None if undated else BASE_DAY + timedelta(days=i % 300),
                )
            )
    return directory


def write_text_source(
    directory: Path, n: int, seed: int, ext: str = ".md", lo: int = 150, hi: int = 400, dated: bool = True
) -> Path:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        front = f"---\ntitle: item {i}\ndate: 2023-0{1 + i % 9}-1{i % 10}\n---\n\n" if dated and ext == ".md" else ""
        (directory / f"doc-{i:03d}{ext}").write_text(front + _text(rng, lo, hi) + "\n")
    return directory


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "web": write_web(root / "web", 700),
        "books": write_text_source(root / "books", 60, seed=2),
        "papers": write_text_source(root / "papers", 50, seed=3),
        "code": write_text_source(root / "code", 40, seed=4, ext=".py", lo=60, hi=200, dated=False),
    }


def read_rows(directory: Path, columns=("id", "source", "epoch", "n_tokens", "text", "date")) -> list[dict]:
    rows = []
    for f in sorted(directory.glob("*.parquet")):
        rows.extend(pq.read_table(f, columns=list(columns)).to_pylist())
    return rows


def cfg_for(sources: dict[str, Path], weights: dict[str, float], tokens: int, **kw) -> MixConfig:
    return MixConfig(sources=[SourceSpec(n, [str(sources[n])], w) for n, w in weights.items()], tokens=tokens, **kw)


# --- configuration ---------------------------------------------------------------------


def test_parse_source_option():
    s = parse_source_option("web=work/dedup,more/shards:0.55")
    assert (s.name, s.paths, s.weight) == ("web", ["work/dedup", "more/shards"], 0.55)
    for bad in ("web", "web=work/dedup", "web=work/dedup:heavy", "=x:1"):
        with pytest.raises(ConfigError):
            parse_source_option(bad)


def test_config_typo_is_one_line_error_with_suggestion(tmp_path):
    conf = tmp_path / "mix.toml"
    conf.write_text('tokens = "1M"\n[[sources]]\nname = "a"\npaths = ["x"]\nwieght = 1\n')
    with pytest.raises(ConfigError) as err:
        load_mix_config(str(conf))
    assert "wieght" in str(err.value) and "did you mean 'weight'" in str(err.value)
    assert "\n" not in str(err.value)
    conf.write_text('tokns = "1M"\n')
    with pytest.raises(ConfigError, match="did you mean 'tokens'"):
        load_mix_config(str(conf))


def test_cli_sources_replace_config_sources_by_name(tmp_path):
    conf = tmp_path / "mix.toml"
    conf.write_text(
        'tokens = "2M"\nseed = 3\n[[sources]]\nname = "a"\npaths = "x"\nweight = 1\n'
        '[[sources]]\nname = "b"\npaths = ["y"]\nweight = 2\n'
    )
    cfg = load_mix_config(str(conf), {"seed": None, "max_epochs": 2.0}, [parse_source_option("b=z:0.5")])
    assert cfg.budget == 2_000_000 and cfg.seed == 3 and cfg.max_epochs == 2.0
    # the file's path is relative to the file's folder, the option's as given
    assert [(s.name, s.paths, s.weight) for s in cfg.sources] == [("a", [str(tmp_path / "x")], 1.0), ("b", ["z"], 0.5)]
    with pytest.raises(ConfigError, match="positive"):
        load_mix_config(None, {"tokens": "1M"}, [parse_source_option("a=x:-1")])
    with pytest.raises(ConfigError, match="twice"):
        load_mix_config(None, {"tokens": "1M"}, [parse_source_option("a=x:1"), parse_source_option("a=y:1")])


SOURCE = "[[sources]]\nname = 'a'\npaths = ['x']\nweight = 1\n"


@pytest.mark.parametrize(
    "text,message",
    [
        ("seed = -1", "mix.toml: seed = -1 is out of range; allowed: an integer in [0, 4294967295]"),
        ("seed = 4294967296", "mix.toml: seed = 4294967296 is out of range"),
        ("max_epochs = 0.0", "mix.toml: max_epochs = 0.0 is out of range; allowed: a number > 0"),
        ('shard_size = "0MB"', "mix: shard_size = 0 is out of range; allowed: an integer >= 1"),
        ('shuffle_memory = "0"', "mix: shuffle_memory = 0 is out of range; allowed: an integer >= 1"),
        (SOURCE + "max_epochs = -2.0", "mix.toml.sources[0]: max_epochs = -2.0 is out of range"),
        (SOURCE.replace("weight = 1", "weight = 0"), "source 'a': weight must be a positive number"),
    ],
)
def test_numeric_settings_are_range_checked(tmp_path, text, message):
    import re

    conf = tmp_path / "mix.toml"
    # Top-level keys first, then the source table (where a key after it belongs to the source).
    conf.write_text('tokens = "1M"\n' + (text + "\n" if text.startswith("[[") else text + "\n" + SOURCE))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_mix_config(str(conf))


def test_configs_built_in_code_are_range_checked_by_validate():
    with pytest.raises(ConfigError, match=r"mix: seed = -3 is out of range"):
        MixConfig(sources=[SourceSpec("a", ["x"], 1.0)], tokens=10, seed=-3).validate()
    with pytest.raises(ConfigError, match=r"source 'a': max_epochs = inf is not a finite number"):
        MixConfig(sources=[SourceSpec("a", ["x"], 1.0, max_epochs=math.inf)], tokens=10).validate()


def test_a_budget_no_source_set_can_fill_is_said_even_quietly(sources, tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    args = ["mix", "-s", f"papers={sources['papers']}:1", "--tokens", "1e30", "--max-epochs", "2"]
    r = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    available = json.loads((tmp_path / "out" / "manifest.json").read_text())["sources"][0]["tokens_available"]
    note = f"note: all sources together hold only {2 * available:,} tokens within their epoch caps"
    assert note in r.output and "short of the budget 1e+30" in r.output and "(budget 1e+30)" in r.output
    r = CliRunner().invoke(cli, [*args, "--plan", "--strict"])
    assert r.exit_code == 2 and r.output.startswith("error: --strict") and note[6:] in r.output


# --- planning ---------------------------------------------------------------------------


def test_allocate_water_fills_capped_sources():
    # b can take at most 100; its shortfall goes to a and c in proportion 1:3.
    targets = allocate(1000, {"a": 0.25, "b": 0.5, "c": 0.25 * 3 / 3}, {"a": 10_000, "b": 100, "c": 10_000})
    assert targets["b"] == 100
    assert targets["a"] == pytest.approx(450) and targets["c"] == pytest.approx(450)
    targets = allocate(1000, {"a": 1, "b": 3}, {"a": 10_000, "b": 10_000})
    assert targets == {"a": pytest.approx(250), "b": pytest.approx(750)}


def test_select_documents_whole_epochs_then_sample():
    n_tokens = np.array([10, 20, 30, 40], dtype=np.int64)
    full, partial = select_documents(n_tokens, 250, np.random.default_rng(0))
    assert full == 2
    taken = int(n_tokens[partial].sum())
    # 50 tokens more are needed: reached, and overshot by less than the last document taken.
    assert taken >= 50 and taken - 50 < n_tokens[partial].max()
    full, partial = select_documents(n_tokens, 100, np.random.default_rng(0))
    assert (full, partial.sum()) == (1, 0)


# --- the mix ---------------------------------------------------------------------------


def test_realized_shares_within_one_point(sources, tmp_path):
    weights = {"web": 0.55, "books": 0.2, "papers": 0.15, "code": 0.1}
    cfg = cfg_for(sources, weights, 250_000, seed=7, shard_size="100kB")
    m = run_mix(cfg, str(tmp_path / "mix"), progress=False)
    rows = read_rows(tmp_path / "mix")
    tokens = Counter()
    for r in rows:
        tokens[r["source"]] += r["n_tokens"]
        assert r["n_tokens"] == len(r["text"].encode())  # byte tokenizer by default
    total = sum(tokens.values())
    assert total >= 250_000 and total == m["tokens"]["realized"]
    # Each source overshoots by less than one document: at most 4 documents over the budget.
    assert total - 250_000 < 4 * max(len(r["text"].encode()) for r in rows)
    for s in m["sources"]:
        share = tokens[s["name"]] / total
        assert abs(share - weights[s["name"]]) < 0.01, (s["name"], share)
        assert s["share_realized"] == pytest.approx(share, abs=1e-6)
        assert s["tokens"] == tokens[s["name"]]
        assert not s["capped"]
    # Downsampled web keeps original ids, epoch 0 only; the upstream source label is kept in meta.
    web = [r for r in rows if r["source"] == "web"]
    assert all(r["id"].startswith("web-") and r["epoch"] == 0 for r in web)
    assert len({r["id"] for r in web}) == len(web) < 700
    meta = pq.read_table(next((tmp_path / "mix").glob("*.parquet")), columns=["source", "meta"]).to_pylist()
    assert any(json.loads(x["meta"])["source_before_mix"] == "commoncrawl" for x in meta if x["source"] == "web")
    # Counts add up, and the sources are interleaved (a global shuffle, not concatenation).
    c = m["counts"]
    assert c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert c["rejected"]["not_sampled"] == 700 + 60 + 50 + 40 - c["kept"]
    assert len({r["source"] for r in rows[:30]}) >= 3
    assert sum(s["rows"] for s in m["shards"]) == len(rows) and len(m["shards"]) > 1


def test_epoch_cap_and_redistribution(sources, tmp_path):
    # code needs far more than 4 epochs for 50 %: it is capped at exactly 4 epochs and the
    # shortfall goes to web.
    cfg = cfg_for(sources, {"web": 0.5, "code": 0.5}, 400_000)
    m = run_mix(cfg, str(tmp_path / "mix"), progress=False)
    by = {s["name"]: s for s in m["sources"]}
    code_available = by["code"]["tokens_available"]
    assert code_available * 4 < 200_000
    assert by["code"]["capped"] and by["code"]["tokens"] == 4 * code_available
    assert by["code"]["epochs"] == 4.0 and by["code"]["shortfall_tokens"] == 200_000 - 4 * code_available
    assert by["web"]["tokens"] >= 400_000 - 4 * code_available
    assert any("capped" in n and "'code'" in n for n in m["notes"])
    rows = read_rows(tmp_path / "mix")
    per_doc = Counter(r["id"] for r in rows if r["source"] == "code")
    assert len(per_doc) == 40 and set(per_doc.values()) == {4}
    epochs = Counter(r["epoch"] for r in rows if r["source"] == "code")
    assert epochs == {0: 40, 1: 40, 2: 40, 3: 40}
    with pytest.raises(CurateError, match="strict.*code"):
        run_mix(cfg_for(sources, {"web": 0.5, "code": 0.5}, 400_000, strict=True), str(tmp_path / "s"), progress=False)
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_partial_repeats_and_shortfall_of_whole_mix(sources, tmp_path):
    # papers alone, 2.5 epochs: every document appears 2 or 3 times (the row that ends the
    # partial epoch on the target is cut: it is chunk 0 of its document).
    papers_tokens = run_mix(cfg_for(sources, {"papers": 1}, 1), None, plan_only=True, progress=False)["sources"][0][
        "tokens_available"
    ]
    m = run_mix(cfg_for(sources, {"papers": 1}, int(2.5 * papers_tokens)), str(tmp_path / "a"), progress=False)
    rows = read_rows(tmp_path / "a")
    assert set(Counter(r["id"].split("#c")[0] for r in rows).values()) == {2, 3}
    assert sum("#c" in r["id"] for r in rows) <= 1
    assert max(r["epoch"] for r in rows) == 2
    assert m["sources"][0]["epochs"] == pytest.approx(2.5, abs=0.05)
    # More than max_epochs of everything: the mix is short, says so, and --strict refuses.
    m = run_mix(cfg_for(sources, {"papers": 1}, 10 * papers_tokens, max_epochs=2), str(tmp_path / "b"), progress=False)
    assert m["tokens"]["realized"] == 2 * papers_tokens
    assert any("short of the budget" in n for n in m["notes"])


def test_deterministic_and_bucket_count_independent(sources, tmp_path):
    weights = {"web": 0.6, "books": 0.25, "code": 0.15}
    digests = []
    for name, memory in (("a", "512MB"), ("b", "512MB"), ("c", "150kB")):
        m = run_mix(
            cfg_for(sources, weights, 150_000, seed=11, shard_size="50kB", shuffle_memory=memory),
            str(tmp_path / name),
            progress=False,
        )
        digests.append([s["sha256"] for s in m["shards"]])
        if name == "c":
            assert m["shuffle"]["buckets"] > 3
    # Same seed: byte-identical shards; many small buckets give the same order as one big one.
    assert digests[0] == digests[1] == digests[2]
    for s, d in zip(m["shards"], digests[0]):
        assert sha256_file(tmp_path / "a" / s["path"]) == d
    other = run_mix(cfg_for(sources, weights, 150_000, seed=12, shard_size="50kB"), str(tmp_path / "d"), progress=False)
    assert [s["sha256"] for s in other["shards"]] != digests[0]


def test_training_cutoff_and_undated(tmp_path):
    web = write_web(tmp_path / "web", 200, undated_every=10)  # 20 undated, dates day 1..199
    code = write_text_source(tmp_path / "code", 5, seed=5, ext=".py", dated=False)
    m = run_mix(
        MixConfig(
            sources=[SourceSpec("web", [str(web)], 0.9), SourceSpec("code", [str(code)], 0.1)],
            tokens=10**9,
            max_epochs=1,
        ),
        str(tmp_path / "mix"),
        progress=False,
    )
    # Everything is taken once (the budget is far above the data): 180 dated docs.
    cut = m["training_cutoff"]
    assert cut["undated_docs"] == 20 + 5 and cut["dated_docs"] == 180
    dates = sorted(BASE_DAY + timedelta(days=i) for i in range(200) if i % 10)
    assert cut["max"] == dates[-1].isoformat().replace("+00:00", "Z")
    assert cut["p99"] == dates[math.ceil(0.99 * 180) - 1].isoformat().replace("+00:00", "Z")


def test_pretokenized_tokens_match_text(sources, tmp_path):
    m = run_mix(
        cfg_for(sources, {"books": 0.5, "papers": 0.5}, 40_000, pretokenize=True, shard_size="20kB"),
        str(tmp_path / "mix"),
        progress=False,
    )
    p = m["pretokenized"]
    assert p["dtype"] == "uint16" and p["eot_id"] == 256 and len(p["files"]) == len(m["shards"]) > 1
    for shard, tok in zip(m["shards"], p["files"]):
        table = pq.read_table(tmp_path / "mix" / shard["path"], columns=["text", "n_tokens"]).to_pylist()
        ids = np.fromfile(tmp_path / "mix" / tok["path"], dtype="<u2")
        assert ids.shape[0] == tok["tokens"] == sum(r["n_tokens"] + 1 for r in table)
        pos = 0
        for r in table:
            assert bytes(ids[pos : pos + r["n_tokens"]].astype(np.uint8)).decode() == r["text"]
            assert ids[pos + r["n_tokens"]] == 256
            pos += r["n_tokens"] + 1


def test_rerun_resume_and_overwrite(sources, tmp_path):
    cfg = cfg_for(sources, {"books": 0.5, "papers": 0.5}, 30_000)
    out = tmp_path / "mix"
    first = run_mix(cfg, str(out), progress=False)
    # A killed later run would leave temp files and buckets: a rerun clears them.
    (out / ".part-00000-000.parquet.x.tmp").write_bytes(b"half")
    (out / ".curate" / "buckets").mkdir()
    (out / ".curate" / "buckets" / "bucket-00000.arrow").write_bytes(b"x")
    (out / "manifest.json").unlink()
    again = run_mix(cfg, str(out), progress=False)
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in first["shards"]]
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(
        [s["path"] for s in first["shards"]] + ["manifest.json"]
    )
    assert not (out / ".curate" / "buckets").exists()
    logged = []
    same = run_mix(cfg, str(out), progress=False, log=logged.append)
    assert same == again and any("nothing to do" in line for line in logged)
    with pytest.raises(CurateError, match="different configuration"):
        run_mix(cfg_for(sources, {"books": 0.5, "papers": 0.5}, 30_000, seed=5), str(out), progress=False)
    run_mix(cfg_for(sources, {"books": 0.5, "papers": 0.5}, 30_000, seed=5), str(out), overwrite=True, progress=False)
    # A directory of another stage's shards is refused.
    with pytest.raises(CurateError, match="not written by `curate mix`"):
        run_mix(cfg, str(sources["web"]), progress=False)


# --- sources: conversion --------------------------------------------------------------------


def test_jsonl_conversion_counts_bad_lines(tmp_path):
    path = tmp_path / "conv.jsonl"
    lines = [
        json.dumps(
            {
                "id": "c1",
                "date": "2024-03-01",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi?"},
                    {"role": "assistant", "content": "Hello."},
                ],
                "topic": "greeting",
            }
        ),
        "{not json",
        json.dumps({"text": "plain text record", "url": "https://www.example.com/a", "date": 1700000000}),
        json.dumps({"text": ""}),
        json.dumps({"body": "no text field"}),
        json.dumps([1, 2]),
        "",
        json.dumps({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    reader = SourceReader("chat", [str(path)])
    rows = [r for t in reader.tables() for r in t.to_pylist()]
    assert next(r["id"] for r in rows) == "c1" and len(rows) == 3
    assert rows[0]["text"] == "System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello."
    assert rows[0]["date"] == datetime(2024, 3, 1, tzinfo=UTC)
    assert json.loads(rows[0]["meta"]) == {"topic": "greeting", "format": "conversation", "path": "conv.jsonl"}
    assert rows[1]["domain"] == "example.com" and rows[1]["date"].year == 2023
    assert rows[2]["text"] == "User: Q\n\nAssistant: A"
    assert all(r["source"] == "chat" for r in rows)
    s = reader.stats
    assert s.read == 7 and dict(s.rejected) == {"empty_text": 1}
    assert dict(s.errors) == {"bad_json": 2, "missing_text": 1}
    assert s.examples["bad_json"][0]["offset"] == 2
    # Ids without an id field are stable across reads.
    again = [r["id"] for t in SourceReader("chat", [str(path)]).tables() for r in t.to_pylist()]
    assert again == [r["id"] for r in rows]


def test_text_and_code_files(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "notes.md").write_text("---\ntitle: Notes\ndate: 2022-05-06\nlanguage: en\n---\n\nBody here.\n")
    (tmp_path / "src" / "pkg" / "mod.py").write_text('"""Doc."""\nx = 1\n')
    french = "Le café était fermé, mais la crème brûlée de la pâtisserie était déjà prête. " * 4
    (tmp_path / "src" / "latin.txt").write_bytes(french.encode("latin-1"))
    (tmp_path / "src" / "skip.bin").write_bytes(b"\x00\x01")
    (tmp_path / "src" / ".hidden.md").write_text("hidden")
    files = resolve_files([str(tmp_path / "src")])
    assert [(f.rel, f.format) for f in files] == [("latin.txt", "text"), ("notes.md", "text"), ("pkg/mod.py", "code")]
    rows = [r for t in SourceReader("misc", [str(tmp_path / "src")]).tables() for r in t.to_pylist()]
    latin, notes, code = rows
    assert "crème brûlée" in latin["text"] and latin["charset"] != "utf-8"
    assert notes["text"] == "Body here.\n" and notes["language"] == "en"
    assert notes["date"] == datetime(2022, 5, 6, tzinfo=UTC)
    assert json.loads(notes["meta"])["title"] == "Notes"
    assert json.loads(code["meta"]) == {"lang": "python", "path": "pkg/mod.py"} and code["date"] is None
    with pytest.raises(InputError, match="no such file"):
        resolve_files([str(tmp_path / "missing")])
    with pytest.raises(InputError, match="cannot tell the format"):
        resolve_files([str(tmp_path / "src" / "skip.bin")])


def test_project_samples_are_usable_sources():
    root = Path(__file__).resolve().parents[3] / "samples"
    for name, fmt, least in (
        ("books", "text", 3),  # real books: long documents (tests/stages/mix/test_long_documents.py)
        ("papers", "text", 6),
        ("code", "code", 5),
        ("conversations", "jsonl", 40),
    ):
        reader = SourceReader(name, [str(root / name)])
        rows = [r for t in reader.tables() for r in t.to_pylist()]
        assert len(rows) >= least and not reader.stats.errors
        assert {f.format for f in reader.files} == {fmt}
        words = sum(len(r["text"].split()) for r in rows)
        assert words >= 1500, (name, words)


def test_paths_in_a_mix_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    conf = tmp_path / "conf" / "mix.toml"
    conf.parent.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.md").write_text("Some text in a book. " * 40)
    conf.write_text('tokens = "1k"\noutput = "../out"\n[[sources]]\nname = "books"\npaths = ["../data"]\nweight = 1\n')
    monkeypatch.chdir(tmp_path / "data")  # anywhere else
    cfg = load_mix_config(str(conf), {}, [parse_source_option("extra=a.md:1")])
    assert cfg.output == str(tmp_path / "out")
    assert [s.paths for s in cfg.sources] == [[str(tmp_path / "data")], ["a.md"]]  # the option's: as given
