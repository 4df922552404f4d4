"""train/kernels.py: the hand-written backward passes agree with plain autograd."""

import pytest
import torch
import torch.nn.functional as F

from train.kernels import _RMSNormCPU, _RotaryQKV, _rotate, _SwiGLU, rms_norm, rotary_qkv, swiglu
from train.layers import rope_tables
from train.model import GPT, GPTConfig


def plain_rms_norm(x, weight, eps=1e-5):
    out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return out if weight is None else out * weight


@pytest.mark.parametrize("with_weight", [True, False])
def test_cpu_rms_norm_matches_the_formula_and_its_gradients(with_weight):
    torch.manual_seed(0)
    weight = torch.empty(16).uniform_(0.5, 1.5).requires_grad_() if with_weight else None
    x = torch.randn(3, 5, 16, requires_grad=True)
    grad = torch.randn(3, 5, 16)
    out = rms_norm(x, weight, 1e-5)  # float32 on CPU: the hand-written path
    assert out.grad_fn is not None and "RMSNorm" in type(out.grad_fn).__name__
    out.backward(grad)
    fast = (out.detach(), x.grad.clone(), weight.grad.clone() if with_weight else None)
    x.grad = None
    if with_weight:
        weight.grad = None
    reference = plain_rms_norm(x, weight)
    reference.backward(grad)
    assert torch.allclose(fast[0], reference.detach(), atol=1e-6)
    assert torch.allclose(fast[1], x.grad, atol=1e-5)
    if with_weight:
        assert torch.allclose(fast[2], weight.grad, atol=1e-5)


def test_rms_norm_gradcheck_in_double():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: _RMSNormCPU.apply(a, b, 1e-5), (x, w))
    assert torch.autograd.gradcheck(lambda a: _RMSNormCPU.apply(a, None, 1e-5), (x,))


def rope_inputs(per_row: bool, dtype=torch.float64, B=2, T=6, H=4, KV=2, D=8):
    torch.manual_seed(2)
    qkv = torch.randn(B, T, H + 2 * KV, D, dtype=dtype, requires_grad=True)
    cos, sin = rope_tables(D, 16, 10000.0)
    if per_row:
        positions = torch.tensor([[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]])
        cos, sin = cos[positions].unsqueeze(2), sin[positions].unsqueeze(2)
    else:
        cos, sin = cos[:T].unsqueeze(1), sin[:T].unsqueeze(1)
    return qkv, cos, sin, H, KV


@pytest.mark.parametrize("per_row", [False, True])
def test_rotary_qkv_gradcheck_in_double(per_row):
    qkv, cos, sin, H, KV = rope_inputs(per_row)
    assert torch.autograd.gradcheck(lambda t: _RotaryQKV.apply(t, cos, sin, H, KV), (qkv,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_qkv_equals_the_real_arithmetic_form(dtype):
    """The eager Function (complex multiply, gradients written in place) and the form used
    under torch.compile give the same q, k, v and the same gradient."""
    qkv, cos, sin, H, KV = rope_inputs(False, dtype=dtype)
    grads = [torch.randn(2, 6, n, 8, dtype=dtype) for n in (H, KV, KV)]
    q, k, v = rotary_qkv(qkv, cos, sin, H, KV)
    assert [t.shape[2] for t in (q, k, v)] == [H, KV, KV] and q.dtype == dtype
    torch.autograd.backward([q, k, v], grads)
    fast = ([t.detach() for t in (q, k, v)], qkv.grad.clone())
    qkv.grad = None
    qk, v2 = qkv.split([H + KV, KV], dim=2)
    q2, k2 = _rotate(qk, cos, sin).split([H, KV], dim=2)
    torch.autograd.backward([q2, k2, v2], grads)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    for a, b in zip(fast[0], (q2, k2, v2)):
        assert torch.allclose(a.float(), b.detach().float(), atol=tol)
    assert torch.allclose(fast[1].float(), qkv.grad.float(), atol=tol)


def test_rotary_qkv_rotates_pairs_by_the_position_angle():
    """Position 0 is left alone; a rotation keeps each pair's length."""
    qkv, cos, sin, H, KV = rope_inputs(False, dtype=torch.float32)
    q, k, v = rotary_qkv(qkv.detach(), cos, sin, H, KV)
    assert torch.allclose(q[:, 0], qkv[:, 0, :H].detach(), atol=1e-6)
    assert torch.equal(v, qkv[:, :, H + KV :].detach())
    pair_norm = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pair_norm(k), pair_norm(qkv[:, :, H : H + KV].detach()), atol=1e-5)
    assert not torch.allclose(k[:, 1:], qkv[:, 1:, H : H + KV].detach(), atol=1e-3)


def test_swiglu_gradcheck_and_values():
    torch.manual_seed(3)
    g = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    u = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SwiGLU.apply, (g, u))
    assert torch.allclose(swiglu(g, u), F.silu(g) * u)


def test_model_trains_the_same_with_the_plain_ops():
    """A whole model's loss and gradients with the kernels equal those of plain autograd ops
    (the path torch.compile takes), in float32 on CPU."""
    import train.kernels as kernels

    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    torch.manual_seed(4)
    model = GPT(cfg)
    x = torch.randint(0, 64, (3, 16))
    y = torch.randint(0, 64, (3, 16))

    def run():
        model.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}

    fast_loss, fast = run()
    original = kernels.compiling
    kernels.compiling = lambda: True  # every kernel takes its plain-op branch
    try:
        plain_loss, plain = run()
    finally:
        kernels.compiling = original
    assert abs(fast_loss - plain_loss) < 1e-5
    for name in fast:
        assert torch.allclose(fast[name], plain[name], atol=1e-5), name


def test_norm_gains_are_optional_and_old_configs_keep_them():
    without = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16))
    assert not any("norm" in name for name, _ in without.named_parameters())
    with_gains = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=16, norm_weight=True))
    assert {"blocks.0.attn_norm.weight", "norm_f.weight"} <= {n for n, _ in with_gains.named_parameters()}
    saved = without.config.to_dict()
    assert GPTConfig.from_dict(saved).norm_weight is False
    del saved["norm_weight"]  # a config written before the option existed
    assert GPTConfig.from_dict(saved).norm_weight is True


def test_pretraining_config_turns_norm_gains_on():
    from train.pretrain import ModelSettings

    assert ModelSettings(preset="tiny").build(262).norm_weight is False
    assert ModelSettings(preset="tiny", norm_weight=True).build(262).norm_weight is True


def test_double_backward_through_the_kernels_fails_loudly():
    """The hand-written backward passes are not themselves differentiable: asking for a second
    derivative must be an error, never a silently wrong number."""
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(_RMSNormCPU.apply(x, None, 1e-5).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()
