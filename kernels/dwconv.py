"""Depthwise convolution forward and gradients built from the fast oneDNN cases (the DARTS sep/dil convs on CPU).

On CPU, oneDNN's depthwise conv is fast in forward for every kernel, but in backward only for kernels at most 3
wide without dilation: at batch 32, C=16, 32x32, channels-last, one thread, the 5x5 weight gradient takes 3.8 ms
against 0.2 ms for 3x3, the dilation-2 3x3 and 5x5 input gradients 1.8 and 3.9 ms against 0.2 ms for their
forward. Every gradient here is rewritten, with the same sums, in terms of the fast cases:

* Input gradient at stride 1 with "same" padding ``p = d(k−1)/2``: the transposed conv is the forward conv of
  ``g`` with the kernel flipped, ``∂L/∂x[u] = Σ_i g[u + d·i − p] · w[k−1−i]``.
* Stride 2, dilation 2 (the dil convs of a reduction cell): with ``p = k−1`` even, ``y[h] = Σ_i x[2h + 2i − p]
  w[i]`` reads the even phase ``x[::2, ::2]`` only, so the op is a dilation-1, stride-1 conv of that phase with
  padding ``(k−1)/2``, and the odd phases get zero gradient.
* Dilation 2 at stride 1 on even sizes: the four polyphase sub-images (space-to-batch) do not interact, and each
  is a dilation-1 conv with padding ``(k−1)/2``; the weight gradient is the sum over the four, i.e. one
  dilation-1 weight gradient with the phases stacked into the batch.
* Weight gradient of a ``k x k`` kernel, ``k > 3``: the middle three columns are one ``k x 3`` weight gradient;
  each outer column ``j`` (offset ``o = j − p``) is a ``k x 1`` one on ``g`` shifted by ``o`` columns, since
  ``Σ x[h+i−p, w+o] g[h, w] = Σ x[h+i−p, w] g[h, w−o]``. On images smaller than a 5x5 kernel, where those are
  slow too, four 3x3 weight gradients on shifted windows instead.

Anything else (other devices, strides, paddings, odd sizes under dilation) takes ``aten.convolution_backward``,
the reference these are tested against in ``tests/kernels/test_dwconv.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import cpu_ext

_aten = torch.ops.aten


def _fmt(t: torch.Tensor):
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _plan(x: torch.Tensor, w: torch.Tensor, stride, padding, dilation) -> str | None:
    """Which rewrite applies: ``s1``, ``s1d2`` (polyphase), ``s2d1``, ``s2d2`` (even phase), or None (aten)."""
    k = w.shape[-1]
    if x.device.type != "cpu" or w.shape[-2] != k or k % 2 == 0 or x.dim() != 4:
        return None
    s, d = tuple(stride), tuple(dilation)
    if s not in ((1, 1), (2, 2)) or d not in ((1, 1), (2, 2)) or tuple(padding) != (d[0] * (k - 1) // 2,) * 2:
        return None
    even = x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
    if s == (1, 1):
        return "s1" if d == (1, 1) else ("s1d2" if even else None)
    return "s2d1" if d == (1, 1) else ("s2d2" if even else None)


#: The compiled forward runs on maps of at most this many pixels: there it beats oneDNN clearly; on larger maps it
#: gains little and fragments glibc's heap, which raises the peak RSS (docs/performance.md).
COMPILED_FORWARD_MAX_PIXELS = 64


def _compiled(x: torch.Tensor, w: torch.Tensor, stride, padding, dilation):
    """The compiled ops (``kernels/csrc/dwconv.cpp``) where they apply to this conv, else None.

    They take channels-last float32 CPU maps with a multiple of 16 channels, square 3x3 or 5x5 kernels and the
    same stride, padding and dilation in both directions, and record no autograd graph, so not where one is being
    recorded through them (the double-backward path of ``--hvp exact``).
    """
    k = w.shape[-1]
    if (x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32 or x.dim() != 4
            or x.shape[1] % 16 or k not in (3, 5) or w.shape[-2] != k
            or not x.is_contiguous(memory_format=torch.channels_last)
            or len({*stride}) != 1 or len({*padding}) != 1 or len({*dilation}) != 1
            or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))):
        return None
    return cpu_ext.load()


def dw_conv(x: torch.Tensor, w: torch.Tensor, stride, padding, dilation, flip: bool = False) -> torch.Tensor:
    """Depthwise ``conv2d(x, w, stride, padding, dilation, groups=C)``; ``x`` ``(B, C, H, W)``, ``w`` ``(C, 1, k, k)``.

    With the compiled kernels, on maps up to :data:`COMPILED_FORWARD_MAX_PIXELS`, every case but the dilated 5x5
    stride-1 one (where oneDNN is as fast or faster) runs as ``dw_conv_forward``. Otherwise the stride-2, dilation-2 case runs
    as a plain conv of the even phase
    (oneDNN's channels-last kernel for it is several times slower than for the plain conv), and everything else is
    ``F.conv2d``. ``flip``: convolve with the kernel flipped in both directions (the input gradient).
    """
    ops = _compiled(x, w, stride, padding, dilation)
    if (ops is not None and x.shape[-2] * x.shape[-1] <= COMPILED_FORWARD_MAX_PIXELS
            and (w.shape[-1] == 3 or stride[0] > 1 or dilation[0] == 1)):
        return ops.dw_conv_forward(x, w, stride[0], padding[0], dilation[0], flip)
    if flip:
        w = w.flip(-1, -2)
    if _plan(x, w, stride, padding, dilation) == "s2d2":
        xe = x[:, :, ::2, ::2].contiguous(memory_format=_fmt(x))
        return F.conv2d(xe, w, None, 1, (w.shape[-1] - 1) // 2, 1, x.shape[1])
    return F.conv2d(x, w, None, stride, padding, dilation, x.shape[1])


def _aten_backward(g, x, w, stride, padding, dilation, need_x, need_w):
    gx, gw, _ = _aten.convolution_backward(g, x, w, None, stride, padding, dilation, False, (0, 0), x.shape[1],
                                           [need_x, need_w, False])
    return gx, gw


def _input_grad_s1(g: torch.Tensor, w: torch.Tensor, dilation: int) -> torch.Tensor:
    """``∂L/∂x`` of a stride-1, "same"-padded depthwise conv: the forward conv of ``g`` with the flipped kernel."""
    k = w.shape[-1]
    p = dilation * (k - 1) // 2
    return dw_conv(g, w, (1, 1), (p, p), (dilation, dilation), flip=True)


def _weight_grad_5x5_blocks(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``∂L/∂w`` of a 5x5 "same" depthwise conv as four 3x3 weight gradients on windows of ``x`` padded by 2.

    The block at offset ``(a, b)`` (``a, b`` in {0, 2}) is ``Σ xp[h + a + i, w + b + j] g[h, w]``, the taps
    ``(a + i, b + j)`` of the 5x5 kernel; the four blocks cover it, and the overlapping middle row and column are
    taken from one of them. Used where the image is smaller than the kernel (the dilation-2 5x5 convs of the 8x8
    cells, on 4x4 phases), where oneDNN's 5x3 and 5x1 weight gradients are slow (1.25 ms against 0.54 ms for
    this at batch 128, C=64, 4x4, channels-last, 2 threads).
    """
    C, H, W = x.shape[1], x.shape[-2], x.shape[-1]
    xp = F.pad(x, (2, 2, 2, 2))
    w3 = x.new_empty(C, 1, 3, 3)
    out = x.new_empty(C, 1, 5, 5)
    for a in (0, 2):
        for b in (0, 2):
            out[..., a : a + 3, b : b + 3] = _aten_backward(
                g, xp[:, :, a : a + H + 2, b : b + W + 2], w3, (1, 1), (0, 0), (1, 1), False, True)[1]
    return out


def _weight_grad_d1(g: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """``∂L/∂w`` ``(C, 1, k, k)`` of a stride-1, dilation-1 depthwise conv with padding ``(k−1)/2``."""
    C, p = x.shape[1], (k - 1) // 2
    if k <= 3:
        return _aten_backward(g, x, x.new_empty(C, 1, k, k), (1, 1), (p, p), (1, 1), False, True)[1]
    if k == 5 and min(x.shape[-2:]) < k:
        return _weight_grad_5x5_blocks(g, x)
    out = x.new_empty(C, 1, k, k)
    out[..., p - 1 : p + 2] = _aten_backward(g, x, x.new_empty(C, 1, k, 3), (1, 1), (p, 1), (1, 1), False, True)[1]
    col = x.new_empty(C, 1, k, 1)
    for j in (*range(p - 1), *range(p + 2, k)):
        o = j - p
        if abs(o) >= g.shape[-1]:  # the column never overlaps the image
            out[..., j] = 0
            continue
        g_shift = F.pad(g, (o, -o))  # g_shift[..., w] = g[..., w − o], zero where w − o is outside
        out[..., j : j + 1] = _aten_backward(g_shift, x, col, (1, 1), (p, 0), (1, 1), False, True)[1]
    return out


def _to_phases(t: torch.Tensor) -> torch.Tensor:
    """Space-to-batch: ``(B, C, H, W)`` -> ``(4B, C, H/2, W/2)``, phase ``(a, b)`` = ``t[:, :, a::2, b::2]``."""
    B, C, H, W = t.shape
    if t.is_contiguous(memory_format=torch.channels_last):  # one copy, C innermost
        p = t.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C).permute(2, 4, 0, 1, 3, 5)
        return p.reshape(4 * B, H // 2, W // 2, C).permute(0, 3, 1, 2)
    return t.reshape(B, C, H // 2, 2, W // 2, 2).permute(3, 5, 0, 1, 2, 4).reshape(4 * B, C, H // 2, W // 2)


def dw_conv_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride, padding, dilation,
                     need_x: bool = True, need_w: bool = True):
    """``(∂L/∂x, ∂L/∂w)`` of :func:`dw_conv` for output gradient ``g``; an entry not needed is None.

    Same sums as ``aten.convolution_backward`` (the rewrites in the module docstring), in a different order.
    """
    plan = _plan(x, w, stride, padding, dilation)
    k = w.shape[-1]
    gx = gw = compiled_gw = None
    if need_w and _compiled(x, w, stride, padding, dilation) is not None:
        # Any stride and dilation, much faster than the rewrites below (see kernels/csrc/dwconv.cpp).
        compiled_gw = cpu_ext.load().dw_conv_weight_grad(g.contiguous(memory_format=torch.channels_last), x, k,
                                                         stride[0], padding[0], dilation[0])
        need_w = False
        if not need_x:
            return None, compiled_gw
    if plan is None:
        gx, gw = _aten_backward(g, x, w, stride, padding, dilation, need_x, need_w)
        return gx, gw if compiled_gw is None else compiled_gw
    if plan == "s1":
        gx = _input_grad_s1(g, w, 1) if need_x else None
        gw = _weight_grad_d1(g, x, k) if need_w else None
    elif plan == "s1d2":
        gx = _input_grad_s1(g, w, 2) if need_x else None
        gw = _weight_grad_d1(_to_phases(g), _to_phases(x), k) if need_w else None
    elif plan == "s2d2":
        if need_x:
            gx = torch.zeros_like(x, memory_format=_fmt(x))
            gx[:, :, ::2, ::2] = _input_grad_s1(g, w, 1)
        if need_w:
            gw = _weight_grad_d1(g, x[:, :, ::2, ::2].contiguous(memory_format=_fmt(x)), k)
    else:  # s2d1: the transposed conv is fast here; the 3x3 weight gradient is native, the 5x5 one rare
        if need_x:
            p = padding[0]
            extra = [x.shape[i] - ((g.shape[i] - 1) * 2 - 2 * p + k) for i in (2, 3)]
            gx = F.conv_transpose2d(g, w, None, 2, p, extra, x.shape[1], 1)
        if need_w:
            gw = _aten_backward(g, x, w, stride, padding, dilation, False, True)[1]
    return gx, gw if compiled_gw is None else compiled_gw
