"""count_macs against hand counts: small layers, and whole networks counted analytically from their layout."""
from __future__ import annotations

import pytest
import torch.nn as nn

import darts.final
from darts.counting import count_macs, count_parameters
from darts.final import NetworkCIFAR, NetworkImageNet
from darts.genotype import Genotype
from darts.zoo import get_genotype


pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_formulas():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8 out: 8*8*8 outputs, each 3*3*3 MACs
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8, bias=False),  # depthwise: 8*4*4 outputs x 25
        nn.Conv2d(8, 16, 1, bias=False),  # 16*4*4 outputs x 8
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=4),  # dilation changes nothing: 16*2*2 x (4*9)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),  # 16*10
    )
    expected = 8 * 8 * 8 * 27 + 8 * 4 * 4 * 25 + 16 * 4 * 4 * 8 + 16 * 2 * 2 * 36 + 160
    assert count_macs(model, (3, 8, 8)) == expected
    assert count_macs(model, (1, 3, 8, 8)) == expected  # a batch dimension of 1 is accepted


def test_restores_training_mode_and_removes_hooks():
    model = NetworkCIFAR(8, 10, 5, True, get_genotype("DARTS_V2")).train()
    count_macs(model, (3, 32, 32))
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError):
        count_macs(model, (2, 3, 32, 32))


def test_parameter_count_is_the_final_one_and_skips_the_auxiliary_head():
    assert count_parameters is darts.final.count_parameters
    g = get_genotype("DARTS_V2")
    with_aux, without = NetworkCIFAR(8, 10, 5, True, g), NetworkCIFAR(8, 10, 5, False, g)
    assert count_parameters(with_aux) == count_parameters(without) == sum(p.numel() for p in without.parameters())
    assert count_macs(with_aux, (3, 32, 32)) == count_macs(without, (3, 32, 32))  # eval mode skips the head


# ---------------------------------------------------------------------------------------------------------
# An analytic MAC count of a whole network from the reference layout (quark0/darts cnn/model.py)


def _op_macs(name: str, C: int, stride: int, H_out: int) -> int:
    """MACs of one op producing C x H_out x H_out."""
    px = H_out * H_out
    sep = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "sep_conv_7x7": 7}
    dil = {"dil_conv_3x3": 3, "dil_conv_5x5": 5}
    if name in sep:  # both blocks: depthwise k*k and pointwise C per output, at the output resolution
        k = sep[name]
        return 2 * (C * px * k * k + C * px * C)
    if name in dil:
        k = dil[name]
        return C * px * k * k + C * px * C
    if name == "conv_7x1_1x7":  # the 1x7 conv strides only along W, so its output is H_in x H_out
        return C * (H_out * stride) * H_out * C * 7 + C * px * C * 7
    if name == "skip_connect":
        return 0 if stride == 1 else 2 * (C // 2) * px * C  # FactorizedReduce: two 1x1 convs to C/2
    return 0  # pooling, none


def _cells_macs(g: Genotype, layers: int, C_pp: int, C_p: int, C: int, H1: int, reduction_prev: bool):
    """MACs of the cell stack whose first s1 is H1 x H1 (s0 is twice that after a reduction).
    Returns (macs, channels of the last cell's output)."""
    total = 0
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C = 2 * C if reduction else C
        # preprocess0 brings s0 to s1's resolution: FactorizedReduce (two 1x1 convs to C/2) or a 1x1 conv
        total += 2 * (C // 2) * H1 * H1 * C_pp if reduction_prev else C * H1 * H1 * C_pp
        total += C * H1 * H1 * C_p  # preprocess1
        H_out = H1 // 2 if reduction else H1
        edges, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
        for op, j in edges:
            stride = 2 if reduction and j < 2 else 1
            total += _op_macs(op, C, stride, H_out)
        C_pp, C_p, H1, reduction_prev = C_p, len(concat) * C, H_out, reduction
    return total, C_p


def analytic_macs_cifar(g, C, layers, num_classes, H):
    total = 3 * C * H * H * 3 * 9  # stem 3x3 conv
    cells, C_prev = _cells_macs(g, layers, 3 * C, 3 * C, C, H, False)
    return total + cells + C_prev * num_classes


def analytic_macs_imagenet(g, C, layers, num_classes, H):
    h1, h2, h3 = H // 2, H // 4, H // 8
    stems = (C // 2) * h1 * h1 * 3 * 9 + C * h2 * h2 * (C // 2) * 9 + C * h3 * h3 * C * 9
    # cells start with s0 = stem0 output (H/4) and s1 = stem1 output (H/8); preprocess0 is a FactorizedReduce
    cells, C_prev = _cells_macs(g, layers, C, C, C, h3, True)
    return stems + cells + C_prev * num_classes


@pytest.mark.parametrize("name", ["DARTS_V2", "AmoebaNet", "DrNAS_cifar10"])
def test_cifar_network_matches_the_analytic_count(name):
    g = get_genotype(name)
    assert count_macs(NetworkCIFAR(8, 10, 5, True, g), (3, 32, 32)) == analytic_macs_cifar(g, 8, 5, 10, 32)


@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet"])
def test_imagenet_network_matches_the_analytic_count(name):
    g = get_genotype(name)
    model = NetworkImageNet(8, 100, 5, True, g)
    assert count_macs(model, (3, 64, 64)) == analytic_macs_imagenet(g, 8, 5, 100, 64)


def test_darts_v2_full_size_cifar():
    # 20 cells, 36 channels: the analytic count of the reference layout (about 528 M multiply-adds).
    g = get_genotype("DARTS_V2")
    macs = count_macs(NetworkCIFAR(36, 10, 20, True, g), (3, 32, 32))
    assert macs == analytic_macs_cifar(g, 36, 20, 10, 32)
    assert 500e6 < macs < 560e6
