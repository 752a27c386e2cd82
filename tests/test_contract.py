"""The contract every registered search method, search space and kernel setting keeps, tested over the registries:
a method or space added to them is covered with no new test code (the timm pattern).

For each method x space x kernel setting: the supernet's forward and backward run and give every α a finite
gradient, the kernel setting computes the reference's loss and gradients, and the derived genotype is valid for the
space (it survives its JSON form).
"""
import pytest
import torch
import torch.nn.functional as F

from darts.dispatch import KERNELS
from darts.methods import METHODS, get_method
from darts.spaces import SPACES, genotype_from_dict, get_space

SMALL = {"darts": dict(layers=3, nodes=2), "nb201": dict(cells=1)}


def build(method: str, space: str, kernels: str):
    torch.manual_seed(0)
    sp = get_space(space, **SMALL.get(space, {}))
    m = get_method(method)
    m.bind(sp, sp.primitives, 0)  # as run_search does: a sampling method draws the space's cells
    return sp, sp.build_supernet(C=8, num_classes=3, in_channels=1, primitives=sp.primitives, method=m,
                                 kernels=kernels)


def loss_and_grads(model, x, y):
    model.train()
    model.method.start_epoch(model, 1, 4)
    torch.manual_seed(3)  # the same noise for the sampling relaxations (GDAS, DrNAS) on every path
    model.method.resample(model)
    loss = F.cross_entropy(model(x), y)
    params = model.arch_parameters() + model.weight_parameters()
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # GDAS leaves its unsampled ops unused
    return loss, [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


@pytest.mark.parametrize("kernels", KERNELS.list())
@pytest.mark.parametrize("space", SPACES.list())
@pytest.mark.parametrize("method", METHODS.list())
def test_method_space_kernel_contract(method, space, kernels, one_thread):
    ok, why = KERNELS.get(kernels).available(torch.device("cpu"))
    if not ok:
        pytest.skip(f"--kernels {kernels} cannot run on this machine: {why}")
    sp, model = build(method, space, kernels)
    ref_space, ref = build(method, space, "reference")
    ref.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)

    loss, grads = loss_and_grads(model, x, y)
    assert torch.isfinite(loss)
    for a, ga in zip(model.arch_parameters(), grads):
        assert ga.shape == a.shape and torch.isfinite(ga).all()
    if model.method.uses_alpha:  # the sampling methods (ENAS, RS-WS, SPOS) never differentiate α
        assert any(ga.abs().sum() > 0 for ga in grads[: len(model.arch_parameters())]), "α gets no gradient"
    else:
        assert any(gw.abs().sum() > 0 for gw in grads[len(model.arch_parameters()):]), "the path gets no gradient"

    ref_loss, ref_grads = loss_and_grads(ref, x, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    genotype = model.genotype()
    again = sp.genotype_from_dict(genotype.to_dict())
    assert again == genotype and genotype_from_dict(genotype.to_dict())[1] == genotype
    if hasattr(genotype, "validate"):
        genotype.validate()
    assert set(genotype.ops()) <= set(sp.primitives)
    model.eval()
    assert model(x).shape == (4, 3)
