"""``curate tokenizer train --engine ray``: the seeded sample drawn by Ray tasks is the local
engine's, so tokenizer.json is byte-identical; the sample covers the whole corpus."""

from __future__ import annotations

import json
import random
import sys

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.runtime.executor import Executor
from curate.stages.tokenize import sample_texts, train_from_paths

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokray")
    rng = random.Random(3)
    for part in range(6):
        with open(root / f"part-{part}.jsonl", "w") as fh:
            for i in range(80):
                text = " ".join(rng.choice(WORDS[: 4 + part]) for _ in range(rng.randint(10, 60)))
                fh.write(json.dumps({"id": f"d{part}-{i}", "text": text}) + "\n")
    return root


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    from curate.runtime.ray import ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_session(num_cpus=2) as r:
        yield r


def test_the_sample_is_seeded_spread_and_capped(corpus):
    texts = list(sample_texts([str(corpus)], max_docs=60, seed=1))
    assert len(texts) == 60
    assert texts == list(sample_texts([str(corpus)], max_docs=60, seed=1, executor=Executor("local", 2)))
    assert texts != list(sample_texts([str(corpus)], max_docs=60, seed=2))
    # from every file, not the first one only (its 80 documents would fill the cap)
    assert any("india" in t for t in texts) and any("hotel" in t for t in texts)
    capped = list(sample_texts([str(corpus)], max_chars=5000, seed=1))
    assert sum(len(t) for t in capped) == 5000
    assert len(list(sample_texts([str(corpus)]))) == 480


def test_tokenizer_on_ray_is_byte_identical_to_local(tmp_path, corpus, ray_local):
    files = {}
    for engine in ("local", "ray"):
        for workers in (1, 2):
            out = tmp_path / f"{engine}-{workers}"
            stats = train_from_paths(
                [str(corpus)], out, vocab_size=300, max_docs=200, seed=4, executor=Executor(engine, workers)
            )
            assert stats["docs"] == 200
            files[engine, workers] = (out / "tokenizer.json").read_bytes()
    assert len(set(files.values())) == 1
    cli_out = tmp_path / "cli"
    args = ["tokenizer", "train", str(corpus), "-o", str(cli_out), "--vocab-size", "300", "--max-docs", "200"]
    result = CliRunner().invoke(cli, [*args, "--seed", "4", "--engine", "ray", "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert (cli_out / "tokenizer.json").read_bytes() == files["local", 1]
