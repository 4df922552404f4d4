"""The over-optimization watch of RLHF: a held-out reward that is logged and never enters the
loss, the per-step statistics, and the stop on divergence on a run built to diverge: a policy
optimized against a reward model that pays for length, watched by one that prefers brevity."""

from __future__ import annotations

import json

import pytest
import torch

from curate.core.errors import ConfigError, InputError
from train.align.overopt import BEST_DIR, DivergenceWatch, pearson, repeated_ngram_rate
from train.align.rlhf import RLHFConfig, rlhf
from train.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def metrics_of(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("time")
    return lines


def watch_config(algo: str, **overrides) -> RLHFConfig:
    cfg = RLHFConfig(
        algo=algo,
        batch_size=8 if algo == "ppo" else 4,
        rloo_k=2,
        max_steps=20,
        max_new_tokens=16,
        kl_coef=0.0,
        eval_every=2,
        val_fraction=0.25,
        eval_samples=2,
        log_every=1,
        seed=0,
        device="cpu",
        stop_on_divergence=2,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    cfg.optim.lr = 1e-2
    return cfg


def test_pearson_and_repeated_ngrams():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3], [5, 5, 5]) is None and pearson([1], [2]) is None
    # "a b c a b c": 4 3-grams, "a b c" twice -> 1 repeat; "x y" has none; 1 / 4 overall
    assert repeated_ngram_rate(["a b c a b c", "x y"]) == pytest.approx(0.25)
    assert repeated_ngram_rate(["one two three four"]) == 0.0 and repeated_ngram_rate(["", "a"]) == 0.0


def test_divergence_watch_rule():
    watch = DivergenceWatch(patience=2)
    steps = [(0, 0.0, 1.0), (2, 0.5, 1.4), (4, 0.9, 1.3), (6, 1.2, 1.1)]
    news = [watch.observe(*e) for e in steps]
    assert news == [True, True, False, False]
    assert watch.best == (2, 1.4) and watch.falling == 2 and watch.diverged
    assert watch.meta() == {
        "holdout_score_before": 1.0,
        "holdout_score_after": 1.1,
        "best_step": 2,
        "best_holdout_score": 1.4,
        "diverged_at": 6,
    }
    # the held-out reward falling while the optimized one falls too is not divergence
    falling_both = DivergenceWatch(patience=2)
    for e in [(0, 1.0, 1.0), (2, 0.8, 0.9), (4, 0.7, 0.8)]:
        falling_both.observe(*e)
    assert falling_both.falling == 2 and not falling_both.diverged
    # a rise in between restarts the count; patience 0 never stops
    bumpy = DivergenceWatch(patience=2)
    for e in [(0, 0.0, 1.0), (2, 1.0, 0.9), (4, 2.0, 0.95), (6, 3.0, 0.9)]:
        bumpy.observe(*e)
    assert bumpy.falling == 1 and not bumpy.diverged
    never = DivergenceWatch(patience=0)
    never.load(watch.state())
    assert never.evals == watch.evals and not never.diverged


@pytest.mark.parametrize("algo", ["ppo", "rloo"])
def test_holdout_reward_never_enters_the_loss(tmp_path, algo, monkeypatch, short_policy, question_prompts):
    """The same seed gives bit-identical gradients with and without a held-out reward, which is
    scored outside autograd and logged."""
    import train.align.stage as stage

    grads: list[list[torch.Tensor]] = []
    clip = stage.clip_gradients

    def recording_clip(model, max_norm):
        grads.append([p.grad.detach().clone() for p in model.parameters() if p.grad is not None])
        return clip(model, max_norm)

    monkeypatch.setattr(stage, "clip_gradients", recording_clip)
    policy = short_policy(tmp_path / "policy")
    prompts = question_prompts(tmp_path / "prompts.jsonl")
    scored_without_grad = []

    def length(prompts, responses):
        return [float(len(r)) for r in responses]

    def brevity(prompts, responses):
        scored_without_grad.append(not torch.is_grad_enabled())
        return [-2.0 * len(r) + 1.0 for r in responses]

    cfg = watch_config(algo, max_steps=3, stop_on_divergence=0)
    rlhf(cfg, policy, prompts, tmp_path / "plain", reward=length, progress=False)
    plain = grads[:]
    grads.clear()
    rlhf(cfg, policy, prompts, tmp_path / "watched", reward=length, holdout_reward=brevity, progress=False)
    assert len(plain) == len(grads) > 0
    assert all(torch.equal(a, b) for pa, pb in zip(plain, grads) for a, b in zip(pa, pb, strict=True))
    assert scored_without_grad and all(scored_without_grad)
    plain_ckpt, watched_ckpt = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "watched")
    assert all(torch.equal(plain_ckpt.model_state[k], watched_ckpt.model_state[k]) for k in plain_ckpt.model_state)

    plain_log, watched_log = metrics_of(tmp_path / "plain"), metrics_of(tmp_path / "watched")
    for line in watched_log[1:]:
        assert line["holdout_score"] != line["score"]
        for key in ("score", "kl", "response_len", "score_len_corr", "repeat_3gram", "holdout_len_corr"):
            assert key in line
    assert all("holdout_score" not in line for line in plain_log)
    # what both runs log agrees: the held-out reward changed nothing
    assert [line["score"] for line in plain_log[1:]] == [line["score"] for line in watched_log[1:]]
    assert "val_holdout_score" in watched_log[0] and watched_log[0]["best_step"] == 0


@pytest.mark.parametrize("algo", ["ppo", "rloo"])
def test_length_biased_reward_stops_on_divergence(tmp_path, algo, length_reward, short_policy, question_prompts):
    """Optimized against a reward model that pays for length, the policy answers longer: the
    optimized reward rises, a held-out model preferring short answers falls, and the run stops
    after two falling evals, keeping its best checkpoint by held-out reward."""
    long_rm = length_reward(tmp_path / "rm-long")
    short_rm = length_reward(tmp_path / "rm-short", sign=-1.0, scale=2.0)
    policy = short_policy(tmp_path / "policy")
    prompts = question_prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / algo
    notes: list[str] = []
    cfg = watch_config(algo)
    res = rlhf(
        cfg, policy, prompts, out, reward=long_rm, holdout_reward=short_rm, progress=False, on_message=notes.append
    )

    assert res.status == "diverged" and 4 <= res.step < cfg.max_steps
    log = metrics_of(out)
    evals = [line for line in log if "val_holdout_score" in line]
    assert [e["step"] for e in evals] == list(range(0, res.step + 1, 2))
    # the last two evals: held-out reward fell each time while the optimized one rose
    a, b, c = evals[-3:]
    assert c["val_holdout_score"] < b["val_holdout_score"] < a["val_holdout_score"]
    assert c["val_score"] > a["val_score"]
    assert c["val_response_len"] > evals[0]["val_response_len"]
    assert log[1]["score_len_corr"] > 0.5 and log[1]["holdout_len_corr"] < -0.5  # length drives both
    assert res.first_eval["val_holdout_score"] > res.eval["val_holdout_score"]

    # the best eval by held-out reward is the starting policy's, kept as the run's result
    assert res.eval["best_step"] == 0
    assert res.checkpoint == out / BEST_DIR / "step-000000"
    best = load_checkpoint(out / BEST_DIR)
    start = load_checkpoint(policy)
    assert all(torch.equal(best.model_state[k], start.model_state[k]) for k in start.model_state)
    assert (best.path / "consumed.parquet").exists() and "consumed" in best.meta  # lineage of the result
    last = load_checkpoint(out)
    assert last.meta["step"] == res.step and last.meta["diverged_at"] == res.step
    assert last.meta["best_step"] == 0 and last.meta["best_checkpoint"] == str(res.checkpoint)
    assert last.meta["holdout_score_before"] > last.meta["holdout_score_after"]
    assert last.meta["holdout_reward"] == str(short_rm)
    assert any("stopped at step" in n for n in notes) and any("lowered the held-out reward" in n for n in notes)

    # a rerun finds the run stopped and takes no step
    again = rlhf(cfg, policy, prompts, out, reward=long_rm, holdout_reward=short_rm, progress=False)
    assert again.status == "diverged" and again.step == res.step and again.checkpoint == res.checkpoint
    assert metrics_of(out) == log


def test_divergence_watch_resumes_where_it_stopped(tmp_path, length_reward, short_policy, question_prompts):
    """A run stopped between evals and resumed logs and stops exactly as the uninterrupted one."""
    long_rm = length_reward(tmp_path / "rm-long")
    short_rm = length_reward(tmp_path / "rm-short", sign=-1.0)
    policy = short_policy(tmp_path / "policy")
    prompts = question_prompts(tmp_path / "prompts.jsonl")
    cfg = watch_config("rloo")
    whole = rlhf(cfg, policy, prompts, tmp_path / "a", reward=long_rm, holdout_reward=short_rm, progress=False)
    first = rlhf(
        cfg, policy, prompts, tmp_path / "b", reward=long_rm, holdout_reward=short_rm, progress=False, stop_at_step=3
    )
    assert first.status == "stopped" and first.checkpoint.name == "step-000003"
    rest = rlhf(cfg, policy, prompts, tmp_path / "b", reward=long_rm, holdout_reward=short_rm, progress=False)
    assert (rest.status, rest.step, rest.eval["best_step"]) == (whole.status, whole.step, whole.eval["best_step"])
    assert metrics_of(tmp_path / "a") == metrics_of(tmp_path / "b")


def test_watch_settings_are_checked(tmp_path, short_policy, question_prompts):
    policy = short_policy(tmp_path / "policy")
    with pytest.raises(ConfigError, match="needs a held-out reward"):
        rlhf(watch_config("rloo"), policy, question_prompts(tmp_path / "p.jsonl"), tmp_path / "o", reward=len)
    with pytest.raises(ConfigError, match="eval_every"):
        watch_config("rloo", eval_every=0).validate()
    with pytest.raises(ConfigError, match="stop_on_divergence"):
        watch_config("rloo", stop_on_divergence=-1).validate()

    def length(prompts, responses):
        return [float(len(r)) for r in responses]

    with pytest.raises(InputError, match="needs held-out prompts"):
        rlhf(
            watch_config("rloo", val_fraction=0.0),
            policy,
            question_prompts(tmp_path / "p.jsonl"),
            tmp_path / "o",
            reward=length,
            holdout_reward=length,
            progress=False,
        )
