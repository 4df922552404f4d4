"""``curate eval`` end to end: eval.json in the step folder, shown by ``curate inspect`` and
``curate report``; results independent of the batch size; user tasks; one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curate.cli import cli
from train.eval import EvalConfig, run_eval


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_eval_writes_eval_json_shown_by_inspect_and_report(tmp_path, tiny_checkpoint):
    step = tiny_checkpoint(tmp_path / "run")
    before = invoke("inspect", tmp_path / "run")
    assert before.exit_code == 0 and "eval            none yet" in before.output
    result = invoke("eval", tmp_path / "run", "--tasks", "arc_easy,copa", "--limit", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "arc_easy" in result.output and "CORE (mean centered accuracy over 2 task(s))" in result.output
    saved = json.loads((step / "eval.json").read_text())
    assert saved["core"]["tasks"] == ["arc_easy", "copa"]
    assert saved["tasks"]["copa"]["n"] == 4 and saved["settings"]["limit"] == 4
    assert saved["checkpoint"]["path"] == str(step) and len(saved["checkpoint"]["weights_sha256"]) == 64
    assert saved["core"]["centered_mean"] == pytest.approx(
        (saved["tasks"]["arc_easy"]["centered"] + saved["tasks"]["copa"]["centered"]) / 2
    )
    assert set(saved["definitions"]) >= {"acc", "acc_norm", "centered", "bpb"}
    shown = invoke("inspect", tmp_path / "run")
    assert shown.exit_code == 0
    assert "stage           pretrain (kind lm)" in shown.output
    assert "CORE (mean centered accuracy over 2 task(s))" in shown.output
    assert shown.output.index("arc_easy") < shown.output.index("copa")  # the order they ran in
    as_json = json.loads(invoke("inspect", step, "--json").output)
    assert as_json["eval"]["tasks"]["arc_easy"]["n"] == 4
    report = invoke("report", tmp_path / "run", "-o", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert report.exit_code == 0 and "<h2>Evaluation</h2>" in page and "copa" in page


def test_task_results_do_not_depend_on_batch_size(tmp_path, tiny_checkpoint):
    step = tiny_checkpoint(tmp_path / "run", block_size=128)
    runs = [
        run_eval(step, EvalConfig(tasks="piqa,winogrande,mmlu", limit=12, shots=1, batch_size=b, device="cpu"))
        for b in (1, 7)
    ]
    assert runs[0]["tasks"] == runs[1]["tasks"]
    assert runs[0]["core"] == runs[1]["core"]


def test_user_task_from_jsonl_on_the_command_line(tmp_path, tiny_checkpoint, write_task, toy_records):
    tiny_checkpoint(tmp_path / "run")
    task = write_task(tmp_path / "sky.jsonl", toy_records)
    result = invoke("eval", tmp_path / "run", "--tasks", task, "--no-bpb", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    results = json.loads(result.output.split("\nwritten: ")[0])
    assert results["tasks"]["sky"]["n"] == 8 and results["tasks"]["sky"]["random"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "nonsense"], "error: unknown task 'nonsense'"),
        (["--limit", "0"], "error: eval: limit = 0 is out of range; allowed: an integer >= 1"),
        (["--shots", "-1"], "error: eval: shots = -1 is out of range"),
        (["--batch-size", "0"], "error: eval: batch_size = 0 is out of range"),
        (["--tasks", "none", "--stride", "65"], "error: stride 65 is larger than the model's block size 64"),
        (["--tasks", "none", "--mix", "/no/such/mix"], "error: /no/such/mix: no such mix folder"),
        (["--tasks", "none", "--no-bpb"], "error: eval: nothing to do"),
    ],
)
def test_one_line_errors(tmp_path, tiny_checkpoint, args, message):
    tiny_checkpoint(tmp_path / "run")
    extra = ["--text", str(tmp_path / "t.jsonl")] if "--stride" in args else []
    (tmp_path / "t.jsonl").write_text('{"text": "' + "words " * 40 + '"}\n')
    result = invoke("eval", tmp_path / "run", *args, *extra, "--device", "cpu")
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


def test_reward_checkpoint_is_refused_in_one_line(tmp_path, tiny_checkpoint):
    tiny_checkpoint(tmp_path / "rm", stage="reward", kind="reward")
    result = invoke("eval", tmp_path / "rm", "--tasks", "copa", "--limit", "2", "--device", "cpu")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "is a reward model: its trunk is trained to output a score" in result.output
    assert not list((tmp_path / "rm").rglob("eval.json"))


def test_missing_checkpoint_and_task_list(tmp_path):
    result = invoke("eval", tmp_path / "nothing")
    assert result.exit_code == 2 and "no such checkpoint" in result.output
    listed = invoke("eval", "--list-tasks")
    assert listed.exit_code == 0 and "mmlu" in listed.output and "(few-shot: dev)" in listed.output


def test_inspect_on_a_non_checkpoint_folder_is_unchanged(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("inspect", tmp_path / "empty")
    assert result.exit_code == 2 and "no .parquet shards here" in result.output


def test_config_from_a_pipeline_table():
    from curate.core.config import from_dict
    from curate.core.errors import ConfigError

    config = from_dict(EvalConfig, {"tasks": ["arc_easy", "piqa"], "limit": 50, "text": ["extra"]}, where="[eval]")
    assert config.task_spec == "arc_easy,piqa" and config.limit == 50
    assert EvalConfig(tasks=" none ").task_spec is None
    with pytest.raises(ConfigError, match=r"\[eval\]: val_fraction = 0.0 is out of range"):
        from_dict(EvalConfig, {"val_fraction": 0.0}, where="[eval]")
    with pytest.raises(ConfigError, match="unknown key 'shot'"):
        from_dict(EvalConfig, {"shot": 5}, where="[eval]")
    with pytest.raises(ConfigError, match="tasks is empty"):
        EvalConfig(tasks=" , ").validate()
