"""Contract tests parametrized over every registered op: a newly registered op is covered with no new code."""
import pytest
import torch
import torch.nn as nn

from darts.errors import DartsError, UnknownOpError
from darts.ops import DARTS_PRIMITIVES, FactorizedReduce, build_op, get_op_spec, list_ops, register_op


@pytest.mark.parametrize("name", list_ops())
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [True, False])
def test_op_contract(name, stride, affine):
    C = 6
    op = build_op(name, C, stride, affine).train()
    x = torch.randn(3, C, 10, 10, requires_grad=True)
    before = x.detach().clone()
    y = op(x)
    assert y.shape == (3, C, 10 // stride, 10 // stride)
    assert torch.equal(x.detach(), before), "the op mutated its input"
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    for p in op.parameters():
        assert p.grad is not None
    if not affine:
        for m in op.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert not m.affine


@pytest.mark.parametrize("name", list_ops())
def test_spec_flags_match_behaviour(name):
    spec = get_op_spec(name)
    op = build_op(name, 4, 1, True)
    if spec.parameter_free:
        assert sum(p.numel() for p in op.parameters()) == 0
    if spec.is_zero:
        assert torch.count_nonzero(op(torch.randn(2, 4, 6, 6))) == 0


def test_darts_primitives_are_registered_in_order():
    assert DARTS_PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                                "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert {"sep_conv_7x7", "conv_7x1_1x7"} <= set(list_ops())
    assert [n for n in DARTS_PRIMITIVES if get_op_spec(n).search_bn] == ["max_pool_3x3", "avg_pool_3x3"]


def test_sep_conv_parameter_count():
    # Independent count: two blocks of (depthwise k*k*C + pointwise C*C + BN 2C).
    C, k = 8, 3
    per_block = C * k * k + C * C + 2 * C
    assert sum(p.numel() for p in build_op("sep_conv_3x3", C, 1, True).parameters()) == 2 * per_block
    assert sum(p.numel() for p in build_op("dil_conv_5x5", C, 1, True).parameters()) == C * 25 + C * C + 2 * C


def test_factorized_reduce_matches_manual_computation():
    fr = FactorizedReduce(4, 6, affine=False).eval()
    x = torch.randn(2, 4, 8, 8)
    r = torch.relu(x)
    a = torch.nn.functional.conv2d(r, fr.conv_1.weight, stride=2)
    b = torch.nn.functional.conv2d(r[:, :, 1:, 1:], fr.conv_2.weight, stride=2)
    expected = torch.nn.functional.batch_norm(torch.cat([a, b], 1), fr.bn.running_mean, fr.bn.running_var)
    torch.testing.assert_close(fr(x), expected)


def test_unknown_op_error_names_it_and_suggests():
    with pytest.raises(UnknownOpError, match="sep_conv_3x3"):
        build_op("sep_conv_3x", 4, 1, True)


def test_duplicate_registration_is_an_error():
    with pytest.raises(DartsError, match="already registered"):
        register_op("skip_connect")(lambda C, stride, affine: nn.Identity())


def test_bad_op_name_is_rejected():
    with pytest.raises(DartsError):
        register_op("a,b")
