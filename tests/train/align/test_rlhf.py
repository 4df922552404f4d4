"""RLHF: PPO and RLOO raise a rule-based reward on held-out prompts with the KL to the
reference staying bounded; reward placement, response masks, prompt reading, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.errors import ConfigError
from train.align.rlhf import RLHFConfig, ppo_targets, rlhf, rloo_targets
from train.align.rollout import Rollout
from train.checkpoint import load_checkpoint

LOWER = set("abcdefghijklmnopqrstuvwxyz")


def lowercase_share(prompts, responses):
    """Rule-based reward: the share of a response's characters that are lowercase letters."""
    return [sum(c in LOWER for c in r) / max(1, len(r)) for r in responses]


def prompts_file(path, n=60):
    path.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
    return path


@pytest.mark.parametrize("algo", ["ppo", "rloo"])
def test_rl_raises_heldout_reward_with_bounded_kl(tmp_path, algo, tiny_checkpoint):
    policy = tiny_checkpoint(tmp_path / "policy", block_size=48, stage="sft", kind="policy")
    prompts = prompts_file(tmp_path / "prompts.jsonl")
    cfg = RLHFConfig(
        algo=algo,
        batch_size=8 if algo == "ppo" else 4,
        rloo_k=4,
        max_steps=20,
        max_new_tokens=12,
        kl_coef=0.05,
        eval_every=0,
        val_fraction=0.2,
        eval_samples=2,
        log_every=5,
        seed=0,
    )
    cfg.optim.lr = 1e-2
    out = tmp_path / algo
    res = rlhf(cfg, policy, prompts, out, reward=lowercase_share, progress=False)
    before, after = res.first_eval, res.eval
    assert res.held_out > 5
    assert after["val_score"] > before["val_score"] + 0.05, (before, after)
    # bounded: far below the ~27 nats of a policy collapsed onto lowercase letters
    assert before["val_kl"] == 0.0 and 0.0 < after["val_kl"] < 5.0, after
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = lines[-1]
    for key in ("score", "reward", "kl", "entropy", "response_len", "pg_loss"):
        assert key in logged
    assert ("vf_loss" in logged) == (algo == "ppo")
    ckpt = load_checkpoint(out, with_optimizer=True)
    assert ckpt.kind == "policy" and ckpt.meta["stage"] == f"rlhf-{algo}" and ckpt.meta["algo"] == algo
    assert ckpt.meta["training_cutoff"] == "2026-01-01"
    assert ("critic" in ckpt.train_state) == (algo == "ppo")


def test_rlhf_resume_matches_uninterrupted_run(tmp_path, tiny_checkpoint):
    policy = tiny_checkpoint(tmp_path / "policy", block_size=48, stage="sft", kind="policy")
    prompts = prompts_file(tmp_path / "prompts.jsonl", 12)
    cfg = RLHFConfig(batch_size=2, max_steps=3, max_new_tokens=4, eval_every=0, val_fraction=0.0, seed=1)
    cfg.optim.lr = 1e-3
    first = rlhf(cfg, policy, prompts, tmp_path / "a", reward=lowercase_share, progress=False, stop_at_step=2)
    assert first.status == "stopped"
    rest = rlhf(cfg, policy, prompts, tmp_path / "a", reward=lowercase_share, progress=False)
    assert rest.start_step == 2 and rest.step == 3
    rlhf(cfg, policy, prompts, tmp_path / "b", reward=lowercase_share, progress=False)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)


def _rollout(mask, logp, ref, scores):
    B, R = mask.shape
    return Rollout(
        sequences=torch.zeros(B, R + 1, dtype=torch.long),
        attention=torch.ones(B, R + 1),
        prompt_len=1,
        mask=mask,
        logprobs=logp * mask,
        ref_logprobs=ref * mask,
        entropy=torch.zeros(B, R),
        scores=scores,
        ended=torch.ones(B, dtype=torch.bool),
        responses=[""] * B,
    )


def test_ppo_score_lands_on_last_response_token():
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    logp = torch.full((2, 4), -1.0)
    ref = torch.full((2, 4), -1.5)  # k1 = 0.5 per token
    cfg = RLHFConfig(kl_coef=0.1, whiten_advantages=False, gamma=1.0, lam=1.0)
    rewards, adv, _ret = ppo_targets(_rollout(mask, logp, ref, torch.tensor([2.0, -1.0])), torch.zeros(2, 4), cfg)
    assert torch.allclose(rewards[0], torch.tensor([-0.05, -0.05, 2.0 - 0.05, 0.0]))
    assert torch.allclose(rewards[1], torch.tensor([-1.0 - 0.05, 0.0, 0.0, 0.0]))
    # with V = 0 and gamma = lam = 1 the advantage is the reward still to come
    assert torch.allclose(adv[0, :3], torch.tensor([1.85, 1.9, 1.95]))


def test_rloo_targets_leave_one_out():
    mask = torch.ones(4, 2)
    zero = torch.zeros(4, 2)
    cfg = RLHFConfig(algo="rloo", rloo_k=2, kl_coef=0.0, whiten_advantages=False)
    _seq, adv = rloo_targets(_rollout(mask, zero, zero, torch.tensor([1.0, 0.0, 3.0, 3.0])), cfg)
    assert torch.allclose(adv[:, 0], torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_config_errors():
    with pytest.raises(ConfigError, match="kl_estimator"):
        RLHFConfig(kl_estimator="k2").validate()
    with pytest.raises(ConfigError, match="rloo_k"):
        RLHFConfig(algo="rloo", rloo_k=1).validate()


def test_all_prompts_held_out_falls_back_to_no_heldout_eval(tmp_path, tiny_checkpoint):
    """When every prompt hashes into the held-out slice, train on them and report no held-out
    scores (they would be scores on training prompts)."""
    policy = tiny_checkpoint(tmp_path / "policy", block_size=48, stage="sft", kind="policy")
    prompts = prompts_file(tmp_path / "prompts.jsonl", 3)  # their hashes are all below 0.99
    cfg = RLHFConfig(batch_size=2, max_steps=1, max_new_tokens=4, eval_every=0, val_fraction=0.99, seed=1)
    out = tmp_path / "rl"
    res = rlhf(cfg, policy, prompts, out, reward=lowercase_share, progress=False)
    assert res.examples == 3 and res.held_out == 0
    assert any("no held-out evaluation" in note and "all 3 prompt(s)" in note for note in res.notes)
    assert res.first_eval == {} and res.eval == {} and res.step == 1
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines and not any("val_score" in line for line in lines)
