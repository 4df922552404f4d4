"""`curate pipeline` with an [eval] stage: curate eval on the final model, its scores in the
summary; a rerun skips it, a changed eval setting or a changed checkpoint redoes it alone, and
a bad [eval] table fails before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.errors import ConfigError
from curate.workflow import STAGE_NAMES, load_pipeline

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ("pretrain", "sft", "reward", "rlhf")

PIPELINE = """
workdir = "work"
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
max_steps = 2
batch_size = 4
eval_every = 2
[reward]
data = "{root}/samples/comparisons.jsonl"
max_steps = 2
batch_size = 4
eval_every = 2
[rlhf]
prompts = "{root}/samples/prompts.jsonl"
max_steps = 2
batch_size = 4
max_new_tokens = 8
eval_every = 2
[eval]
tasks = "copa,piqa"
limit = 6
"""


def _run(config: Path, *args: str):
    result = CliRunner().invoke(cli, ["pipeline", str(config), "-j", "2", *args])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.output


def _eval(work: Path) -> dict:
    return json.loads((work / "eval" / "eval.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline-eval")
    config = folder / "pipeline.toml"
    config.write_text(PIPELINE.format(root=ROOT))
    return folder / "work", config, _run(config)


def test_eval_scores_the_final_model_and_the_summary_shows_them(finished):
    work, _, output = finished
    results = _eval(work)
    # the final model (rlhf), in its step folder as `curate eval` writes it, and copied to eval/
    step = Path(results["checkpoint"]["path"])
    assert step.parent == work / "ckpt" / "rlhf" and results["checkpoint"]["stage"].startswith("rlhf")
    assert json.loads((step / "eval.json").read_text())["tasks"] == results["tasks"]
    assert set(results["tasks"]) == {"copa", "piqa"} and all(t["n"] == 6 for t in results["tasks"].values())
    # the mix's held-out slice (found through the lineage): every source with a held-out
    # document, a chunk of a book going with its book
    import pyarrow.parquet as pq

    from train.data import is_validation

    shards = sorted((work / "mix").glob("*.parquet"))
    mix = [r for s in shards for r in pq.read_table(s, columns=["id", "source"]).to_pylist()]
    held = {r["source"] for r in mix if is_validation(r["id"], 0.2)}
    sources = results["bpb"]["sources"]
    assert set(sources) == held and "web" in held
    # the summary: an eval row, then one row per score, with eval.json's values
    assert "[eval] running" in output
    row = next(line for line in output.splitlines() if line.startswith("eval "))
    assert "CORE" in row and "bpb" in row
    lines = output.splitlines()
    core = next(line for line in lines if line.strip().startswith("CORE (mean centered accuracy, 2 task(s))"))
    assert float(core.split()[-1]) == pytest.approx(results["core"]["centered_mean"], abs=1e-4)
    for task, r in results["tasks"].items():
        line = next(line for line in lines if line.strip().startswith(f"{task} (centered accuracy)"))
        assert float(line.split()[-1]) == pytest.approx(r["centered"], abs=1e-4)
    for source, r in sources.items():
        line = next(line for line in lines if line.strip().startswith(f"bits per byte, held-out {source}"))
        assert float(line.split()[-1]) == pytest.approx(r["bpb"], abs=1e-4)
    summary = json.loads((work / ".pipeline" / "summary.json").read_text())
    assert [s["stage"] for s in summary] == STAGE_NAMES
    assert summary[-1]["notes"]["core"] == results["core"]["centered_mean"]


def test_a_rerun_skips_the_eval(finished):
    work, config, _ = finished
    before = (work / "eval" / "eval.json").stat().st_mtime_ns
    output = _run(config)
    assert "[eval] up to date" in output and "running" not in output
    assert output.count("skipped") == len(STAGE_NAMES)
    assert (work / "eval" / "eval.json").stat().st_mtime_ns == before
    assert "CORE (mean centered accuracy" in output  # the scores come back from the marker


def test_changed_settings_or_checkpoint_redo_the_eval_alone(finished, tmp_path):
    work, config, _ = finished
    text = config.read_text()
    # an eval setting: only the eval runs again
    config.write_text(text.replace("limit = 6", "limit = 4"))
    output = _run(config)
    assert "[eval] running" in output
    assert all(f"[{s}] up to date" in output for s in STAGE_NAMES[:-1]), output
    assert all(t["n"] == 4 for t in _eval(work)["tasks"].values())
    # another checkpoint: the pretrained model, no stage retrained
    config.write_text(text.replace("limit = 6", 'limit = 4\ncheckpoint = "pretrain"'))
    output = _run(config)
    assert "[eval] running" in output and "[pretrain] up to date" in output
    assert Path(_eval(work)["checkpoint"]["path"]).parent == work / "ckpt" / "base"
    # a retrained final model: rlhf and the eval run again, nothing before them
    config.write_text(text.replace("max_new_tokens = 8", "max_new_tokens = 6"))
    output = _run(config)
    assert "[rlhf] running" in output and "[eval] running" in output and "[sft] up to date" in output
    results = _eval(work)
    assert Path(results["checkpoint"]["path"]).parent == work / "ckpt" / "rlhf"
    assert all(t["n"] == 6 for t in results["tasks"].values())
    # the model changed by hand (a rerun of its stage's folder outside the pipeline): scored again
    weights = Path(results["checkpoint"]["path"]) / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data)
    assert "[eval] up to date" in _run(config)  # the same bytes: nothing to redo
    ckpt_dir = Path(results["checkpoint"]["path"])
    other = ckpt_dir.parent / "step-999999"
    other.mkdir()
    for f in ckpt_dir.iterdir():
        if f.is_file() and f.name != "eval.json":
            (other / f.name).write_bytes(f.read_bytes())
    (ckpt_dir.parent / "latest").write_text("step-999999\n")
    output = _run(config)
    assert "[eval] running" in output and "[rlhf] up to date" in output
    assert Path(_eval(work)["checkpoint"]["path"]) == other


def test_without_an_eval_table_there_is_no_eval_stage(tmp_path):
    text = PIPELINE.format(root=ROOT).split("[eval]")[0]
    (tmp_path / "p.toml").write_text(text)
    pipe = load_pipeline(tmp_path / "p.toml")
    assert not pipe.has("eval") and "eval" not in pipe.built and pipe.has("rlhf")
    result = CliRunner().invoke(cli, ["pipeline", str(tmp_path / "p.toml"), "--until", "eval"])
    assert result.exit_code == 2 and "has no [eval] table" in result.output
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "line,match",
    [
        ("limt = 6", r"^\[eval\]: unknown key 'limt' \(did you mean 'limit'\?\); known keys: .*checkpoint"),
        ("shots = -1", r"^\[eval\]: shots"),
        ("limit = 'many'", r"^\[eval\]\.limit"),
        ('checkpoint = "reward"', r"^\[eval\]: checkpoint must name .*a reward model scores"),
        ('checkpoint = "base"', r"^\[eval\]: checkpoint must name the stage.*pretrain, sft, rlhf"),
        ('tasks = "none"\nbpb = false', r"^\[eval\]: nothing to do"),
        ("val_fraction = 0.0", r"^\[eval\]: val_fraction"),
    ],
)
def test_a_bad_eval_table_is_one_line_before_anything_runs(tmp_path, line, match):
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE.format(root=ROOT).split("[eval]")[0] + f"[eval]\n{line}\n")
    with pytest.raises(ConfigError, match=match) as err:
        load_pipeline(config)
    assert "\n" not in str(err.value)
    result = CliRunner().invoke(cli, ["pipeline", str(config)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "[crawl]" not in result.output and not (tmp_path / "work").exists()


def test_eval_paths_are_relative_to_the_pipeline_file(tmp_path):
    (tmp_path / "tasks").mkdir()
    task = tmp_path / "tasks" / "mine.jsonl"
    task.write_text('{"context": "Up or down?", "choices": ["up", "down"], "label": 0}\n')
    extra = """text = ["held=texts", "more/notes.jsonl", "{dedup}"]
tasks = "copa, tasks/mine.jsonl"
mix = "elsewhere/mix"
"""
    config = tmp_path / "p.toml"
    config.write_text(PIPELINE.format(root=ROOT).replace('tasks = "copa,piqa"\n', extra))
    pipe = load_pipeline(config)
    table = pipe.tables["eval"]
    assert table["text"] == [f"held={tmp_path}/texts", f"{tmp_path}/more/notes.jsonl", str(tmp_path / "work" / "dedup")]
    assert table["tasks"] == ["copa", str(task)]
    assert table["mix"] == str(tmp_path / "elsewhere" / "mix")
    config_built, model = pipe.built["eval"]
    assert config_built.task_list == ["copa", str(task)] and config_built.text == table["text"] and model == "rlhf"
    # the task file's contents are part of the eval's fingerprint; other stages do not see it
    from curate.workflow.state import fingerprint

    before = {s: fingerprint(pipe, s, "u") for s in ("eval", "rlhf")}
    task.write_text('{"context": "Left or right?", "choices": ["left", "right"], "label": 1}\n')
    after = {s: fingerprint(pipe, s, "u") for s in ("eval", "rlhf")}
    assert before["eval"] != after["eval"] and before["rlhf"] == after["rlhf"]
