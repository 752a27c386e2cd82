"""The inside of a DARTS separable conv as one autograd node that keeps only its input (the rest is recomputed).

``SepConv`` (Liu et al., 2019, Sec. 3.1) is ReLU, depthwise, 1x1, BN, ReLU, depthwise, 1x1, BN. Between the shared
first ReLU and the final BN (fused into the node's weighted sum, :mod:`kernels.bn_sum`), PyTorch would keep the
first 1x1 output (for the BN backward) and the second ReLU output (for the ReLU and the second depthwise conv):
two activations per separable conv, four per edge of the DARTS space. This node keeps neither: backward
recomputes them from the input, which is the node's shared ReLU and is kept anyway, and from the saved BN
statistics. The middle BN is non-affine, in training mode (batch statistics), as in the supernet. Recomputing
costs little time and is what keeps the fused second-order step under half the reference's memory
(docs/performance.md).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cpu_ext
from .dwconv import dw_conv, dw_conv_backward
from .dwpw import _will_run, is_dw_pw


def _compiled(u: torch.Tensor):
    """The compiled ops where they take ``u`` (float32, channels-last CPU), else None (the PyTorch ops run)."""
    if (u.device.type == "cpu" and u.dtype == torch.float32 and u.dim() == 4
            and u.is_contiguous(memory_format=torch.channels_last)):
        return cpu_ext.load()
    return None


def _half(x, w_dw, w_pw, conf):
    return F.conv2d(dw_conv(x, w_dw, *conf), w_pw)


def _sep_reference(x, w_dw1, w_pw1, w_dw2, w_pw2, conf1, conf2, eps):
    """The same function from differentiable PyTorch ops (batch-statistics BN): forward spec and double backward."""
    u = _half(x, w_dw1, w_pw1, conf1)
    r = F.relu(F.batch_norm(u, None, None, training=True, eps=eps))
    return _half(r, w_dw2, w_pw2, conf2)


class _SepConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_dw1, w_pw1, w_dw2, w_pw2, conf1, conf2, eps, running):
        u = _half(x, w_dw1, w_pw1, conf1)  # (B, C, H', W')
        ops = _compiled(u)
        if ops is not None:  # one statistics pass and one pass writing relu(x̂) (kernels/csrc/bn_relu.cpp)
            a, mean, rstd, var = ops.bn_relu_forward(u, eps)
            if running is not None:
                ops.update_running_stats([running[0]], [running[1]], [float(running[2])], mean[None], var[None],
                                         u.numel() // u.shape[1], [0])
        else:
            rm, rv, factor = running if running is not None else (None, None, 0.0)
            a, mean, rstd = torch.native_batch_norm(u, None, None, rm, rv, True, factor, eps)
            a = F.relu(a)
        out = _half(a, w_dw2, w_pw2, conf2)
        ctx.conf, ctx.compiled = (conf1, conf2, eps), ops is not None
        ctx.save_for_backward(x, w_dw1, w_pw1, w_dw2, w_pw2, mean, rstd)
        return out

    # With u = pw1(dw1(x)), x̂ = (u − μ)·r per channel (r = 1/sqrt(σ² + eps), N = B·H'·W'), a = relu(x̂),
    # out = pw2(dw2(a)) and g = ∂L/∂out, the VJPs are those of the chain, applied from the end:
    #   ∂L/∂w_pw2 = Σ g ⊗ dw2(a),   ∂L/∂a, ∂L/∂w_dw2 = dw2^T(pw2^T g) (kernels.dwconv),
    #   ∂L/∂x̂ = ∂L/∂a · [x̂ > 0],   ∂L/∂u = r · (∂L/∂x̂ − mean_N(∂L/∂x̂) − x̂ · mean_N(∂L/∂x̂ · x̂))  (BatchNorm backward),
    #   ∂L/∂w_pw1 = Σ ∂L/∂u ⊗ dw1(x),   ∂L/∂x, ∂L/∂w_dw1 = dw1^T(pw1^T ∂L/∂u).
    # u, x̂, a are recomputed from x and the saved μ, r (one depthwise and one 1x1 forward, in every pass); dw1(x)
    # is kept, and dw2(a) computed, only when the 1x1 weight gradient that needs it is wanted. With the compiled
    # kernels (channels-last float32 CPU) the ReLU and BatchNorm backwards are one kernel on u, and a is
    # recomputed only when a weight gradient of the second half reads it: not in the α-only passes. Under
    # create_graph (``--hvp exact``) the VJP is re-derived through :func:`_sep_reference`.
    @staticmethod
    def backward(ctx, grad_out):
        x, w_dw1, w_pw1, w_dw2, w_pw2, mean, rstd = ctx.saved_tensors
        conf1, conf2, eps = ctx.conf
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():
            inputs = [t.view_as(t) for t in (x, w_dw1, w_pw1, w_dw2, w_pw2)]
            wrt = [t for t, need in zip(inputs, needs) if need]
            with torch.enable_grad():
                out = _sep_reference(*inputs, conf1, conf2, eps)
                grads = iter(torch.autograd.grad(out, wrt, grad_out, create_graph=True))
            return (*[next(grads) if need else None for need in needs], None, None, None, None)
        need = [n and _will_run(ctx, i) for i, n in enumerate(needs)]
        grads = [None] * 5
        t1 = dw_conv(x, w_dw1, *conf1)
        u = F.conv2d(t1, w_pw1)
        if not need[2]:
            del t1
        ops = torch.ops.darts_forge if ctx.compiled else None
        if ops is not None:
            # relu(x̂) only where a weight gradient reads it: the compiled ReLU + BN backward takes u.
            r = ops.bn_relu_apply(u, mean, rstd) if need[3] or need[4] else None
        else:
            # x̂ by an eval-mode BN on the saved statistics (σ² = 1/r² − eps gives back r), then relu(x̂) in place.
            r = torch.batch_norm(u, None, None, mean, rstd.pow(-2) - eps, False, 0.0, eps, False).relu_()
        if need[4]:
            grads[4] = torch.ops.aten.convolution_backward(
                grad_out, dw_conv(r, w_dw2, *conf2), w_pw2, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1,
                [False, True, False])[1]
        # The input gradient reads only the shape and layout of its input, which u shares with r.
        g_r, grads[3] = dw_conv_backward(F.conv2d(grad_out, w_pw2.transpose(0, 1)), u if r is None else r, w_dw2,
                                         *conf2, True, need[3])
        if ops is not None:
            g_u = ops.bn_relu_backward(g_r.contiguous(memory_format=torch.channels_last), u, mean, rstd)
        else:
            g_a = torch.ops.aten.threshold_backward(g_r, r, 0)  # ∂L/∂x̂ = ∂L/∂a where a > 0
            g_u = torch.ops.aten.native_batch_norm_backward(g_a, u, None, None, None, mean, rstd, True, eps,
                                                            [True, False, False])[0]
            del g_a
        del r, g_r, u
        if need[2]:
            grads[2] = torch.ops.aten.convolution_backward(
                g_u, t1, w_pw1, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, [False, True, False])[1]
        if need[0] or need[1]:
            grads[0], grads[1] = dw_conv_backward(F.conv2d(g_u, w_pw1.transpose(0, 1)), x, w_dw1, *conf1,
                                                  need[0], need[1])
        return (*grads, None, None, None, None)


def is_sep_conv(layers) -> bool:
    """Whether ``layers`` are depthwise, 1x1, BatchNorm (non-affine, training), ReLU, depthwise, 1x1."""
    return (len(layers) == 6 and is_dw_pw(layers[0], layers[1]) and is_dw_pw(layers[4], layers[5])
            and isinstance(layers[2], nn.BatchNorm2d) and not layers[2].affine and layers[2].training
            and isinstance(layers[3], nn.ReLU))


def sep_conv(x: torch.Tensor, layers, running=None) -> torch.Tensor:
    """``layers`` (see :func:`is_sep_conv`) on ``x`` ``(B, C, H, W)``, keeping only ``x`` and the BN statistics.

    ``running``: ``None`` or ``(running_mean, running_var, factor)`` of the middle BN, updated in place as
    ``BatchNorm2d.forward`` would (see :func:`kernels.fused_cpu._running`).
    """
    dw1, pw1, bn, _, dw2, pw2 = layers
    ws = [w.view_as(w) if w.requires_grad and w.is_leaf else w  # graph nodes for _will_run
          for w in (dw1.weight, pw1.weight, dw2.weight, pw2.weight)]
    conf1, conf2 = (dw1.stride, dw1.padding, dw1.dilation), (dw2.stride, dw2.padding, dw2.dilation)
    return _SepConv.apply(x, *ws, conf1, conf2, bn.eps, running)
