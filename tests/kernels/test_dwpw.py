"""The depthwise + 1x1 conv node that recomputes its middle: same values and gradients as the two convs."""
import pytest
import torch
import torch.nn as nn

from kernels.dwpw import dw_pw, is_dw_pw


# The DARTS sep/dil convs (stride 1 and 2) on even maps, where kernels.dwconv rewrites the gradients, and on odd
# ones, where it falls back to aten.
@pytest.mark.parametrize("k,stride,pad,dil", [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 4, 2), (5, 1, 2, 1),
                                              (5, 2, 2, 1), (5, 1, 4, 2), (3, 2, 2, 2)])
@pytest.mark.parametrize("size", [7, 6])
def test_matches_the_two_convs_float64(k, stride, pad, dil, size):
    C = 3
    dw = nn.Conv2d(C, C, k, stride, pad, dilation=dil, groups=C, bias=False).double()
    pw = nn.Conv2d(C, 4, 1, bias=False).double()
    assert is_dw_pw(dw, pw) and not is_dw_pw(pw, dw)
    x = torch.randn(2, C, size, size, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(dw_pw(x, dw, pw), pw(dw(x)))
    fn = lambda x_, a, b: dw_pw(x_, *_modules(dw, pw, a, b))  # noqa: E731
    args = (x, dw.weight, pw.weight)
    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def _modules(dw, pw, a, b):
    """Copies of ``dw``/``pw`` whose weights are the tensors ``a``/``b`` (so gradcheck can perturb them)."""
    dw2, pw2 = nn.Conv2d.__new__(nn.Conv2d), nn.Conv2d.__new__(nn.Conv2d)
    dw2.__dict__.update(dw.__dict__, _parameters={"weight": a, "bias": None})
    pw2.__dict__.update(pw.__dict__, _parameters={"weight": b, "bias": None})
    return dw2, pw2


def test_channels_last_float32():
    C = 16
    dw = nn.Conv2d(C, C, 3, 1, 1, groups=C, bias=False)
    pw = nn.Conv2d(C, C, 1, bias=False)
    x = torch.randn(3, C, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(3, C, 9, 9)
    a = torch.autograd.grad(dw_pw(x, dw, pw), [x, dw.weight, pw.weight], g)
    b = torch.autograd.grad(pw(dw(x)), [x, dw.weight, pw.weight], g)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)


def test_alpha_only_pass_skips_weight_gradients(monkeypatch):
    """``torch.autograd.grad`` with respect to something upstream only (the α-only passes of the bilevel step):
    the weights' gradients are not computed, and the input's gradient is unchanged."""
    import kernels.dwpw as mod

    asked = []
    real = mod.dw_conv_backward
    monkeypatch.setattr(mod, "dw_conv_backward", lambda *a: asked.append(a[-2:]) or real(*a))
    C = 4
    dw = nn.Conv2d(C, C, 5, 1, 2, groups=C, bias=False)
    pw = nn.Conv2d(C, C, 1, bias=False)
    a = torch.randn(2, C, 8, 8, requires_grad=True)
    y = dw_pw(a * 2, dw, pw)
    g = torch.randn_like(y)
    (ga,) = torch.autograd.grad(y, [a], g, retain_graph=True)
    (gr,) = torch.autograd.grad(pw(dw(a * 2)), [a], g)
    torch.testing.assert_close(ga, gr, rtol=1e-4, atol=1e-5)
    assert asked == [(True, False)]
    y.backward(g, inputs=[dw.weight])
    assert dw.weight.grad is not None and pw.weight.grad is None
