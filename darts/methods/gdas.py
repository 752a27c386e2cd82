"""GDAS (Dong & Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019): one op per edge,
sampled with the Gumbel-max trick; gradients reach α through a straight-through Gumbel-softmax.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..options import option
from ..supernet import MixedOp
from .base import SearchMethod
from .registry import register_method


class SampledMixedOp(MixedOp):
    """An edge that computes only the op its one-hot weight row selects: ``h_k · op_k(x)`` with ``k = argmax h``.

    ``h`` is the straight-through sample (value one-hot, gradient of the soft sample), so the gradient reaches
    every α of the edge through ``h_k`` and the softmax, while the other K-1 ops cost nothing (GDAS Sec. 3.2).

    ``unsampled_terms``: also add the weights ``h_j`` of the unsampled ops themselves, ``h_k·op_k(x) + Σ_{j≠k} h_j``,
    as the authors' NAS-Bench-201 search cell does (``forward_gdas`` of AutoDL-Projects' ``NAS201SearchCell``). Their
    value is exactly 0, but each gets the gradient ``Σ ∂L/∂y``, so every α of the edge sees the data directly, not
    only through the softmax of ``h_k``, and an edge whose sample is ``none`` still moves its α. Their DARTS-space cell
    computes ``h_k·op_k(x)`` only (the default here).
    """

    def __init__(self, C, stride, primitives, search_bn=True, unsampled_terms: bool = False):
        super().__init__(C, stride, primitives, search_bn=search_bn)
        self.unsampled_terms = unsampled_terms

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        k = int(weights.detach().argmax())
        y = weights[k] * self.candidates[k](x)
        if self.unsampled_terms:
            y = y + torch.cat([weights[:k], weights[k + 1:]]).sum()  # exactly 0 in value; its gradient is not
        return y


@register_method
class GDAS(SearchMethod):
    """Gumbel-softmax sampling of one op per edge with a temperature annealed from ``tau_max`` to ``tau_min``.

    Training forward (Eq. 5-6): ``h = one_hot(argmax(log softmax(α) + g))`` with Gumbel noise ``g``, and
    backward through ``softmax((log softmax(α) + g) / τ)`` (straight-through). The noise is drawn once per α step
    and once per weight step (:meth:`resample`), so the passes of a second-order step see the same sample.
    Evaluation uses ``one_hot(argmax α)``. τ decays linearly with the epoch, ``τ_max − (τ_max − τ_min)·e/(E − 1)``,
    from 10 to 0.1 (Sec. 4.1, and AutoDL-Projects' ``GDAS.py``).

    Options:
        tau_max, tau_min: the temperature schedule's ends.
        cell_rule: ``pairs`` (the authors' DARTS-space rule: each node keeps its two strongest (op, input) pairs
            over all incoming edges, so both may read one input) or ``darts`` (two distinct edges per node), both on
            ``softmax(α)``. NAS-Bench-201 cells take every edge's strongest op whatever the rule.
        unsampled_terms: add the zero-valued straight-through weights of the unsampled ops to each edge (see
            :class:`SampledMixedOp`), as the authors' NAS-Bench-201 cell does; the presets turn it on there.
    """

    name = "gdas"
    paper = "Dong and Yang, Searching for A Robust Neural Architecture in Four GPU Hours, CVPR 2019"
    flag_prefix = "gdas"

    @dataclass
    class Options:
        tau_max: float = option(10.0, "initial Gumbel-softmax temperature", positive=True)
        tau_min: float = option(0.1, "final temperature", positive=True)
        cell_rule: str = option("pairs", "DARTS-space cell rule: the two strongest (op, input) pairs per node (the "
                                "authors'), or the DARTS rule (two distinct inputs)", choices=("pairs", "darts"))
        unsampled_terms: bool = option(False, "add the zero-valued straight-through weights of the unsampled ops to "
                                       "each edge, so every α gets a gradient (the authors' NAS-Bench-201 cell; on "
                                       "in nb201)")
    # AutoDL-Projects' configs/search-opts/GDAS-NASNet-CIFAR.config (DARTS space) and
    # configs/nas-benchmark/algos/GDAS.config (NAS-Bench-201, batch 64), with Adam 3e-4 / 1e-3 for α.
    presets = {
        "paper": dict(epochs=250, batch_size=256, weight_decay=5e-4, nesterov=True, arch_lr=3e-4,
                      arch_weight_decay=1e-3),
        "small": dict(arch_lr=3e-3),  # a few hundred steps: α must move faster than on CIFAR to show anything
        "nb201": dict(gdas_unsampled_terms=True),
        "nb201/paper": dict(batch_size=64),
    }
    generic_cell = True
    uses_all_weights = False

    def setup(self):
        o = self.options
        if o.tau_min > o.tau_max:
            raise ConfigError(f"--gdas-tau-min ({o.tau_min}) is larger than --gdas-tau-max ({o.tau_max})")
        self.tau_max, self.tau_min, self.tau = o.tau_max, o.tau_min, o.tau_max
        self.cell_rule, self.unsampled_terms = o.cell_rule, o.unsampled_terms
        self._gumbel: dict[str, torch.Tensor] = {}

    def build_edge(self, C, stride, primitives, search_bn=True):
        return SampledMixedOp(C, stride, primitives, search_bn=search_bn, unsampled_terms=self.unsampled_terms)

    def resample(self, model):
        self._gumbel = {}
        for g in model.alphas.groups:
            a = model.alphas.group(g)
            # -log(-log U), U ~ U(0, 1); clamped away from 0 and 1 so the noise is finite
            u = torch.rand_like(a).clamp_(1e-10, 1.0 - 1e-7)
            self._gumbel[g] = -torch.log(-torch.log(u))

    def op_weights(self, alpha, group, training):
        if not training:
            return F.one_hot(alpha.detach().argmax(-1), alpha.shape[-1]).to(alpha.dtype)
        noise = self._gumbel.get(group)
        if noise is None or noise.shape != alpha.shape or noise.device != alpha.device:
            noise = -torch.log(-torch.log(torch.rand_like(alpha).clamp_(1e-10, 1.0 - 1e-7)))
            self._gumbel[group] = noise
        soft = F.softmax((F.log_softmax(alpha, dim=-1) + noise) / self.tau, dim=-1)
        hard = F.one_hot(soft.detach().argmax(-1), alpha.shape[-1]).to(soft.dtype)
        return hard - soft.detach() + soft

    def derive_weights(self, model, group):
        return F.softmax(model.alphas.group(group), dim=-1)

    def start_epoch(self, model, epoch, epochs):
        frac = epoch / max(epochs - 1, 1)
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * frac
        return {"tau": self.tau}

    def describe(self):
        extra = ", unsampled ops' weights in each edge" if self.unsampled_terms else ""
        return f"gdas (tau {self.tau_max} -> {self.tau_min}, {self.cell_rule} cell rule{extra})"
