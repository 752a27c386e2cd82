"""Depthwise conv followed by a 1x1 conv, keeping only the input for backward (the separable convs of DARTS).

In SepConv and DilConv a depthwise conv feeds a pointwise conv, whose weight gradient needs the depthwise output.
Storing that output costs one activation per depthwise conv (6 per edge in the DARTS space, about a third of all
the supernet keeps). Here backward recomputes it from the input, which is kept anyway (it is the shared ReLU of
the node, or the SepConv's inner ReLU): a little more arithmetic for much less memory, and none at all in the
passes that want no weight gradient (the α-only passes of the bilevel step), which skip the recomputation. The
depthwise conv and its gradients are those of :mod:`kernels.dwconv` (the fast oneDNN cases on CPU).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dwconv import dw_conv, dw_conv_backward


def _dw_pw(x, w_dw, w_pw, stride, padding, dilation):
    return F.conv2d(dw_conv(x, w_dw, stride, padding, dilation), w_pw)


def _will_run(ctx, i: int) -> bool:
    """Whether the engine will use input ``i``'s gradient in this backward call.

    ``ctx.needs_input_grad`` says what required grad at forward time; ``torch.autograd.grad(loss, alphas)`` (the
    α-only passes of the bilevel step) still does not want the weights' gradients, and the engine knows it. The
    engine answers for graph nodes only, not for a leaf inside ``torch.autograd.grad``, hence the views in
    :func:`dw_pw`; where it cannot answer, the gradient is computed.
    """
    fn = ctx.next_functions[i][0]
    if fn is None:
        return False
    try:
        return torch._C._will_engine_execute_node(fn)
    except (AttributeError, RuntimeError):
        return True


class _DwPw(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_dw, w_pw, stride, padding, dilation):
        ctx.conf = (stride, padding, dilation)
        ctx.save_for_backward(x, w_dw, w_pw)
        return _dw_pw(x, w_dw, w_pw, stride, padding, dilation)

    # VJPs are those of the two convolutions, t = dw(x), out = pw(t): ∂L/∂w_pw = Σ g ⊗ t, ∂L/∂t = pw^T g (a 1x1
    # conv with the transposed weight), ∂L/∂x = dw^T(∂L/∂t), ∂L/∂w_dw = Σ ∂L/∂t ⊗ x; t is recomputed here, only
    # when ∂L/∂w_pw is wanted. Under create_graph (``--hvp exact``) the recomputation is recorded on aliases of the
    # saved inputs, so the result can be differentiated again.
    @staticmethod
    def backward(ctx, grad_out):
        x, w_dw, w_pw = ctx.saved_tensors
        create = torch.is_grad_enabled()
        if not create:  # the two conv backwards directly: no autograd graph, no second 1x1 forward
            stride, padding, dilation = ctx.conf
            need_x, need_dw, need_pw = [n and _will_run(ctx, i) for i, n in enumerate(ctx.needs_input_grad[:3])]
            g_x = g_dw = g_pw = None
            if need_pw:
                t = dw_conv(x, w_dw, stride, padding, dilation)
                g_pw = torch.ops.aten.convolution_backward(
                    grad_out, t, w_pw, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, [False, True, False])[1]
            if need_x or need_dw:
                g_t = F.conv2d(grad_out, w_pw.transpose(0, 1))
                g_x, g_dw = dw_conv_backward(g_t, x, w_dw, stride, padding, dilation, need_x, need_dw)
            return g_x, g_dw, g_pw, None, None, None
        inputs = [t.view_as(t) for t in (x, w_dw, w_pw)]
        wrt = [t for t, need in zip(inputs, ctx.needs_input_grad[:3]) if need]
        with torch.enable_grad():
            out = _dw_pw(*inputs, *ctx.conf)
            grads = iter(torch.autograd.grad(out, wrt, grad_out, create_graph=True))
        return (*[next(grads) if need else None for need in ctx.needs_input_grad[:3]], None, None, None)


def is_dw_pw(a, b) -> bool:
    """Whether modules ``a``, ``b`` are a bias-free depthwise conv and a bias-free 1x1 conv (stride 1, no pad)."""
    return (isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d) and a.bias is None and b.bias is None
            and a.groups == a.in_channels == a.out_channels and a.padding_mode == "zeros" and b.groups == 1
            and b.kernel_size == (1, 1) and b.stride == (1, 1) and b.padding == (0, 0) and b.dilation == (1, 1)
            and b.in_channels == a.out_channels)


def dw_pw(x: torch.Tensor, dw: nn.Conv2d, pw: nn.Conv2d) -> torch.Tensor:
    """``pw(dw(x))`` for ``(B, C, H, W)`` ``x``, saving only ``x`` and the weights (read from the modules now)."""
    # Views give a leaf weight a graph node, which the engine can say it will not run (see _will_run).
    w_dw, w_pw = (w.view_as(w) if w.requires_grad and w.is_leaf else w for w in (dw.weight, pw.weight))
    return _DwPw.apply(x, w_dw, w_pw, dw.stride, dw.padding, dw.dilation)
