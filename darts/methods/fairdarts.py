"""Fair DARTS (Chu et al., "Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture Search",
ECCV 2020): independent sigmoids instead of the softmax, and a zero-one loss that pushes them to 0 or 1.
"""
from __future__ import annotations

import torch

from .base import SearchMethod


class FairDARTS(SearchMethod):
    """Op weights ``σ(α)`` (Eq. 3): ops do not compete, so a skip connection cannot win only by starving the rest.

    Args:
        zero_one_weight: ``w_01`` of the zero-one loss ``L_01 = −(1/N) Σ_i (σ(α_i) − 0.5)²`` over all N α
            (Eq. 4), added to the validation loss; 10 in the paper.
    The discretizer applies the DARTS rule (two strongest edges per node) to ``σ(α)``; the paper's threshold
    σ > 0.85 is reported as ``above_threshold`` in the log.
    """

    name = "fairdarts"
    paper = "Chu et al., Fair DARTS: Eliminating Unfair Advantages in Differentiable Architecture Search, ECCV 2020"
    presets = dict(arch_lr=3e-4, arch_weight_decay=1e-3)
    threshold = 0.85

    def __init__(self, zero_one_weight: float = 10.0):
        self.zero_one_weight = zero_one_weight

    def op_weights(self, alpha, group, training):
        return torch.sigmoid(alpha)

    def arch_loss(self, model):
        sig = torch.cat([torch.sigmoid(model.alphas.group(g)).flatten() for g in model.alphas.groups])
        return -self.zero_one_weight * ((sig - 0.5) ** 2).mean()

    def describe(self):
        return f"fairdarts (zero-one loss weight {self.zero_one_weight})"
