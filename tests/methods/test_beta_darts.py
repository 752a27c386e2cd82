"""β-DARTS: the β-continuous regulariser against its formula written out, its weight schedule, and its gradient."""
import math

import pytest
import torch

import darts
from darts.config import resolve_search
from darts.errors import ConfigError
from darts.methods.beta_darts import BetaDecay, beta_loss


def test_beta_loss_is_the_mean_log_sum_exp_of_every_row():
    torch.manual_seed(0)
    a, b = torch.randn(14, 8), torch.randn(14, 8)
    hand = sum(math.log(sum(math.exp(float(v)) for v in row)) for m in (a, b) for row in m) / 28
    assert float(beta_loss([a, b])) == pytest.approx(hand, rel=1e-6)


def test_its_gradient_is_the_softmax_over_the_number_of_rows():
    torch.manual_seed(1)
    a = torch.randn(6, 5, requires_grad=True)
    reg = BetaDecay(0.5)
    reg.set_epoch(4)  # the authors' λ = 0 + 50·epoch/100 = 2 at epoch 4 (0-based)
    assert reg.weight() == 2.0

    class Model:
        def arch_parameters(self):
            return [a]

    (g,) = torch.autograd.grad(reg(Model()), a)
    torch.testing.assert_close(g, 2.0 * torch.softmax(a.detach(), -1) / 6)
    reg.set_epoch(0)
    assert reg(Model()) is None  # no regulariser in the first epoch


def test_beta_darts_is_darts_with_the_authors_rate_and_any_softmax_method_takes_it():
    assert resolve_search({"method": "beta-darts"}).cfg.beta_decay == 0.5
    assert resolve_search({"method": "pcdarts", "beta_decay": 0.25}).cfg.beta_decay == 0.25
    with pytest.raises(ConfigError, match="softmax"):
        resolve_search({"method": "fairdarts", "beta_decay": 0.5})


@pytest.mark.slow
def test_the_regulariser_keeps_alpha_flatter(tmp_path):
    """Same seed, same data: with the β term the op weights of every edge stay closer to uniform."""
    small = dict(epochs=3, init_channels=4, layers=3, batch_size=128, progress=False, arch_lr=3e-2)
    plain = darts.search(out=str(tmp_path / "plain"), **small)
    beta = darts.search(method="beta-darts", out=str(tmp_path / "beta"), **small)

    def spread(result):
        return sum(float(a.std(-1).mean()) for a in result.model.arch_parameters())

    assert spread(beta) < spread(plain)
