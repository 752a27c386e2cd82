"""Zero-cost proxies: scores of an untrained network that predict how well it will train, registered like ops.

Each proxy takes a discrete network at initialisation (any space's: DARTS cells or NAS-Bench-201 ones), one batch of
data and the loss, and returns a number (higher: predicted better). The arithmetic follows NAS-Bench-Suite-Zero's
code (NASLib ``predictors/utils/pruners/measures``, itself the code of Abdelfattah et al.), so scores can be compared
with its published tables:

* layers are the ``nn.Conv2d`` and ``nn.Linear`` modules, and a per-weight score is summed over all their weights;
* the network is a copy in training mode (BatchNorm on batch statistics), at PyTorch's default initialisation;
* ``synflow`` replaces every BatchNorm by an identity and runs in float64 (and its sum is taken as a logarithm).

``score(network, "synflow")`` computes one; ``PROXIES`` lists them; register your own with :func:`register_proxy`.
"""
from __future__ import annotations

from copy import deepcopy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .counting import count_flops
from .errors import ConfigError
from .final import count_parameters
from .registry import Registry


@dataclass(frozen=True)
class ProxySpec:
    """A registered proxy: ``fn(net, x, y, loss) -> float`` on a copy of the network; ``needs_data``: False when the
    score does not read the batch (synflow, params, flops); ``paper``: its source."""

    name: str
    fn: Callable
    needs_data: bool
    paper: str


PROXIES: Registry[ProxySpec] = Registry("zero-cost proxy", flag="--proxy",
                                        hint="Register your own with darts.proxies.register_proxy.")


def register_proxy(name: str, *, needs_data: bool = True, paper: str = ""):
    """Decorator: register ``fn(net, x, y, loss) -> float`` as the proxy ``name``."""

    def deco(fn):
        PROXIES.register(name, ProxySpec(name, fn, needs_data, paper), origin=fn.__module__)
        return fn

    return deco


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


class _NoBatchNorm:
    """Every BatchNorm of a network as the identity, for the duration (NASLib's ``bn=False``)."""

    def __init__(self, net):
        self.bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        for m in self.bns:
            m.forward = lambda x: x
        return self

    def __exit__(self, *exc):
        for m in self.bns:
            del m.forward
        return False


def _weight_grads(net, x, y, loss):
    net.zero_grad()
    loss(_logits(net(x)), y).backward()
    return [(m.weight, m.weight.grad if m.weight.grad is not None else torch.zeros_like(m.weight))
            for m in _layers(net)]


# -- data-independent -----------------------------------------------------------------------------------------

@register_proxy("synflow", needs_data=False,
                paper="Tanaka et al., Pruning neural networks without any data by iteratively conserving synaptic "
                      "flow, NeurIPS 2020; as a NAS proxy: Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, "
                      "ICLR 2021")
def synflow(net, x, y, loss) -> float:
    """``log Σ |θ ⊙ ∂R/∂θ|`` with ``R = Σ f(1)``: every parameter and buffer replaced by its absolute value, the
    input all ones, BatchNorm as the identity, float64 (NASLib's ``compute_synflow_per_weight``). 0 stays 0."""
    net = net.double()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    with _NoBatchNorm(net):
        net.zero_grad()
        ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
        torch.sum(_logits(net(ones))).backward()
    s = float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in _layers(net) if m.weight.grad is not None))
    if s == 0:
        return 0.0
    return math.log(s) if s > 0 else -math.log(-s)


@register_proxy("params", needs_data=False, paper="the parameter count, in millions")
def params(net, x, y, loss) -> float:
    return count_parameters(net) / 1e6


@register_proxy("flops", needs_data=False,
                paper="FLOPs in millions, counted as NAS-Bench-Suite-Zero does (darts.counting.count_flops)")
def flops(net, x, y, loss) -> float:
    return count_flops(net, tuple(x.shape[1:])) / 1e6


# -- data-dependent -------------------------------------------------------------------------------------------

@register_proxy("snip", paper="Lee et al., SNIP: Single-shot Network Pruning based on Connection Sensitivity, "
                              "ICLR 2019; Abdelfattah et al., ICLR 2021")
def snip(net, x, y, loss) -> float:
    """``Σ |∂L/∂θ ⊙ θ|`` over the conv and linear weights, on one batch."""
    return float(sum((w.detach() * g).abs().sum() for w, g in _weight_grads(net, x, y, loss)))


@register_proxy("grad_norm", paper="Abdelfattah et al., Zero-Cost Proxies for Lightweight NAS, ICLR 2021")
def grad_norm(net, x, y, loss) -> float:
    """``Σ_layers ‖∂L/∂W‖₂``: the norm of each layer's weight gradient, summed over the layers."""
    return float(sum(g.norm() for _, g in _weight_grads(net, x, y, loss)))


@register_proxy("plain", paper="Abdelfattah et al., ICLR 2021 (the signed first-order saliency)")
def plain(net, x, y, loss) -> float:
    """``Σ ∂L/∂θ ⊙ θ``, signed."""
    return float(sum((w.detach() * g).sum() for w, g in _weight_grads(net, x, y, loss)))


@register_proxy("grasp", paper="Wang et al., Picking Winning Tickets Before Training by Preserving Gradient Flow, "
                               "ICLR 2020; Abdelfattah et al., ICLR 2021")
def grasp(net, x, y, loss) -> float:
    """``Σ −θ ⊙ Hg``: ``g = ∂L/∂θ`` on the batch, ``Hg`` the Hessian-gradient product (temperature 1, one
    iteration, as NASLib's ``compute_grasp_per_weight``)."""
    weights = [m.weight for m in _layers(net)]
    g = torch.autograd.grad(loss(_logits(net(x)), y), weights, allow_unused=True)
    g = [torch.zeros_like(w) if gi is None else gi.detach() for gi, w in zip(g, weights)]
    grad_f = torch.autograd.grad(loss(_logits(net(x)), y), weights, create_graph=True, allow_unused=True)
    z = sum((gi * gf).sum() for gi, gf in zip(g, grad_f) if gf is not None)
    hg = torch.autograd.grad(z, weights, allow_unused=True)
    return float(sum((-w.detach() * h).sum() for w, h in zip(weights, hg) if h is not None))


@register_proxy("fisher", paper="Theis et al., Faster gaze prediction with dense networks and Fisher pruning, 2018; "
                                "Turner et al., BlockSwap, ICLR 2020; Abdelfattah et al., ICLR 2021")
def fisher(net, x, y, loss) -> float:
    """Per output channel of every conv and linear layer, ``½ mean_n (Σ_spatial a ⊙ ∂L/∂a)²`` of its activation
    ``a``, times the layer's fan-in (``C_in·kh·kw``), summed: NASLib's ``compute_fisher_per_weight`` broadcasts each
    channel's value over that channel's weights."""
    acts = []

    def keep(m, inputs, output):  # returns None: a forward hook's return value would replace the output
        output.retain_grad()
        acts.append((m, output))

    hooks = [m.register_forward_hook(keep) for m in _layers(net)]
    try:
        net.zero_grad()
        loss(_logits(net(x)), y).backward()
    finally:
        for h in hooks:
            h.remove()
    total = 0.0
    for m, a in acts:
        if a.grad is None:
            continue
        g = (a * a.grad).sum(dim=(2, 3)) if a.dim() == 4 else a * a.grad  # (N, C)
        per_channel = (0.5 * (g ** 2).mean(0)).abs()
        fan_in = m.weight[0].numel()
        total += float(per_channel.sum()) * fan_in
    return total


@register_proxy("jacov", paper="Mellor et al., Neural Architecture Search without Training, 2020 (v1: the "
                               "Jacobian covariance); Abdelfattah et al., ICLR 2021")
def jacov(net, x, y, loss) -> float:
    """``−Σ_i (log(λ_i + k) + 1/(λ_i + k))``, ``k = 1e-5``, over the eigenvalues λ of the correlation matrix of the
    per-sample input gradients of ``Σ f(x)``."""
    x = x.detach().clone().requires_grad_(True)
    net.zero_grad()
    out = _logits(net(x))
    out.backward(torch.ones_like(out))
    corr = torch.corrcoef(x.grad.reshape(x.shape[0], -1).double())
    if not torch.isfinite(corr).all():  # a sample with a constant gradient: NASLib scores the failure -1e8
        return -1e8
    v = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(v + k) + 1.0 / (v + k)))


@register_proxy("nwot", paper="Mellor et al., Neural Architecture Search without Training, ICML 2021")
def nwot(net, x, y, loss) -> float:
    """``log |det K|`` with ``K = Σ_ReLUs (c cᵀ + (1−c)(1−c)ᵀ)``, ``c`` the binary code (input > 0) of each sample at
    every ``nn.ReLU`` of the network (the paper's Hamming-kernel score)."""
    K = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64)

    def hook(m, inputs, output):
        c = (inputs[0].detach().reshape(x.shape[0], -1) > 0).double()
        K.add_(c @ c.T + (1 - c) @ (1 - c).T)

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(K)[1])


def score(network: nn.Module, proxy: str, batch=None, loss=None, input_size=(3, 32, 32), copy: bool = True) -> float:
    """The ``proxy`` score of ``network`` (at its current, untrained weights), on a copy of it (``copy=False``:
    on the network itself, which some proxies change, e.g. synflow takes the weights' absolute values).

    Args:
        network: any module mapping images to logits (or ``(logits, aux)``).
        proxy: a registered name (``synflow``, ``snip``, ``grasp``, ``fisher``, ``grad_norm``, ``jacov``, ``nwot``,
            ``plain``, ``params``, ``flops``).
        batch: ``(x, y)`` for the data-dependent proxies (NASLib scores NAS-Bench-201 cells on one CIFAR-10 batch of
            32); the data-independent ones read only ``x``'s shape, and ``input_size`` without a batch.
        loss: ``(logits, y) -> scalar`` (default cross-entropy).
    """
    spec = PROXIES.get(proxy)
    if batch is None:
        if spec.needs_data:
            raise ConfigError(f"proxy {proxy!r} needs a batch of data (x, y)")
        batch = (torch.zeros((1, *input_size)), torch.zeros(1, dtype=torch.long))
    x, y = batch
    net = (deepcopy(network) if copy else network).train()
    with torch.random.fork_rng(devices=[]):
        return float(spec.fn(net, x, y, loss or F.cross_entropy))
