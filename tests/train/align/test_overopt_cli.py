"""The over-optimization watch from the command line: `train reward --half/--by-group`,
`train rlhf --holdout-reward --stop-on-divergence`, one-line errors for bad flags, and
`curate inspect` / `curate report` on the run (the over-optimization plot)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from curate.cli import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_reward_half_and_by_group_flags(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base", block_size=48)
    data = tmp_path / "c.jsonl"
    rows = [
        {"prompt": f"p{i}", "chosen": f"fine {i}", "rejected": f"no {i}", "group": ["en", "fr"][i % 2]}
        for i in range(60)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["--device", "cpu", "--quiet", "--steps", "2", "--batch-size", "4", "--set", "val_fraction=0.3"]
    kept = []
    for half in (0, 1):
        r = invoke(
            "train",
            "reward",
            "--base",
            base,
            "--data",
            data,
            "-o",
            tmp_path / f"rm{half}",
            "--half",
            half,
            "--by-group",
            *common,
        )
        assert r.exit_code == 0, r.output
        kept.append(int(re.search(rf"half {half} \(seed 0\): (\d+) comparison", r.output).group(1)))
        assert re.search(r"held-out accuracy by rater group: en \d+\.\d% of \d+, fr \d+\.\d% of \d+", r.output)
    assert sum(kept) == 60 and min(kept) > 0
    r = invoke("inspect", tmp_path / "rm1")
    assert (
        r.exit_code == 0 and f"1 of the comparisons (seed 0): {kept[1]} kept, {kept[0]} in the other half" in r.output
    )
    assert re.search(r"group en\s+held-out accuracy \d+\.\d% of \d+ \(\d+ training\)", r.output)

    r = invoke("train", "reward", "--base", base, "--data", data, "-o", tmp_path / "bad", "--half", "2", *common)
    assert r.exit_code == 2 and "--half" in r.output and "Traceback" not in r.output
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "group"}) + "\n" for row in rows))
    r = invoke("train", "reward", "--base", base, "--data", plain, "-o", tmp_path / "g", "--by-group", *common)
    assert r.exit_code == 2 and r.output.startswith("error: ") and "no comparison has a 'group'" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_rlhf_watch_from_the_command_line(tmp_path, length_reward, short_policy, question_prompts):
    long_rm = length_reward(tmp_path / "rm-long")
    short_rm = length_reward(tmp_path / "rm-short", sign=-1.0)
    policy = short_policy(tmp_path / "policy")
    prompts = question_prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "rlhf"
    args = ["train", "rlhf", "--policy", policy, "--reward", long_rm, "--prompts", prompts, "-o", out]
    settings = ["--algo", "rloo", "--rloo-k", "2", "--batch-size", "4", "--max-new-tokens", "16", "--kl-coef", "0"]
    settings += ["--steps", "20", "--lr", "1e-2", "--seed", "0", "--device", "cpu", "--quiet"]
    settings += ["--set", "eval_every=2", "--set", "val_fraction=0.25", "--set", "optim.warmup_steps=0"]

    r = invoke(*args, *settings, "--stop-on-divergence", "2")
    assert (
        r.exit_code == 2 and r.output == "error: --stop-on-divergence needs --holdout-reward (the reward it watches)\n"
    )
    r = invoke(*args, *settings, "--holdout-reward", short_rm, "--stop-on-divergence", "0")
    assert r.exit_code == 2 and "--stop-on-divergence" in r.output and "Traceback" not in r.output

    r = invoke(*args, *settings, "--holdout-reward", short_rm, "--stop-on-divergence", "2")
    assert r.exit_code == 0, r.output
    assert "note: stopped at step" in r.output and "note: RLHF lowered the held-out reward" in r.output
    assert "held-out val_score" in r.output and "val_holdout_score" in r.output
    assert f"checkpoint: {out / 'best' / 'step-000000'}" in r.output
    assert "best by held-out reward: step 0" in r.output

    r = invoke("inspect", out)
    assert r.exit_code == 0, r.output
    for label in (
        "reward          optimized",
        "held-out reward",
        "KL to reference",
        "response length",
        "best (held-out)",
    ):
        assert label in r.output
    assert re.search(r"stopped\s+at step \d+: held-out reward fell", r.output)
    r = invoke("inspect", out / "best")
    assert r.exit_code == 0 and "held-out reward" in r.output  # the best reads its run's log

    page = tmp_path / "report.html"
    r = invoke("report", out, "-o", page)
    assert r.exit_code == 0, r.output
    text = page.read_text()
    assert "Reward over-optimization" in text
    assert 'alt="optimized and held-out reward against KL"' in text and 'alt="response length against step"' in text
    assert "val_holdout_score" in text
    # the same run gives the same page
    invoke("report", out, "-o", tmp_path / "again.html")
    assert (tmp_path / "again.html").read_text() == text
