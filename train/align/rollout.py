"""RLHF rollouts: the current policy answers a batch of prompts, the reward scores the answers.

A :class:`Rollout` is everything an update needs from one batch: the sampled sequences, the
mask of response tokens (up to and including the first ``<|end|>``), per-token log-probs
under the sampling policy and the frozen reference, entropy, and the reward's scores.
:class:`Sampler` makes rollouts (:meth:`~Sampler.rollout`) and the held-out evaluation
(:meth:`~Sampler.evaluate`), which samples with a fixed seed so two evals differ only by the
policy. The reward is any ``reward(prompts, responses) -> scores`` callable: a
:class:`~train.align.reward.RewardScorer`, or a rule in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from curate.core.errors import ConfigError
from curate.core.tokenizer import Tokenizer

from ..chat import decode_response, encode_prompt
from ..chat import end_id as chat_end_id
from ..model import GPT
from ..runtime import autocast_context
from .data import Prompt, left_pad
from .losses import entropy_from_logits

if TYPE_CHECKING:  # annotations only: rlhf.py imports this module
    from .rlhf import RLHFConfig

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


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


def response_token_logits(
    model: GPT, sequences: torch.Tensor, attention: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    """Logits predicting each response token: (B, R, V)."""
    logits, _ = model(sequences[:, :-1], attention_mask=attention[:, :-1])
    return logits[:, prompt_len - 1 :].float()


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(torch.log_softmax(logits, dim=-1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def response_lengths(mask: torch.Tensor) -> torch.Tensor:
    return mask.sum(1)


@dataclass
class Sampler:
    """The policy answering prompts (cut from the left to ``max_prompt_len`` tokens) for the
    reward, with the reference's log-probs alongside for the KL penalty."""

    policy: GPT
    reference: GPT
    config: RLHFConfig
    tokenizer: Tokenizer
    reward_fn: RewardFn
    device: torch.device
    dtype: torch.dtype
    max_prompt_len: int

    @torch.no_grad()
    def sample(
        self, prompt_ids: Sequence[Sequence[int]], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """(sequences, attention, prompt_len, response mask, ended) for one batch of prompts."""
        cfg, tokenizer = self.config, self.tokenizer
        end = chat_end_id(tokenizer)
        ids, attn = left_pad(prompt_ids, tokenizer.pad_id)
        ids, attn = ids.to(self.device), attn.to(self.device)
        out = self.policy.generate(
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
    def rollout(self, prompts: Sequence[Prompt], generator: torch.Generator) -> Rollout:
        """Sample an answer to each prompt and score it (plus ``missing_end_penalty`` for an
        answer cut at ``max_new_tokens``)."""
        policy, tokenizer, device = self.policy, self.tokenizer, self.device
        prompt_ids = [encode_prompt(p.messages, tokenizer, max_len=self.max_prompt_len) for p in prompts]
        was_training = policy.training
        policy.eval()
        with autocast_context(device, self.dtype):
            seqs, attention, prompt_len, mask, ended = self.sample(prompt_ids, generator)
            logits = response_token_logits(policy, seqs, attention, prompt_len)
            ref_logits = response_token_logits(self.reference, seqs, attention, prompt_len)
        policy.train(was_training)
        tokens = seqs[:, prompt_len:]
        logprobs = gather_logprobs(logits, tokens)
        ref_logprobs = gather_logprobs(ref_logits, tokens)
        entropy = entropy_from_logits(logits)
        responses = [decode_response(row, tokenizer) for row in tokens.tolist()]
        scores = torch.tensor(
            [float(s) for s in self.reward_fn([p.text for p in prompts], responses)],
            dtype=torch.float32,
            device=device,
        )
        if scores.shape[0] != len(prompts):
            raise ConfigError(f"the reward returned {scores.shape[0]} scores for {len(prompts)} responses")
        if self.config.missing_end_penalty is not None:
            scores = torch.where(ended, scores, scores + self.config.missing_end_penalty)
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

    @torch.no_grad()
    def evaluate(self, prompts: Sequence[Prompt]) -> dict[str, float] | None:
        """Mean score and KL on held-out prompts, sampled with a fixed seed (so two evals differ
        only by the policy)."""
        if not prompts:
            return None
        cfg = self.config
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 7919)
        scores, kls, lengths = [], [], []
        expanded = [p for p in prompts for _ in range(cfg.eval_samples)]
        for start in range(0, len(expanded), max(cfg.batch_size * cfg.samples_per_prompt, 1)):
            roll = self.rollout(expanded[start : start + cfg.batch_size * cfg.samples_per_prompt], generator)
            scores.append(roll.scores)
            kls.append((roll.logprobs - roll.ref_logprobs).sum(1))
            lengths.append(response_lengths(roll.mask))
        return {
            "val_score": float(torch.cat(scores).mean()),
            "val_kl": float(torch.cat(kls).mean()),
            "val_response_len": float(torch.cat(lengths).float().mean()),
        }
