"""Fair DARTS (Chu et al., "Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture Search",
ECCV 2020): independent sigmoids instead of the softmax, and a zero-one loss that pushes them to 0 or 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ops import DARTS_PRIMITIVES
from ..options import option
from .base import SearchMethod
from .registry import register_method

#: the authors' ops: the DARTS primitives without ``none`` (FairDARTS ``fairdarts/genotypes.py``)
FAIR_PRIMITIVES = tuple(p for p in DARTS_PRIMITIVES if p != "none")


@register_method
class FairDARTS(SearchMethod):
    """Op weights ``σ(α)`` (Eq. 3): ops do not compete, so a skip connection cannot win only by starving the rest.

    Options:
        zero_one_weight: ``w_01`` of the zero-one loss ``L_01 = −(1/N) Σ_i (σ(α_i) − 0.5)²`` over all N α of both
            cells (Eq. 4, the authors' ``ConvSeparateLoss``), added to the validation loss from the first epoch;
            10 in the paper.
        cell_rule: ``threshold`` (the authors' default, ``threshold_sparse``): each node takes the DARTS rule's two
            edges and keeps each one's op only if ``σ ≥ threshold``, so a node has 0, 1 or 2 ops and the derived
            cells may be sparse; ``darts``: the DARTS rule on ``σ(α)``.
        threshold: the σ a kept op must reach (the authors' ``--op_threshold`` 0.85).
    α starts at 0 (σ = 0.5), as in the authors' ``model_search.py``. Every epoch logs how many α of each cell
    have ``σ ≥ threshold`` (``above_threshold_normal``, ``above_threshold_reduce``).
    """

    name = "fairdarts"
    softmax_relaxation = False
    paper = "Chu et al., Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture Search, ECCV 2020"
    flag_prefix = "fair"

    @dataclass
    class Options:
        zero_one_weight: float = option(10.0, "weight of the zero-one loss", nonneg=True)
        cell_rule: str = option("threshold", "cell rule: the DARTS edges, each kept only if its sigmoid reaches "
                                "--fair-threshold (the authors'), or the DARTS rule", choices=("threshold", "darts"))
        threshold: float = option(0.85, "sigmoid an op must reach to be kept", min=0, max=1, min_exclusive=True,
                                  max_exclusive=True)
    # fairdarts/train_search.py and architect.py: batch 128, lr 0.005 -> 0.001, α Adam 3e-3 with betas (0.9, 0.999)
    presets = {
        "paper": dict(batch_size=128, lr=0.005, lr_min=0.001, arch_lr=3e-3, arch_weight_decay=1e-3, arch_beta1=0.9),
        "small": dict(arch_lr=3e-3, arch_weight_decay=1e-3, arch_beta1=0.9),
        "darts": dict(primitives=FAIR_PRIMITIVES),
    }

    def setup(self):
        o = self.options
        self.zero_one_weight, self.cell_rule, self.cell_threshold = o.zero_one_weight, o.cell_rule, o.threshold

    def initial_alpha(self, shape):
        return torch.zeros(*shape)

    def op_weights(self, alpha, group, training):
        return torch.sigmoid(alpha)

    def arch_loss(self, model):
        sig = torch.cat([torch.sigmoid(model.alphas.group(g)).flatten() for g in model.alphas.groups])
        return -self.zero_one_weight * ((sig - 0.5) ** 2).mean()

    def epoch_metrics(self, model):
        return {f"above_threshold_{g}": int((torch.sigmoid(model.alphas.group(g)) >= self.cell_threshold).sum())
                for g in model.alphas.groups}

    def describe(self):
        rule = f"threshold {self.cell_threshold}" if self.cell_rule == "threshold" else "DARTS"
        return f"fairdarts (zero-one loss weight {self.zero_one_weight}, {rule} cell rule)"
