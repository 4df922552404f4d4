"""train/model.py: the GPT's forward pass, padding, GQA, sampling and KV-cache generation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.model import GPT, PRESETS, GPTConfig, sample_next


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    config = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32)
    config.update(overrides)
    return GPT(GPTConfig(**config)).eval()


def test_forward_shapes_and_loss_is_mean_cross_entropy():
    model = tiny()
    idx = torch.randint(0, 50, (3, 10))
    targets = torch.randint(0, 50, (3, 10))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, 50)
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1)))
    # -100 targets and loss_mask zeros are left out of the mean.
    ignored = targets.clone()
    ignored[:, :4] = -100
    _, loss_ignored = model(idx, ignored)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[:, :4] = 0
    _, loss_masked = model(idx, targets, loss_mask=mask)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, 50), targets[:, 4:].reshape(-1))
    assert torch.allclose(loss_ignored, expected) and torch.allclose(loss_masked, expected)
    # No target at all: zero, not NaN, and still differentiable.
    _, none = model(idx, torch.full_like(targets, -100))
    assert none.item() == 0.0 and none.requires_grad


def test_hidden_states_feed_the_lm_head():
    model = tiny()
    idx = torch.randint(0, 50, (2, 7))
    hidden = model.hidden_states(idx)
    assert hidden.shape == (2, 7, 32)
    assert torch.allclose(model.lm_head(hidden), model(idx)[0], atol=1e-6)


def test_causality_future_tokens_do_not_change_past_logits():
    model = tiny()
    idx = torch.randint(0, 50, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 50
    a, b = model(idx)[0], model(changed)[0]
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8:], b[0, 8:])


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_left_padding_matches_the_unpadded_sequence(n_kv_head):
    model = tiny(n_kv_head=n_kv_head)
    seq = torch.randint(0, 50, (1, 9))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), seq], dim=1)
    mask = torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], dim=1)
    batch = torch.cat([padded, torch.randint(0, 50, (1, 14))])
    batch_mask = torch.cat([mask, torch.ones(1, 14, dtype=torch.long)])
    logits, _ = model(batch, attention_mask=batch_mask)
    alone, _ = model(seq)
    # Same positions (RoPE counts from the first real token) and no attention to padding.
    assert torch.allclose(logits[0, 5:], alone[0], atol=1e-5)
    assert torch.allclose(model(batch[1:])[0][0], logits[1], atol=1e-5)
    assert torch.isfinite(logits).all()  # padding rows must not produce NaN


def test_gqa_shrinks_the_key_value_projection():
    full, grouped = tiny(), tiny(n_kv_head=1)
    assert grouped.num_params() < full.num_params()
    assert grouped.blocks[0].attn.qkv.weight.shape == ((4 + 2 * 1) * 8, 32)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_head=4, n_kv_head=3, n_embd=32)
    with pytest.raises(ValueError, match="n_embd"):
        GPTConfig(n_head=5, n_embd=32)


def test_tied_embeddings_share_one_matrix():
    tied, untied = tiny(), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.num_params() - tied.num_params() == 50 * 32
    assert tied.num_params(non_embedding=True) == tied.num_params() - 50 * 32


def test_presets_have_the_advertised_sizes():
    sizes = {}
    for name, preset in PRESETS.items():
        with torch.device("meta"):
            sizes[name] = GPT(GPTConfig(vocab_size=50304, **preset)).num_params()
    assert 110e6 < sizes["small"] < 135e6  # GPT-2 small: ~124M
    assert 330e6 < sizes["medium"] < 380e6  # ~350M
    assert 0.95e9 < sizes["1b"] < 1.2e9
    assert sizes["tiny"] < 10e6


def test_flops_per_token_counts_six_per_weight_plus_attention():
    model = tiny()
    cfg = model.config
    matmul_weights = model.num_params(non_embedding=True) + cfg.vocab_size * cfg.n_embd
    assert model.flops_per_token(16) == 6 * matmul_weights + 12 * cfg.n_layer * cfg.n_embd * 16


def test_a_few_steps_overfit_one_batch():
    model = tiny().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = torch.randint(0, 50, (4, 16))
    losses = []
    for _ in range(40):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_kv_cache_generation_equals_full_recomputation():
    model = tiny(n_kv_head=2)
    prompt = torch.randint(0, 50, (2, 6))
    cached = model.generate(prompt, 20, temperature=0)
    uncached = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert cached.shape == (2, 26)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :6], prompt)
    # Past block_size (32) generation slides the window; cached and uncached still agree.
    long_cached = model.generate(prompt, 40, temperature=0)
    assert torch.equal(long_cached, model.generate(prompt, 40, temperature=0, use_cache=False))


def test_batched_left_padded_generation_equals_one_by_one():
    model = tiny()
    a, b = torch.randint(0, 50, (1, 7)), torch.randint(0, 50, (1, 3))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], dim=1)])
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :4] = 0
    out = model.generate(batch, 10, temperature=0, attention_mask=mask)
    assert torch.equal(out[0, 7:], model.generate(a, 10, temperature=0)[0, 7:])
    assert torch.equal(out[1, 7:], model.generate(b, 10, temperature=0)[0, 3:])


def test_generation_stops_rows_at_eos_and_pads_after():
    model = tiny()
    prompt = torch.randint(0, 50, (3, 4))
    free = model.generate(prompt, 12, temperature=0)
    eos = int(free[0, 6])  # the third generated token of row 0 becomes the stop token
    out = model.generate(prompt, 12, temperature=0, eos_id=eos, pad_id=49)
    row = out[0, 4:].tolist()
    stop = row.index(eos)
    assert stop <= 2
    assert all(t == 49 for t in row[stop + 1 :])
    assert row[: stop + 1] == free[0, 4 : 4 + stop + 1].tolist()


def test_seeded_sampling_is_reproducible():
    model = tiny()
    prompt = torch.randint(0, 50, (2, 5))

    def sample(seed):
        return model.generate(prompt, 15, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(7), sample(7))
    assert not torch.equal(sample(7), sample(8))


def test_top_k_and_top_p_restrict_the_candidates():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    top2 = sample_next(logits, 1.0, top_k=2, generator=g)
    assert set(top2.tolist()) == {0, 1}
    probs = logits[0].softmax(-1)
    assert probs[0] < 0.7 < probs[0] + probs[1]  # the nucleus for p = 0.7 is {0, 1}
    nucleus = sample_next(logits, 1.0, top_p=0.7, generator=g)
    assert set(nucleus.tolist()) == {0, 1}
    assert set(sample_next(logits, 0.0).tolist()) == {0}  # temperature 0: greedy
    wide = sample_next(logits, 5.0, generator=g)
    assert len(set(wide.tolist())) >= 4


def test_sequences_longer_than_the_context_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long), attention_mask=torch.ones(1, 33, dtype=torch.long))
