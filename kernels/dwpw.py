"""Depthwise conv followed by a 1x1 conv, keeping only the input for backward (the separable convs of DARTS).

In SepConv and DilConv a depthwise conv feeds a pointwise conv, whose weight gradient needs the depthwise output.
Storing that output costs one activation per depthwise conv (6 per edge in the DARTS space, about a third of all
the supernet keeps). Here backward recomputes it from the input, which is kept anyway (it is the shared ReLU of
the node, or the SepConv's inner ReLU): a little more arithmetic for much less memory.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _dw_pw(x, w_dw, w_pw, stride, padding, dilation):
    return F.conv2d(F.conv2d(x, w_dw, None, stride, padding, dilation, x.shape[1]), w_pw)


class _DwPw(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_dw, w_pw, stride, padding, dilation):
        ctx.conf = (stride, padding, dilation)
        ctx.save_for_backward(x, w_dw, w_pw)
        return _dw_pw(x, w_dw, w_pw, stride, padding, dilation)

    # VJPs are those of the two convolutions, t = dw(x), out = pw(t): ∂L/∂w_pw = Σ g ⊗ t, ∂L/∂t = pw^T g,
    # ∂L/∂x = dw^T(∂L/∂t), ∂L/∂w_dw = Σ ∂L/∂t ⊗ x; t is recomputed here. Under create_graph (``--hvp exact``) the
    # recomputation is recorded on aliases of the saved inputs, so the result can be differentiated again.
    @staticmethod
    def backward(ctx, grad_out):
        x, w_dw, w_pw = ctx.saved_tensors
        create = torch.is_grad_enabled()
        if not create:  # the two conv backwards directly: no autograd graph, no second 1x1 forward
            stride, padding, dilation = ctx.conf
            need_x, need_dw, need_pw = ctx.needs_input_grad[:3]
            t = F.conv2d(x, w_dw, None, stride, padding, dilation, x.shape[1])
            g_t, g_pw, _ = torch.ops.aten.convolution_backward(
                grad_out, t, w_pw, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, [need_x or need_dw, need_pw, False])
            g_x, g_dw = None, None
            if need_x or need_dw:
                g_x, g_dw, _ = torch.ops.aten.convolution_backward(
                    g_t, x, w_dw, None, stride, padding, dilation, False, (0, 0), x.shape[1], [need_x, need_dw, False])
            return g_x, g_dw, g_pw, None, None, None
        inputs = [t.view_as(t) if create else t.detach().requires_grad_(need)
                  for t, need in zip((x, w_dw, w_pw), ctx.needs_input_grad[:3])]
        wrt = [t for t, need in zip(inputs, ctx.needs_input_grad[:3]) if need]
        with torch.enable_grad():
            out = _dw_pw(*inputs, *ctx.conf)
            grads = iter(torch.autograd.grad(out, wrt, grad_out, create_graph=create))
        return (*[next(grads) if need else None for need in ctx.needs_input_grad[:3]], None, None, None)


def is_dw_pw(a, b) -> bool:
    """Whether modules ``a``, ``b`` are a bias-free depthwise conv and a bias-free 1x1 conv (stride 1, no pad)."""
    return (isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d) and a.bias is None and b.bias is None
            and a.groups == a.in_channels == a.out_channels and a.padding_mode == "zeros" and b.groups == 1
            and b.kernel_size == (1, 1) and b.stride == (1, 1) and b.padding == (0, 0) and b.dilation == (1, 1)
            and b.in_channels == a.out_channels)


def dw_pw(x: torch.Tensor, dw: nn.Conv2d, pw: nn.Conv2d) -> torch.Tensor:
    """``pw(dw(x))`` for ``(B, C, H, W)`` ``x``, saving only ``x`` and the weights (read from the modules now)."""
    return _DwPw.apply(x, dw.weight, pw.weight, dw.stride, dw.padding, dw.dilation)
