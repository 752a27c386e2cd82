"""Cost models (issue 18): analytic op costs against the network counter, the cell costs of whole networks, the
expected-cost penalty's gradient by hand, search under a FLOPs target, the latency table, and export round trips."""
import json
import os
import random

import pytest
import torch

import darts
from darts.config import network_settings
from darts.costs import CostTable, analytic_table, cost_penalty, fit_to_target, op_cost, profile_latency
from darts.counting import count_macs
from darts.errors import ConfigError, DataError
from darts.final import count_parameters
from darts.ops import build_op, list_ops
from darts.spaces import get_space
from darts.zoo import ZOO

DARTS = get_space("darts")
NB201 = get_space("nb201")


@pytest.mark.parametrize("op", list_ops())
@pytest.mark.parametrize("C, stride, H", [(4, 1, 8), (8, 2, 8), (6, 1, 5), (4, 2, 16)])
def test_the_analytic_cost_of_every_op_equals_the_network_counter(op, C, stride, H):
    module = build_op(op, C, stride, True)
    cost = op_cost(op, C, stride, H)
    assert cost["params"] == count_parameters(module)
    assert cost["flops"] == count_macs(module, (C, H, H))


def random_darts(rng):
    enc = DARTS.encoding(DARTS.primitives)
    return enc.decode(enc.random(rng))


@pytest.mark.parametrize("metric", ["params", "flops"])
def test_a_cells_predicted_cost_is_its_networks_count(metric):
    """fixed + Σ edges = the counter on the whole retraining network: zoo cells, random cells, both spaces."""
    count = (lambda net, s: count_parameters(net)) if metric == "params" else \
        (lambda net, s: count_macs(net, (s[1], s[2], s[2])))
    rng = random.Random(0)
    for space, dataset, shape, cells in (
            (DARTS, "digits", (10, 1, 8), [ZOO[n].genotype for n in ("DARTS_V2", "PC_DARTS_cifar", "PDARTS", "GDAS_V1")] +
             [random_darts(rng) for _ in range(3)]),
            (DARTS, "cifar10", (10, 3, 32), [ZOO["DARTS_V1"].genotype, random_darts(rng)]),
            (NB201, "cifar10", (10, 3, 32), [NB201.encoding(NB201.primitives).decode(
                NB201.encoding(NB201.primitives).random(rng)) for _ in range(4)])):
        ncfg = network_settings(space, dataset)
        if dataset == "cifar10" and space is DARTS:
            ncfg.layers, ncfg.init_channels = 8, 16  # smaller than the paper's, the same rules
        table = analytic_table(space, metric, ncfg, space.primitives, *shape)
        for g in cells:
            net = space.build_network(g, ncfg, *shape)
            assert table.cell_cost(space, g) == count(net, shape), (space.name, dataset, str(g))


def test_the_expected_cost_and_its_penalty_have_the_hand_gradient():
    torch.manual_seed(0)
    alpha = torch.randn(3, 4, requires_grad=True)
    c = torch.tensor([[0.0, 1.0, 5.0, 2.0], [3.0, 0.0, 1.0, 1.0], [2.0, 2.0, 4.0, 0.0]])
    table = CostTable("flops", "multiply-adds", 7.0, {"cell": [dict(zip("abcd", map(float, r))) for r in c]}, {})
    w = torch.softmax(alpha, -1)
    expected = table.expected({"cell": w}, list("abcd"))
    assert float(expected.detach()) == pytest.approx(7.0 + float((w.detach() * c).sum()))
    target, lam = 5.0, 0.3
    penalty = cost_penalty(expected, target, lam, "hinge")
    (g,) = torch.autograd.grad(penalty, alpha)
    wd = w.detach()
    # softmax: ∂E/∂α_ek = w_ek (c_ek − Σ_j w_ej c_ej); the hinge above the target multiplies by λ / target
    hand = wd * (c - (wd * c).sum(-1, keepdim=True)) * lam / target
    assert float(expected) > target
    torch.testing.assert_close(g, hand)
    (g,) = torch.autograd.grad(cost_penalty(table.expected({"cell": torch.softmax(alpha, -1)}, list("abcd")), 100.0,
                                            lam, "hinge"), alpha)
    assert g.abs().max() == 0  # below the target the hinge is flat
    (g,) = torch.autograd.grad(cost_penalty(table.expected({"cell": torch.softmax(alpha, -1)}, list("abcd")), 100.0,
                                            lam, "log"), alpha)
    torch.testing.assert_close(g, wd * (c - (wd * c).sum(-1, keepdim=True)) * lam / float(expected))


def test_the_hard_rule_never_returns_a_cell_above_a_reachable_target():
    ncfg = network_settings(DARTS, "digits")
    table = analytic_table(DARTS, "flops", ncfg, DARTS.primitives, 10, 1, 8)
    rng = random.Random(1)
    cheapest = table.cell_cost(DARTS, DARTS.cheapest_topology(ZOO["DARTS_V2"].genotype, table))
    for _ in range(40):
        g = random_darts(rng)
        strengths = {k: torch.rand(14, 8) for k in ("normal", "reduce")}
        cost = table.cell_cost(DARTS, g)
        target = rng.uniform(cheapest * 0.9, cost * 1.1)
        fitted, fitted_cost = fit_to_target(DARTS, g, strengths, table, target)
        assert fitted_cost == table.cell_cost(DARTS, fitted)
        if cost <= target:
            assert fitted == g  # a cell under the target is left as the rule derived it
        elif cheapest <= target:
            assert fitted_cost <= target
        assert all(op != "none" for op, _ in fitted.normal + fitted.reduce)


@pytest.mark.slow
def test_a_search_under_a_tight_flops_target_returns_a_cell_under_it(tmp_path):
    small = dict(epochs=2, init_channels=4, layers=3, batch_size=128, progress=False, seed=2)
    free = darts.search(out=str(tmp_path / "free"), cost="flops", **small)
    free_cost = free.metrics[-1]["cost_predicted"]
    table = analytic_table(DARTS, "flops", network_settings(DARTS, "digits"), DARTS.primitives, 10, 1, 8)
    cheapest = table.cell_cost(DARTS, DARTS.cheapest_topology(free.genotype, table))
    target = (cheapest + free_cost) / 2
    assert free_cost > target
    bound = darts.search(out=str(tmp_path / "bound"), cost="flops", cost_target=target, cost_weight=1.0, **small)
    for rec in bound.metrics:  # every epoch's derived cell is under the target, predicted and counted
        assert rec["cost_predicted"] <= target and rec["cost_measured"] == rec["cost_predicted"]
    net = DARTS.build_network(bound.genotype, network_settings(DARTS, "digits"), 10, 1, 8)
    assert count_macs(net, (1, 8, 8)) <= target


def test_the_latency_table_round_trips_and_is_checked(tmp_path):
    ncfg = network_settings(NB201, "digits")
    ncfg.layers = 1
    table = profile_latency(NB201, ncfg, NB201.primitives, 10, 1, 8, batch_size=2, warmup=1, repeats=3)
    assert table.metric == "latency" and table.unit == "ms" and table.network["batch_size"] == 2
    assert len(table.edges["cell"]) == 6 and set(table.edges["cell"][0]) == set(NB201.primitives)
    assert all(v >= 0 for r in table.edges["cell"] for v in r.values()) and table.fixed >= 0
    path = str(tmp_path / "lat.json")
    table.save(path)
    again = CostTable.load(path)
    assert again.to_dict() == json.loads(json.dumps(table.to_dict()))
    g = NB201.empty_genotype(NB201.primitives)
    assert again.cell_cost(NB201, g) == pytest.approx(table.cell_cost(NB201, g))
    bad = json.loads(open(path).read())
    bad["edges"]["cell"][0]["none"] = -1
    open(path, "w").write(json.dumps(bad))
    with pytest.raises(DataError, match="non-negative"):
        CostTable.load(path)
    open(path, "w").write("{")
    with pytest.raises(DataError, match="cannot read"):
        CostTable.load(path)
    # a table of another network is refused before the search starts
    table.save(path)
    with pytest.raises(ConfigError, match="profiled for another network"):
        darts.search(space="nb201", cost="latency", cost_table=path, epochs=1, out=str(tmp_path / "s"),
                     progress=False)
    with pytest.raises(ConfigError, match="--cost-table"):
        darts.search(space="nb201", cost="latency", epochs=1, out=str(tmp_path / "s"), progress=False)
    with pytest.raises(ConfigError, match="--cost-target needs --cost"):
        darts.search(cost_target=5.0, epochs=1, out=str(tmp_path / "s"), progress=False)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "run")
    darts.retrain("DARTS_V2", epochs=1, layers=3, init_channels=8, progress=False, out=out)
    return out


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported"])
def test_export_round_trips(retrained, fmt, tmp_path):
    from darts.export import LogitsOnly, export_run, load_retrained

    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export is the optional 'export' extra (onnx, onnxruntime)")
        pytest.importorskip("onnxscript", reason="ONNX export is the optional 'export' extra (onnxscript)")
    info = export_run(retrained, fmt, str(tmp_path))
    net, _, shape, _ = load_retrained(retrained)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        want = LogitsOnly(net)(x)
    if fmt == "onnx":
        import onnxruntime

        got = torch.from_numpy(onnxruntime.InferenceSession(info["path"]).run(None, {"images": x.numpy()})[0])
    elif fmt == "torchscript":
        got = torch.jit.load(info["path"])(x)
    else:
        got = torch.export.load(info["path"]).module()(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    side = json.load(open(info["sidecar"]))
    assert side["genotype"] == ZOO["DARTS_V2"].genotype.to_dict() and side["num_classes"] == 10
    assert side["input_shape"] == [1, 1, 8, 8] and "mean" in side["preprocessing"] and side["output"] == "logits"


def test_export_of_what_is_not_a_retraining_run_is_a_clear_error(tmp_path):
    from darts.export import export_run

    with pytest.raises(darts.DartsError):
        export_run(str(tmp_path / "nothing"), "torchscript")
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(str(tmp_path), "tflite")
    assert not os.path.exists(tmp_path / "nothing")


@pytest.mark.slow
def test_profile_and_export_from_the_command_line(tmp_path, retrained):
    from tests.test_cli import ROOT
    import subprocess
    import sys

    lat = str(tmp_path / "lat.json")
    cli = [sys.executable, "-m", "darts"]
    p = subprocess.run([*cli, "profile", "--space", "nb201", "--dataset", "digits", "--layers", "1", "--warmup", "1",
                        "--repeats", "2", "--out", lat], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    table = CostTable.load(lat)
    assert table.network["layers"] == 1 and table.network["space"] == "nb201" and table.device["torch"]
    p = subprocess.run([*cli, "export", retrained, "--format", "torchscript", "--out", str(tmp_path / "e")], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert os.path.exists(tmp_path / "e" / "model.torchscript.pt.json")
    p = subprocess.run([*cli, "export", str(tmp_path / "nothing")], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 2 and p.stderr.startswith("error: ")


@pytest.mark.parametrize("method", ["darts", "fairdarts", "gdas", "drnas", "pcdarts"])
def test_the_penalty_reaches_alpha_through_every_relaxation(method):
    """Softmax, sigmoid, Gumbel and Dirichlet op weights all carry the expected cost's gradient to α; for sigmoid
    (FairDARTS) against the hand formula λ/T · σ'(α) · c."""
    from darts.config import resolve_search
    from darts.costs import SearchCost

    setup = resolve_search({"method": method, "init_channels": 8, "layers": 3, "cost": "flops", "cost_target": 1.0})
    cfg = setup.cfg
    model = setup.space.build_supernet(C=8, num_classes=10, in_channels=1, primitives=cfg.primitives,
                                       method=setup.method)
    model.train()
    cost = SearchCost.create(setup.space, cfg, network_settings(setup.space, "digits"), 10, 1, 8, "cpu")
    setup.method.resample(model)
    penalty = cost.penalty(model)
    grads = torch.autograd.grad(penalty, model.arch_parameters(), allow_unused=True)
    grads = [g for g in grads if g is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    if method == "fairdarts":
        for group, g in zip(model.alphas.groups, grads):
            a = model.alphas.group(group).detach()
            c = cost.table.matrix(group, cfg.primitives)
            s = torch.sigmoid(a)
            torch.testing.assert_close(g, s * (1 - s) * c / cfg.cost_target * cfg.cost_weight, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_profile_search_under_latency_retrain_and_export_from_python(tmp_path):
    table = darts.profile("nb201", dataset="digits", warmup=1, repeats=3, out=str(tmp_path / "lat.json"))
    free = darts.search(space="nb201", epochs=1, batch_size=256, progress=False, out=str(tmp_path / "s0"),
                        cost="latency", cost_table=str(tmp_path / "lat.json"))
    assert free.metrics[-1]["cost_predicted"] > 0 and free.metrics[-1]["cost_measured"] > 0
    cheapest = table.fixed + sum(min(row.values()) for row in table.edges["cell"])
    target = cheapest * (1 + 1e-9)  # only the cheapest cell fits
    r = darts.search(space="nb201", epochs=1, batch_size=256, progress=False, out=str(tmp_path / "s"),
                     cost="latency", cost_table=str(tmp_path / "lat.json"), cost_target=target)
    assert r.metrics[-1]["cost_predicted"] <= target
    f = darts.retrain(r.genotype, epochs=1, layers=1, progress=False, out=str(tmp_path / "f"))
    from darts.export import export_run

    info = export_run(f.run_dir, "exported")
    assert os.path.exists(info["path"]) and json.load(open(info["sidecar"]))["genotype"]["arch"] == str(r.genotype)
