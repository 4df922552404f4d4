"""``curate mix --engine ray``: counting, sampling and the bucketed shuffle as Ray tasks give
the local engine's shards, token files and manifest, with 1 and 2 workers."""

from __future__ import annotations

import importlib
import json
import random
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.document import Document
from curate.core.files import sha256_file
from curate.core.shards import ShardWriter
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import mix
from curate.stages.mix import MixConfig, SourceSpec
from curate.stages.tokenize import train_from_paths

WORDS = ["the", "whale", "river", "stone", "light", "paper", "garden", "window", "harbour", "winter", "engine"]


def _text(rng: random.Random, n_bytes: int) -> str:
    paras, size = [], 0
    while size < n_bytes:
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "." for _ in range(4)]
        paras.append(" ".join(sents))
        size += len(paras[-1]) + 2
    return "\n\n".join(paras) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Long books (cut into chunks), short web pages in JSONL (one line bad), mid-length papers,
    forum shards in Parquet (one failing partway); a small BPE."""
    root = tmp_path_factory.mktemp("mixray")
    rng = random.Random(11)
    out = {}
    for name, n, lo, hi in (("books", 4, 20_000, 60_000), ("papers", 20, 1_000, 6_000)):
        folder = root / name
        folder.mkdir()
        for i in range(n):
            (folder / f"{name}-{i:03d}.txt").write_text(_text(rng, rng.randint(lo, hi)))
        out[name] = folder
    web = root / "web"
    web.mkdir()
    for part in range(2):
        with open(web / f"web-{part}.jsonl", "w") as fh:
            for i in range(150):
                doc = {"id": f"w{part}-{i}", "text": _text(rng, rng.randint(100, 1500))}
                fh.write(json.dumps(doc) + "\n")
            fh.write("{not json\n")
    out["web"] = web
    forum = root / "forum"
    for prefix in ("part-00000", "part-00001", "part-00002"):
        with ShardWriter(forum, prefix=prefix, row_group_bytes=2000) as w:
            for i in range(40):
                w.write(Document(id=f"{prefix}-{i}", text=_text(rng, rng.randint(200, 900))))
    _corrupt_last_row_group(forum / "part-00001-000.parquet")
    out["forum"] = forum
    train_from_paths([str(out["papers"])], root / "bpe", vocab_size=300)
    out["bpe"] = root / "bpe"
    return out


def _corrupt_last_row_group(path: Path) -> None:
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(meta.num_row_groups - 1).column(meta.schema.names.index("text"))
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    from curate.runtime.ray import ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_session(num_cpus=2) as r:
        yield r


def _config(corpus: dict[str, Path], output: Path) -> MixConfig:
    return MixConfig(
        sources=[
            SourceSpec("web", [str(corpus["web"])], 0.4),
            SourceSpec("books", [str(corpus["books"])], 0.3),
            SourceSpec("papers", [str(corpus["papers"])], 0.2),
            SourceSpec("forum", [str(corpus["forum"])], 0.1),
        ],
        tokens=200_000,
        tokenizer=str(corpus["bpe"]),
        max_doc_tokens=2048,
        seed=5,
        shard_size="150kB",
        shuffle_memory="200kB",
        pretokenize=True,
        output=str(output),
    )


def _result(output: Path, manifest: dict) -> tuple[list[str], list[str], dict]:
    shards = sorted(output.glob("part-*.parquet"))
    tokens = sorted((output / "tokens").glob("*.bin"))
    kept = {k: v for k, v in manifest.items() if k not in ("created_at", "finished_at", "elapsed_s", "started_at")}
    return [sha256_file(p) for p in shards], [sha256_file(p) for p in tokens], kept


def test_mix_on_ray_is_byte_identical_to_local(tmp_path, corpus, ray_local, monkeypatch):
    """Whole sources per task, then runs of files (a few kB of input) per task: the same mix."""
    out = tmp_path / "whole-sources"
    reference = _result(out, mix.run(_config(corpus, out), StageContext([], str(out), progress=False)))
    monkeypatch.setattr(importlib.import_module("curate.stages.mix.plan"), "PART_BYTES", 8_000)
    results = {}
    for engine in ("local", "ray"):
        for workers in (1, 2):
            out = tmp_path / f"{engine}-{workers}"
            ctx = StageContext([], str(out), Executor(engine, workers), progress=False)
            results[engine, workers] = _result(out, mix.run(_config(corpus, out), ctx))
    shards, tokens, manifest = reference
    assert len(shards) >= 3 and len(tokens) == len(shards)
    assert manifest["chunking"]["split_documents"] >= 4 and manifest["shuffle"]["buckets"] > 1
    assert manifest["tokens"]["realized"] >= 199_000
    assert manifest["counts"]["errors"] == {"bad_json": 2, "unreadable_file": 1}, manifest["counts"]
    assert [i["status"] for i in manifest["inputs"]].count("failed") == 1
    for key, got in results.items():
        assert got[0] == shards, key
        assert got[1] == tokens, key
        assert json.dumps(got[2], sort_keys=True, default=str) == json.dumps(manifest, sort_keys=True, default=str), key
    assert not list((tmp_path / "ray-2" / ".curate").glob("buckets/*"))


def test_mix_cli_engine_ray_and_plan(tmp_path, corpus, ray_local):
    args = [
        "mix",
        *("-s", f"web={corpus['web']}:0.6", "-s", f"papers={corpus['papers']}:0.4"),
        *("--tokens", "50k", "--seed", "3", "--shuffle-memory", "200kB", "--pretokenize", "-q"),
    ]
    runner = CliRunner()
    local = runner.invoke(cli, [*args, "-o", str(tmp_path / "local"), "-j", "1"])
    assert local.exit_code == 0, local.output
    on_ray = runner.invoke(cli, [*args, "-o", str(tmp_path / "ray"), "--engine", "ray", "-j", "2"])
    assert on_ray.exit_code == 0, on_ray.output
    a = [sha256_file(p) for p in sorted((tmp_path / "local").rglob("part-*"))]
    b = [sha256_file(p) for p in sorted((tmp_path / "ray").rglob("part-*"))]
    assert a and a == b
    plan = runner.invoke(cli, [*args, "--plan", "--json", "--engine", "ray"])
    assert plan.exit_code == 0, plan.output
    assert json.loads(plan.stdout)["tokens"]["budget"] == 50_000
