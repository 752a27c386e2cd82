"""The bilevel step: which parameters move when, and the second-order α gradient (DARTS Eq. 7-8)."""
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from darts.bilevel import BilevelOptimizer
from darts.errors import NonFiniteLossError
from darts.ops import DARTS_PRIMITIVES
from darts.spaces import Supernet

XI, MU, WD = 0.05, 0.9, 3e-4


def setup(order="first", hvp="finite-difference", dtype=torch.float32, fd_radius=0.01):
    torch.manual_seed(0)
    m = Supernet(4, 5, 3, DARTS_PRIMITIVES, steps=2, multiplier=2).to(dtype)
    w_opt = torch.optim.SGD(m.weight_parameters(), XI, momentum=MU, weight_decay=WD)
    a_opt = torch.optim.Adam(m.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    bo = BilevelOptimizer(m, nn.CrossEntropyLoss(), w_opt, a_opt, order, hvp, fd_radius=fd_radius)
    g = torch.Generator().manual_seed(1)
    batch = lambda: (torch.randn(4, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (4,), generator=g))
    return m, bo, batch(), batch()


def snapshot(params):
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("order", ["first", "second"])
def test_alpha_moves_only_in_alpha_steps_and_weights_only_in_weight_steps(order):
    m, bo, train, val = setup(order)
    bo.weight_step(train)  # creates momentum buffers, as in a real run
    w0, a0 = snapshot(m.weight_parameters()), snapshot(m.arch_parameters())
    bo.arch_step(train, val, XI)
    assert all(torch.equal(a, b) for a, b in zip(w0, m.weight_parameters())), "α step moved the weights"
    assert not all(torch.equal(a, b) for a, b in zip(a0, m.arch_parameters())), "α step did not move α"
    w1, a1 = snapshot(m.weight_parameters()), snapshot(m.arch_parameters())
    bo.weight_step(train)
    assert all(torch.equal(a, b) for a, b in zip(a1, m.arch_parameters())), "weight step moved α"
    assert not all(torch.equal(a, b) for a, b in zip(w1, m.weight_parameters()))


def test_second_order_does_not_touch_bn_running_stats():
    m, bo, train, val = setup("second")
    bo.weight_step(train)
    buffers = snapshot(m.buffers())
    bo.arch_gradient(train, val, XI)
    assert all(torch.equal(a, b) for a, b in zip(buffers, m.buffers()))


def brute_force_unrolled_alpha_grad(m, w_opt, crit, train, val, xi):
    """∇α L_val(w'(α), α) by differentiating through the unrolled SGD step itself (no HVP formula)."""
    names, W = zip(*m.named_weight_parameters())
    bufs = {n: b.clone() for n, b in m.named_buffers()}
    loss = lambda ws, b: crit(functional_call(m, {**ws, **bufs}, (b[0],)), b[1])
    g = torch.autograd.grad(loss(dict(zip(names, W)), train), W, create_graph=True)
    unrolled = {n: w - xi * (MU * w_opt.state[w]["momentum_buffer"] + gw + WD * w) for n, w, gw in zip(names, W, g)}
    return torch.autograd.grad(loss(unrolled, val), m.arch_parameters())


def rel_err(a, b):
    return float(torch.cat([(x - y).flatten() for x, y in zip(a, b)]).norm() / torch.cat([y.flatten() for y in b]).norm())


def test_second_order_gradients_agree_in_float64():
    m, bo, train, val = setup("second", "exact", torch.float64)
    bo.weight_step(train)
    brute = brute_force_unrolled_alpha_grad(m, bo.w_optimizer, bo.criterion, train, val, XI)
    exact, _ = bo.arch_gradient(train, val, XI)
    bo.hvp, bo.fd_radius = "finite-difference", 1e-6
    fd, _ = bo.arch_gradient(train, val, XI)
    first = torch.autograd.grad(bo.criterion(m(val[0]), val[1]), m.arch_parameters())
    assert rel_err(exact, brute) < 1e-10
    assert rel_err(fd, exact) < 1e-2
    assert rel_err(fd, brute) < 1e-2
    assert rel_err(first, exact) > 1e-3  # the second-order term is really there


def test_non_finite_loss_is_reported():
    m, bo, train, val = setup()
    with torch.no_grad():
        m.classifier.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="nan"):
        bo.step(train, val, XI)
