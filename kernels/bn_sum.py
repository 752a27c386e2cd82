"""The BN-weighted sum ``Σ_k w_k · BN(y_k)`` as one autograd node (any device).

In the supernet every parametric candidate op ends in a non-affine BatchNorm that is immediately scaled by its
op weight and summed (DARTS Eq. 2). Run as separate modules, each ``w_k · BN(y_k)`` keeps the BN output alive for
the product's backward. Fused here, only the BN inputs ``y_k`` and the per-channel statistics are saved, and the
op-weight gradient falls out of the BN backward (``Σ g · x̂_k``). On channels-last float32 CPU maps the node
runs the compiled kernel of ``kernels/csrc/bn_sum.cpp`` where it is built (:mod:`kernels.cpu_ext`), elsewhere
the ATen BatchNorm kernels. The Triton version is :mod:`kernels.triton_mixed`; all are tested against
:func:`kernels.reference.bn_weighted_sum_reference`.
"""
from __future__ import annotations

import logging

import torch

from . import cpu_ext
from .reference import bn_weighted_sum_reference

log = logging.getLogger(__name__)
_logged_double_backward = False


def update_running_stats(running, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """Move BatchNorm running statistics as ``F.batch_norm`` does: EMA of the mean and the unbiased variance.

    ``running``: per k, ``None`` or ``(running_mean, running_var, factor)``; ``mean``/``var``: ``(K, C)`` batch
    mean and biased variance; ``n``: elements per channel.
    """
    with torch.no_grad():
        for k, r in enumerate(running):
            if r is None:
                continue
            rm, rv, f = r
            rm.mul_(1.0 - f).add_(mean[k].to(rm.dtype), alpha=f)
            rv.mul_(1.0 - f).add_(var[k].to(rv.dtype) * (n / max(n - 1, 1)), alpha=f)


def recompute_vjp(ctx_inputs, needs, grad_out):
    """Double-backward path: the VJP re-derived through the differentiable reference (``--hvp exact``)."""
    global _logged_double_backward
    if not _logged_double_backward:
        log.info("BN-weighted sum: differentiable backward through the reference formula (double backward)")
        _logged_double_backward = True
    weights, eps, ys = ctx_inputs
    with torch.enable_grad():
        # Fresh aliases: differentiating with respect to the saved tensors themselves goes wrong when one of them
        # (a pool output shared by several nodes) feeds other autograd nodes too; the view keeps the history.
        weights, ys = weights.view_as(weights), [y.view_as(y) for y in ys]
        out = bn_weighted_sum_reference(ys, weights, eps)
        wrt = [t for t, need in zip([weights, *ys], needs) if need]
        grads = iter(torch.autograd.grad(out, wrt, grad_out, create_graph=True, allow_unused=True))
    return [next(grads) if need else None for need in needs]


def _rows_layout(t: torch.Tensor) -> bool:
    """Whether the compiled kernel reads ``t`` as is: channels-last rows, channel stride 1, one row stride."""
    B, C, H, W = t.shape
    s = t.stride(3) if W > 1 else t.stride(2) if H > 1 else t.stride(0) if B > 1 else C  # size-1 dims: any stride
    return ((C == 1 or t.stride(1) == 1) and s >= C and (W == 1 or t.stride(3) == s)
            and (H == 1 or t.stride(2) == W * s) and (B == 1 or t.stride(0) == H * W * s))


def _use_ext(weights: torch.Tensor, ys) -> bool:
    y = ys[0]
    return (y.device.type == "cpu" and y.dim() == 4 and y.dtype == torch.float32 and weights.dtype == torch.float32
            and all(_rows_layout(t) for t in ys) and cpu_ext.load() is not None)


class _BNWeightedSum(torch.autograd.Function):
    """Autograd node of :func:`bn_weighted_sum`: the compiled CPU kernel (:mod:`kernels.cpu_ext`) on channels-last
    float32 CPU maps, else the ATen BatchNorm kernels (CPU or CUDA)."""

    @staticmethod
    def forward(ctx, weights, eps, running, *ys):
        if _use_ext(weights, ys):
            ops = cpu_ext.load()
            out, mean, rstd, var = ops.bn_sum_forward(list(ys), weights.detach(), eps)
            moved = [k for k, r in enumerate(running) if r is not None]
            if moved:
                ops.update_running_stats([running[k][0] for k in moved], [running[k][1] for k in moved],
                                         [float(running[k][2]) for k in moved], mean, var,
                                         ys[0].numel() // ys[0].shape[1], moved)
            ctx.eps, ctx.ext = eps, True
            ctx.save_for_backward(weights, mean, rstd, *ys)
            ctx.mark_non_differentiable(mean, var)
            return out, mean, var
        ctx.ext = False
        out, means, rstds = None, [], []
        C = ys[0].shape[1]
        scale = weights.detach().unsqueeze(1).expand(len(ys), C).contiguous()  # (K, C): one copy, not K
        for k, y in enumerate(ys):
            # BN with a constant affine scale w_k: the kernel writes w_k · x̂_k in one pass.
            r = running[k]
            t, m, s = torch.native_batch_norm(y, scale[k], None,
                                              r[0] if r else None, r[1] if r else None, True,
                                              r[2] if r else 0.0, eps)
            out = t if out is None else out.add_(t)
            means.append(m)
            rstds.append(s)
        mean, rstd = torch.stack(means), torch.stack(rstds)
        ctx.eps = eps
        ctx.save_for_backward(weights, mean, rstd, *ys)
        var = rstd.pow(-2) - eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    # VJPs, with x̂_k = (y_k − μ_k)·r_k per channel c, r_k = 1/sqrt(σ²_k + eps), N = B·H·W, g = ∂L/∂out:
    #   ∂L/∂w_k = Σ_{b,c,h,w} g · x̂_k                                     (a sum of per-channel sums: deterministic)
    #   ∂L/∂y_k = w_k · r_k · (g − mean_N(g) − x̂_k · mean_N(g · x̂_k))        (the BatchNorm backward, scale w_k)
    # Under create_graph (``--hvp exact``) the VJP is rebuilt from differentiable ops so it can be differentiated.
    @staticmethod
    def backward(ctx, grad_out, _gm, _gv):
        weights, mean, rstd, *ys = ctx.saved_tensors
        needs = [ctx.needs_input_grad[0], *ctx.needs_input_grad[3:]]
        if torch.is_grad_enabled():
            grads = recompute_vjp((weights, ctx.eps, ys), needs, grad_out)
            return (grads[0], None, None, *grads[1:])
        if ctx.ext:
            g = grad_out if _rows_layout(grad_out) else grad_out.contiguous(memory_format=torch.channels_last)
            grad_w, *gys = cpu_ext.load().bn_sum_backward(g, list(ys), weights.detach(), mean, rstd, needs[1:])
            return (grad_w if needs[0] else None, None, None, *gys)
        C = ys[0].shape[1]
        # One copy into the inputs' layout first: a node's gradient arrives as a channel slice of its cell's
        # concatenated output gradient (or NCHW from the classifier), on which the CPU BatchNorm backward runs
        # an order of magnitude slower than on a dense tensor.
        fmt = torch.channels_last if ys[0].is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        grad_out = grad_out.contiguous(memory_format=fmt)
        scale = weights.unsqueeze(1).expand(len(ys), C).contiguous()
        gw, gys = [], []
        for k, y in enumerate(ys):
            gy, gsum, _ = torch.ops.aten.native_batch_norm_backward(
                grad_out, y, scale[k], None, None, mean[k], rstd[k], True, ctx.eps,
                [needs[k + 1], True, False])
            gw.append(gsum.sum())
            gys.append(gy)
        grad_w = torch.stack(gw).to(weights.dtype) if needs[0] else None
        return (grad_w, None, None, *gys)


def bn_weighted_sum(ys, weights: torch.Tensor, eps: float = 1e-5, running=None) -> torch.Tensor:
    """``Σ_k weights[k] · BN(ys[k])``, BN non-affine in training mode (batch statistics).

    Args:
        ys: K tensors ``(B, C, H, W)`` of one shape (any memory format).
        weights: ``(K,)`` op weights.
        eps: BatchNorm epsilon.
        running: optional per-k ``(running_mean, running_var, factor)`` or ``None``; updated in place as
            ``F.batch_norm`` would with momentum ``factor``.
    Returns:
        ``(B, C, H, W)``.
    """
    running = tuple(running) if running is not None else (None,) * len(ys)
    out, _, _ = _BNWeightedSum.apply(weights, eps, running, *ys)
    return out
