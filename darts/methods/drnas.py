"""DrNAS (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021): op weights sampled from a
Dirichlet distribution whose concentration is learned, with pathwise (reparameterised) gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from .base import SearchMethod


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """``β = ELU(α) + 1 > 0``: the Dirichlet concentration of DrNAS's code, which stays positive and is ~1 at α≈0."""
    return F.elu(alpha) + 1.0


class DrNAS(SearchMethod):
    """Training forward: ``w ~ Dir(β)`` per edge by ``rsample`` (Sec. 3.1), a fresh sample per forward pass as in
    the authors' code; evaluation and the discretizer use the mean ``β / Σβ``.

    Args:
        reg: ``kl``: add ``reg_scale · KL(Dir(β) || Dir(1))``, the anchor regulariser of Eq. 3, to the α loss;
            ``l2``: the authors' default approximation, which is α weight decay (``--arch-weight-decay``) and adds
            nothing here.
        reg_scale: λ of the regulariser (1e-3 in the authors' code).
    Paper defaults (DARTS space): lr 0.1 to 0, α learning rate 6e-4, α frozen for the first 10 epochs. The
    authors also use progressive partial channels there; this method keeps all channels (combine with nothing,
    for a clean comparison).
    """

    name = "drnas"
    paper = "Chen et al., DrNAS: Dirichlet Neural Architecture Search, ICLR 2021"
    presets = dict(lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_weight_decay=1e-3, arch_warmup=10)
    small_presets = dict(lr=0.1, lr_min=0.0, arch_lr=6e-4, arch_weight_decay=1e-3, arch_warmup=1)

    def __init__(self, reg: str = "kl", reg_scale: float = 1e-3):
        if reg not in ("kl", "l2"):
            raise ValueError(f"DrNAS regulariser must be kl or l2, got {reg!r}")
        self.reg, self.reg_scale = reg, reg_scale

    def op_weights(self, alpha, group, training):
        beta = concentration(alpha)
        if training:
            return Dirichlet(beta).rsample()
        return beta / beta.sum(-1, keepdim=True)

    def arch_loss(self, model):
        if self.reg != "kl":
            return None
        total = 0.0
        for g in model.alphas.groups:
            beta = concentration(model.alphas.group(g))
            total = total + kl_divergence(Dirichlet(beta), Dirichlet(torch.ones_like(beta))).sum()
        return self.reg_scale * total

    def describe(self):
        return f"drnas ({self.reg} regulariser, scale {self.reg_scale})"
