"""NAS-Bench-201 as a benchmark: the discrete network against the benchmark's parameter and FLOP counts, and the
table look-ups. The real tables are read from ../shared/nb201/ (never copied here)."""
import csv
import itertools
import json
import os

import pytest
import torch
import torch.nn as nn

from darts.benchmarks import NB201Table
from darts.counting import count_flops
from darts.errors import DataError
from darts.final import count_parameters
from darts.spaces.nb201 import NB201_PRIMITIVES, NB201Genotype, NB201Network, ResNetBasicBlock

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "nb201")
TABLE = os.path.join(SHARED, "nb201_12epoch.csv")
ZERO_COST = os.path.join(SHARED, "nb201_zero_cost.json")
needs_table = pytest.mark.skipif(not os.path.exists(TABLE), reason=f"the NAS-Bench-201 12-epoch table is absent "
                                 f"({TABLE}): it is shared data, never part of the repository")
needs_zero_cost = pytest.mark.skipif(not os.path.exists(ZERO_COST), reason=f"NAS-Bench-Suite-Zero's table is absent "
                                     f"({ZERO_COST}): it is shared data, never part of the repository")


def all_cells():
    """Every cell string of the space, in the benchmark's edge order."""
    for ops in itertools.product(NB201_PRIMITIVES, repeat=6):
        a, b, c, d, e, f = ops
        yield f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def write_table(path, rows):
    cols = ["arch", "cellstr", "cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val", "imagenet-test",
            "imagenet-val"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)


def toy_accuracy(arch):
    """An accuracy anyone can recompute: 10 points per convolution, 3 per skip."""
    return 10.0 * arch.count("conv") + 3.0 * arch.count("skip")


@pytest.fixture
def toy_table(tmp_path):
    """A table of every cell with made-up accuracies (test = val + 1, CIFAR-100 = half, ImageNet = a third)."""
    path = tmp_path / "toy.csv"
    rows = []
    for i, arch in enumerate(all_cells()):
        v = toy_accuracy(arch)
        rows.append([i, arch, v + 1, v, v / 2 + 1, v / 2, v / 3 + 1, v / 3])
    write_table(path, rows)
    return str(path)


# -- the discrete network --------------------------------------------------------------------------------------

def test_network_is_the_benchmarks_tiny_network():
    g = NB201Genotype.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                                  "skip_connect~2|")
    net = NB201Network(g, C=16, N=5, num_classes=10)
    stem_conv, stem_bn = net.stem
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (3, 16, (3, 3))
    assert isinstance(stem_bn, nn.BatchNorm2d) and stem_bn.affine
    kinds = [type(c).__name__ for c in net.cells]
    assert kinds == ["NB201Cell"] * 5 + ["ResNetBasicBlock"] + ["NB201Cell"] * 5 + ["ResNetBasicBlock"] + \
        ["NB201Cell"] * 5
    assert [c.conv_a.op[1].out_channels for c in net.cells if isinstance(c, ResNetBasicBlock)] == [32, 64]
    # nor_conv = ReLU-Conv-BN, affine in the discrete network
    conv = net.cells[0].edges[0].op
    assert [type(m) for m in conv] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d] and conv[2].affine
    assert net.classifier.in_features == 64
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None


def test_node_sums_match_a_hand_computation():
    """Node i sums one op on every earlier node; the output is node 3 (here with skips and zeros only)."""
    g = NB201Genotype.from_string("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|skip_connect~1|"
                                  "skip_connect~2|")
    cell = NB201Network(g, C=4, N=1).cells[0]
    x = torch.randn(1, 4, 8, 8)
    n1 = x
    n2 = x + n1
    n3 = 0 * x + n1 + n2
    torch.testing.assert_close(cell(x), n3)


@needs_zero_cost
def test_params_and_flops_of_all_724_cifar10_cells_equal_the_benchmarks():
    rows = json.load(open(ZERO_COST))["cifar10"]
    assert len(rows) >= 724
    torch.manual_seed(0)
    bad = []
    for row in rows:
        net = NB201Network(NB201Genotype.from_string(row["arch"]), 16, 5, 10)
        params, flops = count_parameters(net) / 1e6, count_flops(net, (3, 32, 32)) / 1e6
        if abs(params - row["params"]) > 5e-7 or abs(flops - row["flops"]) > 5e-7 * max(1, abs(row["flops"])):
            bad.append((row["arch"], params, row["params"], flops, row["flops"]))
    assert not bad, bad[:3]


# -- the table ---------------------------------------------------------------------------------------------------

@needs_table
def test_the_real_table_has_every_cell_and_its_published_optimum():
    table = NB201Table(TABLE)
    assert len(table) == 15625 and all(a in table for a in all_cells())
    best = table.best("cifar10", "test")
    assert best.accuracy["cifar10"]["test"] == pytest.approx(89.16)  # the shared README's figure
    rec = table.query("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                      "skip_connect~2|")
    assert rec.index == 1 and rec.accuracy["cifar10"]["test"] == pytest.approx(88.22)  # row 1 of the file
    g = NB201Genotype.from_string(rec.arch)
    assert table.accuracy(g, "cifar100", "test") == pytest.approx(58.26, abs=1e-3)


def test_a_users_table_by_column_name(toy_table, tmp_path):
    table = NB201Table(toy_table)
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    assert table.accuracy(arch, "cifar10", "val") == toy_accuracy(arch)
    assert table.accuracy(arch, "ImageNet16-120", "test") == pytest.approx(toy_accuracy(arch) / 3 + 1)
    assert table.best("cifar10", "test").arch.count("conv") == 6
    # columns in another order, an extra column, one row
    path = tmp_path / "reordered.csv"
    path.write_text("cifar10-val,extra,cellstr,arch,cifar10-test,cifar100-test,cifar100-val,imagenet-test,"
                    f"imagenet-val\n50,x,{arch},7,51,1,2,3,4\n")
    rec = NB201Table(str(path)).query(arch)
    assert rec.index == 7 and rec.accuracy["cifar10"] == {"test": 51.0, "val": 50.0}
    assert NB201Table(str(path)).query(arch.replace("none", "skip_connect")) is None


@pytest.mark.parametrize("content, why", [
    ("arch,cellstr\n0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|\n", "lacks the column"),
    ("arch,cellstr,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val\n", "no rows"),
    ("arch,cellstr,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val\n"
     "0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,x,3,4,5,6\n", "line 2"),
    ("arch,cellstr,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val\n"
     "0,|conv~0|,1,2,3,4,5,6\n", "not a NAS-Bench-201 cell string"),
])
def test_a_malformed_table_is_a_clear_error(tmp_path, content, why):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=why):
        NB201Table(str(path))
    with pytest.raises(DataError, match="does not exist"):
        NB201Table(str(tmp_path / "missing.csv"))


@pytest.mark.slow
def test_every_epoch_of_a_search_logs_the_derived_cells_table_accuracies(toy_table, tmp_path):
    import darts

    result = darts.search(space="nb201", epochs=2, batch_size=256, nb201_table=toy_table, progress=False,
                          out=str(tmp_path / "s"))
    assert len(result.metrics) == 2
    for rec in result.metrics:
        arch = rec["genotype"]["arch"]
        v = toy_accuracy(arch)
        assert rec["nb201_cifar10_val"] == v and rec["nb201_cifar10_test"] == v + 1
        assert rec["nb201_imagenet16_120_val"] == pytest.approx(v / 3)
        assert rec["nb201_cifar100_test"] == pytest.approx(v / 2 + 1)
