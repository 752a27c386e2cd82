"""The separable-conv node that keeps only its input: the modules' values, gradients (float64 gradcheck, and
gradgradcheck for ``--hvp exact``) and BatchNorm running statistics."""
import copy

import pytest
import torch
import torch.nn as nn

from darts.ops import SepConv
from kernels.fused_cpu import _running
from kernels.sepconv import _SepConv, is_sep_conv, sep_conv


def _conf(m):
    return (m.stride, m.padding, m.dilation)


@pytest.mark.parametrize("k,stride,size", [(3, 1, 6), (5, 2, 8), (3, 2, 7), (5, 1, 5)])
def test_matches_the_modules_float64(k, stride, size):
    torch.manual_seed(k + stride + size)
    m = SepConv(3, 3, k, stride, k // 2, affine=False).double()
    ref = copy.deepcopy(m)
    layers = list(m.op[1:-1])
    assert is_sep_conv(layers) and not is_sep_conv(layers[:4])
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    y = sep_conv(x, layers, _running(layers[2]))
    y_ref = nn.Sequential(*ref.op[1:-1])(x)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(m.buffers(), ref.buffers()):  # running mean, variance and the batch count moved the same way
        torch.testing.assert_close(a, b)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *m.parameters()], g)
    grads_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    ws = [layers[i].weight.detach().requires_grad_() for i in (0, 1, 4, 5)]
    fn = lambda *t: _SepConv.apply(*t, _conf(layers[0]), _conf(layers[4]), 1e-5, None)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *ws))
    assert torch.autograd.gradgradcheck(fn, (x, *ws))


def test_channels_last_float32_and_input_only():
    torch.manual_seed(0)
    m = SepConv(16, 16, 5, 1, 2, affine=False)
    layers = list(m.op[1:-1])
    x = torch.randn(3, 16, 10, 10).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(3, 16, 10, 10)
    y = sep_conv(x, layers)
    (gx,) = torch.autograd.grad(y, [x], g)  # no weight gradient wanted: the recomputation is skipped
    (gx_ref,) = torch.autograd.grad(nn.Sequential(*layers)(x), [x], g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k,stride,size", [(3, 1, 7), (5, 2, 9), (5, 1, 6)])
def test_channels_last_float32_all_gradients_and_running_stats(k, stride, size):
    """Channels-last float32 is where the compiled BN + ReLU kernels run (kernels/csrc/bn_relu.cpp), if built."""
    from kernels import cpu_ext

    torch.manual_seed(k * 10 + size)
    m = SepConv(36, 36, k, stride, k // 2, affine=False)
    ref = copy.deepcopy(m)
    layers = list(m.op[1:-1])
    x = torch.randn(3, 36, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = sep_conv(x, layers, _running(layers[2]))
    assert y.grad_fn.compiled == (cpu_ext.load() is not None)
    y_ref = nn.Sequential(*ref.op[1:-1])(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(m.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *m.parameters()], g)
    grads_ref = torch.autograd.grad(y_ref, [x, *ref.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
