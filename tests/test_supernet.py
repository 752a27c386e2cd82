"""The supernet: shapes, α as parameters in the state dict, the parameter partition, the DARTS layout, and the mixed
op against a weighted sum of separately built ops."""
import pytest
import torch
import torch.nn as nn

from darts.genotype import num_edges
from darts.ops import DARTS_PRIMITIVES, build_op, get_op_spec
from darts.spaces import Supernet
from darts.supernet import MixedOp


def tiny(**kw):
    args = dict(C=4, num_classes=5, layers=3, primitives=DARTS_PRIMITIVES, steps=2, multiplier=2)
    args.update(kw)
    return Supernet(**args)


def test_forward_backward_shapes():
    m = tiny()
    x = torch.randn(3, 3, 8, 8)
    out = m(x)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in m.arch_parameters())
    assert all(p.grad is not None for p in m.weight_parameters())


def test_alpha_are_parameters_in_the_state_dict():
    # the original code keeps α as bare tensors, so a saved model loses them
    m = tiny(steps=4, multiplier=4)
    assert [tuple(a.shape) for a in m.arch_parameters()] == [(num_edges(4), 8), (14, 8)]
    sd = m.state_dict()
    assert torch.equal(sd["alphas.normal"], m.alphas.normal.detach())
    other = tiny(steps=4, multiplier=4)
    other.load_state_dict(sd)
    assert torch.equal(other.alphas.reduce, m.alphas.reduce)


def test_weight_and_arch_parameters_partition_the_model_in_a_stable_order():
    m = tiny()
    arch, weights = m.arch_parameters(), m.weight_parameters()
    ids = [id(p) for p in arch + weights]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    # an SGD step on the weights leaves α alone
    before = [a.detach().clone() for a in arch]
    m(torch.randn(2, 3, 8, 8)).sum().backward()
    torch.optim.SGD(weights, 0.1).step()
    assert all(torch.equal(a, b) for a, b in zip(arch, before))
    names1 = [n for n, _ in tiny().named_weight_parameters()]
    names2 = [n for n, _ in tiny().named_weight_parameters()]
    assert names1 == names2


def test_every_cell_batchnorm_is_non_affine_and_pools_get_bn():
    m = tiny()
    for cell in m.cells:
        for mod in cell.modules():
            if isinstance(mod, nn.BatchNorm2d):
                assert not mod.affine
    edge = m.cells[0].edges[0]
    pools = [edge.candidates[DARTS_PRIMITIVES.index(p)] for p in ("max_pool_3x3", "avg_pool_3x3")]
    for p in pools:
        assert isinstance(p, nn.Sequential) and isinstance(p[1], nn.BatchNorm2d) and not p[1].affine


def test_reduction_cells_at_one_and_two_thirds():
    m = tiny(layers=8)
    assert [c.reduction for c in m.cells] == [i in (2, 5) for i in range(8)]


@pytest.mark.parametrize("kernels", ["reference", "fused_cpu"])
@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_separately_built_ops(stride, kernels, one_thread):
    torch.manual_seed(0)
    op = MixedOp(4, stride, DARTS_PRIMITIVES)
    op.impl = kernels
    # each op built on its own, as DARTS Sec. 2.1 defines the edge: non-affine, pools followed by a BatchNorm
    separate = []
    for name, candidate in zip(DARTS_PRIMITIVES, op.candidates):
        built = build_op(name, 4, stride, False)
        if get_op_spec(name).search_bn:
            built = nn.Sequential(built, nn.BatchNorm2d(4, affine=False))
        built.load_state_dict(candidate.state_dict())
        separate.append(built)
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(torch.randn(8), 0)
    for mode in ("train", "eval"):
        op.train(mode == "train")
        for s in separate:
            s.train(mode == "train")
        expected = sum(w[k] * separate[k](x) for k in range(8))
        torch.testing.assert_close(op(x, w), expected, rtol=1e-5, atol=1e-6)
    one_hot = torch.zeros(8)
    one_hot[4] = 1.0
    torch.testing.assert_close(op(x, one_hot), separate[4](x), rtol=1e-5, atol=1e-6)


def test_genotype_follows_alpha():
    m = tiny()
    with torch.no_grad():
        m.alphas.normal.zero_()
        m.alphas.normal[:, DARTS_PRIMITIVES.index("sep_conv_5x5")] = 5.0
        m.alphas.normal[:, DARTS_PRIMITIVES.index("none")] = 10.0  # never chosen
    g = m.genotype()
    assert {op for op, _ in g.normal} == {"sep_conv_5x5"}
    assert g.primitives == DARTS_PRIMITIVES


def test_custom_search_space_columns():
    prims = ("skip_connect", "sep_conv_3x3")
    m = tiny(primitives=prims)
    assert m.alphas.normal.shape[1] == 2
    assert m(torch.randn(2, 3, 8, 8)).shape == (2, 5)
