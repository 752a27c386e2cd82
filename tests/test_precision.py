"""--amp (bfloat16 autocast, α step in float32) and --channels-last agree with the plain float32 step."""
import pytest
import torch
import torch.nn as nn

from darts.bilevel import BilevelOptimizer
from darts.final import NetworkCIFAR
from darts.ops import DARTS_PRIMITIVES
from darts.spaces import Supernet
from darts.zoo import get_genotype


def setup(amp=False, channels_last=False, kernels="reference"):
    torch.manual_seed(0)
    m = Supernet(8, 5, 3, DARTS_PRIMITIVES, steps=2, multiplier=2, kernels=kernels)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    w_opt = torch.optim.SGD(m.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(m.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    bo = BilevelOptimizer(m, nn.CrossEntropyLoss(), w_opt, a_opt, amp_dtype=torch.bfloat16 if amp else None)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 16, 16, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return m, bo, (x, torch.randint(0, 5, (16,), generator=g))


def rel(a, b):
    return float(torch.cat([(x - y).flatten() for x, y in zip(a, b)]).norm() / torch.cat([y.flatten() for y in b]).norm())


@pytest.mark.parametrize("kernels", ["reference", "auto"])
def test_amp_weight_step_close_to_float32_and_alpha_stays_float32(kernels):
    m32, bo32, batch = setup(kernels=kernels)
    m16, bo16, _ = setup(amp=True, kernels=kernels)
    # the α step never autocasts: at the same weights its gradient is exactly the float32 one
    g32, _ = bo32.arch_gradient(batch, batch, 0.05)
    g16, _ = bo16.arch_gradient(batch, batch, 0.05)
    assert all(g.dtype == torch.float32 for g in g16)
    for a, b in zip(g32, g16):
        assert torch.equal(a, b)
    loss32, _ = bo32.weight_step(batch)
    loss16, _ = bo16.weight_step(batch)
    assert abs(loss32 - loss16) < 2e-2 * abs(loss32)
    for a, b in zip(m32.weight_parameters(), m16.weight_parameters()):
        assert b.dtype == torch.float32  # master weights stay float32
        torch.testing.assert_close(a, b, rtol=0, atol=2e-3)  # one SGD step of lr 0.05 from bf16 gradients


def test_channels_last_matches_contiguous():
    m1, bo1, batch = setup()
    m2, bo2, batch_cl = setup(channels_last=True)
    # α gradients are sums over many float32 terms taken in another order: compare as whole vectors
    assert rel(bo2.arch_gradient(batch_cl, batch_cl, 0.05)[0], bo1.arch_gradient(batch, batch, 0.05)[0]) < 1e-3
    l1, _ = bo1.weight_step(batch)
    l2, _ = bo2.weight_step(batch_cl)
    assert abs(l1 - l2) < 1e-5
    assert rel([p.detach() for p in m2.weight_parameters()], [p.detach() for p in m1.weight_parameters()]) < 1e-5


def test_eval_network_amp_and_channels_last():
    torch.manual_seed(0)
    net = NetworkCIFAR(8, 10, 5, True, get_genotype("DARTS_V2")).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = net(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x)[0]
    torch.testing.assert_close(low.float(), ref, rtol=5e-2, atol=5e-2)
    net_cl = net.to(memory_format=torch.channels_last)
    torch.testing.assert_close(net_cl(x.contiguous(memory_format=torch.channels_last))[0], ref, rtol=1e-4, atol=1e-5)
