"""Zero-cost proxies: each against its formula computed independently on a tiny network, and on NAS-Bench-201 the
data-independent ones against NAS-Bench-Suite-Zero's published scores (../shared/nb201/, never copied here)."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.errors import ConfigError, DartsError
from darts.proxies import PROXIES, score
from darts.spaces.nb201 import NB201Genotype, NB201Network
from tests.test_nb201_bench import ZERO_COST, needs_zero_cost


class Tiny(nn.Module):
    """conv(2->3, 3x3) - ReLU - global mean - linear(3->4)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, 4, bias=False)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


def functional(params, x):
    """Tiny's forward written out, so gradients can be taken with respect to a parameter list."""
    w1, w2 = params
    return F.linear(F.relu(F.conv2d(x, w1, padding=1)).mean((2, 3)), w2)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    net = Tiny()
    x = torch.randn(6, 2, 5, 5)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    return net, x, y


def params_of(net):
    return [net.conv.weight.detach().clone().requires_grad_(True), net.fc.weight.detach().clone().requires_grad_(True)]


def test_synflow_is_the_sum_of_the_synaptic_flow():
    """For a network of linear layers and ReLUs with positive weights and a ones input, R = Σ f(1) is homogeneous of
    degree 1 in each layer's weights, so Σ_θ θ·∂R/∂θ over one layer is R itself (Euler): synflow = log(L·R)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    w1, w2 = net[0].weight.detach().double().abs(), net[2].weight.detach().double().abs()
    R = float((w2 @ torch.relu(w1 @ torch.ones(4, dtype=torch.float64))).sum())
    assert score(net, "synflow", input_size=(4,)) == pytest.approx(math.log(2 * R), rel=1e-12)
    assert net[0].weight.min() < 0  # the network itself is untouched (a copy is scored)


def test_snip_grad_norm_and_plain(tiny):
    net, x, y = tiny
    params = params_of(net)
    grads = torch.autograd.grad(F.cross_entropy(functional(params, x), y), params)
    assert score(net, "snip", (x, y)) == pytest.approx(float(sum((g * p.detach()).abs().sum() for g, p in zip(grads, params))),
                                                       rel=1e-5)
    assert score(net, "grad_norm", (x, y)) == pytest.approx(float(sum(g.norm() for g in grads)), rel=1e-5)
    assert score(net, "plain", (x, y)) == pytest.approx(float(sum((g * p.detach()).sum() for g, p in zip(grads, params))),
                                                        rel=1e-4, abs=1e-7)


def test_grasp_is_minus_theta_times_the_hessian_gradient_product(tiny):
    net, x, y = tiny
    params = params_of(net)
    flat = torch.cat([p.reshape(-1) for p in params]).detach()
    sizes = [p.numel() for p in params]
    shapes = [p.shape for p in params]

    def loss(v):
        w = [t.reshape(s) for t, s in zip(torch.split(v, sizes), shapes)]
        return F.cross_entropy(functional(w, x), y)

    g = torch.autograd.functional.jacobian(loss, flat)
    H = torch.autograd.functional.hessian(loss, flat)  # the dense Hessian
    assert score(net, "grasp", (x, y)) == pytest.approx(float(-(flat * (H @ g)).sum()), rel=1e-4, abs=1e-8)


def test_fisher_per_channel_of_every_layer(tiny):
    net, x, y = tiny
    params = params_of(net)
    w1, w2 = params
    a1 = F.conv2d(x, w1, padding=1)
    a1.retain_grad()
    a2 = F.linear(F.relu(a1).mean((2, 3)), w2)
    a2.retain_grad()
    F.cross_entropy(a2, y).backward()
    # ½ mean over the batch of (Σ_spatial a·∂L/∂a)² per output channel, times the layer's fan-in, summed
    conv = (0.5 * ((a1 * a1.grad).sum((2, 3)) ** 2).mean(0)).sum() * (2 * 3 * 3)
    fc = (0.5 * ((a2 * a2.grad) ** 2).mean(0)).sum() * 3
    assert score(net, "fisher", (x, y)) == pytest.approx(float(conv + fc), rel=1e-4)


def test_jacov_is_the_eigenvalue_score_of_the_jacobians_correlation(tiny):
    net, x, y = tiny
    params = params_of(net)
    J = torch.stack([torch.autograd.functional.jacobian(lambda xi: functional(params, xi[None]).sum(), x[i])
                     .reshape(-1) for i in range(len(x))]).double().numpy()
    v = np.linalg.eigvalsh(np.corrcoef(J))
    k = 1e-5
    assert score(net, "jacov", (x, y)) == pytest.approx(-float(np.sum(np.log(v + k) + 1 / (v + k))), rel=1e-5)


def test_nwot_is_the_log_determinant_of_the_hamming_kernel(tiny):
    net, x, y = tiny
    with torch.no_grad():
        codes = (net.conv(x) > 0).reshape(len(x), -1).double().numpy()  # the input of the only ReLU
    K = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert score(net, "nwot", (x, y)) == pytest.approx(float(np.linalg.slogdet(K)[1]), rel=1e-9)


def test_params_and_flops(tiny):
    net, x, y = tiny
    assert score(net, "params", (x, y)) == (2 * 3 * 9 + 3 * 4) / 1e6
    # conv k²·C_in·C_out·H·W, ReLU one per element, the mean is no module, linear in·out
    assert score(net, "flops", (x, y)) == pytest.approx((9 * 2 * 3 * 25 + 3 * 25 + 3 * 4) / 1e6)


def test_a_data_proxy_without_data_and_an_unknown_proxy_are_clear_errors(tiny):
    net, _, _ = tiny
    with pytest.raises(ConfigError, match="needs a batch"):
        score(net, "snip")
    with pytest.raises(DartsError, match="magic"):
        score(net, "magic")
    assert {"synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "params", "flops"} <= set(
        PROXIES.list())


@needs_zero_cost
@pytest.mark.slow
def test_synflow_ranks_the_724_cifar10_cells_as_nas_bench_suite_zero():
    stats = pytest.importorskip("scipy.stats", reason="the rank statistics need scipy (the test extra)")
    rows = json.load(open(ZERO_COST))["cifar10"]
    ours = []
    torch.set_num_threads(1)
    for i, row in enumerate(rows):
        torch.manual_seed(i)
        net = NB201Network(NB201Genotype.from_string(row["arch"]), 16, 5, 10)
        ours.append(score(net, "synflow", input_size=(3, 32, 32), copy=False))
    theirs = [r["synflow"] for r in rows]
    acc = [r["val_accuracy"] for r in rows]
    assert stats.spearmanr(ours, theirs)[0] >= 0.99
    assert stats.spearmanr(ours, acc)[0] == pytest.approx(0.74, abs=0.03)  # their published figure
