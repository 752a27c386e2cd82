"""The NAS-Bench-201 space: cell graph, macro network, genotype string, derivation, methods and benchmark lookup."""
import copy
import logging
import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.bilevel import BilevelOptimizer
from darts.errors import ConfigError, GenotypeError, UnknownNameError
from darts.methods import get_method, get_method_class, list_methods
from darts.ops import DARTS_PRIMITIVES, ReLUConvBN, build_op
from darts.spaces import Supernet
from darts.spaces import SPACES, check_space_primitives, default_primitives, get_space
from darts.spaces import nb201_bench
from darts.spaces.nb201 import (NB201_EDGES, NB201_PRIMITIVES, NB201Genotype, NB201SearchCell, NB201Supernet,
                                ResNetBasicBlock, derive_nb201, load_nb201_genotype)
from darts.spaces.nb201_bench import open_benchmark

P = NB201_PRIMITIVES
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def tiny(**kw):
    args = dict(C=8, num_classes=5, cells_per_stage=1)
    args.update(kw)
    return NB201Supernet(**args)


# ---------------------------------------------------------------------------------------------------------
# ops and network structure


@pytest.mark.parametrize("name,k", [("nor_conv_1x1", 1), ("nor_conv_3x3", 3)])
@pytest.mark.parametrize("stride", [1, 2])
def test_nor_conv_ops_are_relu_conv_bn(name, k, stride):
    op = build_op(name, 4, stride, False)
    assert isinstance(op, ReLUConvBN)
    relu, conv, bn = op.op
    assert isinstance(relu, nn.ReLU) and not relu.inplace
    assert conv.kernel_size == (k, k) and conv.stride == (stride, stride) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and not bn.affine
    assert op(torch.randn(2, 4, 8, 8)).shape == (2, 4, 8 // stride, 8 // stride)


@pytest.mark.parametrize("in_channels,size", [(1, 8), (3, 32)])
def test_output_shape(in_channels, size):
    m = tiny(in_channels=in_channels, num_classes=7)
    assert m(torch.randn(2, in_channels, size, size)).shape == (2, 7)


def test_alpha_shape_edges_and_parameter_partition():
    m = tiny()
    assert len(NB201_EDGES) == 6 and NB201_EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert m.arch_parameters() == [m.alphas.cell] and m.alphas.cell.shape == (6, 5)
    assert "alphas.cell" in m.state_dict()
    assert m.node_in_degrees() == [1, 2, 3] and sum(m.node_in_degrees()) == 6
    for cell in m.cells:
        if isinstance(cell, NB201SearchCell):
            assert len(cell.edges) == 6
    ids = [id(p) for p in m.arch_parameters() + m.weight_parameters()]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    assert [n for n, _ in m.named_weight_parameters()] == [n for n, _ in tiny().named_weight_parameters()]


def test_macro_skeleton():
    m = tiny(C=8, cells_per_stage=2)
    kinds = [type(c).__name__ for c in m.cells]
    assert kinds == ["NB201SearchCell"] * 2 + ["ResNetBasicBlock"] + ["NB201SearchCell"] * 2 + \
        ["ResNetBasicBlock"] + ["NB201SearchCell"] * 2
    assert m.stem[0].out_channels == 8 and m.stem[0].bias is None and m.stem[1].affine
    blocks = [c for c in m.cells if isinstance(c, ResNetBasicBlock)]
    assert [(b.conv_a.op[1].in_channels, b.conv_b.op[1].out_channels) for b in blocks] == [(8, 16), (16, 32)]
    assert m.lastact[0].affine and m.lastact[0].num_features == 32 and m.classifier.in_features == 32


def test_resnet_basic_block_against_its_definition():
    torch.manual_seed(1)
    b = ResNetBasicBlock(4, 8, 2)
    x = torch.randn(2, 4, 8, 8)

    def relu_conv_bn(m, t):
        conv, bn = m.op[1], m.op[2]
        t = F.conv2d(F.relu(t), conv.weight, stride=conv.stride, padding=conv.padding)
        return F.batch_norm(t, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)

    shortcut = F.conv2d(F.avg_pool2d(x, 2, 2), b.downsample[1].weight)
    expect = shortcut + relu_conv_bn(b.conv_b, relu_conv_bn(b.conv_a, x))
    torch.testing.assert_close(b(x), expect)
    for bn in (b.conv_a.op[2], b.conv_b.op[2]):
        assert bn.affine
    assert not any(isinstance(mod, (nn.ReLU, nn.BatchNorm2d)) for mod in b.downsample.modules())


def test_pools_have_no_batchnorm_and_cell_batchnorms_are_non_affine():
    m = tiny()
    cells = [c for c in m.cells if isinstance(c, NB201SearchCell)]
    for cell in cells:
        for mod in cell.modules():
            if isinstance(mod, nn.BatchNorm2d):
                assert not mod.affine
        for edge in cell.edges:
            pool = edge.candidates[P.index("avg_pool_3x3")]
            assert isinstance(pool, nn.AvgPool2d) and not pool.count_include_pad
            assert pool.kernel_size == 3 and pool.stride == 1 and pool.padding == 1
    for bn in [m.stem[1], m.lastact[0]] + [mod for c in m.cells if isinstance(c, ResNetBasicBlock)
                                           for mod in c.modules() if isinstance(mod, nn.BatchNorm2d)]:
        assert bn.affine


# ---------------------------------------------------------------------------------------------------------
# the cell graph against independent computations


def _functional_edge(edge, x, w):
    """One mixed edge written with torch.nn.functional only (BN on batch statistics, as in training mode)."""
    out = torch.zeros_like(x)
    for name, op, wk in zip(P, edge.candidates, w):
        if name == "none":
            continue
        if name == "skip_connect":
            y = x
        elif name == "avg_pool_3x3":
            y = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        else:
            conv, bn = op.op[1], op.op[2]
            y = F.batch_norm(F.conv2d(F.relu(x), conv.weight, padding=conv.padding), None, None, training=True,
                             eps=bn.eps)
        out = out + wk * y
    return out


@pytest.mark.parametrize("impl", ["reference", "fused_cpu"])
def test_cell_matches_functional_reimplementation(impl):
    torch.manual_seed(2)
    cell = NB201SearchCell(4, P, get_method("darts"))
    for edge in cell.edges:
        edge.impl = impl
    x = torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(6, 5), -1)
    nodes = [x]
    for i in range(1, 4):
        nodes.append(sum(_functional_edge(cell.edges[NB201_EDGES.index((i, j))], nodes[j], w[NB201_EDGES.index((i, j))])
                         for j in range(i)))
    torch.testing.assert_close(cell(x, w), nodes[3], rtol=1e-5, atol=1e-5)


def test_cell_with_one_op_per_edge_matches_a_hand_written_loop():
    torch.manual_seed(3)
    cell = NB201SearchCell(4, P, get_method("darts"))
    chosen = ["nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"]
    w = torch.zeros(6, 5)
    for e, op in enumerate(chosen):
        w[e, P.index(op)] = 1.0
    x = torch.randn(2, 4, 6, 6)
    op = [cell.edges[e].candidates[P.index(name)] for e, name in enumerate(chosen)]
    n1 = op[0](x)
    n2 = op[1](x) + op[2](n1)
    n3 = op[3](x) + op[4](n1) + op[5](n2)
    torch.testing.assert_close(cell(x, w), n3)


def test_reference_and_auto_kernels_agree():
    torch.manual_seed(4)
    ref = tiny(kernels="reference")
    with torch.no_grad():
        ref.alphas.cell.normal_()
    auto = copy.deepcopy(ref)
    auto.kernels = "auto"
    x = torch.randn(3, 3, 16, 16)
    outs, grads = [], []
    for m in (ref, auto):
        out = m(x)
        out.square().sum().backward()
        outs.append(out)
        grads.append(m.alphas.cell.grad)
    assert ref.cells[0].edges[0].impl == "reference" and auto.cells[0].edges[0].impl == "fused_cpu"
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# derivation


def test_derivation_takes_argmax_including_none():
    m = tiny()
    chosen = ["none", "nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1"]
    with torch.no_grad():
        m.alphas.cell.zero_()
        for e, op in enumerate(chosen):
            m.alphas.cell[e, P.index(op)] = 1.0
    g = m.genotype()
    assert isinstance(g, NB201Genotype) and g.primitives == P
    assert [op for op, _ in g.edges] == chosen
    assert [j for _, j in g.edges] == [j for _, j in NB201_EDGES]
    assert str(g) == "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"


def test_derivation_with_a_subset_and_max_skip():
    prims = ("skip_connect", "nor_conv_3x3")
    w = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.95, 0.05]])
    assert [op for op, _ in derive_nb201(w, prims).edges].count("skip_connect") == 5
    g = derive_nb201(w, prims, max_skip=2)
    # the three weakest skips (0.6, 0.7, 0.8) give way to the conv
    assert [op for op, _ in g.edges] == ["skip_connect", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3",
                                         "nor_conv_3x3", "skip_connect"]
    with pytest.raises(GenotypeError, match=r"\(6, 2\)"):
        derive_nb201(w[:5], prims)


# ---------------------------------------------------------------------------------------------------------
# genotype string and files


def test_genotype_string_round_trip(tmp_path):
    g = NB201Genotype.from_string(ARCH)
    assert g.nodes == ((("nor_conv_3x3", 0),), (("nor_conv_3x3", 0), ("avg_pool_3x3", 1)),
                       (("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2)))
    assert str(g) == ARCH and NB201Genotype.from_string(str(g)) == g
    assert g.normal == g.edges and len(g.edges) == 6
    g = NB201Genotype(g.nodes, P)
    d = g.to_dict()
    assert d == {"format": "nb201-genotype/1", "arch": ARCH, "primitives": list(P)}
    assert NB201Genotype.from_dict(d) == g and NB201Genotype.from_dict(d).primitives == P
    path = tmp_path / "genotype.json"
    g.save(str(path))
    back = load_nb201_genotype(str(path))
    assert back == g and back.primitives == P
    (tmp_path / "arch.txt").write_text(ARCH + "\n")
    assert load_nb201_genotype(str(tmp_path / "arch.txt")) == g


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("   ", "empty"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 node"),
    (ARCH + "+|none~0|none~1|none~2|none~3|", "4 node"),
    (ARCH.replace("avg_pool_3x3", "sep_conv_3x3"), "unknown op 'sep_conv_3x3'"),
    (ARCH.replace("skip_connect~2", "skip_connect~3"), "source node 3 is out of range"),
    ("|nor_conv_3x3~1|" + ARCH[len("|nor_conv_3x3~0|"):], "node 1: source node 1 is out of range"),
    (ARCH[1:], "'|' bars"),
    (ARCH[:-1], "'|' bars"),
    (ARCH.replace("|+|", "+"), "'|' bars"),
    (ARCH.replace("avg_pool_3x3~1|", "avg_pool_3x3~1||"), "not of the form op~source_index"),
    (ARCH.replace("~0|+|nor_conv_3x3~0|avg", "-0|+|nor_conv_3x3~0|avg"), "not of the form"),
    (ARCH.replace("skip_connect~2", "skip_connect~two"), "not of the form"),
    (ARCH.replace("skip_connect~2", "skip_connect~-2"), "not of the form"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2 edge"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "in order"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "in order"),
])
def test_malformed_strings_are_rejected(text, why):
    with pytest.raises(GenotypeError, match=why):
        NB201Genotype.from_string(text)


def test_bad_genotype_objects_and_files(tmp_path):
    with pytest.raises(GenotypeError, match="must be a str"):
        NB201Genotype.from_string(None)
    with pytest.raises(GenotypeError, match="not in the genotype's primitives"):
        NB201Genotype.from_string(ARCH, primitives=("skip_connect", "nor_conv_3x3"))
    with pytest.raises(GenotypeError, match="format"):
        NB201Genotype.from_dict({"format": "darts-genotype/1", "arch": ARCH})
    with pytest.raises(GenotypeError, match="unknown field"):
        NB201Genotype.from_dict({"format": "nb201-genotype/1", "arch": ARCH, "normal": []})
    with pytest.raises(GenotypeError, match="does not exist"):
        load_nb201_genotype(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError, match="bad.json: not valid JSON"):
        load_nb201_genotype(str(bad))


# ---------------------------------------------------------------------------------------------------------
# the space registry


def test_space_registry():
    assert SPACES.list()[:2] == ["darts", "nb201"]
    assert default_primitives("nb201") == P and default_primitives("darts") == DARTS_PRIMITIVES
    assert check_space_primitives("nb201", ["skip_connect", "nor_conv_3x3"]) == ("skip_connect", "nor_conv_3x3")
    assert check_space_primitives("darts", DARTS_PRIMITIVES) == DARTS_PRIMITIVES
    with pytest.raises(ConfigError, match="only has cells over"):
        check_space_primitives("nb201", ["nor_conv_3x3", "sep_conv_3x3"])
    with pytest.raises(UnknownNameError, match="unknown search space"):
        check_space_primitives("nasnet", P)
    common = dict(C=4, num_classes=3, in_channels=1, kernels="reference", method=get_method("darts"))
    m = get_space("nb201", cells=1).build_supernet(primitives=P, **common)
    assert isinstance(m, NB201Supernet) and m.cells_per_stage == 1
    d = get_space("darts", layers=3, nodes=2).build_supernet(primitives=DARTS_PRIMITIVES, **common)
    assert isinstance(d, Supernet) and d.steps == 2 and len(d.cells) == 3
    with pytest.raises(ConfigError):
        get_space("nb201", cells=1).build_supernet(primitives=DARTS_PRIMITIVES, **common)


# ---------------------------------------------------------------------------------------------------------
# every search method


@pytest.mark.parametrize("name", [m for m in list_methods() if get_method_class(m).uses_alpha])
def test_every_method_searches_the_nb201_space(name):
    """Every relaxation (the sampling methods' NB201 runs are in test_contract.py and test_methods_cli.py)."""
    torch.manual_seed(5)
    m = tiny(in_channels=1, method=get_method(name))
    m.method.start_epoch(m, 0, 2)
    m.method.resample(m)
    out = m(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.logsumexp(-1).sum().backward()
    for p in m.arch_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # every weight on the path of the loss (a sampling method such as GDAS leaves unsampled ops without one)
    for p in (m.stem[0].weight, m.classifier.weight, m.lastact[0].weight):
        assert p.grad is not None
    (w,) = m.edge_weights()
    (s,) = m.strengths()
    assert w.shape == s.shape == (6, 5)
    g = m.genotype()
    assert NB201Genotype.from_string(str(g)) == g
    m.eval()
    assert m(torch.randn(2, 1, 8, 8)).shape == (2, 5)


@pytest.mark.parametrize("order", ["first", "second"])
def test_bilevel_step(order):
    torch.manual_seed(6)
    m = tiny(C=4, in_channels=1, kernels="reference")
    w_opt = torch.optim.SGD(m.weight_parameters(), 0.05, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(m.arch_parameters(), 3e-2, betas=(0.5, 0.999))
    bo = BilevelOptimizer(m, nn.CrossEntropyLoss(), w_opt, a_opt, order)
    batch = lambda: (torch.randn(4, 1, 8, 8), torch.randint(0, 5, (4,)))  # noqa: E731
    before = m.alphas.cell.detach().clone()
    bo.step(batch(), batch(), xi=0.05)
    assert not torch.equal(m.alphas.cell.detach(), before)


# ---------------------------------------------------------------------------------------------------------
# the benchmark lookup


class _FakeAPI:
    calls: list = []

    def __init__(self, path, verbose=True):
        assert verbose is False
        self.path = path

    def query_index_by_arch(self, arch):
        return 42 if arch == ARCH else -1

    def get_more_info(self, index, dataset, hp="12", is_random=True):
        _FakeAPI.calls.append((index, dataset, hp, is_random))
        if dataset == "cifar100":
            raise KeyError("broken table")
        return {"test-accuracy": 93.76, "valid-accuracy": 90.0}


@pytest.fixture
def fake_api(monkeypatch):
    _FakeAPI.calls = []
    monkeypatch.setitem(sys.modules, "nas_201_api", types.SimpleNamespace(API=_FakeAPI))
    monkeypatch.setattr(nb201_bench, "_warned", set())
    return _FakeAPI


def test_lookup_with_the_official_api(fake_api, caplog):
    bench = open_benchmark("/data/NAS-Bench-201-v1_1-096897.pth")
    assert bench.api.path == "/data/NAS-Bench-201-v1_1-096897.pth"
    g = NB201Genotype.from_string(ARCH)
    assert bench.test_accuracy(g) == pytest.approx(93.76)
    assert fake_api.calls == [(42, "cifar10", "200", False)]
    with caplog.at_level(logging.WARNING, logger="darts.spaces.nb201"):
        assert bench.test_accuracy(g, "digits") == pytest.approx(93.76)  # CIFAR-10's figures, with a warning
        assert fake_api.calls[-1][1] == "cifar10" and "no data set 'digits'" in caplog.text
        assert bench.test_accuracy(g, "cifar100") is None  # a failing lookup warns and returns None
        assert fake_api.calls[-1][1] == "cifar100" and "KeyError" in caplog.text
        other = NB201Genotype.from_string(ARCH.replace("skip_connect~2", "none~2"))
        assert bench.test_accuracy(other) is None and "not in the NAS-Bench-201 table" in caplog.text


def test_lookup_falls_back_to_nats_bench(monkeypatch):
    created = []

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode, verbose))
        return _FakeAPI(path, verbose=False)

    monkeypatch.setitem(sys.modules, "nas_201_api", None)
    monkeypatch.setitem(sys.modules, "nats_bench", types.SimpleNamespace(create=create))
    bench = open_benchmark("/data/NATS-tss")
    assert created == [("/data/NATS-tss", "tss", True, False)]
    assert bench.test_accuracy(ARCH) == pytest.approx(93.76)


def test_lookup_without_the_api_returns_none(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # makes the import fail even where it is installed
    monkeypatch.setitem(sys.modules, "nats_bench", None)
    monkeypatch.setattr(nb201_bench, "_warned", set())
    assert open_benchmark(None) is None
    with caplog.at_level(logging.WARNING, logger="darts.spaces.nb201"):
        assert open_benchmark("/data/bench.pth") is None
        assert open_benchmark("/data/bench.pth") is None
    assert caplog.text.count("neither nas_201_api nor nats_bench") == 1


def test_lookup_with_an_unreadable_file_returns_none(monkeypatch):
    def broken(path, verbose=True):
        raise FileNotFoundError(path)

    monkeypatch.setitem(sys.modules, "nas_201_api", types.SimpleNamespace(API=broken))
    assert open_benchmark("/missing.pth") is None
