"""RLHF: improve a policy against a reward, with PPO (value head, GAE) or RLOO.

    curate train rlhf --policy work/ckpt/sft --reward work/ckpt/rm --prompts samples/prompts.jsonl \\
        -o work/ckpt/rlhf [--algo ppo|rloo] [--kl-coef 0.05] [--kl-estimator k1|k3] \\
        [--holdout-reward work/ckpt/rm-half1 --stop-on-divergence 3]

Each step samples responses to a batch of prompts from the current policy, scores them with
the reward (a reward-model checkpoint from the CLI; any Python callable
``reward(prompts, responses) -> list[float]`` from the library, which is how the tests use a
rule-based reward), and updates the policy:

* **PPO** (InstructGPT / "N implementation details of RLHF"): per-token reward
  ``-kl_coef * KL_t`` against a frozen reference copy of the starting policy, plus the score
  on the last response token; a value model (the policy's trunk copied, with a zero-init
  scalar head) gives GAE advantages (whitened) and returns; ``ppo_epochs`` passes of the
  clipped policy loss plus ``vf_coef`` times the clipped value loss.
* **RLOO** (Ahmadian et al. 2024): ``rloo_k`` samples per prompt, sequence reward = score -
  ``kl_coef`` * summed KL, advantage = reward minus the mean of the other samples of the same
  prompt; no value model. The update uses the same clipped surrogate (on the first pass the
  ratio is 1 and it is plain REINFORCE).

The KL estimator is ``k1`` (log-ratio) or ``k3`` (always >= 0, lower variance). Each step
logs mean score, reward, KL (summed over the response, k1), entropy, response length, the
share of responses that ended with ``<|end|>``, losses and clip fractions; every
``eval_every`` steps the held-out prompts (a hash-chosen slice) are answered with a fixed
sampling seed and their mean score and KL logged. Checkpoints (kind "policy") resume exactly:
the value model and optimizer state ride along in the train state.

Over-optimization watch (:mod:`train.align.overopt`): every step and eval also logs the
correlation of the score with response length and the share of repeated word 3-grams; with a
held-out reward (``holdout_reward``, never in the loss) it logs that reward's score too, keeps
the policy of the best eval by held-out reward in ``RUN/best/`` (the run's result), and with
``stop_on_divergence`` N stops once the held-out reward has fallen for N evals in a row while
the optimized one rose.

Differences from the papers: no adaptive KL controller (a fixed ``kl_coef``, as in most
recent recipes), no pretraining-loss mix (PPO-ptx), and the value model starts from the
policy rather than from the reward model, so policy and reward model may use different
tokenizers (responses are scored as text).

The settings (:class:`RLHFConfig`, their defaults and allowed values) live in
:mod:`train.align.rlhf_config`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from curate.core.errors import ConfigError, InputError

from ..checkpoint import Checkpoint, step_dir_name
from ..model import GPT
from ..runtime import autocast_context
from .data import HeldOutSplit, Prompt, Skipped, read_prompts
from .losses import gae, kl_penalty, masked_mean, masked_whiten, ppo_policy_loss, ppo_value_loss, rloo_advantages
from .overopt import BEST_DIR, HoldoutReward, StopOnDivergence, Watcher, batch_stats, best_checkpoint
from .reward import RewardScorer, ScalarHeadModel
from .rlhf_config import RLHFConfig, prompt_budget
from .rollout import RewardFn, Rollout, Sampler, gather_logprobs, response_lengths, response_token_logits
from .stage import StageResult, StageRun, load_lm_weights, optimizer_step, run_steps

# =============================================================================== targets


def ppo_targets(
    roll: Rollout, values: torch.Tensor, cfg: RLHFConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token rewards, advantages, returns) for PPO."""
    kl = kl_penalty(roll.logprobs, roll.ref_logprobs, cfg.kl_estimator) * roll.mask
    rewards = -cfg.kl_coef * kl
    last = (response_lengths(roll.mask).long() - 1).clamp(min=0)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += roll.scores
    advantages, returns = gae(rewards, values * roll.mask, roll.mask, gamma=cfg.gamma, lam=cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, roll.mask)
    return rewards, advantages, returns


def rloo_targets(roll: Rollout, cfg: RLHFConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence rewards, per-token advantages) for RLOO; rows are grouped k per prompt."""
    kl = (kl_penalty(roll.logprobs, roll.ref_logprobs, cfg.kl_estimator) * roll.mask).sum(1)
    seq_rewards = roll.scores - cfg.kl_coef * kl
    adv = rloo_advantages(seq_rewards.view(-1, cfg.rloo_k)).reshape(-1)
    if cfg.whiten_advantages and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return seq_rewards, adv[:, None] * roll.mask


# =============================================================================== the run


class _Models(nn.Module):
    """Policy and (PPO) value model under one optimizer."""

    def __init__(self, policy: GPT, critic: ScalarHeadModel | None):
        super().__init__()
        self.policy = policy
        self.critic = critic


def reward_of(run: StageRun, reward: str | Path | RewardFn) -> tuple[RewardFn, str]:
    """(scoring function, name) of a reward-model checkpoint path or a callable."""
    if isinstance(reward, (str, Path)):
        return RewardScorer(run.resolve(reward), run.device), str(reward)
    return reward, getattr(reward, "__name__", type(reward).__name__)


class _Training:
    """One RLHF run's models, prompts and generators, and its step, update and checkpoint.

    The value model (PPO only) starts as a copy of the policy's trunk with a zero head.
    ``generator`` draws the rollouts' samples and ``order`` the prompt batches and minibatch
    order; both ride along in checkpoints (the prompt order is reseeded from the step), so a
    resumed run samples what the uninterrupted one would. ``watcher`` scores each rollout with
    the held-out reward after it is sampled and before the update, outside the graph.
    """

    def __init__(
        self,
        run: StageRun,
        policy_path: str | Path,
        reward: str | Path | RewardFn,
        holdout: str | Path | RewardFn | None = None,
    ):
        config: RLHFConfig = run.config  # type: ignore[assignment]
        self.run, self.config = run, config
        self.policy, tokenizer = run.load_parent(policy_path)
        reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        max_prompt_len = prompt_budget(config, self.policy.config.block_size)
        reward_fn, self.reward_name = reward_of(run, reward)
        held_out_reward = None
        if holdout is not None:
            # Loading a model draws its random init before the weights replace it: keep the
            # run's random state as it would be without the held-out reward.
            with torch.random.fork_rng(devices=[]):
                held_out_reward = HoldoutReward(*reward_of(run, holdout))
        self.watcher = Watcher(run, held_out_reward, config.stop_on_divergence)
        self.critic: ScalarHeadModel | None = None
        if config.algo == "ppo":
            self.critic = ScalarHeadModel(self.policy.config).to(run.device)
            self.critic.trunk.load_state_dict(self.policy.state_dict())
        self.models = _Models(self.policy, self.critic)
        self.sampler = Sampler(
            self.policy, reference, config, tokenizer, reward_fn, run.device, run.dtype, max_prompt_len
        )
        self.generator = torch.Generator(device=run.device).manual_seed(config.seed)
        self.order = torch.Generator().manual_seed(config.seed)
        self.train_prompts: list[Prompt] = []
        self.held: list[Prompt] = []

    def read_prompts(self, path: str | Path) -> Skipped:
        """Split the prompts at ``path`` into training and held-out ones; what was skipped."""
        prompts, skipped = read_prompts(path)
        split = HeldOutSplit(self.config.val_fraction)
        for prompt in prompts:
            split.add(prompt.text, prompt)
        if not split.train:
            # Too few prompts to hold any out: train on all of them, and do not report scores on
            # training prompts as held-out ones.
            self.run.note(
                f"all {len(prompts)} prompt(s) fell in the held-out slice (val_fraction "
                f"{self.config.val_fraction}): training on all of them, with no held-out evaluation"
            )
        elif not split.held:
            self.run.note("no held-out prompts (too few prompts or val_fraction = 0): no held-out evaluation")
        self.train_prompts, self.held, _ = split.finish(path, "prompts", skipped)
        return skipped

    def load_state(self, ckpt: Checkpoint) -> None:
        load_lm_weights(self.policy, ckpt)
        if self.critic is not None:
            if "critic" not in ckpt.train_state:
                raise InputError(f"{ckpt.path}: has no value model state to resume PPO from")
            self.critic.load_export(ckpt.train_state["critic"], str(ckpt.path), require_head=True)
        self.generator.set_state(ckpt.train_state["generator"])
        self.watcher.resume(ckpt.train_state)

    def step(self, step: int) -> dict[str, float | None]:
        self.watcher.start_step(step)
        config, prompts = self.config, self.train_prompts
        # Prompt batch: a seeded permutation per pass over the training prompts (pure
        # function of the step, like the other stages, so resume needs only the step).
        per_epoch = max(1, len(prompts) // config.batch_size)
        epoch, offset = divmod(step, per_epoch)
        self.order.manual_seed(config.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(prompts), generator=self.order).tolist()
        picked = [prompts[perm[(offset * config.batch_size + i) % len(perm)]] for i in range(config.batch_size)]
        expanded = [p for p in picked for _ in range(config.samples_per_prompt)]
        roll = self.sampler.rollout(expanded, self.generator)
        held = self.watcher.score(expanded, roll)
        seq_rewards, stats = self.update(roll)
        kl_seq = (roll.logprobs - roll.ref_logprobs).sum(1)
        watched = batch_stats([roll], [held] if held is not None else None)
        return {
            "score": float(roll.scores.mean()),
            **({"holdout_score": watched.pop("holdout_score")} if held is not None else {}),
            "reward": float(seq_rewards.mean()),
            "kl": float(kl_seq.mean()),
            "entropy": float(masked_mean(roll.entropy, roll.mask)),
            "response_len": float(response_lengths(roll.mask).float().mean()),
            "ended": float(roll.ended.float().mean()),
            **watched,
            **{k: sum(v) / len(v) for k, v in stats.items()},
        }

    def meta(self) -> dict[str, object]:
        """Checkpoint metadata of the run so far (see :meth:`DivergenceWatch.meta`)."""
        meta: dict[str, object] = {
            "algo": self.config.algo,
            "reward": str(self.reward_name),
            "val_score": self.run.result.eval.get("val_score") if self.run.result else None,
        }
        return {**meta, **self.watcher.meta()}

    def update(self, roll: Rollout) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """``ppo_epochs`` passes of the clipped policy loss (plus, for PPO, the clipped value loss)
        over one rollout in ``minibatches``; (sequence rewards, per-update stats)."""
        cfg, critic, device, dtype = self.config, self.critic, self.run.device, self.run.dtype
        tokens = roll.sequences[:, roll.prompt_len :]
        if critic is not None:
            with torch.no_grad(), autocast_context(device, dtype):
                old_values = critic.values(roll.sequences[:, :-1], roll.attention[:, :-1])[:, roll.prompt_len - 1 :]
            old_values = old_values.float() * roll.mask
            seq_rewards_tok, advantages, returns = ppo_targets(roll, old_values, cfg)
            seq_rewards = seq_rewards_tok.sum(1)
        else:
            seq_rewards, advantages = rloo_targets(roll, cfg)
            returns = old_values = None

        stats: dict[str, list[float]] = {}
        n = roll.sequences.shape[0]
        mb_size = max(1, n // cfg.minibatches)
        for _ in range(cfg.ppo_epochs):
            perm_mb = torch.randperm(n, generator=self.order)
            for mb_start in range(0, n, mb_size):
                idx = perm_mb[mb_start : mb_start + mb_size].to(device)
                with autocast_context(device, dtype):
                    logits = response_token_logits(
                        self.policy, roll.sequences[idx], roll.attention[idx], roll.prompt_len
                    )
                new_logp = gather_logprobs(logits, tokens[idx])
                pg_loss, pg_info = ppo_policy_loss(
                    new_logp, roll.logprobs[idx], advantages[idx], roll.mask[idx], cfg.clip_range
                )
                loss = pg_loss
                if critic is not None:
                    with autocast_context(device, dtype):
                        values = critic.values(roll.sequences[idx, :-1], roll.attention[idx, :-1])
                    values = values[:, roll.prompt_len - 1 :].float()
                    vf_loss, vf_info = ppo_value_loss(
                        values, old_values[idx], returns[idx], roll.mask[idx], cfg.vf_clip_range
                    )
                    loss = loss + cfg.vf_coef * vf_loss
                    stats.setdefault("vf_loss", []).append(vf_loss.item())
                    stats.setdefault("vf_clipfrac", []).append(float(vf_info["vf_clipfrac"]))
                grad_norm = optimizer_step(loss, self.models, self.run.optimizer, cfg.optim.grad_clip)
                stats.setdefault("pg_loss", []).append(pg_loss.item())
                stats.setdefault("clipfrac", []).append(float(pg_info["clipfrac"]))
                stats.setdefault("approx_kl", []).append(float(pg_info["approx_kl"]))
                stats.setdefault("grad_norm", []).append(grad_norm)
        return seq_rewards, stats

    def save(self, step: int) -> Path:
        extra_state: dict[str, Any] = {"generator": self.generator.get_state(), "watch": self.watcher.state()}
        if self.critic is not None:
            extra_state["critic"] = self.critic.export_state()
        meta = self.meta()
        if self.watcher.holdout is not None:
            best = best_checkpoint(self.run.output)
            meta["best_checkpoint"] = str(best) if best is not None else None
        return self.run.save(
            step,
            model_state=self.policy.state_dict(),
            model_config=self.policy.config.to_dict(),
            kind="policy",
            extra_state=extra_state,
            extra_meta=meta,
        )


def rlhf(
    config: RLHFConfig,
    policy_path: str | Path,
    prompts_path: str | Path,
    output: str | Path,
    *,
    reward: str | Path | RewardFn,
    holdout_reward: str | Path | RewardFn | None = None,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> StageResult:
    """Optimise the policy at ``policy_path`` against ``reward`` (a reward-model checkpoint path
    or a callable ``reward(prompts, responses) -> scores``) on the prompts at ``prompts_path``;
    ``holdout_reward`` (the same kinds) is watched, never optimized (:mod:`train.align.overopt`).

    With a held-out reward the result's ``checkpoint`` is the best one by held-out reward
    (``RUN/best/step-N``) once the run is done or stopped on divergence (status
    ``"diverged"``); ``first_eval``/``eval`` hold ``val_holdout_score`` before and after, and
    ``eval`` the best eval's ``best_step`` and ``best_val_holdout_score``."""
    if config.stop_on_divergence and holdout_reward is None:
        raise ConfigError("stop_on_divergence needs a held-out reward (--holdout-reward)")
    with StageRun(f"rlhf-{config.algo}", config, output, overwrite=overwrite, data=prompts_path, say=on_message) as run:
        run.dir.extra_dirs = (*run.dir.extra_dirs, BEST_DIR)  # --overwrite removes the best checkpoint too
        training = _Training(run, policy_path, reward, holdout_reward)
        run.open()
        skipped = training.read_prompts(prompts_path)
        run.track(
            training.train_prompts,
            lambda p: len(run.tokenizer.encode(p.text)) * config.samples_per_prompt,
            counts=lambda step: prompt_counts(len(training.train_prompts), config.batch_size, step, config.seed),
        )
        if holdout_reward is not None and not training.held:
            if config.stop_on_divergence:
                raise InputError(
                    f"{prompts_path}: stop_on_divergence needs held-out prompts to evaluate "
                    f"(none fell in the held-out slice; raise val_fraction or add prompts)"
                )
            run.note("no held-out prompts: the held-out reward is logged on training batches only, no best is kept")
        result = run.begin(
            training.models,
            max_steps=config.max_steps,
            examples=len(training.train_prompts),
            held_out=len(training.held),
            skipped=skipped,
            load_model=training.load_state,
        )[1]
        watcher = training.watcher
        if watcher.watch.diverged:  # resumed from the checkpoint written where it stopped
            run.note(f"{run.output} already stopped on divergence at step {run.start_step:,}")
            return watcher.finish(result, config.stop_on_divergence)
        training.models.train()
        started = time.monotonic()
        try:
            result = run_steps(
                run,
                step_fn=training.step,
                eval_fn=lambda: watcher.evaluate(training.sampler, training.held, training.policy, training.meta()),
                save_fn=training.save,
                stop_at_step=stop_at_step,
                progress=progress,
            )
        except StopOnDivergence:
            # The step after the diverging eval was refused before it changed anything:
            # checkpoint that eval's step (where a rerun finds the run stopped).
            if result.checkpoint is None or result.checkpoint.name != step_dir_name(result.step):
                result.checkpoint = training.save(result.step)
            result.elapsed_s = time.monotonic() - started
        return watcher.finish(result, config.stop_on_divergence)


def prompt_counts(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """How many times each of ``n`` training prompts is picked in steps 0 .. ``steps`` - 1, in
    the order :meth:`_Training.step` draws them (keep the two alike): a seeded permutation
    per pass, ``batch_size`` prompts a step. What consumed.parquet records."""
    per_epoch = max(1, n // batch_size)
    counts = np.zeros(n, dtype=np.int32)
    order, perm, perm_epoch = torch.Generator(), np.arange(n), None
    for step in range(steps):
        epoch, offset = divmod(step, per_epoch)
        if epoch != perm_epoch:
            order.manual_seed(seed * 1_000_003 + epoch)
            perm, perm_epoch = torch.randperm(n, generator=order).numpy(), epoch
        np.add.at(counts, perm[(offset * batch_size + np.arange(batch_size)) % n], 1)
    return counts
