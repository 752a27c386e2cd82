"""The fused BN-weighted sum ``Σ_k w_k · BN(y_k)``: reference (gradcheck), PyTorch autograd node and Triton kernels.

Triton runs in the interpreter on CPU (see conftest.py) and compiled on CUDA (tests marked ``cuda``).
"""
import importlib.util

import pytest
import torch

from kernels.bn_sum import bn_weighted_sum
from kernels.reference import bn_weighted_sum_reference

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# (B, C, H, W, K): odd channel counts and map sizes are the normal case in DARTS supernets
SHAPES = [(3, 36, 7, 7, 4), (2, 5, 3, 3, 1), (4, 16, 8, 8, 6)]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-7, atol=1e-7)}


def _inputs(B, C, H, W, K, dtype=torch.float32, device="cpu", channels_last=False):
    g = torch.Generator().manual_seed(B * 1000 + C)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ys = [(torch.randn(B, C, H, W, generator=g, dtype=dtype) * (k + 1) + k).to(device).contiguous(memory_format=fmt)
          .requires_grad_() for k in range(K)]
    w = torch.softmax(torch.randn(K, generator=g, dtype=dtype), 0).to(device).requires_grad_()
    grad = torch.randn(B, C, H, W, generator=g, dtype=dtype).to(device)
    return ys, w, grad


def _triton():
    from kernels.triton_mixed import bn_weighted_sum_triton

    return bn_weighted_sum_triton


def _check_against_reference(fn, ys, w, grad, tol):
    out = fn(ys, w, 1e-5)
    grads = torch.autograd.grad(out, [w, *ys], grad)
    ref = bn_weighted_sum_reference(ys, w, 1e-5)
    ref_grads = torch.autograd.grad(ref, [w, *ys], grad)
    torch.testing.assert_close(out, ref, **tol)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, **tol)


def test_reference_gradcheck_float64():
    ys, w, _ = _inputs(2, 3, 3, 3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w_, *y: bn_weighted_sum_reference(y, w_), (w, *ys))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_torch_node_matches_reference(shape, channels_last):
    ys, w, grad = _inputs(*shape, channels_last=channels_last)
    _check_against_reference(bn_weighted_sum, ys, w, grad, TOL[torch.float32])


def test_torch_node_gradcheck_and_double_backward_float64():
    ys, w, _ = _inputs(2, 3, 3, 3, 2, dtype=torch.float64)
    fn = lambda w_, *y: bn_weighted_sum(y, w_)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (w, *ys))
    assert torch.autograd.gradgradcheck(fn, (w, *ys))


@pytest.mark.parametrize("impl", ["torch", pytest.param("triton", marks=needs_triton)])
def test_running_stats_move_like_batchnorm(impl):
    fn = bn_weighted_sum if impl == "torch" else _triton()
    ys, w, _ = _inputs(3, 36, 7, 7, 2)
    bns = [torch.nn.BatchNorm2d(36, affine=False) for _ in ys]
    ref = [torch.nn.BatchNorm2d(36, affine=False) for _ in ys]
    for b in bns + ref:
        b.running_mean.uniform_()
    for a, b in zip(bns, ref):
        b.running_mean.copy_(a.running_mean)
    with torch.no_grad():
        fn(ys, w, 1e-5, [(b.running_mean, b.running_var, b.momentum) for b in bns])
        for b, y in zip(ref, ys):
            b(y)
    for a, b in zip(bns, ref):
        torch.testing.assert_close(a.running_mean, b.running_mean)
        torch.testing.assert_close(a.running_var, b.running_var)


@needs_triton
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_matches_reference_interpreter(shape):
    ys, w, grad = _inputs(*shape)
    _check_against_reference(_triton(), ys, w, grad, TOL[torch.float32])


@needs_triton
def test_triton_double_backward_uses_differentiable_path():
    ys, w, grad = _inputs(2, 5, 3, 3, 2, dtype=torch.float64)
    fn = _triton()
    for f in (fn, bn_weighted_sum_reference):
        out = f(ys, w, 1e-5)
        (gw,) = torch.autograd.grad(out, [w], grad, create_graph=True)
        hv = torch.autograd.grad(gw.sum(), ys)
        if f is fn:
            got = hv
        else:
            torch.testing.assert_close(got, hv, rtol=1e-5, atol=1e-6)


@needs_triton
def test_triton_is_deterministic():
    ys, w, grad = _inputs(3, 36, 7, 7, 4)
    fn = _triton()
    a = torch.autograd.grad(fn(ys, w), [w, *ys], grad)
    b = torch.autograd.grad(fn(ys, w), [w, *ys], grad)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize("shape", SHAPES + [(64, 64, 16, 16, 6)])
def test_triton_matches_reference_cuda(shape):
    ys, w, grad = _inputs(*shape, device="cuda")
    _check_against_reference(_triton(), ys, w, grad, dict(rtol=1e-4, atol=1e-4))
