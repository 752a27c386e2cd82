"""The published cells: lookup, transcription checks, and parameter counts against the papers' figures."""
from __future__ import annotations

import pytest
import torch

from darts.errors import DartsError
from darts.final import NetworkCIFAR, NetworkImageNet, count_parameters
from darts.genotype import Genotype, parse_genotype_text
from darts.ops import DARTS_PRIMITIVES
from darts.zoo import ZOO, UnknownCellError, ZooEntry, _from_pairs, get_entry, get_genotype, list_names

CANONICAL = [
    "NASNet", "AmoebaNet", "DARTS_V1", "DARTS_V2", "PC_DARTS_cifar", "PC_DARTS_image", "PDARTS", "GDAS_V1",
    "DrNAS_cifar10", "DrNAS_imagenet", "SDARTS_RS", "SDARTS_ADV",
]

# Where our count of the cell in the DARTS skeleton cannot match the paper, and why. The value is our count in
# millions (rounded to 0.01), pinned so that a change to the network or the transcription is noticed.
KNOWN_CIFAR_GAPS = {
    # NASNet-A's 3.3 M is NASNet's own CIFAR network (6 cells per stage, its own filter counts); the same cell in
    # the DARTS 20-cell/36-channel skeleton has 3.83 M.
    "NASNet": 3.83,
    # xiangning-chen/SmoothDARTS ships c10_s5_random with 3.61 M in the DARTS skeleton; the paper says 3.4 M.
    # The cell in the repository is what we ship; the paper's cell may be from another run.
    "SDARTS_RS": 3.61,
}
KNOWN_IMAGENET_GAPS = {
    "NASNet": 5.56,  # NASNet-A (4 @ 1056), its own ImageNet network
    "AmoebaNet": 4.63,  # AmoebaNet-A (N=4, F=50), its own ImageNet network
    "GDAS_V1": 4.97,  # trained with AutoDL-Projects' own ImageNet configuration, not C=48
}
# The papers round to 0.1 M; allow that plus 0.1 M of slack (DARTS reports 3.3 M for both orders: V1 is 3.17 M).
TOLERANCE_M = 0.1 + 0.05


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------------
# An independent parameter count, written from the reference layout (quark0/darts cnn/model.py, operations.py)


def _bn(C):
    return 2 * C  # affine weight and bias; running statistics are buffers


def _op_params(name: str, C: int, stride: int) -> int:
    sep = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "sep_conv_7x7": 7}
    dil = {"dil_conv_3x3": 3, "dil_conv_5x5": 5}
    if name in sep:  # two (depthwise k x k, pointwise 1x1, BN) blocks
        k = sep[name]
        return 2 * (C * k * k + C * C + _bn(C))
    if name in dil:  # one (depthwise k x k, pointwise 1x1, BN) block
        k = dil[name]
        return C * k * k + C * C + _bn(C)
    if name == "conv_7x1_1x7":  # 1x7 and 7x1 full convs, BN
        return 2 * 7 * C * C + _bn(C)
    if name == "skip_connect":  # identity, or FactorizedReduce(C, C) when striding
        return 0 if stride == 1 else 2 * C * (C // 2) + _bn(C)
    assert name in ("none", "max_pool_3x3", "avg_pool_3x3"), name
    return 0


def analytic_params_cifar(g: Genotype, C: int, layers: int, num_classes: int) -> int:
    total = 3 * (3 * C) * 9 + _bn(3 * C)  # stem: 3x3 conv to 3C, BN
    C_pp, C_p, C_cur, reduction_prev = 3 * C, 3 * C, C, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C_cur = C_cur * 2 if reduction else C_cur
        if reduction_prev:
            total += 2 * C_pp * (C_cur // 2) + _bn(C_cur)  # FactorizedReduce
        else:
            total += C_pp * C_cur + _bn(C_cur)  # ReLU-1x1 conv-BN
        total += C_p * C_cur + _bn(C_cur)
        edges, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
        total += sum(_op_params(op, C_cur, 2 if reduction and j < 2 else 1) for op, j in edges)
        C_pp, C_p, reduction_prev = C_p, len(concat) * C_cur, reduction
    return total + C_p * num_classes + num_classes  # classifier


def test_analytic_count_of_darts_v2_is_the_known_value():
    # 3,349,342: DARTS_V2 at C=36, 20 cells, 10 classes (the "3.3 M" of the paper), auxiliary head excluded.
    g = get_genotype("DARTS_V2")
    assert analytic_params_cifar(g, 36, 20, 10) == 3_349_342
    assert count_parameters(NetworkCIFAR(36, 10, 20, True, g)) == 3_349_342


# ---------------------------------------------------------------------------------------------------------
# The registry


def test_names_are_the_canonical_ones_in_order():
    assert list_names() == CANONICAL
    assert list(ZOO) == CANONICAL
    assert all(isinstance(e, ZooEntry) and e.name == n for n, e in ZOO.items())


@pytest.mark.parametrize("spelling", ["DARTS_V2", "darts_v2", "Darts-V2", " darts_v2 "])
def test_lookup_ignores_case_and_dashes(spelling):
    assert get_entry(spelling) is ZOO["DARTS_V2"]
    assert get_genotype(spelling) == ZOO["DARTS_V2"].genotype


def test_unknown_name_lists_close_matches_and_all_names():
    with pytest.raises(UnknownCellError) as info:
        get_entry("darts_v3")
    assert isinstance(info.value, DartsError)
    msg = str(info.value)
    assert "did you mean" in msg and "DARTS_V2" in msg.split("Known")[0]
    assert all(n in msg for n in CANONICAL)
    with pytest.raises(DartsError):
        get_genotype("")


def test_autodl_pairs_format_flattens_to_the_darts_lists():
    # D-X-Y/AutoDL-Projects xautodl/nas_infer_model/DXYs/genotypes.py writes DARTS_V1/V2 per node; flattened they
    # must be the quark0/darts lists, which checks the conversion used for GDAS_V1.
    autodl_v2_normal = [
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 1), ("skip_connect", 0)),
        (("skip_connect", 0), ("dil_conv_3x3", 2)),
    ]
    autodl_v2_reduce = [
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
    ]
    autodl_v1_normal = [
        (("sep_conv_3x3", 1), ("sep_conv_3x3", 0)),
        (("skip_connect", 0), ("sep_conv_3x3", 1)),
        (("skip_connect", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("skip_connect", 2)),
    ]
    autodl_v1_reduce = [
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 2), ("max_pool_3x3", 0)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("skip_connect", 2), ("avg_pool_3x3", 0)),
    ]
    assert _from_pairs(autodl_v2_normal) == get_genotype("DARTS_V2").normal
    assert _from_pairs(autodl_v2_reduce) == get_genotype("DARTS_V2").reduce
    assert _from_pairs(autodl_v1_normal) == get_genotype("DARTS_V1").normal
    assert _from_pairs(autodl_v1_reduce) == get_genotype("DARTS_V1").reduce
    with pytest.raises(DartsError):
        _from_pairs([(("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 1))])


def test_search_spaces():
    for name in ("NASNet", "AmoebaNet"):  # not DARTS-space cells: their primitives are the ops they use
        g = get_genotype(name)
        assert set(g.primitives) == g.ops() and len(g.primitives) == len(set(g.primitives))
    for name in ("DrNAS_cifar10", "DrNAS_imagenet"):  # searched without `none`
        assert get_genotype(name).primitives == tuple(p for p in DARTS_PRIMITIVES if p != "none")
    for name in CANONICAL[2:8] + ["SDARTS_RS", "SDARTS_ADV"]:
        assert get_genotype(name).primitives == DARTS_PRIMITIVES


# ---------------------------------------------------------------------------------------------------------
# Parametrized over every entry: a new entry is tested with no new test code


@pytest.mark.parametrize("name", CANONICAL)
def test_entry_is_consistent(name):
    e = get_entry(name)
    g = e.genotype.validate()
    assert g.primitives is not None and g.ops() <= set(g.primitives)
    assert " · " in e.source and e.paper
    # JSON and log-text round trips keep the cell (the log text drops primitives, by design of the format)
    assert Genotype.from_dict(g.to_dict()) == g and Genotype.from_dict(g.to_dict()).primitives == g.primitives
    assert parse_genotype_text(str(g)) == g
    for field in ("cifar_error", "cifar_params_m", "search_gpu_days", "imagenet_top1_error", "imagenet_top5_error",
                  "imagenet_params_m", "imagenet_macs_m"):
        value = getattr(e, field)
        assert value is None or (isinstance(value, (int, float)) and value > 0), field
    assert e.cifar_error is not None or e.imagenet_top1_error is not None  # every cell reported something


@pytest.mark.parametrize("name", CANONICAL)
def test_cifar_parameter_count_matches_the_paper(name):
    e = get_entry(name)
    ours = count_parameters(NetworkCIFAR(36, 10, 20, True, e.genotype))
    assert ours == analytic_params_cifar(e.genotype, 36, 20, 10)  # independent count from the layout
    if name in KNOWN_CIFAR_GAPS:
        assert round(ours / 1e6, 2) == KNOWN_CIFAR_GAPS[name]
    elif e.cifar_params_m is not None:
        assert abs(ours / 1e6 - e.cifar_params_m) <= TOLERANCE_M, (ours, e.cifar_params_m)


@pytest.mark.parametrize("name", [n for n in CANONICAL if ZOO[n].imagenet_params_m is not None])
def test_imagenet_parameter_count_matches_the_paper(name):
    e = get_entry(name)
    ours = count_parameters(NetworkImageNet(48, 1000, 14, True, e.genotype))
    if name in KNOWN_IMAGENET_GAPS:
        assert round(ours / 1e6, 2) == KNOWN_IMAGENET_GAPS[name]
    else:
        assert abs(ours / 1e6 - e.imagenet_params_m) <= TOLERANCE_M, (ours, e.imagenet_params_m)


# NASNet: 5 nodes; AmoebaNet: concat lists that skip nodes ([4, 5, 6] and [3, 4, 6]) and conv_7x1_1x7.
@pytest.mark.parametrize("name", ["NASNet", "AmoebaNet", "DARTS_V2"])
def test_full_size_forward_at_batch_1(name):
    torch.manual_seed(0)
    model = NetworkCIFAR(36, 10, 20, True, get_genotype(name)).eval()
    with torch.no_grad():
        logits, aux = model(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10) and aux is None
    assert torch.isfinite(logits).all()


def test_auxiliary_head_follows_a_narrow_concat():
    # The auxiliary head reads the reduction cell at 2*layers//3, which for AmoebaNet concatenates 3 of 5 nodes.
    torch.manual_seed(0)
    model = NetworkCIFAR(8, 10, 8, True, get_genotype("AmoebaNet")).train()
    logits, aux = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
