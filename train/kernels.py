"""The model's element-wise pieces (RMSNorm, rotary embeddings, the SwiGLU gate) with
hand-written backward passes for eager training.

Why: in a small model on a CPU, the matrix products are only half of a training step; the
rest is element-wise work that reads and writes whole activation tensors, and it runs at
memory speed. PyTorch's autograd composes these layers from generic ops, each of which
makes its own pass over memory (and allocates its own output) in the forward and again in
the backward. The functions here do the same arithmetic in fewer passes:

* ``rms_norm``: on CPU, the backward reuses the saved normalised input and needs five
  passes where autograd's composite needs about twelve (there is no fused CPU kernel);
  without a gain vector (``weight=None``) three of those passes go too.
* ``rotary_qkv``: splits the fused q/k/v projection and rotates q and k in one step, and its
  backward writes the rotated query/key gradients and the value gradient straight into the
  projection's gradient buffer, where autograd would rotate, then concatenate twice.
* ``swiglu``: silu(gate) * up, whose backward reuses its own buffer for the gate gradient.

Under ``torch.compile`` every function falls back to plain ops, which Inductor fuses
itself (it cannot trace through these autograd Functions' complex-number tricks as well).
tests/test_kernels.py checks each against the plain formulas, values and gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def compiling() -> bool:
    """Whether torch.compile is tracing the current call."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling and is_compiling())


# ----------------------------------------------------------------------------- RMSNorm


class _RMSNormCPU(torch.autograd.Function):
    """x / rms(x) * weight with the backward written out (CPU, float32)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
        rstd = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
        xhat = x * rstd
        ctx.save_for_backward(xhat, weight, rstd)
        return xhat if weight is None else xhat * weight

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable: a double backward must fail loudly
    def backward(ctx, grad: torch.Tensor):
        xhat, weight, rstd = ctx.saved_tensors
        grad_weight = None
        if weight is not None:
            grad_weight = (grad * xhat).sum(dim=tuple(range(grad.dim() - 1)))
            grad = grad * weight
        # d/dx of x * rstd(x) is rstd * (g - xhat * mean(g * xhat)); folded into one
        # multiply and one fused multiply-add over the activations.
        coeff = torch.linalg.vecdot(grad, xhat).unsqueeze(-1).mul_(rstd).mul_(-1.0 / xhat.shape[-1])
        grad_x = (grad * rstd).addcmul_(xhat, coeff)
        return grad_x, grad_weight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension, with an optional gain vector."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and not compiling():
        return _RMSNormCPU.apply(x, weight, eps)
    # Fused on CUDA, and accumulates in float32 under bf16 autocast.
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


# ----------------------------------------------------------------------------- rotary

_EXACT = (torch.float32, torch.float64)


def _exact(x: torch.Tensor) -> torch.Tensor:
    """x in float32 unless it is already float32/64: the rotation runs in float32 whatever the
    autocast dtype (angles need the precision)."""
    return x if x.dtype in _EXACT else x.float()


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    """(..., D) real -> (..., D/2) complex pairs (2i, 2i+1); a view when the strides allow."""
    pairs = x.unflatten(-1, (-1, 2))
    try:
        return torch.view_as_complex(pairs)
    except RuntimeError:  # strides that a complex view cannot express
        return torch.view_as_complex(pairs.contiguous())


class _RotaryQKV(torch.autograd.Function):
    """(q, k, v) views of a fused projection (B, T, H + 2 KV, D), q and k rotated."""

    @staticmethod
    def forward(ctx, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_head: int, n_kv_head: int):
        qk = _exact(qkv[:, :, : n_head + n_kv_head])
        rotated = torch.view_as_real(_as_complex(qk) * torch.complex(cos, sin)).flatten(-2)
        rotated = rotated.to(qkv.dtype)
        ctx.save_for_backward(cos, sin)
        ctx.heads = (n_head, n_kv_head)
        q, k = rotated.split([n_head, n_kv_head], dim=2)
        return q, k, qkv[:, :, n_head + n_kv_head :]

    @staticmethod
    @once_differentiable
    def backward(ctx, dq: torch.Tensor | None, dk: torch.Tensor | None, dv: torch.Tensor | None):
        cos, sin = ctx.saved_tensors
        H, KV = ctx.heads
        like = next(t for t in (dq, dk, dv) if t is not None)
        B, T, _, D = like.shape
        grad = like.new_empty(B, T, H + 2 * KV, D)
        unrotate = torch.complex(cos, -sin)  # the inverse rotation: the transpose of the forward one
        for g, lo, hi in ((dq, 0, H), (dk, H, H + KV)):
            target = grad[:, :, lo:hi]
            if g is None:
                target.zero_()
            elif grad.dtype in _EXACT:
                torch.mul(_as_complex(g), unrotate, out=torch.view_as_complex(target.unflatten(-1, (-1, 2))))
            else:
                target.copy_(torch.view_as_real(_as_complex(_exact(g)) * unrotate).flatten(-2))
        if dv is None:
            grad[:, :, H + KV :].zero_()
        else:
            grad[:, :, H + KV :] = dv
        return grad, None, None, None, None


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The same rotation in real arithmetic: what Inductor can fuse (it has no complex codegen)."""
    pairs = _exact(x).unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).type_as(x)


def rotary_qkv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_head: int, n_kv_head: int):
    """Split a fused projection (B, T, n_head + 2 n_kv_head, D) into q, k, v of shape
    (B, T, heads, D), with channel pairs (2i, 2i+1) of q and k rotated by the position's angles.

    cos/sin are (T, 1, D/2) when every row has positions 0..T-1, or (B, T, 1, D/2) for
    per-row positions (left padding, KV-cache decoding).
    """
    if compiling():
        qk, v = qkv.split([n_head + n_kv_head, n_kv_head], dim=2)
        q, k = _rotate(qk, cos, sin).split([n_head, n_kv_head], dim=2)
        return q, k, v
    return _RotaryQKV.apply(qkv, cos, sin, n_head, n_kv_head)


# ----------------------------------------------------------------------------- SwiGLU


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        activated = F.silu(gate)
        ctx.save_for_backward(gate, up, activated)
        return activated * up

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        gate, up, activated = ctx.saved_tensors
        grad_up = grad * activated
        # grad * up is ours alone, so silu's backward can overwrite it: one buffer, not two.
        through_gate = grad * up
        grad_gate = torch.ops.aten.silu_backward.grad_input(through_gate, gate, grad_input=through_gate)
        return grad_gate, grad_up


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up."""
    if compiling() or gate.dtype != up.dtype:
        return F.silu(gate) * up
    return _SwiGLU.apply(gate, up)
