"""Triton kernels for the fused BN-weighted sum ``Σ_k w_k · (y_k − μ_k) / σ_k`` of a supernet node (DARTS Eq. 2).

Four layers, as in Liger-Kernel: private ``@triton.jit`` kernels, host launchers, an ``autograd.Function`` with
the vector-Jacobian products written above ``backward``, and the public :func:`bn_weighted_sum_triton`. The
specification is :func:`kernels.reference.bn_weighted_sum_reference`. Layout: the K inputs are stacked as one
contiguous ``(K, B, C, H·W)`` tensor. All accumulation is float32; per-channel reductions run in one program each
in a fixed order and the op-weight gradient is a torch sum of those per-channel partials, so results are
deterministic (no atomics). Every load and store is masked: 36 channels and 7x7 maps are the normal case.

:data:`mixed_op_triton` and :data:`cell_triton` are the fused cell of :mod:`kernels.fused_cpu` with this sum.
This is the only module that imports triton.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bn_sum import recompute_vjp, update_running_stats
from .fused_cpu import make_impls

_RED_BLOCK = 1024  # elements per step of a per-channel reduction
_EW_BLOCK = 1024  # elements per program of an elementwise kernel


# -- kernels ---------------------------------------------------------------------------------------------------
@triton.jit
def _bn_stats_kernel(Y, MEAN, VAR, RSTD, B, C, HW, eps, BLOCK: tl.constexpr):
    """Program (c, k): mean, biased variance and 1/sqrt(var + eps) of channel c of y_k (two passes)."""
    c = tl.program_id(0)
    k = tl.program_id(1)
    n = B * HW
    base = k.to(tl.int64) * B * C * HW + c * HW
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        i = start + tl.arange(0, BLOCK)
        m = i < n
        off = base + (i // HW).to(tl.int64) * C * HW + i % HW
        acc += tl.load(Y + off, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(acc, axis=0) / n
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        i = start + tl.arange(0, BLOCK)
        m = i < n
        off = base + (i // HW).to(tl.int64) * C * HW + i % HW
        d = tl.where(m, tl.load(Y + off, mask=m, other=0.0).to(tl.float32) - mean, 0.0)
        acc += d * d
    var = tl.sum(acc, axis=0) / n
    ok = c < C
    tl.store(MEAN + k * C + c, mean, mask=ok)
    tl.store(VAR + k * C + c, var, mask=ok)
    tl.store(RSTD + k * C + c, 1.0 / tl.sqrt(var + eps), mask=ok)


@triton.jit
def _bn_sum_fwd_kernel(Y, W, MEAN, RSTD, OUT, K, C, HW, total, BLOCK: tl.constexpr):
    """out[i] = Σ_k w_k · (y_k[i] − μ_{k,c}) · r_{k,c}, c the channel of element i."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < total
    c = (i // HW) % C
    zero = tl.zeros([BLOCK], dtype=tl.int32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(K):
        y = tl.load(Y + k * total + i, mask=m, other=0.0).to(tl.float32)
        mu = tl.load(MEAN + k * C + c, mask=m, other=0.0)
        r = tl.load(RSTD + k * C + c, mask=m, other=0.0)
        w = tl.load(W + k + zero, mask=m, other=0.0).to(tl.float32)
        acc += w * (y - mu) * r
    tl.store(OUT + i, acc.to(OUT.dtype.element_ty), mask=m)


@triton.jit
def _bn_sum_bwd_reduce_kernel(G, Y, MEAN, RSTD, SUM_G, SUM_GX, B, C, HW, BLOCK: tl.constexpr):
    """Program (c, k): Σ g and Σ g · x̂_k over channel c (the per-channel partials of both VJPs)."""
    c = tl.program_id(0)
    k = tl.program_id(1)
    n = B * HW
    ok = c < C
    mu = tl.load(MEAN + k * C + c, mask=ok, other=0.0)
    r = tl.load(RSTD + k * C + c, mask=ok, other=0.0)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    acc_gx = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, n, BLOCK):
        i = start + tl.arange(0, BLOCK)
        m = i < n
        off = (i // HW).to(tl.int64) * C * HW + c * HW + i % HW
        g = tl.load(G + off, mask=m, other=0.0).to(tl.float32)
        y = tl.load(Y + k.to(tl.int64) * B * C * HW + off, mask=m, other=0.0).to(tl.float32)
        acc_g += g
        acc_gx += tl.where(m, g * (y - mu) * r, 0.0)
    tl.store(SUM_G + k * C + c, tl.sum(acc_g, axis=0), mask=ok)
    tl.store(SUM_GX + k * C + c, tl.sum(acc_gx, axis=0), mask=ok)


@triton.jit
def _bn_sum_bwd_dy_kernel(G, Y, W, MEAN, RSTD, SUM_G, SUM_GX, DY, C, HW, total, n, BLOCK: tl.constexpr):
    """Program (block, k): dy_k = w_k · r_k · (g − Σg/N − x̂_k · Σ(g x̂_k)/N)."""
    k = tl.program_id(1)
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < total
    c = (i // HW) % C
    zero = tl.zeros([BLOCK], dtype=tl.int32)
    g = tl.load(G + i, mask=m, other=0.0).to(tl.float32)
    y = tl.load(Y + k * total + i, mask=m, other=0.0).to(tl.float32)
    mu = tl.load(MEAN + k * C + c, mask=m, other=0.0)
    r = tl.load(RSTD + k * C + c, mask=m, other=0.0)
    sg = tl.load(SUM_G + k * C + c, mask=m, other=0.0)
    sgx = tl.load(SUM_GX + k * C + c, mask=m, other=0.0)
    w = tl.load(W + k + zero, mask=m, other=0.0).to(tl.float32)
    xhat = (y - mu) * r
    dy = w * r * (g - sg / n - xhat * sgx / n)
    tl.store(DY + k * total + i, dy.to(DY.dtype.element_ty), mask=m)


# -- host launchers ----------------------------------------------------------------------------------------------
def _forward(Y: torch.Tensor, w: torch.Tensor, eps: float):
    """Y: contiguous (K, B, C, H, W); w: (K,). Returns out (B, C, H, W) and (K, C) float32 mean, var, rstd."""
    K, B, C, H, W_ = Y.shape
    HW, total = H * W_, B * C * H * W_
    assert Y.numel() < 2**31, "offsets are int32 inside the elementwise kernels"
    mean, var, rstd = (torch.empty(K, C, device=Y.device, dtype=torch.float32) for _ in range(3))
    _bn_stats_kernel[(C, K)](Y, mean, var, rstd, B, C, HW, eps, BLOCK=_RED_BLOCK)
    out = torch.empty(Y.shape[1:], device=Y.device, dtype=Y.dtype)
    _bn_sum_fwd_kernel[(triton.cdiv(total, _EW_BLOCK),)](Y, w.contiguous(), mean, rstd, out, K, C, HW, total,
                                                         BLOCK=_EW_BLOCK)
    return out, mean, var, rstd


def _backward(G: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, mean, rstd):
    """G: contiguous (B, C, H, W). Returns dY (K, B, C, H, W) and dw (K,)."""
    K, B, C, H, W_ = Y.shape
    HW, total = H * W_, B * C * H * W_
    sum_g = torch.empty(K, C, device=Y.device, dtype=torch.float32)
    sum_gx = torch.empty_like(sum_g)
    _bn_sum_bwd_reduce_kernel[(C, K)](G, Y, mean, rstd, sum_g, sum_gx, B, C, HW, BLOCK=_RED_BLOCK)
    dY = torch.empty_like(Y)
    _bn_sum_bwd_dy_kernel[(triton.cdiv(total, _EW_BLOCK), K)](G, Y, w.contiguous(), mean, rstd, sum_g, sum_gx, dY,
                                                              C, HW, total, B * HW, BLOCK=_EW_BLOCK)
    return dY, sum_gx.sum(dim=1)  # ∂L/∂w_k = Σ_c Σ(g x̂_k): a fixed-order torch sum of per-channel partials


# -- autograd --------------------------------------------------------------------------------------------------
class _BNWeightedSumTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weights, eps, running, *ys):
        Y = torch.stack(ys).contiguous()  # (K, B, C, H, W)
        out, mean, var, rstd = _forward(Y, weights, eps)
        n = Y.shape[1] * Y.shape[3] * Y.shape[4]
        update_running_stats(running, mean, var, n)
        ctx.eps = eps
        # The inputs are saved, not Y: a stacked copy would double what is kept, and double backward needs the
        # inputs themselves (Y, made inside forward, has no autograd history).
        ctx.save_for_backward(weights, mean, rstd, *ys)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    # VJPs, with x̂_k = (y_k − μ_k)·r_k per channel c, r_k = 1/sqrt(σ²_k + eps), N = B·H·W, g = ∂L/∂out:
    #   ∂L/∂w_k = Σ_{b,c,h,w} g · x̂_k
    #   ∂L/∂y_k = w_k · r_k · (g − mean_N(g) − x̂_k · mean_N(g · x̂_k))
    # (μ_k and σ_k depend on y_k: the two mean terms are their contribution.) Under create_graph (``--hvp exact``)
    # the VJP is rebuilt from differentiable PyTorch ops instead, so that it can itself be differentiated.
    @staticmethod
    def backward(ctx, grad_out, _gm, _gv):
        weights, mean, rstd, *ys = ctx.saved_tensors
        needs = [ctx.needs_input_grad[0], *ctx.needs_input_grad[3:]]
        if torch.is_grad_enabled():
            grads = recompute_vjp((weights, ctx.eps, ys), needs, grad_out)
            return (grads[0], None, None, *grads[1:])
        Y = torch.stack(ys).contiguous()
        dY, dw = _backward(grad_out.contiguous(), Y, weights, mean, rstd)
        gys = [dY[k] if need else None for k, need in enumerate(needs[1:])]
        return (dw.to(weights.dtype) if needs[0] else None, None, None, *gys)


def bn_weighted_sum_triton(ys, weights: torch.Tensor, eps: float = 1e-5, running=None) -> torch.Tensor:
    """``Σ_k weights[k] · BN(ys[k])`` (non-affine BN on batch statistics) with Triton kernels.

    Same contract as :func:`kernels.bn_sum.bn_weighted_sum`: ``ys`` K tensors ``(B, C, H, W)``, ``weights``
    ``(K,)``, optional ``running`` per-k ``(running_mean, running_var, factor)`` moved in place. Returns
    ``(B, C, H, W)`` contiguous.
    """
    running = tuple(running) if running is not None else (None,) * len(ys)
    out, _, _ = _BNWeightedSumTriton.apply(weights, eps, running, *ys)
    return out


# The fused cell with this sum; NCHW everywhere (the kernels index contiguous NCHW).
mixed_op_triton, cell_triton = make_impls(bn_weighted_sum_triton, channels_last_on_cpu=False)
