"""Multi-trial strategies: each one's defining rule against a hand computation, and the run they drive (one metrics
line per evaluation, the best cell saved, resumed bitwise equal)."""
import json
import math
import os
import random
from collections import Counter

import pytest
import torch

import darts
from darts.errors import ConfigError
from darts.spaces import get_space
from darts.strategies import STRATEGIES, CellEncoding
from darts.strategies.reinforce import MovingAverage
from darts.strategy_run import run_strategy
from tests.test_nb201_bench import TABLE, needs_table, toy_accuracy, toy_table  # noqa: F401  (a fixture)

NB201 = get_space("nb201")
ENC = NB201.encoding(NB201.primitives)


def strategy(name, seed=0, **options):
    s = STRATEGIES.get(name)(**options)
    s.begin(ENC, seed)
    return s


def convs(x):
    """A score anyone can recompute: the number of nor_conv_3x3 edges (op index 3)."""
    return float(sum(v == 3 for v in x))


# -- the encoding ----------------------------------------------------------------------------------------------

def test_nb201_encoding_round_trips_and_counts_the_space():
    assert ENC.size() == 5 ** 6 and ENC.groups == ((0,), (1, 2), (3, 4, 5))
    rng = random.Random(0)
    for _ in range(50):
        x = ENC.random(rng)
        g = ENC.decode(x)
        assert ENC.encode(g) == x and [NB201.primitives.index(op) for op, _ in g.edges] == x


def test_darts_encoding_round_trips_and_gives_valid_cells():
    space = get_space("darts")
    enc = space.encoding(space.primitives)
    # per cell and node i: C(i+2, 2) input pairs and 7 ops (none excluded) twice
    pairs = [math.comb(i + 2, 2) for i in range(4)]
    assert enc.sizes == tuple(v for _ in range(2) for p in pairs for v in (p, 7, 7))
    rng = random.Random(1)
    for _ in range(30):
        x = enc.random(rng)
        g = enc.decode(x)
        assert enc.encode(g) == x
        assert all(op != "none" for op, _ in g.normal + g.reduce)
        for i in range(4):  # two distinct inputs among the cell inputs and earlier nodes
            (_, a), (_, b) = g.normal[2 * i: 2 * i + 2]
            assert a != b and max(a, b) < i + 2


def test_mutation_picks_a_node_then_an_edge_then_another_op():
    """AutoDL's mutate_arch_func: node uniform (1/3), then its edge: P(edge 1<-0) = 1/3, 2<-j = 1/6, 3<-j = 1/9."""
    rng = random.Random(0)
    x = [0, 1, 2, 3, 4, 0]
    counts = Counter()
    n = 18000
    for _ in range(n):
        y = ENC.mutate(x, rng)
        diff = [i for i in range(6) if y[i] != x[i]]
        assert len(diff) == 1  # exactly one edge changes, to another op
        counts[diff[0]] += 1
    expected = [1 / 3, 1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9]
    for i, p in enumerate(expected):
        assert abs(counts[i] / n - p) < 0.015, (i, counts[i] / n, p)


def test_neighbours_are_every_cell_one_edge_away():
    x = [0, 1, 2, 3, 4, 0]
    nb = ENC.neighbours(x)
    assert len(nb) == 6 * 4 and len({tuple(y) for y in nb}) == 24
    assert all(sum(a != b for a, b in zip(x, y)) == 1 for y in nb)


def test_encoding_rejects_groups_that_do_not_partition():
    with pytest.raises(ConfigError, match="partition"):
        CellEncoding([2, 2], None, None, groups=[[0], [0]])


# -- the strategies ----------------------------------------------------------------------------------------------

def test_grid_enumerates_every_cell_once_and_stops_at_the_space():
    enc = CellEncoding([2, 3, 2], lambda x: x, lambda g: g)
    s = STRATEGIES.get("grid")()
    s.begin(enc, 0)
    cells = [tuple(s.ask()) for _ in range(s.budget(100))]
    assert s.budget(100) == 12 and len(set(cells)) == 12 and cells[0] == (0, 0, 0) and cells[1] == (0, 0, 1)


def test_random_search_is_uniform_per_edge():
    s = strategy("random")
    counts = Counter(tuple(s.ask()) for _ in range(5000))
    per_op = Counter(x[2] for x in counts.elements())
    assert all(abs(per_op[v] / 5000 - 0.2) < 0.03 for v in range(5))


def test_evolution_ages_its_population_and_mutates_its_members():
    s = strategy("rea", population=10, sample=3)
    told = []
    for n in range(60):
        x = s.ask()
        if n >= 10:  # after the random start, a one-edge mutation of a member (which one: the next test)
            assert any(sum(a != b for a, b in zip(x, m[0])) == 1 for m in s.population)
        score = convs(x) + random.Random(n).random() * 0.1
        s.tell(x, score)
        told.append((x, score))
        # aging: the population is the last P cells told, in order, whatever their scores
        assert [m[0] for m in s.population] == [t[0] for t in told[-10:]]


def test_evolution_tournament_samples_with_replacement():
    s = strategy("rea", population=3, sample=3)
    for x, score in (([0] * 6, 1.0), ([1] * 6, 2.0), ([2] * 6, 3.0)):
        s.ask()
        s.tell(x, score)
    parents = Counter()
    for _ in range(3000):
        y = s.ask()
        parents[min(range(3), key=lambda k: sum(a != k for a in y))] += 1
    # the best of 3 draws with replacement from 3: P(the 3.0 cell) = 1 - (2/3)^3 = 19/27, the 1.0 cell 1/27
    assert abs(parents[2] / 3000 - 19 / 27) < 0.03 and abs(parents[0] / 3000 - 1 / 27) < 0.015


def test_reinforce_log_probability_is_the_sum_of_its_choices():
    s = strategy("reinforce")
    with torch.no_grad():
        for l in s.policy.logits:
            l.copy_(torch.randn(5))
    x = [4, 0, 3, 1, 2, 2]
    hand = sum(float(l[v].detach()) - math.log(sum(math.exp(float(t)) for t in l.detach())) for l, v in zip(s.policy.logits, x))
    assert float(s.policy.log_prob(x).detach()) == pytest.approx(hand, abs=1e-5)


def test_reinforce_gradient_is_the_advantage_times_the_score_function(monkeypatch):
    s = strategy("reinforce", lr=0.5, momentum=0.9)
    grads = []
    monkeypatch.setattr(s.optimizer, "step", lambda: grads.append([l.grad.clone() for l in s.policy.logits]))
    x1, x2 = [3] * 6, [1, 2, 3, 4, 0, 1]
    p = [torch.softmax(l.detach(), 0) for l in s.policy.logits]
    s.tell(x1, 80.0)
    s.tell(x2, 90.0)
    # the authors' baseline, updated before the advantage: b1 = 80, b2 = (0.9·0.1·80 + 0.1·90) / (0.9·0.1 + 0.1)
    b1, b2 = 80.0, (0.9 * 0.1 * 80 + 0.1 * 90) / (0.9 * 0.1 + 0.1)
    assert grads[0][0].abs().max() == 0  # r - b = 0 on the first step: no gradient
    # ∂/∂logit_k of −log p(x)·(r − b) = (softmax_k − 1[k = x])·(r − b); the logits moved only by the first (zero)
    # step, which Adam turns into no change
    for i, g in enumerate(grads[1]):
        onehot = torch.nn.functional.one_hot(torch.tensor(x2[i]), 5).float()
        torch.testing.assert_close(g, (p[i] - onehot) * (90.0 - b2), atol=1e-5, rtol=1e-4)
    ema = MovingAverage(0.9)
    ema.update(80.0)
    assert ema.value() == b1


def test_local_search_climbs_to_the_optimum_and_restarts_at_a_local_one():
    s = strategy("ls", init=10)
    best = -1
    for n in range(10 + 6 * 24):
        x = s.ask()
        s.tell(x, convs(x))
        best = max(best, convs(x))
    assert best == 6  # a unimodal score: every climb reaches all-nor_conv_3x3
    # at the optimum, its whole neighbourhood is worse: the next proposal is a fresh random cell (a restart)
    for _ in range(1000):
        if s.chosen is not None and convs(s.chosen[0]) == 6 and not s.queue:
            break
        x = s.ask()
        s.tell(x, convs(x))
    x = s.ask()
    assert s.pending == "restart"
    s.tell(x, convs(x))
    assert s.chosen[0] == x and len(s.queue) == 24


@pytest.mark.parametrize("name", ["random", "rea", "reinforce", "ls", "bo", "grid"])
def test_a_restored_strategy_proposes_what_the_original_would(name):
    if name == "bo":
        pytest.importorskip("optuna", reason="--strategy bo needs the optional Optuna extra")
    a = strategy(name, seed=3)
    for _ in range(15):
        x = a.ask()
        a.tell(x, convs(x))
    state = a.state_dict()
    b = strategy(name, seed=99)
    b.load_state_dict(state)
    for _ in range(10):
        xa, xb = a.ask(), b.ask()
        assert xa == xb
        a.tell(xa, convs(xa))
        b.tell(xb, convs(xb))


def test_bo_without_optuna_says_how_to_get_it(monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "optuna" else real(name, *a, **k))
    with pytest.raises(ConfigError, match=r"darts-forge\[bo\]"):
        STRATEGIES.get("bo")()


# -- the run -------------------------------------------------------------------------------------------------------

def search(tmp_path, name, table, **kw):
    return darts.search(space="nb201", strategy=name, evaluator="table", nb201_table=table, budget_evals=40,
                        progress=False, out=str(tmp_path / name), **kw)


@pytest.mark.parametrize("name", ["random", "rea", "reinforce", "ls"])
def test_a_table_search_logs_every_evaluation_and_keeps_the_best(tmp_path, toy_table, name):  # noqa: F811
    r = search(tmp_path, name, toy_table)
    lines = [json.loads(x) for x in open(os.path.join(r.run_dir, "metrics.jsonl"))]
    assert [x["evaluation"] for x in lines] == list(range(1, 41))
    for x in lines:  # the score is the table's CIFAR-10 validation accuracy of the cell evaluated
        assert x["score"] == toy_accuracy(x["arch"]) == x["nb201_cifar10_val"]
    best = max(lines, key=lambda x: x["score"])
    saved = json.load(open(os.path.join(r.run_dir, "genotype.json")))
    assert saved["arch"] == best["arch"] == str(r.genotype) and r.score == best["score"]
    assert lines[-1]["best_score"] == best["score"]
    config = json.load(open(os.path.join(r.run_dir, "config.json")))["config"]
    assert config["strategy"] == name and config["budget_evals"] == 40


@pytest.mark.parametrize("name", ["rea", "reinforce", "ls"])
def test_an_interrupted_search_resumes_to_the_same_run(tmp_path, toy_table, monkeypatch, name):  # noqa: F811
    whole = search(tmp_path / "whole", name, toy_table)
    from darts.strategies.evaluators import TableEvaluator

    real = TableEvaluator.score
    calls = []

    def dies_at_17(self, genotype, index):
        calls.append(index)
        if len(calls) == 17:
            raise KeyboardInterrupt
        return real(self, genotype, index)

    monkeypatch.setattr(TableEvaluator, "score", dies_at_17)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path / "cut", name, toy_table)
    monkeypatch.setattr(TableEvaluator, "score", real)
    cut = str(tmp_path / "cut" / name)
    assert sum(1 for _ in open(os.path.join(cut, "metrics.jsonl"))) == 16
    resumed = darts.search(resume=cut, progress=False)
    strip = lambda r: [{k: v for k, v in x.items() if k != "eval_time_s"} for x in r.metrics]  # noqa: E731
    assert strip(resumed) == strip(whole) and str(resumed.genotype) == str(whole.genotype)


def test_the_proxy_and_train_evaluators_score_networks(tmp_path):
    r = darts.search(space="nb201", strategy="random", evaluator="proxy", proxy="params", budget_evals=3,
                     progress=False, out=str(tmp_path / "p"))
    from darts.final import count_parameters
    from darts.spaces.nb201 import NB201Genotype, NB201Network

    for x in r.metrics:  # digits: one input channel, 10 classes, the benchmark's C=16, N=5
        net = NB201Network(NB201Genotype.from_string(x["arch"]), 16, 5, 10, in_channels=1)
        assert x["score"] == pytest.approx(count_parameters(net) / 1e6)
    r = darts.search(space="nb201", strategy="random", evaluator="train", eval_epochs=1, budget_evals=2,
                     progress=False, out=str(tmp_path / "t"))
    assert all(0 <= x["score"] <= 100 and x["eval_val_loss"] > 0 for x in r.metrics)


def test_a_darts_space_search_with_a_proxy(tmp_path):
    r = darts.search(space="darts", strategy="rea", rea_population=2, rea_sample=2, evaluator="proxy",
                     proxy="params", budget_evals=4, progress=False, out=str(tmp_path / "d"))
    assert len(r.metrics) == 4 and r.genotype.to_dict()["normal"]


@pytest.mark.parametrize("options, message", [
    (dict(space="nb201", strategy="rea", evaluator="table"), "give --nb201-table"),
    (dict(space="darts", strategy="rea", evaluator="table"), "has no benchmark table"),
    (dict(space="nb201", rea_population=5), "option of --strategy rea, but this run has no --strategy"),
    (dict(space="nb201", strategy="random", rea_population=5), "option of --strategy rea, but this run uses"),
    (dict(space="nb201", strategy="annealing"), "annealing"),
    (dict(space="nb201", strategy="random", evaluator="oracle"), "oracle"),
    (dict(space="nb201", strategy="random", evaluator="proxy", proxy="magic"), "magic"),
    (dict(space="nb201", strategy="rea", rea_population=2, rea_sample=3), "cannot exceed"),
])
def test_bad_strategy_options_are_clear_errors(tmp_path, options, message):
    with pytest.raises(darts.DartsError, match=message):
        darts.search(out=str(tmp_path / "x"), progress=False, **options)
    assert not os.path.exists(tmp_path / "x")


@needs_table
@pytest.mark.slow
def test_evolution_beats_random_search_on_the_real_table(tmp_path):
    """The NAS-Bench-201 paper's finding at a small budget, over 5 seeds: REA's found cells are no worse on average
    than random search's (the 12-epoch CIFAR-10 validation accuracy)."""
    found = {"random": [], "rea": []}
    for seed in range(5):
        for name in found:
            r = darts.search(space="nb201", strategy=name, evaluator="table", nb201_table=TABLE, budget_evals=100,
                             seed=seed, progress=False, out=str(tmp_path / f"{name}{seed}"))
            found[name].append(r.score)
    assert sum(found["rea"]) >= sum(found["random"])


@pytest.mark.slow
def test_the_command_line_runs_a_strategy_and_scores_cells(tmp_path, toy_table):  # noqa: F811
    from tests.test_cli import run

    out = str(tmp_path / "cli")
    p = run("train_search.py", "--space", "nb201", "--strategy", "ls", "--ls-init", "5", "--evaluator", "table",
            "--nb201-table", toy_table, "--nb201-dataset", "cifar100", "--budget-evals", "12", "--out", out)
    assert "strategy ls" in p.stdout
    lines = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
    assert len(lines) == 12 and all(x["score"] == toy_accuracy(x["arch"]) / 2 for x in lines)  # CIFAR-100's
    p = run("train_search.py", "--resume", out, check=False)
    assert p.returncode == 0  # a finished run resumes to its end at once
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    from darts.cli import main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["proxies", arch, "--proxy", "params,flops", "--json"]) == 0
    row = json.loads(buf.getvalue())
    from darts.final import count_parameters
    from darts.spaces.nb201 import NB201Genotype, NB201Network

    net = NB201Network(NB201Genotype.from_string(arch), 16, 5, 10)  # CIFAR-shaped by default: the benchmark's
    assert row["cell"] == arch and row["params"] == count_parameters(net) / 1e6 and row["flops"] > row["params"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["proxies", "not-a-cell"]) == 2
