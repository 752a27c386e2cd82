"""Each search method's defining mathematics, on a tiny supernet (the CLI runs are in test_methods_cli.py)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.bilevel import BilevelOptimizer
from darts.methods import (DARTSMinus, DrNAS, FairDARTS, GDAS, PCDARTS, SDARTSRS, SearchMethod, channel_shuffle,
                           get_method, list_methods)
from darts.methods.darts_minus import AuxSkipMixedOp
from darts.methods.gdas import SampledMixedOp
from darts.methods.pcdarts import PartialMixedOp
from darts.search import MixedOp, Supernet

OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3", "avg_pool_3x3")


def tiny(method, C=8, kernels="reference"):
    torch.manual_seed(0)
    return Supernet(C, 3, 3, OPS, steps=2, multiplier=2, in_channels=1, kernels=kernels, method=method)


def batch(n=6):
    return torch.randn(n, 1, 8, 8), torch.randint(0, 3, (n,))


def bilevel(model, order="first"):
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    return BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, order)


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.parametrize("order", ["first", "second"])
def test_every_method_steps_and_moves_alpha(name, order, one_thread):
    model = tiny(get_method(name))
    model.method.start_epoch(model, 1, 3)
    before = [a.detach().clone() for a in model.arch_parameters()]
    s = bilevel(model, order).step(batch(), batch(), 0.05)
    assert math.isfinite(s.val_loss) and math.isfinite(s.train_loss)
    assert all(not torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))
    g = model.genotype()
    assert len(g.normal) == 4 and set(g.ops()) <= set(OPS) - {"none"}


@pytest.mark.parametrize("name", ["fairdarts", "pcdarts", "darts-", "gdas"])
def test_fused_kernels_give_the_reference_gradients(name, one_thread):
    """Methods run on the fused paths (the whole cell, or each edge's mixed op) with the reference's numbers."""
    ref, fused = tiny(get_method(name), kernels="reference"), tiny(get_method(name), kernels="auto")
    fused.load_state_dict(ref.state_dict())
    for m in (ref, fused):
        m.method.start_epoch(m, 1, 3)
        m.set_kernels(m.kernels, "cpu")
    fused.method._gumbel = ref.method._gumbel = {}
    torch.manual_seed(1)
    x, y = batch()
    out = []
    for m in (ref, fused):
        torch.manual_seed(2)  # the same Gumbel noise for GDAS
        m.method.resample(m)
        loss = nn.functional.cross_entropy(m(x), y)
        params = m.arch_parameters() + m.weight_parameters()
        grads = torch.autograd.grad(loss, params, allow_unused=True)  # GDAS leaves unsampled ops unused
        out.append((loss, [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_registry_rejects_unknown_and_duplicates():
    from darts.errors import ConfigError
    from darts.methods import register_method

    with pytest.raises(ConfigError, match="unknown search method 'enas'.*pcdarts"):
        get_method("enas")
    with pytest.raises(ConfigError, match="already registered"):
        register_method(type("Again", (SearchMethod,), {"name": "gdas"}))


# -- PC-DARTS -----------------------------------------------------------------------------------------
def test_channel_shuffle_is_the_interleaving_permutation():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_channels_keep_shape_and_bypass_the_rest(stride, one_thread):
    torch.manual_seed(0)
    edge = PartialMixedOp(8, stride, OPS, k=4).train()
    assert all(m.in_channels == 2 for m in edge.modules() if isinstance(m, nn.Conv2d))  # C/K channels in the ops
    x = torch.randn(3, 8, 6, 6)
    w = F.softmax(torch.randn(len(OPS)), 0)
    y = edge(x, w)
    assert y.shape == (3, 8, 6 // stride, 6 // stride)
    # independent computation: ops on the first C/K channels, the rest bypassed (max-pooled on stride 2)
    ref_mixed = MixedOp(2, stride, OPS)
    ref_mixed.load_state_dict(edge.mixed.state_dict())
    a = sum(wk * op(x[:, :2]) for wk, op in zip(w, ref_mixed.candidates))
    b = x[:, 2:] if stride == 1 else F.max_pool2d(x[:, 2:], 2, 2)
    torch.testing.assert_close(y, channel_shuffle(torch.cat([a, b], 1), 4))
    # the bypassed channels do not depend on α
    g = torch.autograd.functional.jacobian(lambda w_: edge(x, w_)[:, 1::4].sum(), w)
    assert torch.count_nonzero(g) == 0


def test_edge_normalisation_and_derivation():
    model = tiny(PCDARTS(k=4))
    assert [tuple(p.shape) for p in model.arch_parameters()] == [(5, 5), (5, 5), (5,), (5,)]
    with torch.no_grad():
        model.alphas.beta_normal.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]))
    c = model.method.edge_coefficients(model, "normal")
    torch.testing.assert_close(c[:2], F.softmax(torch.tensor([0.0, 1.0]), 0))  # node 2: 2 edges
    torch.testing.assert_close(c[2:], F.softmax(torch.tensor([-1.0, 2.0, 0.5]), 0))  # node 3: 3 edges
    w = model.method.derive_weights(model, "normal")
    torch.testing.assert_close(w, F.softmax(model.alphas.normal.detach(), -1) * c[:, None])
    # β decides the edges: make edge 1 of node 2 and edges (1, 2) of node 3 by far the strongest
    with torch.no_grad():
        model.alphas.normal.zero_()
        model.alphas.beta_normal.copy_(torch.tensor([-5.0, 5.0, -5.0, 5.0, 5.0]))
    g = model.genotype()
    assert sorted(j for _, j in g.normal[:2]) == [0, 1] and sorted(j for _, j in g.normal[2:]) == [1, 2]


def test_pcdarts_forward_matches_an_independent_cell_loop(one_thread):
    model = tiny(PCDARTS(k=2)).train()
    x, _ = batch(4)
    cell = model.cells[0]
    s = model.stem(x)
    w = F.softmax(model.alphas.normal, -1)
    c = model.method.edge_coefficients(model, "normal")
    states = [cell.preprocess0(s), cell.preprocess1(s)]
    n2 = c[0] * cell.edges[0](states[0], w[0]) + c[1] * cell.edges[1](states[1], w[1])
    n3 = sum(c[2 + j] * cell.edges[2 + j](h, w[2 + j]) for j, h in enumerate(states + [n2]))
    torch.testing.assert_close(cell(s, s, w, c), torch.cat([n2, n3], 1))


# -- GDAS ---------------------------------------------------------------------------------------------
def test_gdas_forward_is_one_hot_with_the_soft_gradient():
    m = GDAS()
    m.tau = 0.7
    alpha = torch.randn(5, 4, requires_grad=True)
    noise = -torch.log(-torch.log(torch.rand(5, 4)))
    m._gumbel = {"normal": noise}
    h = m.op_weights(alpha, "normal", training=True)
    assert torch.equal(h.detach().sum(1), torch.ones(5)) and set(h.detach().unique().tolist()) == {0.0, 1.0}
    soft = F.softmax((F.log_softmax(alpha, -1) + noise) / 0.7, -1)
    assert torch.equal(h.argmax(1), soft.argmax(1))  # the sample is argmax(log π + g), the Gumbel-max trick
    c = torch.randn(5, 4)
    g1, = torch.autograd.grad((c * h).sum(), alpha)
    g2, = torch.autograd.grad((c * soft).sum(), alpha)
    torch.testing.assert_close(g1, g2)  # straight-through: the backward of the soft sample


def test_gdas_computes_only_the_sampled_op(one_thread):
    torch.manual_seed(0)
    edge = SampledMixedOp(4, 1, OPS).train()
    calls = []
    for k, op in enumerate(edge.candidates):
        op.register_forward_hook(lambda mod, inp, out, k=k: calls.append(k))
    x = torch.randn(2, 4, 5, 5)
    w = torch.zeros(len(OPS))
    w[2] = 1.0
    w.requires_grad_(True)
    y = edge(x, w)
    assert calls == [2]
    torch.testing.assert_close(y, edge.candidates[2](x))


def test_gdas_noise_is_fixed_between_resamples_and_tau_anneals():
    model = tiny(GDAS())
    model.method.resample(model)
    a, b = model.edge_weights()[0], model.edge_weights()[0]
    assert torch.equal(a, b)
    draws = set()
    for _ in range(20):
        model.method.resample(model)
        draws.add(tuple(model.edge_weights()[0].argmax(1).tolist()))
    assert len(draws) > 1
    m = GDAS(10.0, 0.1)
    assert m.start_epoch(model, 0, 5)["tau"] == 10.0 and math.isclose(m.start_epoch(model, 4, 5)["tau"], 0.1)
    model.eval()
    torch.testing.assert_close(model.edge_weights()[0], F.one_hot(model.alphas.normal.argmax(1), 5).float())


# -- Fair DARTS ---------------------------------------------------------------------------------------
def test_fairdarts_sigmoid_weights_are_not_normalised_and_zero_one_loss():
    model = tiny(FairDARTS(zero_one_weight=10.0))
    with torch.no_grad():
        model.alphas.normal.normal_(0, 2)
    wn, _ = model.edge_weights()
    torch.testing.assert_close(wn, torch.sigmoid(model.alphas.normal))
    assert not torch.allclose(wn.sum(1), torch.ones(5))
    sig = torch.sigmoid(torch.cat([model.alphas.normal.flatten(), model.alphas.reduce.flatten()])).detach()
    expected = -10.0 * ((sig - 0.5) ** 2).sum() / sig.numel()
    torch.testing.assert_close(model.method.arch_loss(model), expected)
    # its gradient pushes every σ away from 0.5: descent raises positive α and lowers negative ones
    g, = torch.autograd.grad(model.method.arch_loss(model), model.alphas.normal)
    a = model.alphas.normal.detach()
    assert torch.all((-g * a.sign())[a.abs() > 1e-3] > 0)


def test_method_regulariser_adds_to_the_alpha_gradient(one_thread):
    model = tiny(FairDARTS())
    bo = bilevel(model)
    tr, va = batch(), batch()
    model.train()
    grads, _ = bo.arch_gradient(tr, va, 0.05)
    data, = [torch.autograd.grad(nn.functional.cross_entropy(model(va[0]), va[1]), model.arch_parameters())]
    reg = torch.autograd.grad(model.method.arch_loss(model), model.arch_parameters())
    for g, d, r in zip(grads, data, reg):
        torch.testing.assert_close(g, d + r)


# -- DrNAS --------------------------------------------------------------------------------------------
def test_drnas_samples_lie_on_the_simplex_and_eval_uses_the_mean():
    model = tiny(DrNAS()).train()
    w1, w2 = model.edge_weights()[0], model.edge_weights()[0]
    assert torch.all(w1 > 0) and torch.allclose(w1.sum(1), torch.ones(5))
    assert not torch.equal(w1, w2)  # a new sample each forward pass
    (w1 * torch.randn(5, 5)).sum().backward()
    assert model.alphas.normal.grad.abs().sum() > 0  # pathwise gradient through rsample
    model.eval()
    beta = F.elu(model.alphas.normal.detach()) + 1
    torch.testing.assert_close(model.edge_weights()[0], beta / beta.sum(1, keepdim=True))


def test_drnas_kl_regulariser_matches_the_closed_form():
    model = tiny(DrNAS(reg="kl", reg_scale=0.5))
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 1)
    total = 0.0
    for a in model.arch_parameters():
        b = (F.elu(a.detach().double()) + 1)
        b0 = b.sum(1)
        K = b.shape[1]
        # KL(Dir(b) || Dir(1)) = lnΓ(b0) − Σ lnΓ(b_i) − lnΓ(K) + Σ (b_i − 1)(ψ(b_i) − ψ(b0))
        kl = (torch.lgamma(b0) - torch.lgamma(b).sum(1) - math.lgamma(K)
              + ((b - 1) * (torch.digamma(b) - torch.digamma(b0)[:, None])).sum(1))
        total += float(kl.sum())
    assert math.isclose(float(model.method.arch_loss(model).detach()), 0.5 * total, rel_tol=1e-5)
    assert DrNAS(reg="l2").arch_loss(model) is None


# -- DARTS- -------------------------------------------------------------------------------------------
def test_darts_minus_adds_the_decaying_auxiliary_skip(one_thread):
    torch.manual_seed(0)
    edge = AuxSkipMixedOp(4, 1, OPS).train()
    x, w = torch.randn(2, 4, 5, 5), F.softmax(torch.randn(len(OPS)), 0)
    base = edge.mixed(x, w)
    edge.beta = 0.3
    torch.testing.assert_close(edge(x, w), base + 0.3 * x)
    edge.beta = 0.0
    torch.testing.assert_close(edge(x, w), base)
    model = tiny(DARTSMinus(beta0=1.0))
    assert model.method.start_epoch(model, 0, 4)["aux_skip_beta"] == 1.0
    assert model.method.start_epoch(model, 2, 4)["aux_skip_beta"] == 0.5
    assert all(m.beta == 0.5 for m in model.modules() if isinstance(m, AuxSkipMixedOp))
    reduce_edges = [m for m in model.cells[1].modules() if isinstance(m, AuxSkipMixedOp) and m.mixed.stride == 2]
    assert reduce_edges and all(m.aux.__class__.__name__ == "FactorizedReduce" for m in reduce_edges)


# -- SDARTS-RS ----------------------------------------------------------------------------------------
def test_sdarts_perturbs_alpha_only_inside_the_weight_step(one_thread):
    model = tiny(SDARTSRS(epsilon=0.3, epsilon_min=0.03))
    assert math.isclose(model.method.start_epoch(model, 5, 10)["epsilon"], 0.03 + 0.27 * 0.5)
    seen = []
    model.stem.register_forward_hook(lambda *a: seen.append([p.detach().clone() for p in model.arch_parameters()]))
    before = [a.detach().clone() for a in model.arch_parameters()]
    bo = bilevel(model)
    bo.weight_step(batch())
    inside = seen[-1]
    diffs = [(i - b).abs() for i, b in zip(inside, before)]
    assert all(d.max() <= model.method.epsilon + 1e-6 and d.max() > 0 for d in diffs)
    assert all(torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))  # restored exactly
    bo.arch_gradient(batch(), batch(), 0.05)
    assert all(torch.equal(s, b) for s, b in zip(seen[-1], before))  # the α step sees α itself


# -- warm-up --------------------------------------------------------------------------------------------
def test_step_without_arch_update_leaves_alpha(one_thread):
    model = tiny(PCDARTS(k=2))
    before = [a.detach().clone() for a in model.arch_parameters()]
    s = bilevel(model).step(batch(), batch(), 0.05, update_arch=False)
    assert math.isnan(s.val_loss)
    assert all(torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))
