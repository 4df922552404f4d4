"""Each alignment loss against numbers worked out by hand with plain ``math`` on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from train.align import losses as L


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def approx(x: torch.Tensor, expected: float, tol: float = 1e-9) -> None:
    assert abs(float(x) - expected) < tol, (float(x), expected)


def test_bradley_terry_plain_and_margin():
    rc = torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64)
    rr = torch.tensor([1.0, 1.5, -1.0], dtype=torch.float64)
    # diffs 1.0, -1.0, 0.0
    expected = -(math.log(sig(1.0)) + math.log(sig(-1.0)) + math.log(0.5)) / 3
    approx(L.bradley_terry_loss(rc, rr), expected)
    margin = torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64)
    expected_m = -(math.log(sig(0.5)) + math.log(sig(-1.0)) + math.log(sig(-1.0))) / 3
    approx(L.bradley_terry_loss(rc, rr, margin), expected_m)
    # A wider correct gap always lowers the loss.
    assert L.bradley_terry_loss(rc + 1, rr) < L.bradley_terry_loss(rc, rr)


def test_ppo_policy_loss_clips_both_sides():
    eps = 0.2
    # token 1: ratio e^0.5 = 1.6487, A=+1 -> clipped at 1.2 -> -1.2
    # token 2: ratio e^-0.5 = 0.6065, A=+1 -> unclipped -0.6065 is the max -> -0.6065
    # token 3: ratio e^-0.5, A=-2 -> max(2*0.6065, 2*0.8) = 1.6
    # token 4: masked out (would be huge)
    logp = t([0.5, -0.5], [-0.5, 3.0])
    old = t([0.0, 0.0], [0.0, 0.0])
    adv = t([1.0, 1.0], [-2.0, 100.0])
    mask = t([1, 1], [1, 0])
    loss, info = L.ppo_policy_loss(logp, old, adv, mask, clip_range=eps)
    r2 = math.exp(-0.5)
    expected = (-1.2 + -r2 + 1.6) / 3
    approx(loss, expected)
    # clipped term won on tokens 1 and 3
    approx(info["clipfrac"], 2 / 3)
    # gradient flows only through the unclipped token 2
    logp_g = logp.clone().requires_grad_(True)
    L.ppo_policy_loss(logp_g, old, adv, mask, clip_range=eps)[0].backward()
    g = logp_g.grad
    assert float(g[0, 0]) == 0.0 and float(g[1, 0]) == 0.0 and float(g[1, 1]) == 0.0
    approx(g[0, 1], -r2 / 3)


def test_ppo_value_loss_clipped():
    # V_old=1, V=2, R=3, eps=0.2: unclipped (2-3)^2=1, clipped V=1.2 -> (1.2-3)^2=3.24 -> 3.24
    # V_old=0, V=0.1, R=0: unclipped 0.01, clipped 0.1 (inside range) -> 0.01
    values = t([2.0, 0.1])
    old = t([1.0, 0.0])
    ret = t([3.0, 0.0])
    mask = t([1, 1])
    loss, info = L.ppo_value_loss(values, old, ret, mask, clip_range=0.2)
    approx(loss, 0.5 * (3.24 + 0.01) / 2)
    approx(info["vf_clipfrac"], 0.5)


def test_kl_estimators():
    logp = t([math.log(0.5), math.log(0.2)])
    ref = t([math.log(0.25), math.log(0.4)])
    k1 = L.kl_penalty(logp, ref, "k1")
    approx(k1[0, 0], math.log(2.0))
    approx(k1[0, 1], math.log(0.5))
    k3 = L.kl_penalty(logp, ref, "k3")
    # r = q/p: 0.5 and 2.0;  k3 = r - 1 - log r
    approx(k3[0, 0], 0.5 - 1 - math.log(0.5))
    approx(k3[0, 1], 2.0 - 1 - math.log(2.0))
    assert bool((k3 >= 0).all())
    with pytest.raises(ValueError):
        L.kl_penalty(logp, ref, "k2")


def test_gae_by_hand():
    gamma, lam = 0.9, 0.8
    r = t([0.0, 0.0, 1.0, 0.0])
    v = t([0.5, 0.6, 0.7, 9.0])
    mask = t([1, 1, 1, 0])  # last position is padding
    adv, ret = L.gae(r, v, mask, gamma=gamma, lam=lam)
    d2 = 1.0 + 0.0 - 0.7  # terminal: V_3 treated as 0
    d1 = 0.0 + gamma * 0.7 - 0.6
    d0 = 0.0 + gamma * 0.6 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    for i, a in enumerate([a0, a1, a2]):
        approx(adv[0, i], a)
        approx(ret[0, i], a + [0.5, 0.6, 0.7][i])
    assert float(adv[0, 3]) == 0.0 and float(ret[0, 3]) == 0.0
    # gamma = lam = 1: the advantage is the sum of future rewards minus V_t
    adv1, _ = L.gae(r, v, mask, gamma=1.0, lam=1.0)
    approx(adv1[0, 0], 1.0 - 0.5)
    approx(adv1[0, 1], 1.0 - 0.6)


def test_whiten_and_masked_mean():
    x = t([1.0, 2.0, 3.0, 100.0])
    m = t([1, 1, 1, 0])
    approx(L.masked_mean(x, m), 2.0)
    w = L.masked_whiten(x, m)
    # mean 2, unbiased var 1 -> (-1, 0, 1), masked slot 0
    approx(w[0, 0], -1.0, 1e-6)
    approx(w[0, 1], 0.0, 1e-6)
    approx(w[0, 2], 1.0, 1e-6)
    assert float(w[0, 3]) == 0.0
    approx(L.masked_mean(x, torch.zeros_like(m)), 0.0)


def test_rloo_leave_one_out():
    rewards = t([1.0, 2.0, 6.0], [0.0, 0.0, 3.0])
    adv = L.rloo_advantages(rewards)
    approx(adv[0, 0], 1.0 - (2 + 6) / 2)
    approx(adv[0, 1], 2.0 - (1 + 6) / 2)
    approx(adv[0, 2], 6.0 - (1 + 2) / 2)
    approx(adv[1, 2], 3.0 - 0.0)
    with pytest.raises(ValueError):
        L.rloo_advantages(t([1.0]))


def test_dpo_loss_by_hand():
    pc, pr = torch.tensor([-10.0, -5.0], dtype=torch.float64), torch.tensor([-12.0, -4.0], dtype=torch.float64)
    rc, rr = torch.tensor([-11.0, -5.0], dtype=torch.float64), torch.tensor([-11.0, -5.0], dtype=torch.float64)
    beta = 0.5
    # pair 1: (1) - (-1) = 2 -> logits 1.0;  pair 2: 0 - 1 = -1 -> logits -0.5
    loss, cr, rj = L.dpo_loss(pc, pr, rc, rr, beta=beta)
    approx(loss, -(math.log(sig(1.0)) + math.log(sig(-0.5))) / 2)
    approx(cr[0], 0.5)
    approx(rj[0], -0.5)
    approx(cr[1], 0.0)
    approx(rj[1], 0.5)
    ls, _, _ = L.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=0.1)
    exp_ls = (
        -(0.9 * math.log(sig(1.0)) + 0.1 * math.log(sig(-1.0))) - (0.9 * math.log(sig(-0.5)) + 0.1 * math.log(sig(0.5)))
    ) / 2
    approx(ls, exp_ls)


def test_ipo_loss_by_hand():
    pc, pr = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([-2.0], dtype=torch.float64)
    rc, rr = torch.tensor([-1.5], dtype=torch.float64), torch.tensor([-1.5], dtype=torch.float64)
    beta = 0.25  # target gap 1/(2*0.25) = 2; actual gap 0.5 - (-0.5) = 1
    loss, _, _ = L.ipo_loss(pc, pr, rc, rr, beta=beta)
    approx(loss, (1.0 - 2.0) ** 2)
    # at the target gap the loss is zero (IPO does not push the gap to infinity)
    loss0, _, _ = L.ipo_loss(pc + 0.5, pr - 0.5, rc, rr, beta=beta)
    approx(loss0, 0.0)
    same, _, _ = L.preference_loss("ipo", pc, pr, rc, rr, beta=beta)
    approx(same, 1.0)


def test_token_logprobs_and_entropy():
    logits = torch.log(t([0.5, 0.25, 0.25])).unsqueeze(0)  # (1,1,3)
    tokens = torch.tensor([[1]])
    approx(L.token_logprobs(logits, tokens)[0, 0], math.log(0.25), 1e-6)
    approx(L.entropy_from_logits(logits)[0, 0], -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)), 1e-6)
