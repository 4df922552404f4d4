"""Ratings collected with `curate rate` feed the reward trainer directly (export schema)."""

from __future__ import annotations

from test_rate_core import rate_all, write_pairs
from test_reward import tiny_base

from curate.rate.export import export_ratings
from curate.rate.session import Rater, RatingSession
from train.reward import RewardConfig, train_reward


def test_exported_ratings_train_a_reward_model(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.parquet", 24)
    with RatingSession(tmp_path / "ratings", pairs, [Rater("ann", "a" * 20)]) as session:
        # ann prefers response_1 (shown as A or B depending on the randomized order)
        rate_all(session, "ann", lambda pid, view: "a" if view["a"].startswith("answer one") else "b")
    stats = export_ratings(tmp_path / "ratings", tmp_path / "comparisons.parquet")
    assert stats.exported == 24

    base = tiny_base(tmp_path / "base")
    cfg = RewardConfig(max_steps=2, batch_size=4, eval_every=0, val_fraction=0.25)
    result = train_reward(cfg, base, tmp_path / "comparisons.parquet", tmp_path / "rm", progress=False)
    assert result.step == 2 and result.examples + result.held_out == 24
    assert result.checkpoint is not None and (result.checkpoint / "model.safetensors").exists()
