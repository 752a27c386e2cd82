"""Each search method's defining mathematics, on a tiny supernet (the CLI runs are in test_methods_cli.py)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.bilevel import BilevelOptimizer
from darts.methods import (DARTSMinus, DrNAS, FairDARTS, GDAS, PCDARTS, SDARTSRS, SearchMethod, channel_shuffle,
                           get_method, get_method_class, list_methods)
from darts.methods.darts_minus import AuxSkipMixedOp
from darts.methods.gdas import SampledMixedOp
from darts.methods.pcdarts import PartialMixedOp
from darts.spaces import Supernet
from darts.supernet import MixedOp

OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3", "avg_pool_3x3")


def resolved(**options):
    """The search a user would run with these keywords: presets applied, everything validated."""
    from darts.config import resolve_search

    return resolve_search(options)


def tiny(method, C=8, kernels="reference"):
    torch.manual_seed(0)
    return Supernet(C, 3, 3, OPS, steps=2, multiplier=2, in_channels=1, kernels=kernels, method=method)


def batch(n=6):
    return torch.randn(n, 1, 8, 8), torch.randint(0, 3, (n,))


def bilevel(model, order="first"):
    w_opt = torch.optim.SGD(model.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), 3e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    return BilevelOptimizer(model, nn.CrossEntropyLoss(), w_opt, a_opt, order)


@pytest.mark.parametrize("name", [m for m in list_methods() if get_method_class(m).uses_alpha])
@pytest.mark.parametrize("order", ["first", "second"])
def test_every_method_steps_and_moves_alpha(name, order, one_thread):
    model = tiny(get_method(name))
    model.method.start_epoch(model, 1, 3)
    before = [a.detach().clone() for a in model.arch_parameters()]
    s = bilevel(model, order).step(batch(), batch(), 0.05)
    assert math.isfinite(s.val_loss) and math.isfinite(s.train_loss)
    assert all(not torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))
    g = model.genotype().validate()
    # two ops per node, or fewer under FairDARTS's threshold rule
    assert (len(g.normal) == 4 or model.method.cell_rule == "threshold") and set(g.ops()) <= set(OPS) - {"none"}


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
    from darts.errors import DuplicateNameError, UnknownNameError
    from darts.methods import register_method

    with pytest.raises(UnknownNameError, match="unknown search method .*'nasnet-rl'.*pcdarts"):
        get_method("nasnet-rl")
    with pytest.raises(DuplicateNameError, match="already registered"):
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
    m = GDAS(tau_max=10.0, tau_min=0.1)
    assert m.start_epoch(model, 0, 5)["tau"] == 10.0 and math.isclose(m.start_epoch(model, 4, 5)["tau"], 0.1)
    model.eval()
    torch.testing.assert_close(model.edge_weights()[0], F.one_hot(model.alphas.normal.argmax(1), 5).float())


def straight_through(alpha, noise, tau):
    """GDAS's hard weights written out (AutoDL ``forward``: one_h - probs.detach() + probs)."""
    probs = F.softmax((F.log_softmax(alpha, -1) + noise) / tau, -1)
    index = probs.argmax(-1, keepdim=True)
    one_h = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    return one_h - probs.detach() + probs, index.squeeze(-1)


@pytest.mark.parametrize("unsampled_terms", [True, False])
def test_gdas_nb201_edges_add_the_unsampled_weights(unsampled_terms, one_thread):
    """The authors' NB201 cell: Σ_k (h_k·op_k(x) if k is sampled else h_k), against a dense computation of every op."""
    from darts.spaces.nb201 import NB201_EDGES, NB201_PRIMITIVES as P201, NB201SearchCell

    torch.manual_seed(4)
    cell = NB201SearchCell(4, P201, GDAS(unsampled_terms=unsampled_terms)).train()
    x = torch.randn(3, 4, 6, 6)
    alpha = torch.randn(6, 5)
    last = NB201_EDGES.index((3, 2))
    alpha[last, P201.index("none")] = 6.0  # edge 3<-2, into the cell output, samples `none`
    alpha.requires_grad_(True)
    noise = -torch.log(-torch.log(torch.rand(6, 5).clamp(1e-10, 1 - 1e-7)))
    h, index = straight_through(alpha, noise, tau=2.0)
    assert int(index[last]) == P201.index("none")
    c = torch.randn(3, 4, 6, 6)
    g_ours, = torch.autograd.grad((cell(x, h) * c).sum(), alpha)

    h2, _ = straight_through(alpha, noise, tau=2.0)
    nodes = [x]
    for i in range(1, 4):
        total = 0
        for j in range(i):
            e = NB201_EDGES.index((i, j))
            outs = [op(nodes[j]) for op in cell.edges[e].candidates]  # every op, densely
            for k, y in enumerate(outs):
                if k == int(index[e]):
                    total = total + h2[e, k] * y
                elif unsampled_terms:
                    total = total + h2[e, k]
        nodes.append(total)
    g_dense, = torch.autograd.grad((nodes[3] * c).sum(), alpha)
    torch.testing.assert_close(g_ours, g_dense)
    if unsampled_terms:
        assert g_ours[last].abs().min() > 0  # every α of the `none` edge moves
    else:
        assert torch.count_nonzero(g_ours[last]) == 0  # the value h_none · 0 carries no gradient


def test_gdas_uses_the_unsampled_terms_in_nb201_only():
    assert resolved(method="gdas", space="nb201").method.unsampled_terms is True
    assert resolved(method="gdas").method.unsampled_terms is False
    assert GDAS().unsampled_terms is False


def test_gdas_pairs_rule_may_take_both_inputs_from_one_node():
    from darts.genotype import derive_genotype

    # OPS = none, skip_connect, sep_conv_3x3, max_pool_3x3, avg_pool_3x3; rows are edges 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    w = torch.tensor([[0.0, 0.5, 0.4, 0.05, 0.05],   # node 2: input 0 has the two strongest ops
                      [0.2, 0.1, 0.2, 0.3, 0.2],
                      [0.05, 0.05, 0.8, 0.05, 0.05],
                      [0.2, 0.2, 0.2, 0.2, 0.2],
                      [0.0, 0.6, 0.05, 0.3, 0.05]])
    darts_rule = derive_genotype(w, w, OPS, steps=2)
    pairs_rule = derive_genotype(w, w, OPS, steps=2, rule="pairs")
    assert darts_rule.normal == (("skip_connect", 0), ("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2))
    assert pairs_rule.normal == (("skip_connect", 0), ("sep_conv_3x3", 0), ("sep_conv_3x3", 0), ("skip_connect", 2))
    model = tiny(GDAS())
    with torch.no_grad():  # softmax(log w) = w
        model.alphas.normal.copy_(torch.log(w.clamp_min(1e-12)))
    assert model.genotype().normal == pairs_rule.normal  # the method's default rule
    model.method.cell_rule = "darts"
    assert model.genotype().normal == darts_rule.normal


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


def test_fairdarts_threshold_rule_keeps_strong_ops_of_the_darts_edges():
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    sig = torch.full((5, 5), 0.1)
    # OPS = none, skip_connect, sep_conv_3x3, max_pool_3x3, avg_pool_3x3; rows: 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
    sig[0, 2], sig[1, 3] = 0.9, 0.6          # node 2: two edges by the DARTS rule; only 2<-0 reaches 0.85
    sig[2, 1], sig[3, 3], sig[4, 4] = 0.95, 0.88, 0.2  # node 3: 3<-0 and 3<-1 both reach it
    sig[0, 0] = 0.99                          # `none` never counts
    model = tiny(FairDARTS())
    assert torch.count_nonzero(model.alphas.normal) == 0  # α starts at 0, as the authors'
    with torch.no_grad():
        model.alphas.normal.copy_(sig.clone().apply_(logit))
        model.alphas.reduce.copy_(torch.full((5, 5), logit(0.5)))
    g = model.genotype()
    assert g.edges("normal") == (("sep_conv_3x3", 0, 2), ("skip_connect", 0, 3), ("max_pool_3x3", 1, 3))
    assert g.normal_concat == (2, 3)
    # nothing reaches the threshold in the reduction cell: it keeps node 2's strongest op, so it has an output
    assert len(g.reduce) == 1 and g.reduce_concat == (2,)
    assert model.method.epoch_metrics(model) == {"above_threshold_normal": 4, "above_threshold_reduce": 0}
    # node 2 below the threshold is absent, and node 3's strong edge from it goes with it; nothing is left, so the
    # cell keeps node 2's strongest op (the DARTS rule's first edge there, max_pool_3x3 on input 1)
    with torch.no_grad():
        sig[0, 2] = 0.5
        sig[2, 1], sig[3, 3], sig[4, 4] = 0.1, 0.1, 0.95
        model.alphas.normal.copy_(sig.clone().apply_(logit))
    assert model.genotype().edges("normal") == (("max_pool_3x3", 1, 2),)
    model.method.cell_rule = "darts"
    assert len(model.genotype().normal) == 4


def test_fairdarts_authors_defaults():
    from darts.methods.fairdarts import FAIR_PRIMITIVES

    setup = resolved(method="fairdarts", dataset="cifar10")
    cfg = setup.cfg
    # fairdarts/train_search.py: batch 128, lr 0.005 -> 0.001; architect.py: Adam 3e-3, betas (0.9, 0.999), wd 1e-3
    assert (cfg.batch_size, cfg.lr, cfg.lr_min, cfg.arch_lr, cfg.arch_beta1, cfg.arch_weight_decay) == \
        (128, 0.005, 0.001, 3e-3, 0.9, 1e-3)
    assert cfg.primitives == FAIR_PRIMITIVES and "none" not in cfg.primitives and len(cfg.primitives) == 7
    assert setup.method.options.cell_rule == "threshold" and setup.method.options.threshold == 0.85


# -- DrNAS: the ranking, pruning and defaults -------------------------------------------------------------
def test_drnas_ranks_edges_by_softmax_not_by_the_dirichlet_mean():
    model = tiny(DrNAS())
    a = torch.zeros(5, 5)
    a[:, 0] = -10.0  # none
    # node 3 (rows 2, 3, 4 read nodes 0, 1, 2): the two rankings keep different inputs
    a[2] = torch.tensor([-10.0, 3.0, 3.0, -5.0, -5.0])
    a[3] = torch.tensor([-10.0, 4.0, 1.0, 1.0, 1.0])
    a[4] = torch.tensor([-10.0, 2.0, 0.5, 0.5, 0.5])
    soft = [max(math.exp(v) for v in row[1:]) / sum(math.exp(v) for v in row) for row in a[2:].tolist()]
    elu1 = lambda v: v + 1 if v > 0 else math.exp(v)  # noqa: E731  ELU(v) + 1
    mean = [max(elu1(v) for v in row[1:]) / sum(elu1(v) for v in row) for row in a[2:].tolist()]
    by_softmax = sorted(sorted(range(3), key=lambda j: -soft[j])[:2])
    by_mean = sorted(sorted(range(3), key=lambda j: -mean[j])[:2])
    assert by_softmax == [1, 2] and by_mean == [0, 1]
    with torch.no_grad():
        model.alphas.normal.copy_(a)
    assert sorted(j for _, j in model.genotype().normal[2:]) == by_softmax


def test_drnas_prunes_ops_at_the_stage_boundary_and_warms_up_per_stage(one_thread):
    model = tiny(DrNAS(keep_ops=2))
    assert all(isinstance(e, PartialMixedOp) and e.k == 4 for e in model.cells[0].edges)  # 1/K of the channels
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 1)
    before = [a.detach().clone() for a in model.arch_parameters()]
    model.method.start_epoch(model, 1, 4)
    assert model.alphas.mask("normal").all()  # stage 1: nothing pruned
    model.method.start_epoch(model, 2, 4)  # the second stage starts at epoch 4 // 2
    for a, b, g in zip(model.arch_parameters(), before, model.alphas.groups):
        keep = [sorted(range(5), key=lambda k: -row[k])[:2] for row in b.tolist()]
        mask = torch.zeros(b.shape, dtype=torch.bool)
        for e, ks in enumerate(keep):
            mask[e, ks] = True
        assert torch.equal(model.alphas.mask(g), mask)
        torch.testing.assert_close(a.detach(), torch.where(mask, b, torch.zeros_like(b)))  # kept α unchanged
    model.method.start_epoch(model, 3, 4)  # a later epoch (or a resumed run) prunes nothing more
    assert int(model.alphas.mask("normal").sum()) == 5 * 2
    model.train()
    w = model.edge_weights()[0]
    assert torch.all(w[~model.alphas.mask("normal")] == 0)
    torch.testing.assert_close(w.sum(1), torch.ones(5))
    mask = model.alphas.mask("normal")
    for k, (op, j) in enumerate(model.genotype().normal):  # edge k feeds node 2 + k // 2: rows 0-1, then 2-4
        assert mask[(0 if k < 2 else 2) + j, OPS.index(op)], "the discretizer picked a pruned op"
    m = model.method
    assert [m.updates_arch(e, 4, 1) for e in range(4)] == [False, True, False, True]  # --arch-warmup per stage
    assert [DrNAS(keep_ops=0).updates_arch(e, 4, 1) for e in range(4)] == [False, True, True, True]


@pytest.mark.parametrize("reg,wd", [("l2", 1e-3), ("kl", 0.0)])
def test_drnas_authors_defaults(reg, wd):
    from darts.methods.drnas import DRNAS_PRIMITIVES

    setup = resolved(method="drnas", dataset="cifar10", drnas_reg=reg)
    cfg = setup.cfg
    # DARTS-space/train_search.py + architect.py: lr 0.1 -> 0, α Adam 6e-4 with weight decay reg_scale for l2 and 0
    # for kl, 36 channels, 20 cells, 50 epochs, 10 warm-up epochs (per stage), no `none`
    assert (cfg.lr, cfg.lr_min, cfg.arch_lr, cfg.arch_weight_decay) == (0.1, 0.0, 6e-4, wd)
    assert (cfg.init_channels, setup.space.options.layers, cfg.epochs, cfg.arch_warmup, cfg.primitives) == \
        (36, 20, 50, 10, DRNAS_PRIMITIVES)
    assert DrNAS().options.reg == "l2"
    nb = resolved(method="drnas", dataset="cifar10", space="nb201")
    c, o = nb.cfg, nb.method.options
    # 201-space/train_search.py: 100 epochs, lr 0.025 -> 0.001, wd 3e-4, α Adam 3e-4, all channels, no pruning
    assert (c.epochs, c.lr, c.lr_min, c.weight_decay, c.nesterov, c.arch_lr, o.k, o.keep_ops, c.arch_warmup,
            c.init_channels) == (100, 0.025, 0.001, 3e-4, False, 3e-4, 1, 0, 0, 16)


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
def smoothed_by_hand(alpha, u):
    """The authors' random smoothing written out (SmoothDARTS ``Random_alpha`` + ``clip``), given the noise ``u``."""
    out = []
    for a_row, u_row in zip(alpha.tolist(), u.tolist()):
        e = [math.exp(v) for v in a_row]
        p = [v / sum(e) for v in e]
        line = [pi + ui for pi, ui in zip(p, u_row)]
        top = max(range(len(line)), key=lambda k: line[k])  # the argmax before clamping
        line = [min(max(v, 0.0), 1.0) for v in line]
        if sum(line) == 0:
            line[top] = 1.0
        out.append([v / sum(line) for v in line])
    return torch.tensor(out, dtype=alpha.dtype)


def test_sdarts_weight_step_sees_the_authors_smoothed_softmax(one_thread):
    model = tiny(SDARTSRS(epsilon=0.3, epsilon_min=0.03))
    model.method.start_epoch(model, 5, 10)
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 1)
    seen = []
    model.cells[0].register_forward_pre_hook(lambda mod, args: seen.append(args[2].detach().clone()))
    before = [a.detach().clone() for a in model.arch_parameters()]
    tr = batch()
    torch.manual_seed(7)
    bilevel(model).weight_step(tr)
    torch.manual_seed(7)  # the same draws, in the same order: normal, then reduce
    u = [torch.empty_like(a).uniform_(-model.method.epsilon, model.method.epsilon) for a in before]
    expected = smoothed_by_hand(before[0], u[0])
    torch.testing.assert_close(seen[-1], expected)  # fed to the cells as they are: no second softmax
    assert all(torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))  # α itself never moves
    bilevel(model).arch_gradient(batch(), batch(), 0.05)
    torch.testing.assert_close(seen[-1], F.softmax(before[0], -1))  # the α step sees softmax(α)


def test_sdarts_smoothing_clips_renormalises_and_zeroes_ops():
    from darts.methods.sdarts import random_smoothing

    # α = 0 over 7 ops: p = 1/7, and an op is switched off when U(-ε, ε) < -1/7: probability (ε - 1/7) / 2ε
    p = torch.full((2000, 7), 1 / 7, dtype=torch.float64)
    w = random_smoothing(p, 0.3)
    torch.testing.assert_close(w.sum(1), torch.ones(2000, dtype=torch.float64))
    assert w.min() >= 0 and w.max() <= 1
    assert abs(float((w == 0).double().mean()) - (0.3 - 1 / 7) / 0.6) < 0.01
    assert not (random_smoothing(p, 0.03) == 0).any()
    # rows that clip to all zeros: with ε = 5 over 3 ops about a tenth of them; the largest perturbed entry wins
    torch.manual_seed(1)
    logits = torch.randn(200, 3, dtype=torch.float64)
    torch.manual_seed(2)
    w = random_smoothing(F.softmax(logits, -1), 5.0)
    torch.manual_seed(2)
    u = torch.empty_like(logits).uniform_(-5.0, 5.0)
    assert int(((F.softmax(logits, -1) + u).clamp(0, 1).sum(1) == 0).sum()) > 5
    torch.testing.assert_close(w, smoothed_by_hand(logits, u))


def test_sdarts_epsilon_schedule_is_the_authors_e_over_E():
    m = SDARTSRS(epsilon=0.3, epsilon_min=0.03)
    # train_search.py: epsilon_alpha = 0.03 + (0.3 - 0.03) * epoch / epochs, epoch counted from 0
    assert m.start_epoch(None, 0, 50)["epsilon"] == 0.03
    assert math.isclose(m.start_epoch(None, 49, 50)["epsilon"], 0.03 + 0.27 * 49 / 50)


# -- warm-up --------------------------------------------------------------------------------------------
def test_step_without_arch_update_leaves_alpha(one_thread):
    model = tiny(PCDARTS(k=2))
    before = [a.detach().clone() for a in model.arch_parameters()]
    s = bilevel(model).step(batch(), batch(), 0.05, update_arch=False)
    assert math.isnan(s.val_loss)
    assert all(torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))


# -- each method's authors' search space and optimiser settings -----------------------------------------------
@pytest.mark.parametrize("name,has_none", [("darts", True), ("pcdarts", True), ("gdas", True), ("darts-", True),
                                           ("drnas", False), ("fairdarts", False), ("sdarts-rs", False)])
def test_each_method_searches_its_authors_primitives(name, has_none):
    from darts.ops import DARTS_PRIMITIVES
    from darts.spaces.nb201 import NB201_PRIMITIVES

    prims = resolved(method=name).primitives
    assert prims == (DARTS_PRIMITIVES if has_none else tuple(p for p in DARTS_PRIMITIVES if p != "none"))
    given = ("none", "skip_connect", "sep_conv_3x3")
    assert resolved(method=name, primitives=given).primitives == given
    assert resolved(method=name, space="nb201").primitives == NB201_PRIMITIVES


def test_optimiser_defaults_of_autodl_for_nb201_and_gdas():
    c = lambda **kw: resolved(dataset="cifar10", **kw).cfg  # noqa: E731
    darts = c()
    assert (darts.weight_decay, darts.nesterov, darts.epochs, darts.batch_size) == (3e-4, False, 50, 64)
    # AutoDL-Projects configs/nas-benchmark/algos/DARTS.config and GDAS.config: SGD lr 0.025 -> 0.001, Nesterov,
    # weight decay 5e-4, batch 64; 50 epochs for DARTS, 250 for GDAS
    nb = c(space="nb201")
    assert (nb.lr, nb.lr_min, nb.weight_decay, nb.nesterov, nb.epochs, nb.batch_size) == \
        (0.025, 0.001, 5e-4, True, 50, 64)
    gdas_nb = c(space="nb201", method="gdas")
    assert (gdas_nb.weight_decay, gdas_nb.nesterov, gdas_nb.epochs, gdas_nb.batch_size) == (5e-4, True, 250, 64)
    # configs/search-opts/GDAS-NASNet-CIFAR.config (the DARTS space): 250 epochs, batch 256, 5e-4, Nesterov
    gdas = c(method="gdas")
    assert (gdas.weight_decay, gdas.nesterov, gdas.epochs, gdas.batch_size, gdas.arch_lr) == \
        (5e-4, True, 250, 256, 3e-4)
    assert c(space="nb201", weight_decay=1e-4, nesterov=False).weight_decay == 1e-4  # the user's value wins
