"""`curate mix` and `curate tokenizer train` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from curate.cli import cli
from curate.core.tokenizer import load_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_mix_from_options_with_trained_tokenizer(tmp_path):
    tok = tmp_path / "tok"
    r = invoke(
        "tokenizer",
        "train",
        SAMPLES / "books",
        SAMPLES / "papers",
        SAMPLES / "code",
        SAMPLES / "conversations",
        "-o",
        tok,
        "--vocab-size",
        "500",
    )
    assert r.exit_code == 0, r.output
    assert "vocab 500" in r.output and (tok / "tokenizer.json").exists()
    out = tmp_path / "mix"
    r = invoke(
        "mix",
        "-s",
        f"books={SAMPLES / 'books'}:0.5",
        "-s",
        f"papers={SAMPLES / 'papers'}:0.3",
        "-s",
        f"code={SAMPLES / 'code'}:0.2",
        "--tokens",
        "20k",
        "--tokenizer",
        tok,
        "-o",
        out,
        "--seed",
        "3",
    )
    assert r.exit_code == 0, r.output
    assert "books" in r.output and "training cutoff" in r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["tokenizer"]["vocab_size"] == 500 and m["seed"] == 3 and m["tokens"]["budget"] == 20_000
    bpe = load_tokenizer(tok)
    rows = pq.read_table(out / m["shards"][0]["path"], columns=["text", "n_tokens"]).to_pylist()
    assert all(row["n_tokens"] == len(bpe.encode(row["text"])) for row in rows)
    assert m["training_cutoff"]["undated_docs"] > 0 and m["training_cutoff"]["max"].startswith("20")


def test_mix_config_file_plan_and_errors(tmp_path):
    conf = tmp_path / "mix.toml"
    conf.write_text(
        f'tokens = "30k"\noutput = "{tmp_path / "out"}"\n'
        f'[[sources]]\nname = "books"\npaths = ["{SAMPLES / "books"}"]\nweight = 2\n'
        f'[[sources]]\nname = "chat"\npaths = ["{SAMPLES / "conversations"}"]\nweight = 1\n'
    )
    r = invoke("mix", "--config", conf, "--plan", "--json")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out").exists()
    assert "normalized" in r.output  # weights 2 and 1 do not sum to 1
    plan = json.loads(r.stdout)
    assert [round(s["share_requested"], 4) for s in plan["sources"]] == [0.6667, 0.3333]
    r = invoke("mix", "--config", conf)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "manifest.json").exists()

    conf.write_text('tokens = "30k"\n[[sources]]\nname = "books"\npaths = ["x"]\nweigth = 1\n')
    r = invoke("mix", "--config", conf, "-o", tmp_path / "o2")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output.startswith("error: ") and "did you mean 'weight'" in r.output
    r = invoke("mix", "-s", "books=/no/such/dir:1", "--tokens", "1k", "-o", tmp_path / "o3")
    assert r.exit_code == 2 and "no such file or directory" in r.output
    r = invoke("mix", "-s", "books=/x:one", "--tokens", "1k", "-o", tmp_path / "o4")
    assert r.exit_code == 2 and "not a number" in r.output
    r = invoke("mix", "-s", f"books={SAMPLES / 'books'}:1", "--tokens", "1k")
    assert r.exit_code == 2 and "no output directory" in r.output
    r = invoke(
        "mix",
        "-s",
        f"books={SAMPLES / 'books'}:1",
        "-s",
        f"code={SAMPLES / 'code'}:1",
        "--tokens",
        "200k",
        "--strict",
        "-o",
        tmp_path / "o5",
    )
    assert r.exit_code == 2 and r.output.startswith("error: --strict") and "capped" in r.output


def test_sample_mix_config_is_valid():
    from curate.stages.mix import load_mix_config

    cfg = load_mix_config(str(SAMPLES / "mix.toml"))
    assert [s.name for s in cfg.sources] == ["web", "books", "papers", "code", "conversations"]
    assert abs(sum(s.weight for s in cfg.sources) - 1) < 1e-9 and cfg.budget == 2_000_000


def test_max_doc_tokens_option_cuts_the_sample_books(tmp_path):
    base = ["mix", "-s", f"books={SAMPLES / 'books'}:1", "--tokens", "50k", "--plan", "--json"]
    cut = CliRunner().invoke(cli, [*base, "--max-doc-tokens", "4096"])
    whole = CliRunner().invoke(cli, [*base, "--max-doc-tokens", "0"])
    assert cut.exit_code == 0 and whole.exit_code == 0, cut.output + whole.output
    assert cut.output != whole.output and "chunk" in cut.output
    bad = CliRunner().invoke(cli, [*base, "--max-doc-tokens", "3"])
    assert bad.exit_code == 2 and "max_doc_tokens" in bad.output
