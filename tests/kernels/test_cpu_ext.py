"""The compiled CPU kernels (``kernels/csrc``) against float64 PyTorch references, and the fall-back around them.

Where a C++ compiler is on the PATH (CI, and every Linux machine with g++) the library must build: a failed
build is a test failure there, not a skip.
"""
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from kernels import cpu_ext
from kernels.bn_sum import bn_weighted_sum
from kernels.reference import bn_weighted_sum_reference

HAS_COMPILER = any(shutil.which(c) for c in ("c++", "g++", "clang++"))
OPS = cpu_ext.load()
needs_ops = pytest.mark.skipif(OPS is None, reason=f"compiled kernels unavailable: {cpu_ext.status()}")

# (B, C, H, W, K): odd channel counts and map sizes, more rows than one 256-row block, 1x1 and 1xW maps
SHAPES = [(3, 36, 7, 7, 4), (2, 5, 3, 3, 1), (4, 16, 13, 11, 6), (2, 3, 1, 1, 2), (1, 4, 1, 3, 2)]


def _cl(t):
    return t.contiguous(memory_format=torch.channels_last)


def _inputs(B, C, H, W, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    ys = [_cl(torch.randn(B, C, H, W, generator=g) * (k + 1) + 3 * k) for k in range(K)]
    w = torch.softmax(torch.randn(K, generator=g), 0)
    return ys, w, g


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on the PATH")
def test_builds_where_there_is_a_compiler():
    assert OPS is not None, cpu_ext.status()
    assert cpu_ext.status() == "compiled CPU kernels: in use"


@needs_ops
@pytest.mark.parametrize("shape", SHAPES)
def test_bn_sum_forward_backward_match_float64_reference(shape):
    B, C, H, W, K = shape
    ys, w, g = _inputs(*shape)
    # The output gradient as a channel slice of a wider channels-last tensor, as a cell's concatenation gives it.
    wide = _cl(torch.randn(B, 3 * C, H, W, generator=g))
    grad = wide[:, C : 2 * C]
    out, mean, rstd, var = OPS.bn_sum_forward(ys, w, 1e-5)
    y64 = [y.double().requires_grad_() for y in ys]
    w64 = w.double().requires_grad_()
    ref = bn_weighted_sum_reference(y64, w64, 1e-5)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last)
    for k, y in enumerate(y64):
        v, m = torch.var_mean(y.detach(), dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean[k].double(), m, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(var[k].double(), v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rstd[k].double(), (v + 1e-5).rsqrt(), rtol=1e-5, atol=1e-5)
    need = [k % 2 == 0 for k in range(K)]
    gw, *gys = OPS.bn_sum_backward(grad, ys, w, mean, rstd, need)
    ref_gw, *ref_gys = torch.autograd.grad(ref, [w64, *y64], grad.double())
    torch.testing.assert_close(gw.double(), ref_gw, rtol=1e-4, atol=1e-4)
    for k in range(K):
        if need[k]:
            torch.testing.assert_close(gys[k].double(), ref_gys[k], rtol=1e-4, atol=1e-5)
        else:
            assert gys[k] is None


@needs_ops
def test_bn_sum_autograd_node_uses_the_compiled_kernel_and_matches_the_reference():
    ys, w, g = _inputs(3, 36, 7, 7, 5)
    ys = [y.requires_grad_() for y in ys]
    w = w.requires_grad_()
    out = bn_weighted_sum(ys, w, 1e-5)
    assert out.grad_fn.ext  # the compiled kernel ran, not the ATen fall-back
    grad = torch.randn(out.shape, generator=g)  # contiguous (NCHW): the node copies it to channels-last
    got = torch.autograd.grad(out, [w, *ys], grad)
    ref = bn_weighted_sum_reference(ys, w, 1e-5)
    want = torch.autograd.grad(ref, [w, *ys], grad)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_ops
def test_bn_sum_running_stats_move_like_batchnorm():
    ys, w, _ = _inputs(3, 36, 7, 7, 3)
    bns = [torch.nn.BatchNorm2d(36, affine=False) for _ in ys]
    ref = [torch.nn.BatchNorm2d(36, affine=False) for _ in ys]
    for a, b in zip(bns, ref):
        a.running_mean.uniform_()
        b.running_mean.copy_(a.running_mean)
    untouched = bns[2].running_mean.clone()
    with torch.no_grad():
        for _ in range(2):
            running = [(b.running_mean, b.running_var, b.momentum) for b in bns[:2]] + [None]
            bn_weighted_sum(ys, w, 1e-5, running)  # channels-last float32: the compiled kernel
            for b, y in zip(ref, ys):
                b(y)
    for a, b in zip(bns[:2], ref[:2]):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-6, atol=1e-6)
    assert torch.equal(bns[2].running_mean, untouched)  # a BN given no running statistics is left alone


@needs_ops
@pytest.mark.parametrize("shape", [(3, 36, 7, 7), (4, 16, 13, 11), (1, 5, 1, 2)])
def test_bn_relu_match_float64_reference(shape):
    g = torch.Generator().manual_seed(1)
    u = _cl(torch.randn(*shape, generator=g) * 2 + 0.5)
    grad = _cl(torch.randn(*shape, generator=g))
    a, mean, rstd, var = OPS.bn_relu_forward(u, 1e-5)
    u64 = u.double().requires_grad_()
    ref = F.relu(F.batch_norm(u64, None, None, training=True, eps=1e-5))
    torch.testing.assert_close(a.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(OPS.bn_relu_apply(u, mean, rstd), a, rtol=0, atol=0)
    (want,) = torch.autograd.grad(ref, [u64], grad.double())
    got = OPS.bn_relu_backward(grad, u, mean, rstd)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@needs_ops
def test_reductions_do_not_depend_on_the_thread_count():
    ys, w, g = _inputs(8, 16, 16, 16, 3)  # 2048 rows: 8 blocks
    grad = _cl(torch.randn(8, 16, 16, 16, generator=g))
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out, mean, rstd, _ = OPS.bn_sum_forward(ys, w, 1e-5)
            results.append([out, mean, rstd, *OPS.bn_sum_backward(grad, ys, w, mean, rstd, [True] * 3),
                            OPS.bn_relu_backward(grad, ys[0], mean[0], rstd[0])])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_ops
def test_bad_input_gets_a_clear_error():
    ys, w, _ = _inputs(2, 4, 3, 3, 2)
    with pytest.raises(RuntimeError, match="channels-last"):
        OPS.bn_sum_forward([y.contiguous() for y in ys], w, 1e-5)
    with pytest.raises(RuntimeError, match="float32"):
        OPS.bn_relu_forward(ys[0].double(), 1e-5)
    with pytest.raises(RuntimeError, match="2 weights"):
        OPS.bn_sum_forward(ys[:1], w, 1e-5)


@needs_ops
@pytest.mark.parametrize("k,stride,pad,dil", [(3, 1, 1, 1), (5, 1, 4, 2), (3, 2, 0, 1), (5, 2, 3, 2), (3, 1, 2, 1)])
@pytest.mark.parametrize("hw", [(7, 9), (2, 3), (16, 16)])
def test_dw_conv_forward_and_weight_grad_match_aten_float64(k, stride, pad, dil, hw):
    g = torch.Generator().manual_seed(k + stride + pad + dil + hw[0])
    C = 48
    x = _cl(torch.randn(3, C, *hw, generator=g))
    w = torch.randn(C, 1, k, k, generator=g)
    if (hw[0] + 2 * pad - dil * (k - 1) - 1) < 0 or (hw[1] + 2 * pad - dil * (k - 1) - 1) < 0:
        with pytest.raises(RuntimeError, match="does not fit"):
            OPS.dw_conv_forward(x, w, stride, pad, dil)
        return
    y = OPS.dw_conv_forward(x, w, stride, pad, dil)
    conf = ((stride,) * 2, (pad,) * 2, (dil,) * 2)
    ref = F.conv2d(x.double(), w.double(), None, *conf, C)
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=torch.channels_last)
    flipped = F.conv2d(x.double(), w.double().flip(-1, -2), None, *conf, C)  # the input gradient's kernel
    torch.testing.assert_close(OPS.dw_conv_forward(x, w, stride, pad, dil, True).double(), flipped, rtol=1e-5,
                               atol=1e-5)
    grad = _cl(torch.randn(y.shape, generator=g))
    gw = OPS.dw_conv_weight_grad(grad, x, k, stride, pad, dil)
    want = torch.ops.aten.convolution_backward(grad.double(), x.double(), w.double(), None, *conf, False, (0, 0), C,
                                               [False, True, False])[1]
    torch.testing.assert_close(gw.double(), want, rtol=1e-5, atol=1e-4)


@needs_ops
def test_dw_conv_bad_input_gets_a_clear_error():
    x = _cl(torch.randn(2, 8, 5, 5))
    with pytest.raises(RuntimeError, match="multiple of 16"):
        OPS.dw_conv_forward(x, torch.randn(8, 1, 3, 3), 1, 1, 1)
    x = _cl(torch.randn(2, 16, 5, 5))
    with pytest.raises(RuntimeError, match="3 or 5"):
        OPS.dw_conv_forward(x, torch.randn(16, 1, 7, 7), 1, 3, 1)
    with pytest.raises(RuntimeError, match="channels-last"):
        OPS.dw_conv_weight_grad(torch.randn(2, 16, 5, 5), x, 3, 1, 1, 1)


def test_disabled_by_environment_falls_back_with_a_reason():
    code = ("import torch\nfrom kernels import cpu_ext\nfrom kernels.bn_sum import bn_weighted_sum\n"
            "assert cpu_ext.load() is None\nprint(cpu_ext.status())\n"
            "ys = [torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()]\n"
            "out = bn_weighted_sum(ys, torch.ones(1))\nassert not out.grad_fn.ext\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "DARTS_FORGE_CPU_EXT": "0"})
    assert r.returncode == 0, r.stderr
    assert "not used (DARTS_FORGE_CPU_EXT=0)" in r.stdout
