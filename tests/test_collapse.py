"""Collapse early stopping: the Hessian eigenvalues against the dense Hessian, and the two stop rules."""
import io
import json
import math

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

from darts.collapse import (HessianEarlyStop, SkipEarlyStop, count_skips, dominant_hessian_eigenvalue,
                            largest_hessian_eigenvalue)
from darts.errors import NonFiniteLossError
from darts.genotype import Genotype
from darts.spaces import Supernet

PRIMITIVES = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")


def tiny_supernet() -> Supernet:
    m = Supernet(4, 3, 2, PRIMITIVES, steps=2, multiplier=2, in_channels=1, kernels="reference").double().train()
    with torch.no_grad():  # α away from the uniform start, so the Hessian has a clear spectrum
        for a in m.arch_parameters():
            a.normal_(0.0, 1.0)
    return m


def val_batches(n: int = 2, batch: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 3, (batch,), generator=g))
            for _ in range(n)]


def dense_alpha_hessian(model: nn.Module, criterion, batches) -> torch.Tensor:
    """∇²_α of the mean loss by torch.autograd.functional.hessian, α passed in through functional_call."""
    alphas = model.arch_parameters()
    names = {id(p): n for n, p in model.named_parameters()}
    flat0 = torch.cat([a.detach().reshape(-1) for a in alphas])

    def loss(flat):
        params, start = {}, 0
        for a in alphas:
            params[names[id(a)]] = flat[start:start + a.numel()].view_as(a)
            start += a.numel()
        return sum(criterion(functional_call(model, params, (x,)), y) for x, y in batches) / len(batches)

    return torch.autograd.functional.hessian(loss, flat0)


def dominant(eigenvalues: torch.Tensor) -> float:
    return float(eigenvalues[eigenvalues.abs().argmax()])


# -- dominant_hessian_eigenvalue -----------------------------------------------------------------------------

def test_power_iteration_matches_dense_hessian(one_thread):
    model, batches, criterion = tiny_supernet(), val_batches(), nn.CrossEntropyLoss()
    lam = dominant_hessian_eigenvalue(model, criterion, batches, iters=300, tol=1e-12,
                                      generator=torch.Generator().manual_seed(0))
    H = dense_alpha_hessian(model, criterion, batches)
    torch.testing.assert_close(H, H.T)  # a Hessian: symmetric, so power iteration converges to a real eigenvalue
    eig = torch.linalg.eigvalsh(H)
    expected = dominant(eig)
    second = sorted(eig.abs().tolist())[-2]
    assert second < 0.95 * abs(expected)  # a spectral gap, or the comparison would test nothing
    assert isinstance(lam, float)
    assert math.isclose(lam, expected, rel_tol=1e-3), (lam, expected)


def test_default_budget_is_close_and_reproducible(one_thread):
    model, batches, criterion = tiny_supernet(), val_batches(), nn.CrossEntropyLoss()
    expected = dominant(torch.linalg.eigvalsh(dense_alpha_hessian(model, criterion, batches)))
    first = dominant_hessian_eigenvalue(model, criterion, batches)
    torch.manual_seed(123)  # the default start vector does not come from the global RNG
    state = torch.get_rng_state()
    assert dominant_hessian_eigenvalue(model, criterion, batches) == first
    assert torch.equal(torch.get_rng_state(), state)
    # The default 20 steps with tol 1e-3, at a gap |λ₂/λ₁| ≈ 0.83: within 2%, far finer than the 1.33x growth
    # test needs.
    assert math.isclose(first, expected, rel_tol=0.02), (first, expected)


class Quadratic(nn.Module):
    """L(α) = ½ αᵀAα over two α tensors (shapes (2,) and (1, 2)), with a buffer the forward moves."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([[0.1, 0.5]], dtype=torch.float64))
        self.register_buffer("A", A)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def arch_parameters(self):
        return [self.a, self.b]

    def forward(self, x):
        self.calls += 1
        return torch.cat([self.a, self.b.reshape(-1)]) + 0 * x.sum()


def quadratic_loss(out, A):
    return 0.5 * out @ A @ out


@pytest.mark.parametrize("spectrum", [(-3.0, 1.0, 2.0, 0.5), (4.0, -1.0, 0.2, 2.5)])
def test_quadratic_recovers_signed_eigenvalue(spectrum):
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ Q.T
    model = Quadratic(A)
    lam = dominant_hessian_eigenvalue(model, quadratic_loss, [(torch.zeros(1), A)],
                                      iters=200, tol=1e-12)
    expected = max(spectrum, key=abs)
    assert math.isclose(lam, expected, rel_tol=1e-6), (lam, expected)
    assert int(model.calls) == 0  # buffers restored: the forward's increment is undone


# -- largest_hessian_eigenvalue: RobustDARTS's max(eigvals(H)) ---------------------------------------------------

@pytest.mark.parametrize("spectrum", [(-2.09, 1.11, 0.4, -0.3), (4.0, -1.0, 0.2, 2.5), (-3.0, -1.0, -0.5, -2.0),
                                      (0.5, 0.5, -0.7, 0.1)])
def test_largest_signed_eigenvalue_of_an_explicit_indefinite_hessian(spectrum):
    g = torch.Generator().manual_seed(5)
    Q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ Q.T
    expected = float(torch.linalg.eigvalsh(A)[-1])
    lam = largest_hessian_eigenvalue(Quadratic(A), quadratic_loss, [(torch.zeros(1), A)])
    assert math.isclose(lam, expected, rel_tol=1e-9, abs_tol=1e-12), (lam, expected)
    if spectrum[0] == -2.09:  # the largest in magnitude is the negative one: power iteration answers that
        assert math.isclose(dominant_hessian_eigenvalue(Quadratic(A), quadratic_loss, [(torch.zeros(1), A)],
                                                        iters=300, tol=1e-12), -2.09, rel_tol=1e-6)


def test_largest_eigenvalue_matches_the_dense_hessian_of_a_supernet(one_thread):
    model, batches, criterion = tiny_supernet(), val_batches(), nn.CrossEntropyLoss()
    expected = float(torch.linalg.eigvalsh(dense_alpha_hessian(model, criterion, batches))[-1])
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    lam = largest_hessian_eigenvalue(model, criterion, batches)  # the default budget of 20 products
    assert math.isclose(lam, expected, rel_tol=1e-3), (lam, expected)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


def test_robustdarts_defaults():
    from darts.config import SearchConfig

    # RobustDARTS src/search/args.py: factor 1.3, delta 4, window 5, es_start_epoch 10 (counted from 0), and its
    # scripts' --report_freq_hessian 2 (the search sets --hessian-every 2 for --early-stop hessian)
    cfg = SearchConfig()
    assert (cfg.hessian_ratio, cfg.hessian_lag, cfg.hessian_window, cfg.hessian_start) == (1.3, 4, 5, 11)
    rule = HessianEarlyStop()
    assert (rule.ratio, rule.lag, rule.window, rule.start_epoch) == (1.3, 4, 5, 10)


def test_leaves_buffers_params_and_grads_untouched(one_thread):
    model, batches, criterion = tiny_supernet(), val_batches(), nn.CrossEntropyLoss()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    assert any("running_mean" in n for n in buffers)

    # A plain train-mode forward does move the running statistics, so the check below is not vacuous.
    probe = tiny_supernet()
    probe.load_state_dict(model.state_dict())
    with torch.no_grad():
        probe(batches[0][0])
    assert any(not torch.equal(b, buffers[n]) for n, b in probe.named_buffers())

    dominant_hessian_eigenvalue(model, criterion, batches, iters=3)
    assert model.training
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]), n
        assert p.grad is None, n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_buffers_restored_when_the_loss_is_not_finite(one_thread):
    model, batches = tiny_supernet(), val_batches(n=1)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    with pytest.raises(NonFiniteLossError):
        dominant_hessian_eigenvalue(model, lambda out, y: out.sum() * float("nan"), batches)
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n


def test_reduce_sees_every_product_and_averages():
    A = torch.diag(torch.tensor([2.0, 1.0, -0.5, 0.1], dtype=torch.float64))
    seen = []

    def reduce(tensors):  # stands in for all_reduce_mean: a second rank whose Hessian is 3A
        seen.append([t.shape for t in tensors])
        return [(t + 3 * t) / 2 for t in tensors]

    lam = dominant_hessian_eigenvalue(Quadratic(A), quadratic_loss, [(torch.zeros(1), A)], iters=100, tol=1e-12,
                                      reduce=reduce)
    assert math.isclose(lam, 4.0, rel_tol=1e-6)
    assert seen and all(s == [torch.Size([2]), torch.Size([1, 2])] for s in seen)


# -- SkipEarlyStop ----------------------------------------------------------------------------------------------

def cell_with_skips(k: int) -> Genotype:
    ops = ["skip_connect"] * k + ["sep_conv_3x3"] * (4 - k)
    normal = [(op, i) for op, i in zip(ops, [0, 1, 0, 2])]
    reduce = [("max_pool_3x3", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 2)]
    return Genotype(normal, [2, 3], reduce, [2, 3])


def test_count_skips_reads_the_normal_cell_only():
    assert [count_skips(cell_with_skips(k)) for k in range(5)] == [0, 1, 2, 3, 4]


def test_skip_rule_fires_at_first_epoch_by_default():
    rule = SkipEarlyStop()
    assert [rule.update(cell_with_skips(k)) for k in (0, 1, 1, 2)] == [False, False, False, True]
    assert "2 skip_connect" in rule.reason


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_skip_rule_needs_patience_consecutive_epochs_and_resets(patience):
    counts = [2, 3, 1, 2, 2, 2, 0, 4, 4, 4, 4]
    rule = SkipEarlyStop(max_skips=2, patience=patience)
    fired = [rule.update(c) for c in counts]
    expected, streak = [], 0
    for c in counts:  # the rule written out: a run of >= 2, reset by any epoch below
        streak = streak + 1 if c >= 2 else 0
        expected.append(streak >= patience)
    assert fired == expected
    assert rule.streak == 4


def test_skip_rule_state_round_trips():
    rule = SkipEarlyStop(max_skips=3, patience=3)
    for c in (3, 4):
        assert not rule.update(c)
    resumed = SkipEarlyStop(max_skips=3, patience=3)
    resumed.load_state_dict(rule.state_dict())
    assert resumed.state_dict() == rule.state_dict()
    assert resumed.update(cell_with_skips(3))  # third consecutive epoch, counted across the restart
    fresh = SkipEarlyStop(max_skips=3, patience=3)
    assert not fresh.update(3)


# -- HessianEarlyStop -------------------------------------------------------------------------------------------

def test_hessian_rule_fires_at_the_right_epoch():
    # Flat at 1.0 through epoch 9, then +0.12 per epoch: λ(11) = 1.24, λ(12) = 1.36. With lag=4, window=1 and
    # ratio 1/0.75 the rule compares λ(e) with λ(e-4) = 1.0, so it first fires at epoch 12, rolling back to 8.
    lams = [1.0 if e <= 9 else 1.0 + 0.12 * (e - 9) for e in range(30)]
    rule = HessianEarlyStop(ratio=1 / 0.75, lag=4, window=1, start_epoch=0)
    fired = [e for e, lam in enumerate(lams) if rule.update(e, lam)]
    assert fired[0] == 12
    assert rule.stop_epoch is not None
    assert rule.history == list(enumerate(lams))
    stopped = HessianEarlyStop(ratio=1 / 0.75, lag=4, window=1, start_epoch=0)
    assert [e for e, lam in enumerate(lams[:13]) if stopped.update(e, lam)] == [12]
    assert stopped.stop_epoch == 8
    # The default start_epoch=10 (RobustDARTS' es_start_epoch) holds the rule back until the earlier epoch is 10.
    late = HessianEarlyStop(ratio=1 / 0.75, lag=4, window=1)
    fired_late = [e for e, lam in enumerate(lams) if late.update(e, lam)]
    assert fired_late[0] == 14 and fired_late == [e for e in range(14, 30) if lams[e] > lams[e - 4] / 0.75]


def test_hessian_rule_records_every_k_epochs_with_smoothing_and_start():
    K, lag, window = 2, 3, 3
    epochs = list(range(0, 60, K))
    lams = [0.2 + 0.01 * e if e < 30 else 0.5 * 1.08 ** (e - 30) for e in epochs]
    rule = HessianEarlyStop(ratio=1 / 0.75, lag=lag, window=window, start_epoch=10)
    fired = [(e, rule.stop_epoch) for e, lam in zip(epochs, lams) if rule.update(e, lam)]

    # Independent check: trailing means over records, compared lag records apart, rollback at the earlier centre.
    def mean(j):
        return sum(lams[j - window + 1:j + 1]) / window

    expected = []
    for n in range(lag + window - 1, len(lams)):
        back = epochs[n - lag - window // 2]
        if back >= 10 and mean(n - lag) > 0 and mean(n) > (1 / 0.75) * mean(n - lag):
            expected.append((epochs[n], back))
    assert fired and fired[0][0] >= 30
    assert fired == expected


@pytest.mark.parametrize("kind", ["flat", "noisy", "decaying", "negative"])
def test_hessian_rule_quiet_without_growth(kind):
    g = torch.Generator().manual_seed(0)
    noise = (torch.rand(50, generator=g, dtype=torch.float64) - 0.5).tolist()
    lams = {
        "flat": [0.8] * 50,
        "noisy": [1.0 + 0.2 * z for z in noise],  # ±10%: max/min ratio 1.1/0.9 < 1.33
        "decaying": [2.0 * 0.97 ** e for e in range(50)],
        "negative": [-1.0 - 0.5 * e for e in range(50)],  # no growth ratio is defined below zero
    }[kind]
    rule = HessianEarlyStop(window=1, start_epoch=0)
    assert not any(rule.update(e, lam) for e, lam in enumerate(lams))
    assert rule.stop_epoch is None and rule.reason == ""


def test_hessian_rule_noise_needs_smoothing():
    # One spike of 1.5x on a flat curve fires the unsmoothed rule, not a window of 5 (mean grows by 1.1x).
    lams = [1.0] * 20
    lams[15] = 1.5
    raw, smooth = HessianEarlyStop(lag=4, window=1, start_epoch=0), HessianEarlyStop(lag=4, window=5, start_epoch=0)
    assert [e for e, lam in enumerate(lams) if raw.update(e, lam)] == [15]
    assert not any([smooth.update(e, lam) for e, lam in enumerate(lams)])


def test_hessian_rule_state_round_trips_and_replaces_recomputed_epochs():
    lams = [1.0] * 12 + [1.5, 1.6, 1.7]
    rule = HessianEarlyStop(lag=4, window=2, start_epoch=0)
    for e in range(12):
        assert not rule.update(e, lams[e])
    resumed = HessianEarlyStop(lag=4, window=2, start_epoch=0)
    resumed.load_state_dict(rule.state_dict())
    assert resumed.state_dict() == rule.state_dict()
    # A resumed run that recomputes epoch 11 replaces the record instead of adding a second one.
    assert not resumed.update(11, 1.0)
    assert resumed.history == rule.history
    both = [(rule.update(e, lams[e]), resumed.update(e, lams[e])) for e in range(12, 15)]
    assert [a for a, _ in both] == [b for _, b in both] and any(a for a, _ in both)
    assert resumed.state_dict() == rule.state_dict()
    assert "epoch" in resumed.reason


def test_hessian_rule_rejects_non_finite():
    with pytest.raises(NonFiniteLossError):
        HessianEarlyStop().update(0, float("nan"))


@pytest.mark.parametrize("make", [lambda: SkipEarlyStop(patience=2), lambda: HessianEarlyStop(window=3)])
def test_state_fits_a_safe_checkpoint_and_json(make):
    rule = make()
    for e, value in enumerate([2, 3, 1, 2, 2, 2, 2, 2]):
        if isinstance(rule, SkipEarlyStop):
            rule.update(value)
        else:
            rule.update(e, float(value))
    buf = io.BytesIO()
    torch.save({"collapse": rule.state_dict()}, buf)
    buf.seek(0)
    for state in (torch.load(buf, weights_only=True)["collapse"], json.loads(json.dumps(rule.state_dict()))):
        other = make()
        other.load_state_dict(state)
        assert other.state_dict() == rule.state_dict()
