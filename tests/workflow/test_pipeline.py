"""`curate pipeline` end to end on the samples with a reduced config: manifests, checkpoint
metadata, resume (stages skipped), partial runs and config errors."""

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.manifest import load_manifest
from curate.workflow import STAGE_NAMES, load_pipeline

# The stages a pipeline without an [eval] table runs (REDUCED has none; see test_pipeline_eval.py).
STAGES = [s for s in STAGE_NAMES if s != "eval"]

ROOT = Path(__file__).resolve().parents[2]

REDUCED = """
workdir = "{workdir}"
seed = 3

[crawl]
inputs = ["{root}/samples/warc"]

[filter]
config = "{root}/samples/filters.toml"

[dedup]
threshold = 0.8

[tokenizer]
vocab_size = 512

[mix]
tokens = "40k"
sources = [
  {{ name = "web", paths = ["{{dedup}}"], weight = 0.7 }},
  {{ name = "books", paths = ["{root}/samples/books"], weight = 0.3 }},
]

[pretrain]
config = "{root}/samples/train/pretrain_tiny.toml"
max_steps = 8
batch_size = 4
eval_every = 4
checkpoint_every = 8
model = {{ preset = "tiny", block_size = 64 }}

[sft]
data = "{root}/samples/sft/qa.jsonl"
max_steps = 4
batch_size = 4
eval_every = 2

[reward]
data = "{root}/samples/comparisons.jsonl"
max_steps = 4
batch_size = 4
eval_every = 2

[rlhf]
prompts = "{root}/samples/prompts.jsonl"
max_steps = 2
batch_size = 4
max_new_tokens = 8
eval_every = 2
"""


def _beside_samples(tmp_path, text):
    """``text`` as a pipeline file in a folder that looks like samples/ (its entries linked), so
    the sample's paths, which are relative to the file's folder, still resolve."""
    for entry in (ROOT / "samples").iterdir():
        link = tmp_path / entry.name
        if not link.exists():
            link.symlink_to(entry)
    cfg = tmp_path / "p.toml"
    cfg.write_text(text)
    return cfg


def _balanced(manifest):
    c = manifest["counts"]
    return c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    config = work / "pipeline.toml"
    config.write_text(REDUCED.format(workdir=work / "work", root=ROOT))
    result = CliRunner().invoke(cli, ["pipeline", str(config), "-j", "2"])
    assert result.exit_code == 0, result.output + str(result.exception)
    return work / "work", config, result.output


def test_every_stage_ran_and_counts_add_up(finished):
    workdir, _, output = finished
    manifests = {s: load_manifest(workdir / s) for s in ("crawl", "filter", "dedup", "mix")}
    for stage, manifest in manifests.items():
        assert manifest is not None and _balanced(manifest), stage
    # each stage read what the one before it kept
    assert manifests["filter"]["counts"]["read"] == manifests["crawl"]["counts"]["kept"]
    assert manifests["dedup"]["counts"]["read"] == manifests["filter"]["counts"]["kept"]
    assert 0 < manifests["dedup"]["counts"]["kept"] < manifests["crawl"]["counts"]["read"]
    assert abs(manifests["mix"]["tokens"]["realized"] - 40_000) <= 200  # within 0.5% of the budget
    for stage in STAGES:
        assert stage in output
    assert "training cutoff:" in output and "curate generate" in output
    assert "[eval]" not in output and "CORE" not in output and not (workdir / "eval").exists()


def test_final_checkpoint_carries_lineage_and_cutoff(finished):
    workdir, _, _ = finished
    cutoff = load_manifest(workdir / "mix")["training_cutoff"]
    run = workdir / "ckpt" / "rlhf"
    step_dir = run / (run / "latest").read_text().strip()
    meta = json.loads((step_dir / "config.json").read_text())
    assert meta["training_cutoff"]["max"] == cutoff["max"]
    assert meta["parent_stage"] == "sft" and "ckpt/sft" in meta["parent"]
    assert (step_dir / "model.safetensors").exists()
    summary = json.loads((workdir / ".pipeline" / "summary.json").read_text())
    assert [s["stage"] for s in summary] == STAGES
    assert summary[-1]["notes"].get("reward_after") is not None


def test_rerun_skips_completed_stages(finished):
    _workdir, config, _ = finished
    result = CliRunner().invoke(cli, ["pipeline", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") == len(STAGES)


def test_a_held_out_reward_model_watches_rlhf(finished):
    """[reward] holdout = true: two reward models on the two halves; RLHF is watched by the one
    it does not optimize, the summary shows it before and after, the best step is the result."""
    workdir, config, _ = finished
    text = config.read_text().replace("[reward]\n", "[reward]\nholdout = true\n")
    text = text.replace("[rlhf]\n", "[rlhf]\nstop_on_divergence = 3\n")
    watched = config.parent / "watched.toml"
    watched.write_text(text)
    result = CliRunner().invoke(cli, ["pipeline", str(watched), "--from", "reward"])
    assert result.exit_code == 0, result.output + str(result.exception)
    assert (workdir / "ckpt" / "rm-holdout" / "latest").exists()
    summary = json.loads((workdir / ".pipeline" / "summary.json").read_text())
    notes = summary[-1]["notes"]
    assert notes["holdout_after"] is not None and notes["holdout_before"] is not None
    assert "held-out reward model (never optimized):" in result.output
    lowered = notes["holdout_after"] < notes["holdout_before"]
    assert ("RLHF LOWERED the held-out reward" in result.output) == lowered
    best = workdir / "ckpt" / "rlhf" / "best"
    assert best.is_dir() and notes["result"] == str(best)
    assert f"curate generate {best}" in result.output
    # --overwrite redoes the held-out model with the optimized one (no resume of a stale one)
    again = CliRunner().invoke(cli, ["pipeline", str(watched), "--from", "reward", "--until", "reward", "--overwrite"])
    assert again.exit_code == 0 and "half 1" in again.output and "resuming" not in again.output, again.output


def test_stop_on_divergence_needs_the_held_out_reward_model(tmp_path):
    text = REDUCED.format(workdir=tmp_path / "work", root=ROOT).replace("[rlhf]\n", "[rlhf]\nstop_on_divergence = 2\n")
    (tmp_path / "p.toml").write_text(text)
    result = CliRunner().invoke(cli, ["pipeline", str(tmp_path / "p.toml")])
    assert result.exit_code == 2 and "set holdout = true in [reward]" in result.output
    assert not (tmp_path / "work" / "crawl").exists()  # refused before anything ran


def test_partial_runs_and_errors(finished, tmp_path):
    workdir, config, _ = finished
    runner = CliRunner()
    result = runner.invoke(cli, ["pipeline", str(config), "--from", "mix", "--until", "mix"])
    assert result.exit_code == 0 and "mix" in result.output and "crawl " not in result.output
    result = runner.invoke(cli, ["pipeline", str(config), "--until", "nonsense"])
    assert result.exit_code == 2 and "unknown stage" in result.output
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(config.read_text().replace(str(workdir), str(tmp_path / "w")))
    result = runner.invoke(cli, ["pipeline", str(fresh), "--from", "mix"])
    assert result.exit_code != 0 and "has not completed" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text() + "\n[sft_typo]\nx = 1\n")
    result = runner.invoke(cli, ["pipeline", str(bad)])
    assert result.exit_code == 2 and "unknown key 'sft_typo'" in result.output


@pytest.mark.parametrize(
    "stage,line,match",
    [
        ("filter", "confg = 'x'", r"\[filter\]: unknown key 'confg'"),
        ("rlhf", "kl_coeff = 0.1", r"\[rlhf\]: unknown key 'kl_coeff' \(did you mean 'kl_coef'\?\)"),
        ("pretrain", "model = { n_layers = 2 }", r"unknown key 'n_layers'"),
        ("dedup", "bands = 3", "give both --bands and --rows"),
        ("tokenizer", "min_frequency = 0", "min_frequency must be at least 1"),
        ("tokenizer", "max_docs = 'many'", r"\[tokenizer\]\.max_docs: expected int"),
        ("crawl", "set = { extract = { mode = 'speedy' } }", "mode"),
        ("crawl", "set = [3]", "set must be a table or a list"),
        ("pretrain", "optim = { min_lr = -1.0 }", "min_lr must be between"),
        ("pretrain", "dtype = 'float16'", "float16 is not supported"),
        ("eval", "limt = 5", r"\[eval\]: unknown key 'limt' \(did you mean 'limit'\?\)"),
        ("eval", "checkpoint = 'reward'", r"\[eval\]: checkpoint must name"),
    ],
)
def test_typos_in_any_stage_fail_before_anything_runs(tmp_path, stage, line, match):
    from curate.core.errors import ConfigError

    text = (ROOT / "samples" / "pipeline.toml").read_text().replace(f"[{stage}]\n", f"[{stage}]\n{line}\n", 1)
    cfg = _beside_samples(tmp_path, text)
    with pytest.raises(ConfigError, match=match):
        load_pipeline(cfg, workdir=str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "line,match", [("seed = 'x'", "seed must be an integer"), ("workers = 0", "workers must be at least 1")]
)
def test_bad_top_level_values(tmp_path, line, match):
    from curate.core.errors import ConfigError

    cfg = _beside_samples(
        tmp_path, line + "\n" + (ROOT / "samples" / "pipeline.toml").read_text().replace("seed = 0\n", "")
    )
    with pytest.raises(ConfigError, match=match):
        load_pipeline(cfg)


def test_sample_pipeline_config_loads():
    pipe = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir="/tmp/unused-workdir")
    assert pipe.out("pretrain") == Path("/tmp/unused-workdir/ckpt/base")
    assert pipe.tables["mix"]["sources"][0]["paths"] == ["/tmp/unused-workdir/dedup"]
    # the sample scores its final model; the eval's output is its own folder
    assert pipe.built["eval"][1] == "rlhf" and pipe.out("eval") == Path("/tmp/unused-workdir/eval")


def test_tokenizer_stage_limits(tmp_path, monkeypatch):
    from curate.core.errors import ConfigError
    from curate.stages.tokenize import TokenizeConfig

    with pytest.raises(ConfigError, match="vocab_size must be at least"):
        TokenizeConfig(vocab_size=10).validate()
    assert TokenizeConfig(vocab_size=300).validate().vocab_size == 300
    # The pipeline's own defaults for [tokenizer]: an 8,192 vocabulary, no character cap.
    monkeypatch.chdir(ROOT)
    cfg = _beside_samples(tmp_path, (ROOT / "samples" / "pipeline.toml").read_text().replace("vocab_size = 4096", ""))
    config, inputs = load_pipeline(cfg, workdir=str(tmp_path / "w")).built["tokenizer"]
    assert (config.vocab_size, config.max_chars) == (8192, None) and inputs == [str(tmp_path / "w" / "dedup")]


def test_filter_chain_and_model_are_built_up_front(tmp_path):
    from curate.core.errors import ConfigError

    chain = tmp_path / "chain.toml"
    chain.write_text('[[filters]]\nname = "gopher_qualty"\n')
    text = (ROOT / "samples" / "pipeline.toml").read_text().replace('config = "filters.toml"', f'config = "{chain}"')
    cfg = _beside_samples(tmp_path, text)
    with pytest.raises(ConfigError, match="gopher_qualty"):
        load_pipeline(cfg, workdir=str(tmp_path / "w"))
    text = (
        (ROOT / "samples" / "pipeline.toml")
        .read_text()
        .replace("max_steps = 600", "max_steps = 600\nmodel = { n_layer = 0 }")
    )
    cfg.write_text(text)
    with pytest.raises(ConfigError):
        load_pipeline(cfg, workdir=str(tmp_path / "w"))


def test_crawl_set_accepts_cli_style_strings(tmp_path):
    text = (
        (ROOT / "samples" / "pipeline.toml")
        .read_text()
        .replace("[crawl]\n", "[crawl]\nset = ['extract.mode=full']\n", 1)
    )
    cfg = _beside_samples(tmp_path, text)
    pipe = load_pipeline(cfg, workdir=str(tmp_path / "w"))
    assert pipe.tables["crawl"]["set"] == ["extract.mode=full"]
    assert pipe.built["crawl"][0].extract.mode == "full"  # the run uses the settings checked here


def test_fingerprint_ignores_workdir_spelling_but_sees_file_contents(tmp_path, monkeypatch):
    from curate.workflow.state import fingerprint as _fingerprint

    monkeypatch.chdir(ROOT)
    a = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir=str(tmp_path / "work"))
    b = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir=str(tmp_path / "x" / ".." / "work"))
    assert _fingerprint(a, "mix", "u") == _fingerprint(b, "mix", "u")
    # the filter stage names samples/filters.toml: a copy with other contents changes its fingerprint
    chain = tmp_path / "chain.toml"
    chain.write_text((ROOT / "samples" / "filters.toml").read_text())
    text = (ROOT / "samples" / "pipeline.toml").read_text().replace('config = "filters.toml"', f'config = "{chain}"')
    cfg = _beside_samples(tmp_path, text)
    before = _fingerprint(load_pipeline(cfg, workdir=str(tmp_path / "w")), "filter", "u")
    chain.write_text(chain.read_text() + "\n# edited\n")
    after = _fingerprint(load_pipeline(cfg, workdir=str(tmp_path / "w")), "filter", "u")
    assert before != after


def test_an_interrupted_stage_is_not_marked_complete(tmp_path, monkeypatch):
    from curate.core.errors import CurateError
    from curate.workflow import run as workflow

    monkeypatch.chdir(ROOT)
    pipe = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir=str(tmp_path / "w"))
    stopped = dataclasses.replace(workflow.BY_NAME["crawl"], run=lambda p, built, overwrite, log: {"_stopped": True})
    monkeypatch.setitem(workflow.BY_NAME, "crawl", stopped)
    with pytest.raises(CurateError, match="interrupted during crawl") as err:
        workflow.run_pipeline(pipe, until="crawl", log=lambda m: None)
    assert err.value.exit_code == 130
    assert not (tmp_path / "w" / ".pipeline" / "crawl.json").exists()


def test_one_pipeline_per_workdir(tmp_path, monkeypatch):
    from curate.core.errors import CurateError
    from curate.workflow import run as workflow
    from curate.workflow.state import workdir_lock

    monkeypatch.chdir(ROOT)
    pipe = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir=str(tmp_path / "w"))
    with workdir_lock(pipe.workdir):
        with pytest.raises(CurateError, match="another `curate pipeline` is running"):
            workflow.run_pipeline(pipe, until="crawl", log=lambda m: None)


# --------------------------------------------------------------------------- --from and --overwrite
# On fresh work directories that stop after the data stages (a few seconds each).


def _config(tmp_path, text=None):
    path = tmp_path / "pipeline.toml"
    path.write_text(text if text is not None else REDUCED.format(workdir=tmp_path / "work", root=ROOT))
    return path


def _pipeline(config, *args):
    return CliRunner().invoke(cli, ["pipeline", str(config), "-j", "2", *args])


def _snapshot(directory):
    """Every path under a directory with its size and modification time, to tell that nothing
    was created, deleted or rewritten (lock files are skipped: a lock records its holder, and a
    run that stops at its checks still held the lock while checking)."""
    return {
        str(p.relative_to(directory)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.name != "lock"
    }


def _shards(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.parquet"))}


def test_from_needs_every_earlier_stage_completed(tmp_path):
    config = _config(tmp_path)
    work = tmp_path / "work"
    result = _pipeline(config, "--from", "filter", "--until", "filter")
    assert result.exit_code == 2
    assert "stage 'crawl' has not completed" in result.output and "--from crawl" in result.output
    assert not work.exists()  # the failed check created nothing
    assert _pipeline(config, "--until", "crawl").exit_code == 0
    before = _snapshot(work)
    result = _pipeline(config, "--from", "dedup", "--until", "dedup")
    assert result.exit_code == 2
    assert "stage 'filter' has not completed" in result.output and "or --from filter" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _snapshot(work) == before
    # a marker whose folder was removed by hand does not count as done
    assert _pipeline(config, "--until", "filter").exit_code == 0
    (work / "filter").rename(tmp_path / "filter-moved")
    result = _pipeline(config, "--from", "dedup", "--until", "dedup")
    assert result.exit_code == 2 and "output of stage 'filter'" in result.output and "is missing" in result.output
    assert not (work / "dedup").exists()


def test_from_checks_earlier_settings_and_files_then_runs_when_unchanged(tmp_path):
    chain = tmp_path / "filters.toml"
    chain.write_text((ROOT / "samples" / "filters.toml").read_text())
    text = REDUCED.format(workdir=tmp_path / "work", root=ROOT).replace(
        str(ROOT / "samples" / "filters.toml"), str(chain)
    )
    config = _config(tmp_path, text)
    work = tmp_path / "work"
    assert _pipeline(config, "--until", "filter").exit_code == 0
    before = _snapshot(work)
    changes = [
        ("filter", text.replace("[filter]\n", "[filter]\nannotate = true\n")),  # its table
        ("crawl", text.replace("seed = 3", "seed = 4")),  # the seed: the first stage is named
    ]
    for stage, changed in changes:
        config.write_text(changed)
        result = _pipeline(config, "--from", "dedup", "--until", "dedup")
        assert result.exit_code == 2, result.output
        assert f"stage '{stage}' settings changed since it ran" in result.output
        assert f"run with --from {stage} (or without --from)" in result.output
        assert _snapshot(work) == before  # nothing created, deleted or rewritten
    # a file the stage names (its filter chain) changed
    config.write_text(text)
    original = chain.read_text()
    chain.write_text(original + "\n# edited\n")
    result = _pipeline(config, "--from", "dedup", "--until", "dedup")
    assert result.exit_code == 2 and "stage 'filter' settings changed" in result.output
    assert _snapshot(work) == before
    # back as it was: --from dedup runs dedup alone, on the filter output that is there
    chain.write_text(original)
    result = _pipeline(config, "--from", "dedup", "--until", "dedup")
    assert result.exit_code == 0, result.output
    assert "[dedup] running" in result.output and "[filter]" not in result.output and "[crawl]" not in result.output
    assert load_manifest(work / "dedup")["counts"]["read"] == load_manifest(work / "filter")["counts"]["kept"]
    assert {k: v for k, v in _snapshot(work).items() if k.startswith(("crawl", "filter"))} == {
        k: v for k, v in before.items() if k.startswith(("crawl", "filter"))
    }


def test_overwrite_redoes_stages_in_range_and_keeps_the_ones_before(tmp_path):
    config = _config(tmp_path)
    work = tmp_path / "work"
    assert _pipeline(config, "--until", "dedup").exit_code == 0
    shards = {s: _shards(work / s) for s in ("crawl", "filter", "dedup")}
    markers = {s: (work / ".pipeline" / f"{s}.json").read_text() for s in ("crawl", "filter", "dedup")}
    crawl_before = _snapshot(work / "crawl")
    (work / "filter" / "stray.txt").write_text("left by hand")
    (work / "dedup" / "stray.txt").write_text("left by hand")

    # up to date, yet redone from scratch; crawl (before --from) is kept as it is
    result = _pipeline(config, "--overwrite", "--from", "filter", "--until", "dedup")
    assert result.exit_code == 0, result.output
    assert "[filter] running" in result.output and "[dedup] running" in result.output
    assert "skipped" not in result.output and "[crawl]" not in result.output
    assert not (work / "filter" / "stray.txt").exists() and not (work / "dedup" / "stray.txt").exists()
    assert _snapshot(work / "crawl") == crawl_before
    assert (work / ".pipeline" / "crawl.json").read_text() == markers["crawl"]
    for stage in ("filter", "dedup"):
        assert _shards(work / stage) == shards[stage], stage  # deterministic: the same bytes again
        marker = json.loads((work / ".pipeline" / f"{stage}.json").read_text())
        assert marker["fingerprint"] == json.loads(markers[stage])["fingerprint"]
        assert (work / ".pipeline" / f"{stage}.json").read_text() != markers[stage]  # written anew (its seconds)
        assert _balanced(load_manifest(work / stage))

    # --overwrite still checks the stages before --from, and deletes nothing when that fails
    (work / ".pipeline" / "filter.json").unlink()
    before = _snapshot(work)
    result = _pipeline(config, "--overwrite", "--from", "dedup", "--until", "dedup")
    assert result.exit_code == 2 and "stage 'filter' has not completed" in result.output
    assert _snapshot(work) == before

    # without --from: every stage up to --until is redone, the ones after are left alone
    dedup_before = _snapshot(work / "dedup")
    result = _pipeline(config, "--overwrite", "--until", "crawl")
    assert result.exit_code == 0 and "[crawl] running" in result.output
    assert _shards(work / "crawl") == shards["crawl"]
    assert _snapshot(work / "dedup") == dedup_before


def test_overwrite_never_deletes_through_a_link(tmp_path):
    config = _config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.parquet").write_bytes(b"not the pipeline's")
    (tmp_path / "work" / "ckpt").mkdir(parents=True)
    (tmp_path / "work" / "crawl").symlink_to(elsewhere)
    result = _pipeline(config, "--overwrite", "--until", "crawl")
    assert result.exit_code == 2 and "is a symbolic link" in result.output
    assert (elsewhere / "keep.parquet").read_bytes() == b"not the pipeline's"
    assert (tmp_path / "work" / "crawl").is_symlink() and not (tmp_path / "work" / ".pipeline").exists()
    # a link further up (work/ckpt -> elsewhere) is refused the same way
    (tmp_path / "work" / "crawl").unlink()
    (tmp_path / "work" / "ckpt").rmdir()
    (tmp_path / "work" / "ckpt").symlink_to(elsewhere)
    pipe = load_pipeline(config)
    from curate.core.errors import CurateError
    from curate.workflow.state import overwrite_targets

    with pytest.raises(CurateError, match="ckpt is a symbolic link"):
        overwrite_targets(pipe, ["crawl", "pretrain"])
    assert overwrite_targets(pipe, ["crawl", "filter"]) == [tmp_path / "work" / "crawl", tmp_path / "work" / "filter"]


def test_a_stage_left_with_other_settings_points_to_pipeline_overwrite(tmp_path):
    config = _config(tmp_path)
    work = tmp_path / "work"
    assert _pipeline(config, "--until", "crawl").exit_code == 0
    # as if the crawl had been interrupted (no marker), then its settings changed
    (work / ".pipeline" / "crawl.json").unlink()
    config.write_text(config.read_text().replace("[crawl]\n", "[crawl]\nset = { extract = { mode = 'full' } }\n", 1))
    result = _pipeline(config, "--until", "filter")
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert "different configuration" in line
    assert "rerun the pipeline with --overwrite --from crawl --until filter" in line
    assert "another output directory" not in line and "[filter]" not in result.output
    result = _pipeline(config, "--overwrite", "--from", "crawl", "--until", "crawl")
    assert result.exit_code == 0, result.output
    assert _balanced(load_manifest(work / "crawl"))


def test_overwrite_marks_the_later_stages_out_of_date(tmp_path):
    """A stage redone with --overwrite keeps its fingerprint, so the stages after the range must
    not keep looking up to date on top of its old output: the next run redoes them."""
    config = _config(tmp_path)
    work = tmp_path / "work"
    assert _pipeline(config, "--until", "tokenizer").exit_code == 0
    dedup_shards = _shards(work / "dedup")
    result = _pipeline(config, "--overwrite", "--until", "filter")
    assert result.exit_code == 0, result.output
    assert "[dedup] out of date" in result.output and "[tokenizer] out of date" in result.output
    assert (work / "dedup").is_dir()  # folders stay until a run redoes them
    for stage in ("dedup", "tokenizer"):
        assert json.loads((work / ".pipeline" / f"{stage}.json").read_text())["fingerprint"] == "stale"
    # --from past an out-of-date stage names it
    result = _pipeline(config, "--from", "mix", "--until", "mix")
    assert result.exit_code == 2 and "stage 'dedup' is out of date" in result.output and "--from dedup" in result.output
    # the next run keeps crawl and filter and redoes dedup and tokenizer
    result = _pipeline(config, "--until", "tokenizer")
    assert result.exit_code == 0, result.output
    assert "[crawl] up to date" in result.output and "[filter] up to date" in result.output
    assert "[dedup] running" in result.output and "[tokenizer] running" in result.output
    assert _shards(work / "dedup") == dedup_shards
    assert json.loads((work / ".pipeline" / "dedup.json").read_text())["fingerprint"] != "stale"


def test_paths_in_a_pipeline_file_are_relative_to_its_folder(tmp_path, monkeypatch):
    """Run from another folder, the sample pipeline finds its inputs, chain, mix file and data
    (they are relative to samples/); --workdir on the command line is relative to the cwd."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    pipe = load_pipeline(ROOT / "samples" / "pipeline.toml", workdir="w")
    assert pipe.workdir == Path("w")
    samples = str(ROOT / "samples")
    assert pipe.built["crawl"][1] == [f"{samples}/warc"]
    assert pipe.tables["filter"]["config"] == f"{samples}/filters.toml"
    mix = pipe.built["mix"]
    assert [s.paths for s in mix.sources] == [["w/dedup"]] + [
        [f"{samples}/{n}"] for n in ("books", "papers", "code", "conversations")
    ]
    assert pipe.built["sft"][1] == f"{samples}/sft/qa.jsonl"
    result = CliRunner().invoke(
        cli, ["pipeline", str(ROOT / "samples" / "pipeline.toml"), "--until", "crawl", "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    assert (elsewhere / "work" / "crawl" / "manifest.json").exists()  # the default workdir: ./work


def test_workdir_written_in_the_file_is_relative_to_it(tmp_path):
    cfg = _beside_samples(tmp_path, 'workdir = "out/work"\n' + (ROOT / "samples" / "pipeline.toml").read_text())
    assert load_pipeline(cfg).workdir == tmp_path / "out" / "work"
    # URLs and Common Crawl snapshot names are not paths.
    text = (
        (ROOT / "samples" / "pipeline.toml")
        .read_text()
        .replace(
            'inputs = ["warc"]', 'inputs = ["CC-MAIN-2024-10", "https://host/a.warc.gz", "s3://b/c.warc.gz", "warc"]'
        )
    )
    cfg = _beside_samples(tmp_path, text)
    assert load_pipeline(cfg, workdir=str(tmp_path / "w")).built["crawl"][1] == [
        "CC-MAIN-2024-10",
        "https://host/a.warc.gz",
        "s3://b/c.warc.gz",
        str(tmp_path / "warc"),
    ]


# --------------------------------------------------------------------------- --engine ray


def test_data_stages_on_ray_write_what_local_workers_write(tmp_path):
    """`--engine ray` runs crawl to mix as Ray tasks (a local Ray instance here) and writes the
    same files as local worker processes, so a cluster run can be checked against a laptop's."""
    pytest.importorskip("ray")
    local, ray_run = tmp_path / "local", tmp_path / "ray"
    for base in (local, ray_run):
        base.mkdir()
    configs = {}
    for base in (local, ray_run):
        configs[base] = base / "pipeline.toml"
        configs[base].write_text(REDUCED.format(workdir=base / "work", root=ROOT))
    assert _pipeline(configs[local], "--until", "mix").exit_code == 0
    result = _pipeline(configs[ray_run], "--until", "mix", "--engine", "ray")
    assert result.exit_code == 0, result.output
    for stage in ("crawl", "filter", "dedup", "mix"):
        a, b = _shards(local / "work" / stage), _shards(ray_run / "work" / stage)
        assert a and a.keys() == b.keys(), stage
        assert all(a[k] == b[k] for k in a), stage
    tok = "tokenizer/tokenizer.json"
    assert (local / "work" / tok).read_bytes() == (ray_run / "work" / tok).read_bytes()
    for stage in ("crawl", "filter", "dedup", "mix"):
        counts = [load_manifest(base / "work" / stage)["counts"] for base in (local, ray_run)]
        assert counts[0] == counts[1] and counts[0]["read"] > 0, stage


def test_ray_address_needs_the_ray_engine(tmp_path):
    result = _pipeline(_config(tmp_path), "--ray-address", "auto")
    assert result.exit_code != 0 and "--ray-address is used only with --engine ray" in result.output
