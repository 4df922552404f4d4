"""`curate train reward --half` and `--by-group`: two disjoint seeded halves that together are
the whole set (every pair of a prompt in the same one), recorded in the checkpoint; held-out
accuracy per rater group on a set whose groups want opposite things."""

from __future__ import annotations

import json

import pytest

from curate.core.errors import ConfigError, InputError
from curate.core.tokenizer import ByteTokenizer
from train.align.halves import Halves, half_of
from train.align.reward import RewardConfig, RewardScorer, evaluate_pairs, load_pairs, train_reward
from train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def comparisons(path, n_prompts: int = 40, per_prompt: int = 3, groups=None):
    """``per_prompt`` comparisons for each of ``n_prompts`` prompts; row j of a prompt gets
    ``groups[j % len(groups)]`` as its rater group when ``groups`` is given."""
    rows = []
    for i in range(n_prompts):
        for j in range(per_prompt):
            row = {"prompt": f"prompt {i}", "chosen": f"good answer {j}", "rejected": f"bad {j}"}
            if groups:
                row["group"] = groups[j % len(groups)]
            rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_halves_are_disjoint_cover_everything_and_keep_prompts_together(tmp_path):
    data = comparisons(tmp_path / "c.jsonl")
    tok = ByteTokenizer()
    seen = {}
    for half in (0, 1):
        keep = Halves(half, seed=7)
        train, held, _ = load_pairs(data, tok, 64, 0.2, 0.0, encode=lambda p, r: (p, r), keep=keep)
        seen[half] = [(p.chosen[0], p.chosen[1]) for p in train + held]
        assert keep.kept == len(seen[half]) and keep.kept + keep.left_out == 120
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == 120
    assert 30 <= len(seen[0]) <= 90  # a hash split, not all on one side
    for half in (0, 1):  # every comparison of a prompt is in the half of that prompt
        prompts = {p for p, _ in seen[half]}
        assert all(half_of(p, 7) == half for p in prompts)
        assert len(seen[half]) == 3 * len(prompts)
    # another seed is another split; the same seed the same one
    assert [half_of(f"prompt {i}", 7) for i in range(40)] != [half_of(f"prompt {i}", 8) for i in range(40)]
    assert [half_of(f"prompt {i}", 7) for i in range(40)] == [half_of(f"prompt {i}", 7) for i in range(40)]


def test_reward_half_is_recorded_and_kept_on_resume(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base", block_size=48)
    data = comparisons(tmp_path / "c.jsonl")
    cfg = RewardConfig(batch_size=4, max_steps=2, eval_every=0, val_fraction=0.2, seed=0, half=1, half_seed=3)
    res = train_reward(cfg, base, data, tmp_path / "rm", progress=False)
    meta = load_checkpoint(tmp_path / "rm").meta
    kept = sum(half_of(f"prompt {i}", 3) == 1 for i in range(40)) * 3
    assert meta["half"] == {"index": 1, "seed": 3, "comparisons": kept, "other_half": 120 - kept}
    assert meta["train_config"]["half"] == 1 and res.examples + res.held_out == kept
    assert any(f"half 1 (seed 3): {kept} comparison(s) kept" in n for n in res.notes)
    other = RewardConfig(batch_size=4, max_steps=3, eval_every=0, val_fraction=0.2, seed=0, half=0, half_seed=3)
    with pytest.raises(ConfigError, match="trained on half 1 \\(seed 3\\), not half 0"):
        train_reward(other, base, data, tmp_path / "rm", progress=False)
    with pytest.raises(ConfigError, match="half"):
        RewardConfig(half=2).validate()


def test_accuracy_per_rater_group(tmp_path, length_reward):
    """A reward model that prefers longer answers agrees with group "long" on every pair and
    with group "short" on none; rows without a group are their own group."""
    rows = []
    for i in range(12):
        longer, shorter = f"a much longer answer number {i}", f"short {i}"
        rows.append({"prompt": f"q{i}", "chosen": longer, "rejected": shorter, "group": "long"})
        rows.append({"prompt": f"q{i}", "chosen": shorter, "rejected": longer, "rater_group": "short"})
        rows.append({"prompt": f"q{i}", "chosen": f"{longer}!", "rejected": shorter, "group": ""})
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorer = RewardScorer(length_reward(tmp_path / "rm"))
    pairs, _, _ = load_pairs(data, scorer.tokenizer, 64, 0.0, 0.0)
    assert {p.group for p in pairs} == {"long", "short", None}
    val = evaluate_pairs(
        scorer.model,
        pairs,
        8,
        scorer.tokenizer.pad_id,
        scorer.device,
        scorer.model.trunk.tok_emb.weight.dtype,
        by_group=True,
    )
    assert val["val_accuracy[long]"] == 1.0 and val["val_accuracy[short]"] == 0.0
    assert val["val_accuracy[(no group)]"] == 1.0 and val["val_pairs[short]"] == 12
    assert val["val_accuracy"] == pytest.approx(2 / 3)


def test_train_reward_by_group_reports_and_records(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base", block_size=48)
    data = comparisons(tmp_path / "c.jsonl", groups=["north", "south"])
    cfg = RewardConfig(batch_size=4, max_steps=2, eval_every=0, val_fraction=0.3, seed=0, by_group=True)
    res = train_reward(cfg, base, data, tmp_path / "rm", progress=False)
    assert {"val_accuracy[north]", "val_accuracy[south]", "val_pairs[north]"} <= set(res.eval)
    held = res.eval["val_pairs[north]"] + res.eval["val_pairs[south]"]
    assert held == res.held_out
    groups = load_checkpoint(tmp_path / "rm").meta["group_accuracy"]
    assert set(groups) == {"north", "south"}
    assert groups["north"]["accuracy"] == res.eval["val_accuracy[north]"]
    assert groups["north"]["train"] + groups["south"]["train"] == res.examples
    logged = [json.loads(line) for line in (tmp_path / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert "val_accuracy[south]" in logged[-1]

    plain = comparisons(tmp_path / "plain.jsonl")
    with pytest.raises(InputError, match="no comparison has a 'group'"):
        train_reward(cfg, base, plain, tmp_path / "rm2", progress=False)
