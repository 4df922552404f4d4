"""Pure loss functions for the alignment stages (reward model, PPO/RLOO, DPO/IPO).

Every function here takes plain tensors and returns tensors: no models, no optimisers, no
I/O, so each one can be checked against numbers worked out by hand (tests/train/align/test_losses.py).
Shapes follow one convention: per-sequence quantities are ``(B,)``, per-token quantities are
``(B, T)`` with a float ``mask`` of the same shape (1 = a response token that counts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bradley_terry_loss",
    "dpo_loss",
    "entropy_from_logits",
    "gae",
    "ipo_loss",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "ppo_policy_loss",
    "ppo_value_loss",
    "preference_loss",
    "rloo_advantages",
    "token_logprobs",
]


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty, not NaN)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n > 1:
            var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``x`` to zero mean / unit variance over the masked positions (PPO advantage
    whitening). Masked-out positions come back as 0 so they cannot leak into a later sum."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


# --- reward model -------------------------------------------------------------------------


def bradley_terry_loss(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """``-log sigmoid(r_chosen - r_rejected - margin)`` averaged over pairs.

    The optional margin (Llama 2's reward model) asks for a wider gap on pairs the raters
    marked as a clear preference; 0 gives the plain Bradley–Terry likelihood.
    """
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


# --- PPO ----------------------------------------------------------------------------------


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped surrogate objective, as a loss to minimise.

    ``loss = mean(max(-A * ratio, -A * clip(ratio, 1-eps, 1+eps)))`` over masked tokens, with
    ``ratio = exp(logprobs - old_logprobs)``. Also returns the clip fraction and the
    approximate KL between old and new policy (k3 estimator), useful to watch a run.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ``0.5 * mean(max((V - R)^2, (clip(V, V_old ± eps) - R)^2))``.

    Clipping the value update around the rollout's values keeps the value head from jumping
    on one batch (the same trust region idea as the policy clip).
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return loss, {"vf_clipfrac": clipfrac}


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    * ``k1``: ``log p - log q``; unbiased, can be negative on single tokens.
    * ``k3``: ``(q/p - 1) - log(q/p)``; unbiased and always >= 0, lower variance
      (Schulman, "Approximating KL divergence").
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        neg = -log_ratio
        return torch.exp(neg) - 1 - neg
    raise ValueError(f"unknown KL estimator {estimator!r} (k1 or k3)")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's response tokens.

    ``rewards``/``values``/``mask`` are ``(B, T)``; the mask marks the response tokens, which
    must be one contiguous run per row (padding after). Returns ``(advantages, returns)``
    with ``returns = advantages + values``; both are 0 outside the mask.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    with ``V`` and ``A`` beyond the last response token taken as 0 (the episode ends).
    """
    B, T = rewards.shape
    mask = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = adv * m
        # A masked position passes nothing back: the next real token sees V=0, A=0.
        next_value = values[:, t] * m
        next_adv = adv * m
    returns = (advantages + values) * mask
    return advantages, returns


# --- RLOO ---------------------------------------------------------------------------------


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out: ``rewards`` is ``(P, k)`` (k samples per prompt); each
    sample's baseline is the mean reward of the other ``k - 1`` samples of its prompt."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    total = rewards.sum(-1, keepdim=True)
    baseline = (total - rewards) / (k - 1)
    return rewards - baseline


# --- DPO / IPO ----------------------------------------------------------------------------


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct preference optimisation (Rafailov et al. 2023).

    ``loss = -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``, per pair, averaged.
    ``label_smoothing`` > 0 is the conservative variant (assumes that fraction of labels is
    flipped). Returns ``(loss, chosen_rewards, rejected_rewards)`` where the implicit rewards
    are ``beta * (pi - ref)`` (detached), whose difference is the margin to watch.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    return losses.mean(), (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity preference optimisation (Azar et al. 2023): regress the log-ratio gap onto
    ``1 / (2 beta)`` instead of pushing it to infinity, so it cannot overfit a deterministic
    preference: ``loss = ((pi_c - ref_c) - (pi_r - ref_r) - 1/(2 beta))^2``.

    Callers normally pass per-token *average* log-probs here (as the IPO paper's derivation
    and TRL do), so the target gap does not depend on length.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    losses = (chosen_ratio - rejected_ratio - 1.0 / (2.0 * beta)) ** 2
    return losses.mean(), (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def preference_loss(kind: str, *args, beta: float = 0.1, label_smoothing: float = 0.0):
    """``dpo_loss`` or ``ipo_loss`` by name."""
    if kind == "dpo":
        return dpo_loss(*args, beta=beta, label_smoothing=label_smoothing)
    if kind == "ipo":
        return ipo_loss(*args, beta=beta)
    raise ValueError(f"unknown preference loss {kind!r} (dpo or ipo)")


# --- helpers over logits ------------------------------------------------------------------


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[tokens]`` per position: logits ``(B, T, V)``, tokens ``(B, T)``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return torch.gather(logp, -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of the softmax over the last dim."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
