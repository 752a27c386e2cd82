"""The fused supernet paths give the reference's losses, weight and α gradients and BN running statistics.

``fused_cpu`` and ``triton`` (interpreter on CPU, at a tiny size) against ``reference`` from the same weights,
for the first-order α gradient, the second-order one with the finite-difference and the exact Hessian-vector
product, and the weight step; also the mixed op alone and search spaces with ops the fused path does not know.
"""
import copy
import importlib.util

import pytest
import torch
import torch.nn as nn

from darts.bilevel import BilevelOptimizer
from darts.ops import DARTS_PRIMITIVES
from darts.spaces import Supernet
from darts.supernet import MixedOp

IMPLS = ["fused_cpu", pytest.param("triton", marks=pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"))]
_no_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
TOL = dict(rtol=2e-3, atol=2e-4)  # float32: BN over a few elements amplifies summation-order differences


def _pair(impl, primitives=DARTS_PRIMITIVES, C=4, device="cpu"):
    torch.manual_seed(0)
    ref = Supernet(C, 5, 3, primitives, steps=2, multiplier=2, kernels="reference").to(device)
    fused = copy.deepcopy(ref)
    fused.kernels = impl
    assert fused.set_kernels(impl, device) == impl
    return ref, fused


def _bilevel(model, order, hvp):
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, order, hvp)


def _batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(3)]


def _assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **TOL)


ORDERS = [("first", "finite-difference"), ("second", "finite-difference"), ("second", "exact")]
_no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# The interpreter runs every Triton program in Python: its second-order finite-difference case adds ~40 s and
# only repeats the kernel calls the other two cases make, so it runs where the kernels are compiled (CUDA).
CASES = ([pytest.param("fused_cpu", o, h, "cpu") for o, h in ORDERS]
         + [pytest.param("triton", o, h, "cpu", marks=_no_triton) for o, h in ORDERS if h == "exact" or o == "first"]
         + [pytest.param("triton", o, h, "cuda", marks=[pytest.mark.cuda, _no_cuda, _no_triton]) for o, h in ORDERS])


@pytest.mark.parametrize("impl,order,hvp,device", CASES)
def test_bilevel_step_matches_reference(impl, order, hvp, device):
    ref, fused = _pair(impl, device=device)
    (tr1, tr2, val) = [(x.to(device), y.to(device)) for x, y in _batches()]
    results = []
    for model in (ref, fused):
        bo = _bilevel(model, order, hvp)
        bo.weight_step(tr1)  # populate momentum buffers, which enter the unrolled step
        g_alpha, loss = bo.arch_gradient(tr2, val, xi=0.025)
        logits = model(tr2[0])
        loss_w = nn.functional.cross_entropy(logits, tr2[1])
        g_w = torch.autograd.grad(loss_w, model.weight_parameters())
        results.append((loss, g_alpha, loss_w, g_w, [b.clone() for b in model.buffers()]))
    (l0, a0, lw0, w0, b0), (l1, a1, lw1, w1, b1) = results
    torch.testing.assert_close(l1, l0, **TOL)
    torch.testing.assert_close(lw1, lw0, **TOL)
    _assert_same(a1, a0)
    _assert_same(w1, w0)
    _assert_same(b1, b0)  # running statistics moved the same way (and num_batches_tracked counted the same)


# 16x16 and more also take the average pool's depthwise-sum path of fused_cpu (the Triton cell shares it).
MIXED_CASES = ([pytest.param("fused_cpu", s, n) for s, n in ((1, 7), (2, 8), (1, 17), (2, 16))]
               + [pytest.param("triton", s, n, marks=_no_triton) for s, n in ((1, 7), (2, 8))])


@pytest.mark.parametrize("impl,stride,size", MIXED_CASES)
def test_mixed_op_matches_reference(impl, stride, size):
    torch.manual_seed(0)
    op = MixedOp(6, stride, DARTS_PRIMITIVES)
    fused = copy.deepcopy(op)
    fused.impl = impl
    x = torch.randn(3, 6, size, size, requires_grad=True)
    w = torch.softmax(torch.randn(len(DARTS_PRIMITIVES)), 0).requires_grad_()
    g = None
    outs = []
    for m in (op, fused):
        y = m(x, w)
        g = torch.randn_like(y) if g is None else g
        outs.append((y, *torch.autograd.grad(y, [x, w, *m.parameters()], g)))
    _assert_same(outs[1], outs[0])
    _assert_same(list(fused.buffers()), list(op.buffers()))


@pytest.mark.parametrize("primitives", [("none", "sep_conv_7x7", "conv_7x1_1x7", "skip_connect", "max_pool_3x3"),
                                        ("none",), ("avg_pool_3x3", "dil_conv_3x3")])
def test_other_search_spaces_match_reference(primitives):
    ref, fused = _pair("fused_cpu", primitives)
    x, y = _batches()[0]
    grads = []
    for m in (ref, fused):
        loss = nn.functional.cross_entropy(m(x), y)
        grads.append([loss, *torch.autograd.grad(loss, list(m.parameters()), allow_unused=True, materialize_grads=True)])
    _assert_same(grads[1], grads[0])


def test_eval_mode_and_checkpoints_are_interchangeable():
    ref, fused = _pair("fused_cpu")
    assert list(ref.state_dict()) == list(fused.state_dict())
    fused.load_state_dict(ref.state_dict())
    x = _batches()[0][0]
    ref.eval(), fused.eval()
    torch.testing.assert_close(fused(x), ref(x))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(16, 16), (17, 19)])
def test_avg_pool_as_depthwise_sum(stride, hw):
    """The CPU average pool (ones-kernel depthwise sum / tap count) equals nn.AvgPool2d, value and gradient."""
    from kernels.fused_cpu import _pool

    pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    x = torch.randn(2, 3, *hw, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(_pool(pool, x), pool(x), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: _pool(pool, t), (x,))
    ceil = nn.AvgPool2d(3, stride, 1, ceil_mode=True, count_include_pad=False)
    torch.testing.assert_close(_pool(ceil, x), ceil(x))  # another configuration: the pool module itself


def test_replacing_a_candidate_is_seen_by_the_fused_path():
    """The fused path works out each edge's candidates once; a replaced candidate module is picked up."""
    torch.manual_seed(0)
    op = MixedOp(4, 1, ("skip_connect", "avg_pool_3x3", "sep_conv_3x3"))
    op.impl = "fused_cpu"
    x, w = torch.randn(2, 4, 6, 6), torch.softmax(torch.randn(3), 0)
    op(x, w)
    op.candidates[2] = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False))  # not a ReLU-conv-BN op: runs as is
    expected = w[0] * x + w[1] * op.candidates[1](x) + w[2] * op.candidates[2](x)
    torch.testing.assert_close(op(x, w), expected, **TOL)
