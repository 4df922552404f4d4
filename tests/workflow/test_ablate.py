"""`curate ablate` on a reduced pipeline: unchanged stages are shared, not rerun; the
comparison shows the base's seed spread; a rerun is a no-op; the results are deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.errors import ConfigError
from curate.workflow.ablate import load_ablation

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """
seed = 3
[crawl]
inputs = ["{root}/samples/warc"]
[filter]
config = "{root}/samples/filters.toml"
[dedup]
threshold = 0.8
[tokenizer]
vocab_size = 300
[mix]
tokens = "20k"
sources = [
  {{ name = "web", paths = ["{{dedup}}"], weight = 0.7 }},
  {{ name = "books", paths = ["{root}/samples/books"], weight = 0.3 }},
]
[pretrain]
config = "{root}/samples/train/pretrain_tiny.toml"
max_steps = 6
batch_size = 4
eval_every = 3
checkpoint_every = 6
model = {{ preset = "tiny", block_size = 64 }}
data = {{ val_fraction = 0.2 }}
[sft]
data = "{root}/samples/sft/qa.jsonl"
[reward]
data = "{root}/samples/comparisons.jsonl"
[rlhf]
prompts = "{root}/samples/prompts.jsonl"
"""

ABLATE = """
base = "pipeline.toml"
workdir = "out"
seeds = [0, 1]
variant_seeds = [0]
[proxy]
max_steps = 6
[eval]
tasks = "copa,piqa"
limit = 6
[[variants]]
name = "stricter-dedup"
set = {{ dedup = {{ threshold = 0.5 }} }}
[[variants]]
name = "no-quality"
set = {{ filter = {{ config = "{root}/samples/filters-no-quality.toml" }} }}
"""


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablate")
    (folder / "pipeline.toml").write_text(PIPELINE.format(root=ROOT))
    (folder / "ablate.toml").write_text(ABLATE.format(root=ROOT))
    result = CliRunner().invoke(cli, ["ablate", str(folder / "ablate.toml"), "-j", "2"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return folder, result.output


def test_unchanged_stages_are_shared_not_rerun(ablation):
    folder, output = ablation
    stages = sorted(p.name.split("-")[0] for p in (folder / "out" / "stages").iterdir())
    # one crawl for all three recipes; the dedup variant keeps the base's filter output
    assert stages.count("crawl") == 1 and stages.count("filter") == 2
    assert stages.count("dedup") == 3 and stages.count("mix") == 3
    assert output.count("crawl: running") == 1 and output.count("crawl: up to date") == 2


def test_the_comparison_shows_every_variant_beside_the_base_spread(ablation):
    folder, output = ablation
    result = json.loads((folder / "out" / "ablation.json").read_text())
    assert [v["name"] for v in result["setup"]["variants"]] == ["base", "stricter-dedup", "no-quality"]
    assert [(r["variant"], r["seed"]) for r in result["runs"]] == [
        ("base", 0),
        ("base", 1),
        ("stricter-dedup", 0),
        ("no-quality", 0),
    ]
    metrics = {m["metric"]: m for m in result["metrics"]}
    assert "core" in metrics and "val_loss" in metrics and any(k.startswith("bpb/") for k in metrics)
    core = metrics["core"]
    base = core["variants"]["base"]
    assert base["n"] == 2 and core["noise"] == pytest.approx(max(base["values"]) - min(base["values"]))
    for name, d in core["deltas"].items():
        assert d["delta"] == pytest.approx(core["variants"][name]["mean"] - base["mean"])
        own = core["variants"][name]["range"]
        assert d["beyond_noise"] == (abs(d["delta"]) > max(core["noise"], own))
        assert d["better"] == (d["delta"] > 0)  # higher CORE is better
    assert "base (2 seeds)" in output and "stricter-dedup" in output
    # every proxy is scored on the same text: the base mix's held-out slice
    base_mix = result["setup"]["variants"][0]["stages"]["mix"]
    assert {r["eval"]["bpb"]["mix"] for r in result["runs"]} == {base_mix}
    assert all(set(r["eval"]["tasks"]) == {"copa", "piqa"} for r in result["runs"])
    page = (folder / "out" / "ablation.html").read_text()
    assert page.count("<img") >= len(result["metrics"]) + 1


def test_a_rerun_resumes_and_gives_the_same_comparison(ablation):
    folder, _ = ablation
    before = json.loads((folder / "out" / "ablation.json").read_text())
    again = CliRunner().invoke(cli, ["ablate", str(folder / "ablate.toml"), "-j", "2"])
    assert again.exit_code == 0, again.output
    assert "running" not in again.output.replace("proxy", "")  # nothing recomputed
    assert again.output.count("eval up to date") == 4
    after = json.loads((folder / "out" / "ablation.json").read_text())
    assert after["metrics"] == before["metrics"]


def test_bad_ablation_files_are_one_line_errors(tmp_path):
    (tmp_path / "pipeline.toml").write_text(PIPELINE.format(root=ROOT))
    for text, match in (
        ('base = "pipeline.toml"\nsedes = [0, 1]\n', "unknown key 'sedes'"),
        ('base = "pipeline.toml"\nseeds = [0]\n', "at least 2"),
        ('base = "pipeline.toml"\n[[variants]]\nname = "base"\n', "unique name"),
        ('base = "pipeline.toml"\n[[variants]]\nname = "x"\nset = { dedupe = { threshold = 0.5 } }\n', "set must be"),
        ('base = "pipeline.toml"\n[[variants]]\nname = "x"\nset = { dedup = { treshold = 0.5 } }\n', "treshold"),
        ('base = "pipeline.toml"\n[proxy]\nmax_stepz = 3\n', "max_stepz"),
        ('base = "pipeline.toml"\n[eval]\nlimt = 3\n', "limt"),
        ('base = "pipeline.toml"\n[eval]\nshots = -1\n', "shots"),
        ("seeds = [0, 1]\n", "'base'"),
    ):
        (tmp_path / "a.toml").write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_ablation(tmp_path / "a.toml")


def test_a_base_without_post_training_tables_is_enough(tmp_path):
    data_only = PIPELINE.format(root=ROOT).split("[sft]")[0]
    (tmp_path / "pipeline.toml").write_text(data_only)
    (tmp_path / "a.toml").write_text(
        'base = "pipeline.toml"\n[[variants]]\nname = "x"\nset = { dedup = { threshold = 0.5 } }\n'
    )
    ab = load_ablation(tmp_path / "a.toml")
    assert [v.name for v in ab.variants] == ["base", "x"]
    (tmp_path / "pipeline.toml").write_text(data_only.split("[pretrain]")[0])
    with pytest.raises(ConfigError, match="pretrain"):
        load_ablation(tmp_path / "a.toml")


def test_eval_text_folders_are_relative_to_the_ablation_file(tmp_path):
    (tmp_path / "pipeline.toml").write_text(PIPELINE.format(root=ROOT))
    (tmp_path / "held").mkdir()
    (tmp_path / "a.toml").write_text('base = "pipeline.toml"\n[eval]\ntext = ["web=held", "held"]\n')
    ab = load_ablation(tmp_path / "a.toml")
    assert ab.eval["text"] == [f"web={tmp_path / 'held'}", str(tmp_path / "held")]
