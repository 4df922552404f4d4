"""The settings of an RLHF run (:class:`RLHFConfig`): the shared stage fields plus sampling,
the KL penalty and PPO/RLOO, with their allowed values, and the tokens a prompt may keep so
that it and its answer fit the policy's context (:func:`prompt_budget`). train/align/rlhf.py
runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from curate.core.errors import ConfigError
from curate.core.ranges import COUNT, NON_NEGATIVE, POSITIVE, RATIO, SIZE, Range

from .config import AlignOptim, StageConfig


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
    stop_on_divergence: int = 0  # stop once the held-out reward fell for this many evals in a row (0 = never)

    bounds: ClassVar[dict[str, Range]] = {
        **StageConfig.bounds,
        **dict.fromkeys(
            ("max_new_tokens", "max_prompt_len", "top_k", "ppo_epochs", "minibatches", "eval_samples"), SIZE
        ),
        "stop_on_divergence": COUNT,
        "rloo_k": Range(2),  # a leave-one-out baseline needs another sample of the same prompt
        "temperature": POSITIVE,  # sampling: 0 would be greedy, and every rollout the same
        **dict.fromkeys(("kl_coef", "vf_coef"), NON_NEGATIVE),
        **dict.fromkeys(("gamma", "lam"), RATIO),
        **dict.fromkeys(("clip_range", "vf_clip_range"), NON_NEGATIVE),
    }

    def validate(self, who: str | None = None) -> None:
        super().validate(who)
        if self.algo not in ("ppo", "rloo"):
            raise ConfigError(f"algo must be ppo or rloo, got {self.algo!r}")
        if self.kl_estimator not in ("k1", "k3"):
            raise ConfigError(f"kl_estimator must be k1 or k3, got {self.kl_estimator!r}")
        if self.stop_on_divergence and not self.eval_every:
            raise ConfigError("stop_on_divergence needs evals during the run: set eval_every above 0")

    @property
    def samples_per_prompt(self) -> int:
        return self.rloo_k if self.algo == "rloo" else 1


def prompt_budget(cfg: RLHFConfig, block: int) -> int:
    """Tokens a prompt may keep (cut from the left) so that it and the answer fit ``block``."""
    if cfg.max_new_tokens >= block:
        raise ConfigError(f"max_new_tokens {cfg.max_new_tokens} must be below the model's block_size ({block})")
    max_prompt_len = cfg.max_prompt_len or block - cfg.max_new_tokens
    if max_prompt_len + cfg.max_new_tokens > block:
        raise ConfigError(
            f"max_prompt_len + max_new_tokens ({max_prompt_len + cfg.max_new_tokens}) exceeds "
            f"the model's block_size ({block})"
        )
    return max_prompt_len
