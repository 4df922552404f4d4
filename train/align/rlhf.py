"""RLHF: improve a policy against a reward, with PPO (value head, GAE) or RLOO.

    curate train rlhf --policy work/ckpt/sft --reward work/ckpt/rm --prompts samples/prompts.jsonl \\
        -o work/ckpt/rlhf [--algo ppo|rloo] [--kl-coef 0.05] [--kl-estimator k1|k3]

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

Differences from the papers: no adaptive KL controller (a fixed ``kl_coef``, as in most
recent recipes), no pretraining-loss mix (PPO-ptx), and the value model starts from the
policy rather than from the reward model, so policy and reward model may use different
tokenizers (responses are scored as text).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from curate.core.errors import ConfigError, InputError
from curate.core.tokenizer import Tokenizer

from ..chat import decode_response, encode_prompt
from ..chat import end_id as chat_end_id
from ..checkpoint import Checkpoint
from ..model import GPT
from ..runtime import autocast_context, resolve_dtype, seed_everything, select_device
from .data import HeldOutSplit, Skipped, read_records
from .losses import (
    entropy_from_logits,
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    rloo_advantages,
)
from .reward import RewardScorer, ScalarHeadModel
from .stage import (
    AlignOptim,
    StageConfig,
    StageResult,
    StageRun,
    check_positive,
    load_lm_weights,
    load_policy,
    optimizer_step,
    run_steps,
)

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


@dataclass
class RLHFConfig(StageConfig):
    """RLHF settings: the shared stage fields (see :class:`train.align.stage.StageConfig`;
    ``batch_size`` counts prompts, ``val_fraction`` the prompts held out) plus sampling,
    KL penalty and PPO/RLOO settings."""

    optim: AlignOptim = field(default_factory=lambda: AlignOptim(lr=1e-5, warmup_steps=0))
    max_steps: int = 100
    eval_every: int = 20  # 0 = only at the start and the end
    log_every: int = 1
    algo: str = "ppo"  # ppo | rloo
    rloo_k: int = 4  # samples per prompt (rloo)
    max_new_tokens: int = 32  # response length cap
    max_prompt_len: int | None = None  # default: block_size - max_new_tokens (prompt cut from the left)
    temperature: float = 1.0
    top_k: int | None = None
    kl_coef: float = 0.05
    kl_estimator: str = "k1"  # k1 | k3
    gamma: float = 1.0
    lam: float = 0.95
    clip_range: float = 0.2
    vf_clip_range: float = 0.2
    vf_coef: float = 0.1
    ppo_epochs: int = 2  # passes over each rollout batch
    minibatches: int = 1  # per pass
    whiten_advantages: bool = True
    missing_end_penalty: float | None = None  # added to the score of responses cut at max_new_tokens
    eval_samples: int = 2  # responses per held-out prompt

    def validate(self) -> None:
        super().validate()
        check_positive(self, ["max_new_tokens", "ppo_epochs", "minibatches", "eval_samples", "max_prompt_len", "top_k"])
        check_positive(self, ["kl_coef", "vf_coef"], minimum=0)
        if self.algo not in ("ppo", "rloo"):
            raise ConfigError(f"algo must be ppo or rloo, got {self.algo!r}")
        if self.kl_estimator not in ("k1", "k3"):
            raise ConfigError(f"kl_estimator must be k1 or k3, got {self.kl_estimator!r}")
        if self.algo == "rloo" and self.rloo_k < 2:
            raise ConfigError(f"rloo_k must be at least 2, got {self.rloo_k}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive for sampling, got {self.temperature}")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def samples_per_prompt(self) -> int:
        return self.rloo_k if self.algo == "rloo" else 1


# =============================================================================== prompts


@dataclass
class Prompt:
    text: str  # what the reward sees as the prompt (the last user turn)
    messages: list[dict[str, str]]


def read_prompts(path: str | Path) -> tuple[list[Prompt], Skipped]:
    """Prompts from JSONL/Parquet (``prompt`` string or a ``messages`` list ending with a
    user turn; rows of comparisons work too) or a ``.txt`` file (one prompt per line)."""
    path = Path(path)
    skipped = Skipped()
    prompts: list[Prompt] = []
    if path.suffix == ".txt":
        if not path.exists():
            raise InputError(f"{path}: no such file")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                prompts.append(Prompt(line.strip(), [{"role": "user", "content": line.strip()}]))
    else:
        for where, row in read_records(path, "prompt", skipped):
            msgs = row.get("messages")
            if isinstance(row.get("prompt"), str) and row["prompt"].strip():
                prompts.append(Prompt(row["prompt"], [{"role": "user", "content": row["prompt"]}]))
            elif (
                isinstance(msgs, list)
                and msgs
                and all(isinstance(m, dict) for m in msgs)
                and msgs[-1].get("role") == "user"
                and isinstance(msgs[-1].get("content"), str)
            ):
                prompts.append(
                    Prompt(msgs[-1]["content"], [{"role": m.get("role"), "content": m.get("content")} for m in msgs])
                )
            else:
                skipped.add("needs a 'prompt' string or 'messages' ending with a user turn", where)
    if not prompts:
        raise InputError(f"{path}: no usable prompts")
    return prompts, skipped


# =============================================================================== rollouts


@dataclass
class Rollout:
    """One batch of sampled responses and everything the update needs, all (B, R) or (B,)."""

    sequences: torch.Tensor  # (B, P + R) left-padded prompt + response
    attention: torch.Tensor  # (B, P + R) 1 = real token
    prompt_len: int  # P
    mask: torch.Tensor  # (B, R) response tokens up to and including <|end|>
    logprobs: torch.Tensor  # (B, R) under the sampling policy
    ref_logprobs: torch.Tensor
    entropy: torch.Tensor  # (B, R)
    scores: torch.Tensor  # (B,)
    ended: torch.Tensor  # (B,) bool
    responses: list[str]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        attn[i, width - len(s) :] = 1
    return ids, attn


def response_token_logits(
    model: GPT, sequences: torch.Tensor, attention: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    """Logits predicting each response token: (B, R, V)."""
    logits, _ = model(sequences[:, :-1], attention_mask=attention[:, :-1])
    return logits[:, prompt_len - 1 :].float()


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(torch.log_softmax(logits, dim=-1), -1, tokens.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def sample_responses(
    policy: GPT,
    prompt_ids: Sequence[Sequence[int]],
    cfg: RLHFConfig,
    tokenizer: Tokenizer,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """(sequences, attention, prompt_len, response mask, ended) for one batch of prompts."""
    end = chat_end_id(tokenizer)
    ids, attn = left_pad(prompt_ids, tokenizer.pad_id)
    ids, attn = ids.to(device), attn.to(device)
    out = policy.generate(
        ids,
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        eos_id=end,
        pad_id=tokenizer.pad_id,
        generator=generator,
        attention_mask=attn,
    )
    prompt_len = ids.shape[1]
    response = out[:, prompt_len:]
    is_end = (response == end).long()
    # Response tokens: everything up to and including the first <|end|>.
    mask = ((is_end.cumsum(1) - is_end) == 0).long()
    ended = is_end.sum(1) > 0
    attention = torch.cat([attn, mask], dim=1)
    return out, attention, prompt_len, mask, ended


@torch.no_grad()
def make_rollout(
    policy: GPT,
    reference: GPT,
    prompts: Sequence[Prompt],
    cfg: RLHFConfig,
    tokenizer: Tokenizer,
    reward_fn: RewardFn,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
    max_prompt_len: int,
) -> Rollout:
    prompt_ids = [encode_prompt(p.messages, tokenizer, max_len=max_prompt_len) for p in prompts]
    was_training = policy.training
    policy.eval()
    with autocast_context(device, dtype):
        seqs, attention, prompt_len, mask, ended = sample_responses(
            policy, prompt_ids, cfg, tokenizer, generator, device
        )
        logits = response_token_logits(policy, seqs, attention, prompt_len)
        ref_logits = response_token_logits(reference, seqs, attention, prompt_len)
    policy.train(was_training)
    tokens = seqs[:, prompt_len:]
    logprobs = gather_logprobs(logits, tokens)
    ref_logprobs = gather_logprobs(ref_logits, tokens)
    entropy = entropy_from_logits(logits)
    responses = [decode_response(row, tokenizer) for row in tokens.tolist()]
    scores = torch.tensor(
        [float(s) for s in reward_fn([p.text for p in prompts], responses)], dtype=torch.float32, device=device
    )
    if scores.shape[0] != len(prompts):
        raise ConfigError(f"the reward returned {scores.shape[0]} scores for {len(prompts)} responses")
    if cfg.missing_end_penalty is not None:
        scores = torch.where(ended, scores, scores + cfg.missing_end_penalty)
    fmask = mask.float()
    return Rollout(
        seqs,
        attention,
        prompt_len,
        fmask,
        logprobs * fmask,
        ref_logprobs * fmask,
        entropy * fmask,
        scores,
        ended,
        responses,
    )


# =============================================================================== the run


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum(1)


def ppo_targets(
    roll: Rollout, values: torch.Tensor, cfg: RLHFConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-token rewards, advantages, returns) for PPO."""
    kl = kl_penalty(roll.logprobs, roll.ref_logprobs, cfg.kl_estimator) * roll.mask
    rewards = -cfg.kl_coef * kl
    last = (_lengths(roll.mask).long() - 1).clamp(min=0)
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


class _Models(nn.Module):
    """Policy and (PPO) value model under one optimizer."""

    def __init__(self, policy: GPT, critic: ScalarHeadModel | None):
        super().__init__()
        self.policy = policy
        self.critic = critic


@torch.no_grad()
def evaluate_policy(
    policy: GPT,
    reference: GPT,
    prompts: Sequence[Prompt],
    cfg: RLHFConfig,
    tokenizer: Tokenizer,
    reward_fn: RewardFn,
    device: torch.device,
    dtype: torch.dtype,
    max_prompt_len: int,
) -> dict[str, float] | None:
    """Mean score and KL on held-out prompts, sampled with a fixed seed (so two evals differ
    only by the policy)."""
    if not prompts:
        return None
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 7919)
    scores, kls, lengths = [], [], []
    expanded = [p for p in prompts for _ in range(cfg.eval_samples)]
    for start in range(0, len(expanded), max(cfg.batch_size * cfg.samples_per_prompt, 1)):
        batch = expanded[start : start + cfg.batch_size * cfg.samples_per_prompt]
        roll = make_rollout(
            policy, reference, batch, cfg, tokenizer, reward_fn, generator, device, dtype, max_prompt_len
        )
        scores.append(roll.scores)
        kls.append((roll.logprobs - roll.ref_logprobs).sum(1))
        lengths.append(_lengths(roll.mask))
    return {
        "val_score": float(torch.cat(scores).mean()),
        "val_kl": float(torch.cat(kls).mean()),
        "val_response_len": float(torch.cat(lengths).float().mean()),
    }


def ppo_update(
    roll: Rollout,
    policy: GPT,
    critic: ScalarHeadModel | None,
    models: nn.Module,
    optimizer: torch.optim.Optimizer,
    order: torch.Generator,
    cfg: RLHFConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """``ppo_epochs`` passes of the clipped policy loss (plus, for PPO, the clipped value loss)
    over one rollout in ``minibatches``; (sequence rewards, per-update stats)."""
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
        perm_mb = torch.randperm(n, generator=order)
        for mb_start in range(0, n, mb_size):
            idx = perm_mb[mb_start : mb_start + mb_size].to(device)
            with autocast_context(device, dtype):
                logits = response_token_logits(policy, roll.sequences[idx], roll.attention[idx], roll.prompt_len)
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
            grad_norm = optimizer_step(loss, models, optimizer, cfg.optim.grad_clip)
            stats.setdefault("pg_loss", []).append(pg_loss.item())
            stats.setdefault("clipfrac", []).append(float(pg_info["clipfrac"]))
            stats.setdefault("approx_kl", []).append(float(pg_info["approx_kl"]))
            stats.setdefault("grad_norm", []).append(grad_norm)
    return seq_rewards, stats


def rlhf(
    config: RLHFConfig,
    policy_path: str | Path,
    prompts_path: str | Path,
    output: str | Path,
    *,
    reward: str | Path | RewardFn,
    overwrite: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    on_message: Callable[[str], None] | None = None,
) -> StageResult:
    """Optimise the policy at ``policy_path`` against ``reward`` (a reward-model checkpoint path
    or a callable ``reward(prompts, responses) -> scores``) on the prompts at ``prompts_path``."""
    config.validate()
    device = select_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    seed_everything(config.seed)
    policy, policy_ckpt, tokenizer = load_policy(policy_path, device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    block = policy.config.block_size
    if config.max_new_tokens >= block:
        raise ConfigError(f"max_new_tokens {config.max_new_tokens} must be below the model's block_size ({block})")
    max_prompt_len = config.max_prompt_len or block - config.max_new_tokens
    if max_prompt_len + config.max_new_tokens > block:
        raise ConfigError(
            f"max_prompt_len + max_new_tokens ({max_prompt_len + config.max_new_tokens}) exceeds "
            f"the model's block_size ({block})"
        )
    reward_name = reward if isinstance(reward, (str, Path)) else getattr(reward, "__name__", type(reward).__name__)
    reward_fn: RewardFn = RewardScorer(reward, device) if isinstance(reward, (str, Path)) else reward

    critic = None
    if config.algo == "ppo":
        critic = ScalarHeadModel(policy.config).to(device)
        critic.trunk.load_state_dict(policy.state_dict())
    models = _Models(policy, critic)

    run = StageRun(
        f"rlhf-{config.algo}",
        output,
        overwrite=overwrite,
        parent=policy_ckpt,
        config=config,
        data=prompts_path,
        say=on_message,
    )
    prompts, skipped = read_prompts(prompts_path)
    split = HeldOutSplit(config.val_fraction)
    for prompt in prompts:
        split.add(prompt.text, prompt)
    if not split.train:
        # Too few prompts to hold any out: train on all of them, and do not report scores on
        # training prompts as held-out ones.
        run.note(
            f"all {len(prompts)} prompt(s) fell in the held-out slice (val_fraction "
            f"{config.val_fraction}): training on all of them, with no held-out evaluation"
        )
    elif not split.held:
        run.note("no held-out prompts (too few prompts or val_fraction = 0): no held-out evaluation")
    train_prompts, held, _ = split.finish(prompts_path, "prompts", skipped)
    max_steps = config.max_steps
    generator = torch.Generator(device=device).manual_seed(config.seed)

    def load_state(ckpt: Checkpoint) -> None:
        load_lm_weights(policy, ckpt)
        if critic is not None:
            if "critic" not in ckpt.train_state:
                raise InputError(f"{ckpt.path}: has no value model state to resume PPO from")
            critic.load_export(ckpt.train_state["critic"], str(ckpt.path), require_head=True)
        generator.set_state(ckpt.train_state["generator"])

    optimizer, result = run.begin(
        models,
        config,
        device,
        max_steps=max_steps,
        examples=len(train_prompts),
        held_out=len(held),
        skipped=skipped,
        load_model=load_state,
    )
    order = torch.Generator().manual_seed(config.seed)

    def step_fn(step: int) -> dict[str, float]:
        # Prompt batch: a seeded permutation per pass over the training prompts (pure
        # function of the step, like the other stages, so resume needs only the step).
        per_epoch = max(1, len(train_prompts) // config.batch_size)
        epoch, offset = divmod(step, per_epoch)
        order.manual_seed(config.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train_prompts), generator=order).tolist()
        picked = [train_prompts[perm[(offset * config.batch_size + i) % len(perm)]] for i in range(config.batch_size)]
        batch = [p for p in picked for _ in range(config.samples_per_prompt)]
        roll = make_rollout(
            policy, reference, batch, config, tokenizer, reward_fn, generator, device, dtype, max_prompt_len
        )
        seq_rewards, stats = ppo_update(roll, policy, critic, models, optimizer, order, config, device, dtype)
        kl_seq = (roll.logprobs - roll.ref_logprobs).sum(1)
        return {
            "score": float(roll.scores.mean()),
            "reward": float(seq_rewards.mean()),
            "kl": float(kl_seq.mean()),
            "entropy": float(masked_mean(roll.entropy, roll.mask)),
            "response_len": float(_lengths(roll.mask).float().mean()),
            "ended": float(roll.ended.float().mean()),
            **{k: sum(v) / len(v) for k, v in stats.items()},
        }

    def save_fn(step: int) -> Path:
        extra_state: dict[str, Any] = {"generator": generator.get_state()}
        if critic is not None:
            extra_state["critic"] = critic.export_state()
        return run.save(
            step,
            model_state=policy.state_dict(),
            model_config=policy.config.to_dict(),
            kind="policy",
            optimizer=optimizer,
            tokenizer=tokenizer,
            extra_state=extra_state,
            extra_meta={"algo": config.algo, "reward": str(reward_name), "val_score": result.eval.get("val_score")},
        )

    models.train()
    return run_steps(
        run,
        result,
        config,
        optimizer,
        step_fn=step_fn,
        eval_fn=lambda: evaluate_policy(
            policy, reference, held, config, tokenizer, reward_fn, device, dtype, max_prompt_len
        ),
        save_fn=save_fn,
        stop_at_step=stop_at_step,
        progress=progress,
    )
