"""The sampling searches (ENAS, RS-WS, SPOS) and DARTS-PT's selection: their defining mathematics, each against an
independent computation (hooks, a distribution summed over every cell, autograd, the EMA written out, a
hand-built supernet whose important ops are known)."""
import itertools
import math
import random
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.genotype import derive_genotype
from darts.methods import get_method
from darts.methods.base import SearchContext
from darts.methods.enas import EncodingController, MicroController
from darts.methods.single_path import PathEdge, recalibrated_bn
from darts.methods.spos import crossover, mutate
from darts.ops import DARTS_PRIMITIVES
from darts.selection import Projection, select_by_perturbation
from darts.spaces import get_space
from darts.strategies import CellEncoding
from darts.supernet import SupernetBase

OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3", "avg_pool_3x3")


def ctx_for(val=(), train=()):
    return SearchContext(device=torch.device("cpu"), val_stream=iter(val), val_loader=list(val),
                         train_batches=lambda n: list(train)[:n], reduce=lambda ts: ts, to_device=lambda b: b,
                         epochs=1)


def bound(name, space="darts", **space_options):
    sp = get_space(space, **space_options)
    m = get_method(name)
    m.bind(sp, sp.primitives if space == "nb201" else OPS, seed=3)
    return sp, m


# -- single paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
def test_path_edge_computes_only_the_chosen_ops(stride, one_thread):
    torch.manual_seed(0)
    edge = PathEdge(4, stride, OPS)
    calls = []
    for k, op in enumerate(edge.candidates):
        op.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
    x = torch.randn(2, 4, 8, 8)
    w = torch.zeros(len(OPS))
    w[2] = 1.0
    assert torch.equal(edge(x, w), edge.candidates[2](x)) and calls == [2, 2]
    calls.clear()
    y = edge(x, torch.zeros(len(OPS)))  # an edge the cell does not use: nothing runs, zeros of the output's shape
    assert calls == [] and y.shape == (2, 4, 8 // stride, 8 // stride) and not y.any()
    w = torch.zeros(len(OPS))
    w[3] = 2.0  # a node reading one input twice with the same op (ENAS cells may)
    torch.testing.assert_close(edge(x, w), 2 * edge.candidates[3](x))


@pytest.mark.parametrize("space,options", [("darts", dict(layers=3, nodes=2)), ("nb201", dict(cells=1))])
def test_a_single_path_supernet_runs_exactly_the_cells_ops(space, options, one_thread):
    sp, method = bound("rsws", space, **options)
    model = sp.build_supernet(C=4, num_classes=3, in_channels=1, primitives=method.primitives, method=method,
                              kernels="reference")
    ran = set()
    for name, mod in model.named_modules():
        if isinstance(mod, PathEdge):
            for k, op in enumerate(mod.candidates):
                op.register_forward_hook(lambda m, i, o, key=(name, k): ran.add(key))
    cell = method.encoding.decode(method.encoding.random(random.Random(5)))
    method.path = cell
    model.train()
    model(torch.randn(2, 1, 8, 8))
    expected = set()
    for ci, c in enumerate(model.cells):
        if not hasattr(c, "edges"):
            continue  # NB201's residual reduction blocks
        kind = "reduce" if getattr(c, "reduction", False) else ("normal" if space == "darts" else "cell")
        for g, row, op in sp.genotype_edges(cell):
            if g == kind:
                expected.add((f"cells.{ci}.edges.{row}", method.primitives.index(op)))
    assert ran == expected


def test_draws_depend_only_on_seed_epoch_and_step():
    def draws(epoch):
        _, m = bound("spos")
        m.start_epoch(None, epoch, 4)
        out = []
        for _ in range(5):
            m.resample(None)
            out.append(m.path)
        return out

    assert draws(1) == draws(1)  # another rank, or the resumed run
    assert draws(1) != draws(2) and len(set(map(str, draws(1)))) == 5


# -- ENAS -----------------------------------------------------------------------------------------------------


def _tiny_encoding(sizes):
    return CellEncoding(sizes, lambda x: tuple(x), lambda g: list(g))


def _all_log_probs(controller, sizes):
    return {x: float(controller.sample(None, forced=x).log_prob) for x in itertools.product(*map(range, sizes))}


@pytest.mark.parametrize("shared", [True, False])
def test_controller_log_probs_are_a_distribution_its_draws_follow(shared):
    torch.manual_seed(0)
    sizes = (3, 3, 3) if shared else (3, 2, 4)
    c = EncodingController(_tiny_encoding(sizes), 8, 2, tanh_constant=2.5, temperature=5.0)
    with torch.no_grad():
        lp = _all_log_probs(c, sizes)
        # the log-probability of a cell is the sum of its choices' conditional log-probabilities: over every cell
        # their exponentials sum to 1
        assert math.isclose(sum(math.exp(v) for v in lp.values()), 1.0, rel_tol=1e-9, abs_tol=1e-6)
        rng, n = random.Random(0), 6000
        counts = {}
        for _ in range(n):
            x = tuple(c.sample(rng).choices)
            counts[x] = counts.get(x, 0) + 1
    for x, v in lp.items():
        p = math.exp(v)
        assert abs(counts.get(x, 0) / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_encoding_controller_log_prob_written_out():
    """One position, one LSTM layer: log p(k) = log_softmax(2.5·tanh((W h + b) / 5))_k with h the LSTM's first
    output from zero state: h = o·tanh(i·g), (i, f, g, o) = (σ, σ, tanh, σ)(W_ih x + b_ih + b_hh)."""
    torch.manual_seed(1)
    c = EncodingController(_tiny_encoding((4,)), 6, 1, tanh_constant=2.5, temperature=5.0)
    x = c.input_vars.detach().flatten()
    z = c.lstm.weight_ih_l0 @ x + c.lstm.bias_ih_l0 + c.lstm.bias_hh_l0
    i, _f, g, o = z.detach().chunk(4)
    h = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
    logits = 2.5 * torch.tanh((c.w_pred[0].weight @ h + c.w_pred[0].bias) / 5.0)
    for k in range(4):
        got = float(c.sample(None, forced=[k]).log_prob.detach())
        assert math.isclose(got, float(F.log_softmax(logits.detach(), 0)[k]), rel_tol=1e-5)


def test_micro_controller_covers_every_cell_once():
    """The DARTS-space controller over one node (inputs 0/1, ops a/b) in both cell types: 2^8 cells whose
    probabilities sum to 1, every one a valid genotype."""
    torch.manual_seed(0)
    c = MicroController(("sep_conv_3x3", "max_pool_3x3"), 1, 8, 1, 1.1, 2.5, None)
    with torch.no_grad():
        total = 0.0
        for x in itertools.product(range(2), repeat=8):
            s = c.sample(None, forced=x)
            total += math.exp(float(s.log_prob))
            c.genotype(s.choices, ("none", "sep_conv_3x3", "max_pool_3x3"))  # validates
    assert math.isclose(total, 1.0, rel_tol=1e-9, abs_tol=1e-6)
    # the authors' bias towards the separable convolutions: learnt 10, fixed +0.25 / -0.25 in the normal cell
    assert c.b_soft.tolist() == [[10.0, 0.0]] and c.b_soft_no_learn.tolist() == [[0.25, -0.25]]


def test_reinforce_gradient_is_advantage_times_grad_log_prob():
    _, m = bound("enas", "nb201", cells=1)
    c = m.build_controller()
    c.baseline.fill_(0.2)
    forced = [1, 0, 3, 2, 4, 0]
    reward, decay = 0.7, m.options.baseline_decay
    s = c.sample(None, forced=forced)
    m.controller_loss(s, reward).backward()
    got = [p.grad.clone() for p in c.parameters()]
    b = 0.2 - (1 - decay) * (0.2 - reward)  # the moving average moves first, then the advantage is taken
    assert math.isclose(float(c.baseline), b, rel_tol=1e-12)
    c.zero_grad()
    grads = torch.autograd.grad(c.sample(None, forced=forced).log_prob, list(c.parameters()), allow_unused=True)
    for g, want in zip(got, grads):
        want = torch.zeros_like(g) if want is None else want
        torch.testing.assert_close(g, -(reward - b) * want)


# -- SPOS -----------------------------------------------------------------------------------------------------


def test_spos_mutation_and_crossover_keep_darts_cells_valid():
    enc = get_space("darts").encoding(DARTS_PRIMITIVES)
    rng = random.Random(0)
    changed = 0
    for _ in range(300):
        a, b = enc.random(rng), enc.random(rng)
        y = mutate(a, enc.sizes, 0.3, rng)
        z = crossover(a, b, rng)
        for v in (y, z):
            assert all(0 <= t < s for t, s in zip(v, enc.sizes))
            g = enc.decode(v).validate()
            assert "none" not in g.ops()
            for cell in (g.normal, g.reduce):  # two distinct inputs per node, each an earlier node
                for i in range(4):
                    (_, j1), (_, j2) = cell[2 * i: 2 * i + 2]
                    assert j1 != j2 and max(j1, j2) < i + 2
        assert all(t in (u, w) for t, u, w in zip(z, a, b))
        changed += sum(t != u for t, u in zip(y, a))
    assert mutate(a, enc.sizes, 0.0, rng) == a
    # each position is resampled with probability 0.3, and then differs with probability 1 - 1/size
    expected = 300 * sum(0.3 * (1 - 1 / s) for s in enc.sizes)
    assert abs(changed - expected) < 0.1 * expected


def test_spos_recalibration_is_the_reset_ema_and_is_undone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3))
    model[0].running_mean.fill_(5.0)
    batches = [(torch.randn(4, 3, 2, 2) + i, torch.zeros(4)) for i in range(3)]
    mean = torch.zeros(3)
    for x, _ in batches:  # reset to 0, then running = 0.9 running + 0.1 batch mean (momentum 0.1)
        mean = 0.9 * mean + 0.1 * x.mean(dim=(0, 2, 3))
    with recalibrated_bn(model, batches, ctx_for()):
        torch.testing.assert_close(model[0].running_mean, mean)
        assert not model.training
    assert torch.equal(model[0].running_mean, torch.full((3,), 5.0))


def test_spos_evolution_finds_the_best_cell_of_a_known_score():
    """With a score that counts positions equal to a target cell, the evolution reaches it, and every scored cell
    is new."""
    sp, m = bound("spos", "nb201", cells=1)
    m.options.generations, m.options.population, m.options.top = 8, 12, 4
    m.options.mutations = m.options.crossovers = 4
    target = [1, 2, 3, 4, 0, 2]
    scored = []

    def score(model, cell, ctx):
        x = m.encoding.encode(cell)
        scored.append(tuple(x))
        return sum(a == b for a, b in zip(x, target)) / 6

    m.score = score
    best = m.final_genotype(None, ctx_for())
    assert m.encoding.encode(best) == target and len(scored) == len(set(scored))


# -- DARTS-PT -------------------------------------------------------------------------------------------------

PT_OPS = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")


class KnownSupernet(SupernetBase):
    """A supernet whose logits are ``c·u + v``, ``c = Σ_{edge, op} w[edge, op] · a[edge, op]``, on inputs
    ``x = (u, v)``: ``u`` carries the class, ``v`` is a distractor, so accuracy grows with c: edge ``r``'s op ``GOOD[r]`` adds to c (a = 1), the others take from
    it (−0.2), every op of edge 3 takes more (−0.5). α favours max_pool everywhere, so the α rule picks it on every
    edge."""

    GOOD = {0: 1, 1: 2, 2: 3, 4: 1}

    def __init__(self):
        super().__init__(get_method("darts"), PT_OPS, "reference")
        A = torch.zeros(5, len(PT_OPS), 4, 4)
        for r in range(5):
            for k in range(len(PT_OPS)):
                A[r, k] = (1.0 if self.GOOD.get(r) == k else -0.5 if r == 3 else -0.2) * torch.eye(4)
        self.register_buffer("A", A)
        self.bias = nn.Parameter(torch.zeros(4))
        self.alphas = self.make_alphas({"normal": 5})
        with torch.no_grad():
            self.alphas.normal.zero_()[:, 3] = 2.0

    def node_in_degrees(self):
        return [2, 3]

    def genotype(self, max_skip=None):
        (w,) = self.strengths()
        return derive_genotype(w, w, self.primitives, 2, 2)

    def forward(self, x):
        (w,) = self.edge_weights()
        return torch.einsum("rk,rkcf,bf->bc", w, self.A, x[:, :4]) + x[:, 4:] + self.bias


def test_projection_zeroes_the_probed_op_without_renormalising():
    p = Projection(["normal"])
    w = torch.softmax(torch.randn(3, 4), -1)
    p.fixed["normal"][0] = 2
    p.probe = ("normal", 1, 3)
    out = p("normal", w)
    assert out[0].tolist() == [0, 0, 1, 0]
    assert out[1, 3] == 0 and torch.equal(out[1, :3], w[1, :3]) and torch.equal(out[2], w[2])
    p.probe = ("normal", 2, None)
    assert not p("normal", w)[2].any()


def test_darts_pt_keeps_the_ops_and_inputs_the_supernet_needs():
    torch.manual_seed(0)
    model = KnownSupernet()
    assert {op for op, _ in model.genotype().normal} == {"max_pool_3x3"}  # what α alone would choose
    y = torch.arange(4000) % 4
    x = torch.cat([F.one_hot(y, 4).float(), torch.randn(4000, 4)], 1)
    cfg = SimpleNamespace(seed=0, pt_val_batches=None, pt_interval=0)
    val = [(x[i: i + 1000], y[i: i + 1000]) for i in range(0, 4000, 1000)]
    select_by_perturbation(model, get_space("darts", nodes=2), cfg, None, [], ctx_for(val=val))
    g = model.genotype()
    # node 2 reads inputs 0, 1 with their known ops; node 3 keeps inputs 0 and 2 (rows 2 and 4) and drops input 1
    assert g.normal == (("skip_connect", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2))
