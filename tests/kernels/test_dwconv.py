"""Depthwise conv forward and gradients from the fast oneDNN cases: the same values as ``aten.convolution_backward``.

Every rewrite of :mod:`kernels.dwconv` (flipped-kernel input gradient, even phase, polyphase, column-split weight
gradient), the compiled kernels (32 channels, channels-last, float32) and the fallback, on even and odd map sizes,
both memory formats, float64 and float32.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

from kernels.dwconv import _plan, _weight_grad_5x5_blocks, dw_conv, dw_conv_backward

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}
CONFIGS = list(itertools.product((3, 5, 7), (1, 2), (1, 2)))  # (k, stride, dilation), "same" padding d(k−1)/2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("k,stride,dil", CONFIGS)
@pytest.mark.parametrize("size", [8, 7, 2])
@pytest.mark.parametrize("C", [3, 32])  # 32 channels-last float32: the compiled kernels where they are built
def test_matches_aten(k, stride, dil, size, channels_last, dtype, C):
    g = torch.Generator().manual_seed(k * 100 + stride * 10 + dil + size)
    pad = dil * (k - 1) // 2
    x = torch.randn(2, C, size, size + 2, generator=g, dtype=dtype)  # H != W
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, k, k, generator=g, dtype=dtype)
    conf = ((stride,) * 2, (pad,) * 2, (dil,) * 2)
    y = dw_conv(x, w, *conf)
    torch.testing.assert_close(y, F.conv2d(x, w, None, *conf, C), **TOL[dtype])
    grad = torch.randn(y.shape, generator=g, dtype=dtype)
    ref = torch.ops.aten.convolution_backward(grad, x, w, None, *conf, False, (0, 0), C, [True, True, False])[:2]
    for need in ((True, True), (True, False), (False, True)):
        got = dw_conv_backward(grad, x, w, *conf, *need)
        for a, b, n in zip(got, ref, need):
            assert (a is not None) == n
            if n:
                torch.testing.assert_close(a, b, **TOL[dtype])


def test_plan_covers_the_darts_convs_and_falls_back_elsewhere():
    x = torch.zeros(1, 2, 8, 8)
    w3, w5 = torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 5, 5)
    assert _plan(x, w5, (1, 1), (2, 2), (1, 1)) == "s1"  # sep_conv_5x5
    assert _plan(x, w5, (1, 1), (4, 4), (2, 2)) == "s1d2"  # dil_conv_5x5
    assert _plan(x, w3, (2, 2), (2, 2), (2, 2)) == "s2d2"  # dil_conv_3x3 in a reduction cell
    assert _plan(x, w3, (2, 2), (1, 1), (1, 1)) == "s2d1"
    assert _plan(x, w3, (1, 1), (0, 0), (1, 1)) is None  # not "same" padding
    assert _plan(x[..., :7, :7], w3, (1, 1), (2, 2), (2, 2)) is None  # odd size under dilation
    assert _plan(x, torch.zeros(2, 1, 3, 5), (1, 1), (1, 2), (1, 1)) is None


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (4, 4), (9, 6)])
def test_5x5_weight_grad_from_3x3_blocks(hw, channels_last):
    """The four-block 5x5 weight gradient (used on images smaller than the kernel) on any size, float64."""
    g = torch.Generator().manual_seed(hw[0] * 10 + hw[1])
    x = torch.randn(3, 4, *hw, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    w = torch.zeros(4, 1, 5, 5, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(grad, x, w, None, (1, 1), (2, 2), (1, 1), False, (0, 0), 4,
                                              [False, True, False])[1]
    torch.testing.assert_close(_weight_grad_5x5_blocks(grad, x), ref, rtol=1e-10, atol=1e-10)
